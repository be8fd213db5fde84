//! `keyless agent`, and the metadata service inside `keyless serve --imds-listen`: the
//! listener that hands each connection's source address to [`keyless_imds::Imds`], the pod
//! source, the agent's own credentials, and the DNAT rules that bring pods' `169.254.169.254`
//! (and, for container credentials, `169.254.170.23`) to the listener while it serves.
//!
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html>

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use keyless_imds::{
    CacheConfig, Imds, ImdsConfig, PodIndex, RoleAssumer, StsAssumer, StsClientConfig, TokenKey,
    TokenMode,
};
use keyless_types::{AccountId, Clock, Secret};
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::container::{self, PodIdentity};
use crate::issuer::OwnIssuer;
use crate::lifecycle::{Readiness, Shutdown};
use crate::listener::{self, Limits};
use crate::metrics::{AgentMetrics, Metrics};
use crate::options::{AgentOptions, ImdsOptions};

/// How often the pods file is looked at for changes.
const PODS_FILE_POLL: Duration = Duration::from_millis(500);

/// How often cached credentials are checked for refresh.
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets the agent serves, bound by its caller.
#[derive(Debug)]
pub struct AgentListeners {
    /// The metadata service, where pods' `169.254.169.254:80` is sent.
    pub imds: TcpListener,
    /// `/healthz` and `/readyz` (`--admin-listen`).
    pub admin: Option<TcpListener>,
}

impl AgentListeners {
    /// Binds the addresses `options` names.
    pub async fn bind(options: &AgentOptions) -> anyhow::Result<Self> {
        Ok(Self {
            imds: crate::listener::bind(options.listen, "--listen").await?,
            admin: match options.server.admin_listen.addr() {
                Some(addr) => Some(crate::listener::bind(addr, "--admin-listen").await?),
                None => None,
            },
        })
    }
}

/// An opened agent, ready to run.
pub struct Agent {
    listeners: AgentListeners,
    metadata: Metadata,
    readiness: Readiness,
    limits: Limits,
    banner: String,
}

impl Agent {
    /// Reads the agent's credentials, starts the pod source and prepares the metadata service
    /// on `listeners`.
    pub async fn open(args: AgentOptions, listeners: AgentListeners) -> anyhow::Result<Self> {
        let https = args
            .sts_endpoint
            .parse::<hyper::Uri>()
            .is_ok_and(|uri| uri.scheme_str() == Some("https"));
        if !https && !args.sts_insecure_http && !is_loopback_url(&args.sts_endpoint) {
            bail!(
                "--sts-endpoint `{}` is plain HTTP off this host: STS answers carry every pod's credentials in the clear; give the server's https:// URL (with --sts-ca-bundle for a private CA), or pass --sts-insecure-http on a trusted network",
                args.sts_endpoint
            );
        }
        let tls = match &args.sts_ca_bundle {
            Some(path) if https => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("--sts-ca-bundle: cannot read `{}`", path.display())
                })?;
                Some(keyless_imds::StsTls::bundle(
                    &pem,
                    &path.display().to_string(),
                )?)
            }
            _ => None,
        };
        let (access_key_id, secret, token) =
            agent_credentials(args.credentials_file.as_deref(), &args.profile)?;
        let local = listeners.imds.local_addr()?;
        let readiness = Readiness::default();
        let metadata = start(
            &args.imds,
            &args.account_id,
            StsClientConfig {
                endpoint: args.sts_endpoint.trim_end_matches('/').to_owned(),
                tls,
                region: args.region.clone(),
                access_key_id: access_key_id.clone(),
                secret_access_key: secret,
                session_token: token,
                timeout: keyless_imds::DEFAULT_STS_TIMEOUT,
            },
            local,
            None,
            None,
            &readiness,
        )
        .await?;
        let mut banner = format!(
            "keyless: metadata service http://{local}\nkeyless: AssumeRole at {} as {access_key_id}\n",
            args.sts_endpoint
        );
        if let Some(admin) = &listeners.admin {
            banner.push_str(&format!(
                "keyless: admin http://{} (/healthz, /readyz, /metrics)\n",
                admin.local_addr()?
            ));
        }
        tracing::info!(%local, sts = %args.sts_endpoint, "serving instance metadata");
        Ok(Self {
            listeners,
            metadata,
            readiness,
            limits: args.server.limits(),
            banner,
        })
    }

    /// What the agent tells whoever started it.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Serves until `shutdown`, then drains as `keyless serve` does.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            listeners,
            metadata,
            readiness,
            limits,
            banner: _,
        } = self;
        let metrics = Metrics::new();
        metadata.register_metrics(&metrics);
        let admin = Admin::start(listeners.admin, readiness, metrics, &shutdown);
        serve(listeners.imds, metadata, limits, shutdown).await;
        admin.stop().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The metadata service and, with associations, the container credentials endpoint beside it.
#[derive(Clone)]
pub(crate) struct Metadata {
    imds: Imds,
    pod_identity: Option<Arc<PodIdentity>>,
    dnat: Option<Arc<Dnat>>,
    metrics: AgentMetrics,
}

impl Metadata {
    /// Registers the agent's figures in `metrics`: its requests and STS calls, its cache's
    /// and its pod index's.
    pub(crate) fn register_metrics(&self, metrics: &crate::metrics::Metrics) {
        self.metrics.register(metrics);
        let snapshot = self.cache_metrics();
        metrics.register(|r| r.register_collector(Box::new(snapshot)));
    }

    /// The credential cache's and the pod index's figures for `/metrics`.
    fn cache_metrics(&self) -> crate::metrics::Snapshot {
        use crate::metrics::Kind::{Counter, Gauge};
        let imds = self.imds.clone();
        crate::metrics::Snapshot::new(
            vec![
                (
                    "agent_cache_hits",
                    "Credential requests answered from the cache",
                    Counter,
                ),
                (
                    "agent_cache_misses",
                    "Credential requests that waited for an STS call",
                    Counter,
                ),
                (
                    "agent_cache_refreshes",
                    "STS calls that returned credentials",
                    Counter,
                ),
                ("agent_sts_failures", "STS calls that failed", Counter),
                (
                    "agent_cache_stale_serves",
                    "Credentials close to expiry served while STS failed",
                    Counter,
                ),
                (
                    "agent_cache_entries",
                    "Credentials cached (one entry per pod and role)",
                    Gauge,
                ),
                ("agent_pods_indexed", "Pods the agent knows", Gauge),
            ],
            move || {
                let cache = imds.cache();
                let s = cache.stats();
                let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                vec![
                    s.hits,
                    s.misses,
                    s.refreshes,
                    s.failures,
                    s.stale_serves,
                    len(cache.len()),
                    len(imds.index().len()),
                ]
            },
        )
    }
}

/// Starts the metadata service: the pod source, the background refresh and, with
/// `--iptables`, the DNAT rules to `local` (removed when [`serve`] returns). The caller serves
/// it with [`serve`]. `own` is `keyless serve`'s own issuer: the default issuer of container
/// credentials' tokens, whose keys are taken from memory.
pub(crate) async fn start(
    args: &ImdsOptions,
    account_id: &str,
    sts: StsClientConfig,
    local: SocketAddr,
    own: Option<Arc<OwnIssuer>>,
    shared_token_key: Option<TokenKey>,
    readiness: &Readiness,
) -> anyhow::Result<Metadata> {
    #[allow(clippy::disallowed_types)] // the composition root builds the real clock
    let clock: Arc<dyn Clock> = Arc::new(keyless_types::SystemClock);
    let account = AccountId::parse(account_id).context("the account id")?;
    let mut config = ImdsConfig::new(account, &args.imds_region);
    config.roles.default_role = args.default_role.clone();
    config.roles.restrict_namespaces = args.namespace_restrictions;
    config.roles.cluster_name.clone_from(&args.cluster_name);
    config.roles.session_tags = !args.no_session_tags;
    config.tokens = if args.require_imdsv2 {
        TokenMode::Required
    } else {
        TokenMode::Optional
    };
    config.cache = CacheConfig {
        session_seconds: args.session_duration,
        ..CacheConfig::default()
    };
    let metrics = AgentMetrics::new();
    let assumer = TimedAssumer {
        inner: StsAssumer::new(sts, Arc::clone(&clock))?,
        metrics: metrics.clone(),
    };
    let index = PodIndex::new();
    let imds = Imds::new(
        config,
        index.clone(),
        Arc::new(assumer),
        match (&args.imds_token_key_file, shared_token_key) {
            (Some(file), _) => TokenKey::from_bytes(&crate::private::read_key(file, 32)?),
            (None, Some(shared)) => shared,
            (None, None) => TokenKey::generate()?,
        },
        Arc::clone(&clock),
    )?;
    let pod_identity = match (
        &args.associations[..],
        args.pod_identity_issuer
            .as_deref()
            .or(own.as_ref().map(|own| own.url())),
    ) {
        ([], _) => None,
        (_, None) => bail!("--association needs --pod-identity-issuer"),
        (associations, Some(url)) => {
            let jwks = match &args.pod_identity_jwks_file {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read `{}`", path.display()))?,
                ),
                None => None,
            };
            Some(Arc::new(PodIdentity::new(
                url,
                vec![args.pod_identity_audience.clone()],
                container::key_chain(
                    url,
                    own.clone(),
                    jwks.as_deref(),
                    match (&args.pod_identity_ca_bundle, &args.pod_identity_token_file) {
                        (None, None) => None,
                        (ca, token) => Some(crate::config::issuer_fetch(
                            url,
                            ca.as_deref(),
                            token.as_deref(),
                            "--pod-identity-issuer",
                        )?),
                    },
                )?,
                associations.to_vec(),
                account_id,
                imds.clone(),
                clock,
            )?))
        }
    };
    if args.pods_file.is_some() || args.kubernetes {
        readiness.pending("pods", "the pod source has not synced yet");
        let (readiness, index) = (readiness.clone(), index.clone());
        tokio::spawn(async move {
            let mut synced = index.watch_synced();
            loop {
                match *synced.borrow_and_update() {
                    true => readiness.done("pods"),
                    false => readiness.pending("pods", "the pod source has not synced"),
                }
                if synced.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    match (&args.pods_file, args.kubernetes) {
        (Some(path), _) => {
            tokio::spawn(keyless_imds::watch_file(
                path.clone(),
                index,
                PODS_FILE_POLL,
            ));
        }
        (None, true) => {
            let node = args.node_name.clone();
            if let Some(name) = &node {
                keyless_k8s::check_node_name(name).context("--node-name")?;
            }
            // `$KUBECONFIG` may list several files; the first is the one kubectl writes to.
            let kubeconfig = args.kubeconfig.as_ref().and_then(|list| {
                std::env::split_paths(list)
                    .next()
                    .filter(|p| !p.as_os_str().is_empty())
            });
            let client = keyless_k8s::client(kubeconfig.as_deref())
                .await
                .context("cannot reach the Kubernetes API")?;
            tokio::spawn(async move {
                if let Err(e) = keyless_k8s::watch_node_pods(client, node, index).await {
                    tracing::error!(error = %e, "the Kubernetes pod watch stopped; no pod changes are seen");
                }
            });
        }
        (None, false) => {
            tracing::warn!("neither --pods-file nor --kubernetes: no pod will get credentials");
        }
    }
    tokio::spawn(imds.clone().run_background(REFRESH_EVERY));
    let dnat = match args.iptables {
        true => {
            let interface = args
                .host_interface
                .as_deref()
                .context("--iptables needs --host-interface")?;
            Some(Arc::new(Dnat::install(
                interface,
                local,
                pod_identity.is_some(),
            )?))
        }
        false => None,
    };
    Ok(Metadata {
        imds,
        pod_identity,
        dnat,
        metrics,
    })
}

/// Serves `metadata` on `listener` until `shutdown`: HTTP/1.1, each request answered for the
/// address it came from. Then the DNAT rules go, so that pods' requests are refused at once
/// instead of sent to a closed port until the next agent puts them back.
pub(crate) async fn serve(
    listener: TcpListener,
    metadata: Metadata,
    limits: Limits,
    shutdown: Shutdown,
) {
    let dnat = metadata.dnat.clone();
    let mut http = ConnBuilder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.idle_timeout.min(HEADER_READ_TIMEOUT));
    listener::serve(
        "imds",
        listener,
        http,
        None,
        limits,
        shutdown,
        move |peer| {
            // A dual-stack listener sees IPv4 pods as `::ffff:a.b.c.d`.
            let ip = peer.ip().to_canonical();
            let metadata = metadata.clone();
            hyper::service::service_fn(move |req: hyper::Request<_>| {
                let metadata = metadata.clone();
                async move {
                    #[allow(clippy::disallowed_methods)] // the composition root times requests
                    let started = std::time::Instant::now();
                    let handler = handler_of(req.method(), req.uri().path());
                    let response = match &metadata.pod_identity {
                        Some(pod_identity) if handler == "container_credentials" => {
                            let authorization = req
                                .headers()
                                .get(hyper::header::AUTHORIZATION)
                                .and_then(|v| v.to_str().ok());
                            pod_identity.handle(authorization).await
                        }
                        _ => metadata.imds.handle(ip, req).await,
                    };
                    metadata.metrics.answered(
                        handler,
                        response.status().as_u16(),
                        started.elapsed(),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        },
    )
    .await;
    if let Some(dnat) = dnat {
        dnat.remove();
    }
}

/// What a pod's request to the agent asks for, as a metric's label: an IMDSv2 token, role
/// credentials, other instance metadata, or container credentials.
fn handler_of(method: &hyper::Method, path: &str) -> &'static str {
    if path == container::PATH {
        "container_credentials"
    } else if path == keyless_imds::TOKEN_PATH && method == hyper::Method::PUT {
        "token"
    } else if path.starts_with("/latest/meta-data/iam/security-credentials")
        || path.starts_with("/latest/meta-data/iam/info")
    {
        "credentials"
    } else {
        "metadata"
    }
}

/// STS as the cache calls it, each call timed for `/metrics`.
struct TimedAssumer {
    inner: StsAssumer,
    metrics: AgentMetrics,
}

#[async_trait::async_trait]
impl RoleAssumer for TimedAssumer {
    async fn assume(
        &self,
        req: &keyless_imds::AssumeRequest,
    ) -> Result<keyless_imds::Credentials, keyless_imds::AssumeError> {
        #[allow(clippy::disallowed_methods)] // the composition root times STS calls
        let started = std::time::Instant::now();
        let answer = self.inner.assume(req).await;
        self.metrics.sts_call(started.elapsed());
        answer
    }
}

/// Whether `url` is `http://` to a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback_url(url: &str) -> bool {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(keyless_types::net::is_loopback_host))
        .unwrap_or(false)
}

/// The agent's key pair: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else
/// `profile` of the shared credentials file `file`.
fn agent_credentials(
    file: Option<&Path>,
    profile: &str,
) -> anyhow::Result<(String, Secret, Option<Secret>)> {
    #[allow(clippy::disallowed_methods)] // the binary reads its configuration
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok((
            id,
            Secret::new(secret),
            env("AWS_SESSION_TOKEN").map(Secret::new),
        ));
    }
    let Some(file) = file else {
        bail!(
            "the agent needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --credentials-file"
        );
    };
    let (id, secret) = crate::root::read_shared_credentials(file, profile)?;
    Ok((id, secret, None))
}

/// Where pods ask for instance metadata.
const IMDS_ADDRESS: &str = "169.254.169.254/32";

/// Where pods ask for container credentials (EKS Pod Identity).
const CONTAINER_CREDENTIALS_ADDRESS: &str = "169.254.170.23/32";

/// The iptables rules that send pods' metadata requests to the listener, each as `iptables`
/// takes it after `-I`/`-C`/`-D` (table, chain, match and target).
pub(crate) struct Dnat {
    rules: Vec<Vec<String>>,
}

impl Dnat {
    /// Sends pods' `169.254.169.254:80` (and with `container_credentials` also
    /// `169.254.170.23:80`), arriving on `interface`, to `local`; each rule is inserted only
    /// when `iptables -C` does not find it. A loopback `local` needs `route_localnet` on the
    /// interface, which a wildcard interface (`cali+`) cannot name, and a rule that drops
    /// everything else pods send to the node's loopback.
    fn install(
        interface: &str,
        local: SocketAddr,
        container_credentials: bool,
    ) -> anyhow::Result<Self> {
        let IpAddr::V4(ip) = local.ip() else {
            bail!("--iptables needs an IPv4 listen address, not `{local}`");
        };
        if ip.is_unspecified() {
            bail!("--iptables needs the listen address pods are sent to, not `{local}`");
        }
        if interface.is_empty()
            || !interface
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        {
            bail!("`{interface}` is not an interface name");
        }
        if ip.is_loopback() {
            if interface.ends_with('+') {
                bail!(
                    "a loopback listener needs route_localnet on a named interface, not `{interface}`; listen on the node's address instead"
                );
            }
            let knob = format!("/proc/sys/net/ipv4/conf/{interface}/route_localnet");
            std::fs::write(&knob, "1").with_context(|| format!("cannot set `{knob}`"))?;
        }
        let destination = local.to_string();
        let dnat = |address: &str| {
            [
                "-t",
                "nat",
                "PREROUTING",
                "-d",
                address,
                "-i",
                interface,
                "-p",
                "tcp",
                "--dport",
                "80",
                "-j",
                "DNAT",
                "--to-destination",
                &destination,
            ]
            .map(String::from)
            .to_vec()
        };
        let mut rules = vec![dnat(IMDS_ADDRESS)];
        if container_credentials {
            rules.push(dnat(CONTAINER_CREDENTIALS_ADDRESS));
        }
        if ip.is_loopback() {
            // route_localnet lets pods reach every loopback service of the node, not only the
            // agent (CVE-2020-8558); as kube-proxy does, only DNATed traffic may.
            rules.push(
                [
                    "-t",
                    "filter",
                    "INPUT",
                    "-i",
                    interface,
                    "-d",
                    "127.0.0.0/8",
                    "-m",
                    "conntrack",
                    "!",
                    "--ctstate",
                    "DNAT",
                    "-j",
                    "DROP",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        let installed = Self { rules };
        for rule in &installed.rules {
            if !iptables("-C", rule)?.status.success() {
                let out = iptables("-I", rule)?;
                if !out.status.success() {
                    let refused = anyhow::anyhow!(
                        "iptables refused `{}`: {}",
                        rule.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    installed.remove();
                    return Err(refused);
                }
            }
        }
        tracing::info!(%interface, %local, container_credentials, "the metadata DNAT rules are in place");
        Ok(installed)
    }

    /// Takes the rules out again (each as often as it is there), logging what iptables refuses.
    fn remove(&self) {
        for rule in &self.rules {
            while iptables("-C", rule).is_ok_and(|out| out.status.success()) {
                match iptables("-D", rule) {
                    Ok(out) if out.status.success() => {}
                    Ok(out) => {
                        tracing::warn!(rule = %rule.join(" "), error = %String::from_utf8_lossy(&out.stderr).trim(), "iptables did not remove the rule");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(rule = %rule.join(" "), error = %e, "iptables did not remove the rule");
                        break;
                    }
                }
            }
        }
        tracing::info!("the metadata DNAT rules are removed");
    }
}

/// Runs `iptables -w -t TABLE ACTION CHAIN SPEC...` for `rule` (`-t TABLE CHAIN SPEC...`).
fn iptables(action: &str, rule: &[String]) -> anyhow::Result<std::process::Output> {
    let (table, rest) = rule.split_at(2);
    let (chain, spec) = rest.split_at(1);
    Command::new("iptables")
        .arg("-w")
        .args(table)
        .arg(action)
        .args(chain)
        .args(spec)
        .output()
        .context("cannot run iptables")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_sts_endpoints_are_trusted_with_plain_http() {
        for url in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://[::1]:9000",
            "http://127.3.4.5",
            // Regression: `localhost` was matched in lower case only, where the issuer and IAM
            // take it in any case.
            "http://LOCALHOST:9000",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:9000",
            "http://keyless.example",
            "http://127.0.0.1.example",
            "not a url",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
