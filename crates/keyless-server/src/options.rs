//! The options of the long-running commands (`keyless serve`, `keyless agent`), as clap
//! arguments: the binary flattens them into its command line, and tests build them with
//! [`parse`], from the same words a command line would have.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use keyless_types::Secret;

use crate::listener::Limits;
use crate::request_log::RequestLogLevel;

/// Options parsed from command-line words (without the program name), as the binary parses
/// them: for tests and embedders that start a server in process.
pub fn parse<T: Args>(words: &[&str]) -> Result<T, clap::Error> {
    #[derive(Parser)]
    struct Wrapper<T: Args> {
        #[command(flatten)]
        options: T,
    }
    let words = std::iter::once("keyless").chain(words.iter().copied());
    Wrapper::<T>::try_parse_from(words).map(|w| w.options)
}

/// What every long-running command has: the admin listener, connection limits and the
/// shutdown grace period.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admin listener, limits and shutdown")]
pub struct ServerOptions {
    /// The management listener: `GET /healthz` (the process serves) and `GET /readyz` (ready
    /// for traffic); `off` disables it. Keep it off the network clients use.
    #[arg(long, env = "KEYLESS_ADMIN_LISTEN", default_value = "127.0.0.1:9090", value_name = "ADDR|off", value_parser = parse_listen)]
    pub admin_listen: Listen,

    /// How long requests in flight have to finish after SIGTERM or SIGINT (Kubernetes waits
    /// 30 s by default before it kills); a second signal stops at once.
    #[arg(long, default_value = "25s", value_parser = parse_std_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Connections served at once on each listener; more wait in the listen backlog until one
    /// closes. Defaults to (open-file limit - 64) / 4, from 16 to 4096, so that the files
    /// requests open still find descriptors; `serve` and `agent` raise the open-file limit to
    /// its hard limit at start. Past the open-file limit, accepting pauses and retries.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// How long a connection may be idle (no request in flight, nothing sent or received)
    /// before it is closed. A client also has this long, 30 s at the most (10 s on the
    /// metadata listener), to send a request's headers; between two requests on an HTTP/1.1
    /// connection that shorter time is the idle limit.
    #[arg(long, default_value = "60s", value_parser = parse_std_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// The level of the one log line each request gets (request id, operation, principal,
    /// bucket and key, status, duration): `info`, `debug` (out of the default output, for busy
    /// servers) or `off`.
    #[arg(long, value_enum, default_value = "info", value_name = "LEVEL")]
    pub request_log: RequestLogLevel,
}

/// `--encrypt-objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncryptObjects {
    /// Every object.
    All,
    /// Those whose write asks for it.
    Requested,
}

impl EncryptObjects {
    /// The store's sealing.
    pub fn sealing(self) -> keyless_s3::store::Sealing {
        match self {
            Self::All => keyless_s3::store::Sealing::All,
            Self::Requested => keyless_s3::store::Sealing::Requested,
        }
    }
}

/// Descriptors left, by the default connection limit, to everything but connections: the
/// stores, the log, the runtime.
const RESERVED_FILES: u64 = 64;

/// The default `--max-connections` under an open-file limit of `open_files` (`None`:
/// unlimited): a quarter of what is not reserved, so that two listeners at their limit still
/// leave half the descriptors to the files their requests open.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    const MIN: u64 = 16;
    const MAX: u64 = 4096;
    let derived = open_files.map_or(MAX, |n| n.saturating_sub(RESERVED_FILES) / 4);
    usize::try_from(derived.clamp(MIN, MAX)).unwrap_or(4096)
}

impl ServerOptions {
    /// The limits of each listener.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.map_or_else(
                || default_max_connections(crate::lifecycle::open_file_limit()),
                |n| n as usize,
            ),
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// A listener's address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// No listener.
    Off,
    /// Listen on this address.
    On(SocketAddr),
}

impl Listen {
    /// The address, when on.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Self::Off => None,
            Self::On(addr) => Some(addr),
        }
    }
}

/// An address, or `off`.
fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse()
        .map(Listen::On)
        .map_err(|_| format!("`{s}` is neither an address such as 127.0.0.1:9090 nor `off`"))
}

/// `25`, `25s`, `500ms`, `2m`, `1h`: a whole number of seconds, milliseconds, minutes or
/// hours.
fn parse_std_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration such as 25s, 500ms, 2m or 1h");
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scaled = |scale: u64| {
        n.checked_mul(scale)
            .map(Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => scaled(60),
        "h" => scaled(3600),
        _ => Err(bad()),
    }
}

/// A period of a background task: a duration of at least a second.
pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_std_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is too short: at least 1s"));
    }
    Ok(d)
}

/// The options of `keyless serve`.
#[derive(Debug, Args)]
pub struct ServeOptions {
    /// Address to listen on (port 0 picks a free port). A node's address serves clients
    /// elsewhere; a wildcard address (0.0.0.0, [::]) needs --issuer.
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// A TOML file declaring IAM users, policies and buckets to create at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder for objects, metadata and the root credentials; created if absent.
    #[arg(long, default_value = "keyless-data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// TLS certificate chain (PEM); with --tls-key, the endpoint speaks HTTPS. Reloaded when
    /// the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A domain for virtual-hosted-style addressing (`BUCKET.DOMAIN`); repeat for several.
    /// Path-style addressing always works.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Vec<String>,

    /// Region reported as the buckets' location.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// The account id of this server's principals (12 digits).
    #[arg(long, default_value = "000000000000", value_parser = parse_account)]
    pub account_id: String,

    /// The URL of this server's OIDC issuer, which serves
    /// `<URL>/.well-known/openid-configuration` and signs `keyless token`'s tokens. Defaults to
    /// this server's own address (required with a wildcard --listen). It is registered as
    /// this server's one OIDC provider (audience sts.amazonaws.com) at start; a changed URL
    /// moves that provider. Keyless checks its own tokens (STS, container credentials) with the
    /// keys in memory, never over the network, so http:// to a node address works; relying
    /// parties elsewhere should see it over https (--tls-cert, or https://NAME behind a TLS
    /// proxy).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// The key that seals session tokens (32 bytes or more, base64; mode 0600). Replicas that
    /// share it accept each other's sessions. Defaults to `session-key` in the data folder,
    /// created on first start.
    #[arg(long, value_name = "FILE")]
    pub session_key_file: Option<PathBuf>,

    /// The master keys that wrap each object's data key (encryption at rest, SSE-S3; JSON,
    /// mode 0600). Every object is sealed with AES-256-GCM under a data key of its own.
    /// Defaults to `encryption-keys.json` in the data folder, created on first start; `keyless
    /// encryption rotate` adds a new key, and the next start re-wraps the data keys with it.
    /// Keep a copy apart from the data: without it, the objects cannot be read.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream")]
    pub encryption_key_file: Option<PathBuf>,

    /// Which objects are encrypted at rest: `all` (as S3 since 2023), or `requested`: only
    /// those whose write asks for SSE-S3 (`x-amz-server-side-encryption: AES256`) or whose
    /// bucket has a default encryption (PutBucketEncryption), as S3 before 2023, for disks
    /// that are encrypted already. Objects sealed before stay readable either way.
    #[arg(
        long,
        value_enum,
        default_value = "all",
        value_name = "WHICH",
        conflicts_with = "upstream"
    )]
    pub encrypt_objects: EncryptObjects,

    /// How often the buckets' lifecycle rules are applied (expired objects deleted, incomplete
    /// multipart uploads aborted). Each pass looks at 100,000 objects and uploads at most.
    #[arg(long, default_value = "1h", value_parser = parse_interval, value_name = "DURATION")]
    pub lifecycle_interval: Duration,

    /// Also serve the EC2 instance metadata service on this address (see `keyless agent`), so
    /// that one machine needs no second process. Its AssumeRole calls go to this server's own
    /// socket (over TLS with --tls-cert, trusting exactly the certificate served) and are
    /// signed by the IAM user `keyless-imds`, created with a key in the data folder
    /// (`imds-credentials`) on first use: roles given to pods must trust
    /// `arn:aws:iam::ACCOUNT:user/keyless-imds`.
    #[arg(long, value_name = "ADDR")]
    pub imds_listen: Option<std::net::SocketAddr>,

    /// How the metadata service finds pods and their roles.
    #[command(flatten)]
    pub imds: ImdsOptions,

    /// Gateway mode.
    #[command(flatten)]
    pub upstream: UpstreamOptions,

    /// Where IAM state lives.
    #[command(flatten)]
    pub iam_store: IamStoreOptions,

    /// The audit trail.
    #[command(flatten)]
    pub audit: AuditOptions,

    /// STS's issuance limits.
    #[command(flatten)]
    pub sts_limits: StsLimitOptions,

    /// The admin listener, limits and shutdown.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// `--upstream-region`'s default.
pub(crate) const DEFAULT_UPSTREAM_REGION: &str = "us-east-1";
/// `--upstream-timeout`'s default.
pub(crate) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `--iam-store-check-interval`'s default.
pub(crate) const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// IAM state shared by replicas in PostgreSQL.
#[derive(Args)]
#[command(next_help_heading = "Replicas")]
pub struct IamStoreOptions {
    /// Keep IAM state (users, keys, policies, roles, OIDC providers) in PostgreSQL, shared by
    /// every replica on the database, instead of the data folder's `iam.redb`:
    /// `postgres://USER@HOST:PORT/DB` (TLS by rustls, required over TCP unless the URL gives
    /// `sslmode`; `?host=/run/postgresql` for a Unix socket). A change made on one replica is served by all within a second. The
    /// root key pair, the OIDC issuer's signing keys and the metadata service's key are shared
    /// there too. Everything is sealed under a key derived from --session-key-file, which every
    /// replica must be given.
    #[arg(long, value_name = "URL", requires = "session_key_file")]
    pub iam_store: Option<String>,

    /// The database password, when it is not in the URL (mode 0600).
    #[arg(long, value_name = "FILE", requires = "iam_store")]
    pub iam_store_password_file: Option<PathBuf>,

    /// Certificate authorities (PEM) trusted for the database's TLS besides the platform's.
    #[arg(long, value_name = "FILE", requires = "iam_store")]
    pub iam_store_ca_bundle: Option<PathBuf>,

    /// How often each replica compares its IAM state's epoch with the database's: the bound on
    /// staleness should a change's notification be lost (at most 60s).
    #[arg(long, default_value = "5s", value_parser = parse_check_interval, value_name = "DURATION", requires = "iam_store")]
    pub iam_store_check_interval: Duration,
}

impl std::fmt::Debug for IamStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamStoreOptions")
            .field(
                "iam_store",
                &self.iam_store.as_deref().map(keyless_postgres::redact_url),
            )
            .field("iam_store_password_file", &self.iam_store_password_file)
            .field("iam_store_ca_bundle", &self.iam_store_ca_bundle)
            .field("iam_store_check_interval", &self.iam_store_check_interval)
            .finish()
    }
}

pub(crate) fn parse_check_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_std_duration(text)?;
    if interval > Duration::from_secs(60) || interval < Duration::from_millis(100) {
        return Err("between 100ms and 60s".into());
    }
    Ok(interval)
}

/// The audit trail: a CloudTrail-format record of every S3, IAM and STS request.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Audit trail")]
pub struct AuditOptions {
    /// Write a CloudTrail-format record of every S3, IAM and STS request: to this file (JSON
    /// lines, rotated by size), to standard output (`-`), or POSTed in batches to an
    /// http:// or https:// endpoint as `{"Records": [...]}`. Records never hold a secret,
    /// token or signature; a denial's record says which policy refused. Off when not given.
    /// `keyless audit FILE` reads a trail back.
    #[arg(long, env = "KEYLESS_AUDIT_LOG", value_name = "FILE|-|URL")]
    pub audit_log: Option<String>,

    /// Rotate the trail file once it passes this size (`FILE` becomes `FILE.1`).
    #[arg(long, default_value = "100MiB", value_parser = parse_size, value_name = "SIZE", requires = "audit_log")]
    pub audit_log_max_size: u64,

    /// Rotated trail files to keep (`FILE.1` to `FILE.N`; 0 keeps none).
    #[arg(long, default_value = "5", value_name = "N", requires = "audit_log", value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub audit_log_keep: u16,

    /// Records waiting for the sink take at most this much memory; past it (the sink slow
    /// or down), records are dropped, counted and the count logged, and requests never wait.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "SIZE", requires = "audit_log")]
    pub audit_log_buffer: u64,

    /// CA certificates (PEM) to trust for an https:// trail endpoint, beside the system's.
    #[arg(long, value_name = "FILE", requires = "audit_log")]
    pub audit_log_ca_bundle: Option<PathBuf>,

    /// A file holding a bearer token for the trail endpoint, read for every batch.
    #[arg(long, value_name = "FILE", requires = "audit_log")]
    pub audit_log_token_file: Option<PathBuf>,
}

/// How many credentials STS issues, and for how long.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "STS limits")]
pub struct StsLimitOptions {
    /// Credentials STS issues per second to one principal (a user or session, one pod of the
    /// agent's, or one web identity's service account), in bursts of up to twice as many;
    /// past it, `Throttling` (the SDKs retry with backoff). Unlimited when not given.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub sts_principal_rate: Option<f64>,

    /// Credentials STS issues per second for one role, in bursts of up to twice as many.
    /// Unlimited when not given.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub sts_role_rate: Option<f64>,

    /// The longest session STS issues (15 minutes to 12 hours), whatever the roles'
    /// MaxSessionDuration: a longer request (within its role's maximum) gets a session this
    /// long; asking for more than the role allows is refused as ever.
    #[arg(long, value_name = "DURATION", value_parser = parse_session_duration)]
    pub sts_max_session_duration: Option<u32>,
}

impl StsLimitOptions {
    /// The limits STS issues within.
    pub(crate) fn limits(&self) -> keyless_sts::Limits {
        keyless_sts::Limits {
            per_principal: self.sts_principal_rate.map(keyless_sts::Rate::per_second),
            per_role: self.sts_role_rate.map(keyless_sts::Rate::per_second),
            max_session_seconds: self.sts_max_session_duration,
        }
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (0.01..=100_000.0).contains(&n) => Ok(n),
        _ => Err("a rate is a number of calls per second, from 0.01 to 100000".into()),
    }
}

/// A size in bytes: `1048576`, `64KiB`, `100MiB`, `2GiB` (or `KB`, `MB`, `GB` in powers of 1000).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (such as 64MiB)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a unit of size (B, KiB, MiB, GiB)"
            ));
        }
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("`{text}` is not a size between 1 byte and 16 EiB")),
        Some(bytes) => Ok(bytes),
    }
}

/// Gateway mode: objects in an existing S3-compatible store.
#[derive(Debug, Args)]
#[command(next_help_heading = "Gateway mode")]
pub struct UpstreamOptions {
    /// Keep objects in this S3-compatible store (Ceph RGW, Garage, MinIO, AWS S3: http:// or
    /// https://, path-style requests) instead of the data folder. Keyless still checks every
    /// signature and policy; the upstream is reached with Keyless's own key pair
    /// (--upstream-credentials-file, or KEYLESS_UPSTREAM_ACCESS_KEY_ID and
    /// KEYLESS_UPSTREAM_SECRET_ACCESS_KEY) and never asked to enforce anything. Bucket
    /// policies and configurations stay in the data folder. Object Lock is not available.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// The region the upstream's requests are signed for (Garage: its `s3_region`).
    #[arg(
        long,
        default_value = DEFAULT_UPSTREAM_REGION,
        value_name = "REGION",
        requires = "upstream"
    )]
    pub upstream_region: String,

    /// An AWS shared credentials file whose `[default]` profile holds Keyless's key pair at
    /// the upstream (mode 0600).
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_credentials_file: Option<PathBuf>,

    /// Certificate authorities (PEM) trusted for an https:// upstream besides the platform's.
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_ca_bundle: Option<PathBuf>,

    /// Put before every bucket name at the upstream, so that several Keyless tenants share one
    /// upstream account: with `team-a-`, the bucket `logs` is the upstream's `team-a-logs`.
    #[arg(long, default_value = "", value_name = "PREFIX", requires = "upstream")]
    pub upstream_bucket_prefix: String,

    /// How long the upstream may take to begin its answer once it has the request's body (an
    /// upload streams as long as it takes); then 503 ServiceUnavailable, which SDKs retry.
    #[arg(long, default_value = "30s", value_parser = parse_interval, value_name = "DURATION", requires = "upstream")]
    pub upstream_timeout: Duration,

    /// Keyless's access key id at the upstream (rather from the environment or the file).
    #[arg(long, env = "KEYLESS_UPSTREAM_ACCESS_KEY_ID", hide = true)]
    pub upstream_access_key_id: Option<String>,

    /// Its secret, from the environment only.
    #[arg(
        long,
        env = "KEYLESS_UPSTREAM_SECRET_ACCESS_KEY",
        hide = true,
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub upstream_secret_access_key: Option<Secret>,
}

impl UpstreamOptions {
    /// Keyless's key pair at the upstream: from the credentials file, else the environment.
    pub fn credentials(&self) -> anyhow::Result<(String, Secret)> {
        if let Some(path) = &self.upstream_credentials_file {
            return crate::root::read_shared_credentials(path, "default");
        }
        match (
            &self.upstream_access_key_id,
            &self.upstream_secret_access_key,
        ) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.expose().is_empty() => {
                Ok((id.clone(), secret.clone()))
            }
            _ => anyhow::bail!(
                "--upstream needs Keyless's key pair at the upstream: --upstream-credentials-file, \
                 or KEYLESS_UPSTREAM_ACCESS_KEY_ID and KEYLESS_UPSTREAM_SECRET_ACCESS_KEY"
            ),
        }
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a 12-digit account id"))
    }
}

/// The options of `keyless agent`.
#[derive(Debug, Args)]
pub struct AgentOptions {
    /// Address of the metadata service.
    #[arg(long, default_value = "127.0.0.1:8181", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// Keyless's STS endpoint (the `keyless serve` address): https://, its certificate
    /// checked against the platform's authorities (or --sts-ca-bundle) and the URL's host name.
    /// Its answers carry every pod's credentials, so a plain http:// endpoint that is not on
    /// loopback needs --sts-insecure-http.
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: String,

    /// The certificate authorities (PEM) trusted for an https:// --sts-endpoint, instead of
    /// the platform's: for a server whose certificate a private CA issued. Read at start; the
    /// server may rotate its certificate (new connections meet the new one) as long as this
    /// CA issues it.
    #[arg(long, env = "AWS_CA_BUNDLE", value_name = "FILE")]
    pub sts_ca_bundle: Option<PathBuf>,

    /// Accept a plain-HTTP STS endpoint that is not on loopback, where the network between
    /// the node and the server is trusted.
    #[arg(long)]
    pub sts_insecure_http: bool,

    /// The region of the agent's signatures.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// The account of roles named without an ARN (12 digits).
    #[arg(long, default_value = "000000000000", value_parser = parse_account)]
    pub account_id: String,

    /// An AWS shared credentials file holding the agent's key pair, used when
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// The profile of --credentials-file.
    #[arg(long, default_value = "default")]
    pub profile: String,

    /// How the metadata service finds pods and their roles.
    #[command(flatten)]
    pub imds: ImdsOptions,

    /// The admin listener, limits and shutdown.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// How the metadata service finds pods and their roles; shared by `keyless agent` and
/// `keyless serve --imds-listen`.
#[derive(Debug, Args)]
pub struct ImdsOptions {
    /// The node's pods, as `kubectl get pods,namespaces -o json` prints them (pod IP, namespace,
    /// name, UID, service account, annotations); re-read when it changes.
    #[arg(long, value_name = "FILE", conflicts_with = "kubernetes")]
    pub pods_file: Option<PathBuf>,

    /// Watch the node's pods and the namespaces through the Kubernetes API (in-cluster
    /// service account, or --kubeconfig); needs `list` and `watch` on pods and namespaces.
    #[arg(long, requires = "node_name")]
    pub kubernetes: bool,

    /// This node's name (`spec.nodeName`; in a DaemonSet, from the downward API): only its
    /// pods are watched.
    #[arg(long, env = "NODE_NAME", value_name = "NODE")]
    pub node_name: Option<String>,

    /// A kubeconfig file for --kubernetes outside a cluster; in a pod the in-cluster
    /// configuration is used when the file does not exist.
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The role of pods without an `iam.amazonaws.com/role` annotation (a name or an ARN).
    #[arg(long, value_name = "ROLE")]
    pub default_role: Option<String>,

    /// Refuse every role in namespaces without an `iam.amazonaws.com/allowed-roles` or
    /// `iam.amazonaws.com/permitted` annotation (by default such namespaces allow any role).
    #[arg(long)]
    pub namespace_restrictions: bool,

    /// Answer only IMDSv2 requests (with a session token); IMDSv1 requests get 401.
    #[arg(long)]
    pub require_imdsv2: bool,

    /// The cluster's name, tagged on every pod's session as `eks-cluster-name` (with the pod's
    /// `kubernetes-namespace`, `-service-account`, `-pod-name` and `-pod-uid`, always there).
    #[arg(long, value_name = "NAME", value_parser = parse_cluster_name, conflicts_with = "no_session_tags")]
    pub cluster_name: Option<String>,

    /// Pass no session tags naming the pod (EKS Pod Identity's `disableSessionTags`): for
    /// roles whose trust policies allow the agent `sts:AssumeRole` but not `sts:TagSession`.
    /// Policies then cannot tell pods of one role apart, and revocation by pod does not apply.
    #[arg(long)]
    pub no_session_tags: bool,

    /// How long the credentials given to pods live, from 15 minutes to 12 hours (the role's
    /// MaxSessionDuration must allow it); they are refreshed well before they expire.
    #[arg(long, default_value = "1h", value_parser = parse_session_duration, value_name = "DURATION")]
    pub session_duration: u32,

    /// The region pods are told they are in.
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    pub imds_region: String,

    /// Install the DNAT rule that sends pods' 169.254.169.254:80 to the metadata listener
    /// (iptables, nat table, PREROUTING), as kube2iam's --iptables does; needs
    /// --host-interface. A loopback listener also gets `route_localnet` on that interface.
    #[arg(long, requires = "host_interface")]
    pub iptables: bool,

    /// The interface pods' traffic arrives on (`cni0`, `docker0`, `cali+`), for --iptables.
    #[arg(long, value_name = "IFACE")]
    pub host_interface: Option<String>,

    /// Serve container credentials (`GET /v1/credentials`, EKS Pod Identity style) to pods of
    /// this service account, with this role (a name or an ARN); repeat for several. Pods call
    /// it with AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    #[arg(long = "association", value_name = "NAMESPACE/SERVICE-ACCOUNT=ROLE", value_parser = crate::container::parse_association)]
    pub associations: Vec<keyless_webhook::Association>,

    /// The issuer of the service-account tokens `/v1/credentials` accepts (the cluster's
    /// `--service-account-issuer`); its keys are fetched from its discovery document. In
    /// `keyless serve`, the default is the server's own issuer, whose keys are in memory.
    #[arg(long, value_name = "URL", requires = "associations")]
    pub pod_identity_issuer: Option<String>,

    /// The issuer's keys as a JWKS file, for an issuer the agent cannot reach.
    #[arg(long, value_name = "FILE", requires = "pod_identity_issuer")]
    pub pod_identity_jwks_file: Option<PathBuf>,

    /// Certificate authorities (PEM) trusted, besides the platform's, when fetching the
    /// issuer's keys: the cluster's CA (`/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`)
    /// for the cluster's own issuer.
    #[arg(
        long,
        value_name = "FILE",
        requires = "pod_identity_issuer",
        conflicts_with = "pod_identity_jwks_file"
    )]
    pub pod_identity_ca_bundle: Option<PathBuf>,

    /// A bearer token (a file, re-read each time) sent when fetching the issuer's keys, to the
    /// issuer's own address alone: the pod's service-account token, which a Kubernetes API
    /// server asks of readers of its issuer.
    #[arg(
        long,
        value_name = "FILE",
        requires = "pod_identity_issuer",
        conflicts_with = "pod_identity_jwks_file"
    )]
    pub pod_identity_token_file: Option<PathBuf>,

    /// The audience the service-account tokens must carry.
    #[arg(
        long,
        default_value = keyless_webhook::POD_IDENTITY_AUDIENCE,
        value_name = "AUDIENCE"
    )]
    pub pod_identity_audience: String,

    /// The key IMDSv2 session tokens are signed with (32 bytes or more, base64; mode 0600), for
    /// several metadata services behind one address: a token one issues is accepted by all.
    /// Defaults to a random key per process (`keyless serve --iam-store` derives one from the
    /// session key, which its replicas share).
    #[arg(long, value_name = "FILE")]
    pub imds_token_key_file: Option<PathBuf>,
}

/// The options of `keyless webhook`.
#[derive(Debug, Args)]
pub struct WebhookOptions {
    /// Address of the webhook (HTTPS, `POST /mutate`), where its Service sends the API server.
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// The serving certificate chain (PEM), for the Service's DNS name; reloaded when it changes.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "self_signed",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The serving certificate's private key (PEM); reloaded when it changes.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "self_signed",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Make a CA and a serving certificate for the Service's DNS names instead, kept in the
    /// Secret `<service-name>-self-signed-tls` that the replicas share, and set the CA as the
    /// caBundle of --webhook-configuration (ready only once it is there). Needs --kubernetes
    /// and --service-name, and RBAC to get, create and patch that Secret and to patch the
    /// configuration.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"], requires_all = ["kubernetes", "service_name"])]
    pub self_signed: bool,

    /// The webhook's Service (with --self-signed: the certificate is for NAME, NAME.NS,
    /// NAME.NS.svc and NAME.NS.svc.cluster.local).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,

    /// The namespace of the Service and of the certificate's Secret [default: the pod's own,
    /// from its service-account mount].
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// The MutatingWebhookConfiguration whose caBundle --self-signed sets.
    #[arg(long, default_value = "keyless-webhook", value_name = "NAME")]
    pub webhook_configuration: String,

    /// Watch service accounts, namespaces and pods through the Kubernetes API (in-cluster
    /// service account, or --kubeconfig); a service account missing from the watch is read at
    /// once. Needs get, list and watch on serviceaccounts and namespaces, list and watch on
    /// pods, and create on events.
    #[arg(long, conflicts_with = "service_accounts_file")]
    pub kubernetes: bool,

    /// A kubeconfig file for --kubernetes outside a cluster.
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The service accounts (and namespaces), as `kubectl get serviceaccounts,namespaces -A -o
    /// json` prints them, instead of the API; re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub service_accounts_file: Option<PathBuf>,

    /// `AWS_ENDPOINT_URL_STS` for pods: Keyless's STS endpoint as pods reach it. A service
    /// account's or namespace's `keyless.dev/sts-endpoint` annotation overrides it.
    #[arg(long, value_name = "URL", value_parser = parse_endpoint)]
    pub sts_endpoint: Option<String>,

    /// `AWS_ENDPOINT_URL_S3` for pods: Keyless's S3 endpoint as pods reach it. A service
    /// account's or namespace's `keyless.dev/s3-endpoint` annotation overrides it.
    #[arg(long, value_name = "URL", value_parser = parse_endpoint)]
    pub s3_endpoint: Option<String>,

    /// A ConfigMap (in each pod's namespace) holding the CA bundle of Keyless's certificate,
    /// and its key (default `ca.crt`): mounted read-only in every container and named in
    /// `AWS_CA_BUNDLE`.
    #[arg(long, value_name = "NAME[:KEY]")]
    pub ca_bundle_config_map: Option<String>,

    /// `AWS_REGION` and `AWS_DEFAULT_REGION` for pods; none when absent.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// `AWS_STS_REGIONAL_ENDPOINTS=regional` for pods, unless their service account's
    /// `eks.amazonaws.com/sts-regional-endpoints` says otherwise.
    #[arg(long)]
    pub sts_regional_endpoints: bool,

    /// The web-identity token's audience, unless the service account's
    /// `eks.amazonaws.com/audience` names one.
    #[arg(long, default_value = "sts.amazonaws.com", value_name = "AUDIENCE")]
    pub token_audience: String,

    /// The token's lifetime, unless the pod's or service account's
    /// `eks.amazonaws.com/token-expiration` says (at least 10 minutes).
    #[arg(long, default_value = "86400", value_parser = parse_token_expiration, value_name = "DURATION")]
    pub token_expiration: i64,

    /// Where the web-identity token is mounted.
    #[arg(
        long,
        default_value = "/var/run/secrets/eks.amazonaws.com/serviceaccount",
        value_name = "DIR"
    )]
    pub token_mount_path: String,

    /// Give container credentials (EKS Pod Identity) to pods of this service account; repeat
    /// for several. An association wins over the `eks.amazonaws.com/role-arn` annotation.
    #[arg(long = "association", value_name = "NAMESPACE/SERVICE-ACCOUNT=ROLE", value_parser = crate::container::parse_association)]
    pub associations: Vec<keyless_webhook::Association>,

    /// More associations, one `NAMESPACE/SERVICE-ACCOUNT=ROLE` per line (a ConfigMap mounted
    /// as a file); re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub associations_file: Option<PathBuf>,

    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` for pods with an association: the node agent's
    /// container credentials endpoint.
    #[arg(
        long,
        default_value = keyless_webhook::DEFAULT_CONTAINER_CREDENTIALS_URI,
        value_name = "URL"
    )]
    pub container_credentials_uri: String,

    /// For kubelets before 1.19 only: give a pod that runs as a non-root user and has no
    /// `fsGroup` its `runAsGroup` (else `runAsUser`) as `fsGroup`, so that it can read its
    /// token, which those kubelets write 0600 for root. Kubelets since 1.19 make the token
    /// readable themselves (owned by the pod's one runAsUser, group-readable with an fsGroup,
    /// else 0644), and an fsGroup makes the kubelet chown every volume of the pod.
    #[arg(long)]
    pub token_fs_group: bool,

    /// The account of kube2iam roles named without an ARN, for the warning of roles the agent
    /// will refuse (`iam.amazonaws.com/role` against the namespace's rules).
    #[arg(long, default_value = "000000000000", value_parser = parse_account)]
    pub account_id: String,

    /// As the agent's --namespace-restrictions, for those warnings.
    #[arg(long)]
    pub namespace_restrictions: bool,

    /// What a pod gets when the webhook itself fails (the API cannot say what its service
    /// account is): `Ignore` creates it unmutated, with a warning; `Fail` refuses it. Match
    /// the configuration's failurePolicy.
    #[arg(long, value_enum, default_value = "ignore", value_name = "POLICY")]
    pub failure_policy: FailurePolicyArg,

    /// How often running pods are checked for a missing token (with --kubernetes).
    #[arg(long, default_value = "30s", value_parser = parse_std_duration, value_name = "DURATION")]
    pub report_every: Duration,

    /// The admin listener, limits and shutdown.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// `--failure-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicyArg {
    /// Create the pod unmutated.
    #[value(alias = "Ignore")]
    Ignore,
    /// Refuse the pod.
    #[value(alias = "Fail")]
    Fail,
}

impl FailurePolicyArg {
    /// The webhook crate's.
    pub fn policy(self) -> keyless_webhook::FailurePolicy {
        match self {
            Self::Ignore => keyless_webhook::FailurePolicy::Ignore,
            Self::Fail => keyless_webhook::FailurePolicy::Fail,
        }
    }
}

/// An `http://` or `https://` URL with a host.
fn parse_endpoint(s: &str) -> Result<String, String> {
    match s.parse::<hyper::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(s.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("`{s}` is not an http:// or https:// URL")),
    }
}

fn parse_token_expiration(s: &str) -> Result<i64, String> {
    let seconds = parse_duration(s)?;
    if seconds < 600 {
        return Err(format!(
            "`{s}` is shorter than 10 minutes, the least Kubernetes projects"
        ));
    }
    Ok(seconds)
}

/// `3600`, `90s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 3600, 10m or 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{s}` is not a duration such as 3600, 10m or 1h")),
    };
    Ok(n * scale)
}

fn parse_cluster_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 100
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err("a cluster name is 1 to 100 of [A-Za-z0-9_-]".into());
    }
    Ok(s.to_owned())
}

fn parse_session_duration(s: &str) -> Result<u32, String> {
    let seconds = parse_duration(s)?;
    u32::try_from(seconds)
        .ok()
        .filter(|n| (900..=43_200).contains(n))
        .ok_or_else(|| format!("`{s}` is not between 15 minutes and 12 hours"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_either_unit() {
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("0").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations_and_listen_addresses() {
        assert_eq!(parse_std_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_std_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_std_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_std_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_std_duration("2d").is_err());
        // Regression: a huge count of hours overflowed (a panic in debug builds).
        assert!(parse_std_duration("18446744073709551615h").is_err());
        assert!(parse_interval("500ms").is_err());
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_std_duration("").is_err());
        assert_eq!(parse_listen("OFF"), Ok(Listen::Off));
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn options_parse_as_the_command_line_does() {
        let options: ServeOptions =
            parse(&["--listen", "127.0.0.1:0", "--admin-listen", "off"]).unwrap();
        assert_eq!(options.server.admin_listen, Listen::Off);
        assert_eq!(options.server.shutdown_grace, Duration::from_secs(25));
        assert!(parse::<ServeOptions>(&["--max-connections", "0"]).is_err());
        let options: ServeOptions = parse(&["--max-connections", "7"]).unwrap();
        assert_eq!(options.server.limits().max_connections, 7);
    }

    #[test]
    fn the_default_connection_limit_follows_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(1_048_576)), 4096);
        assert_eq!(default_max_connections(None), 4096);
        assert_eq!(default_max_connections(Some(1024)), 240);
        assert_eq!(default_max_connections(Some(256)), 48);
        assert_eq!(default_max_connections(Some(64)), 16);
    }
}
