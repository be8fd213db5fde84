//! The client side of the operator tools (`whoami`, `doctor`, `backup`, `iam`): the AWS Rust SDK's
//! default credential chain and endpoint settings, so that a tool finds exactly the credentials
//! an application in the same pod would find.
//!
//! One HTTP stack: hyper 1 with rustls on ring (the server's), no aws-lc and no second hyper.
//! <https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html>

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, future};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_smithy_http_client::tls;
use clap::Args;

/// Where the tools send their requests and which profile they read; everything else comes from
/// the environment, as for any AWS SDK.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientArgs {
    /// The S3 endpoint, and the STS endpoint unless --sts-endpoint or AWS_ENDPOINT_URL_STS
    /// says otherwise [default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS]
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,

    /// The STS endpoint, for GetCallerIdentity and for web-identity credentials
    /// [default: AWS_ENDPOINT_URL_STS, then AWS_ENDPOINT_URL, then --endpoint, then AWS]
    #[arg(long, value_name = "URL")]
    pub(crate) sts_endpoint: Option<String>,

    /// The region to sign for [default: AWS_REGION, then the profile, then us-east-1]
    #[arg(long, value_name = "REGION")]
    pub(crate) region: Option<String>,

    /// A profile of ~/.aws/config and ~/.aws/credentials [default: AWS_PROFILE, then `default`]
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,

    /// Extra CA certificates (PEM) for an https endpoint with a private CA [default: AWS_CA_BUNDLE]
    #[arg(long, value_name = "FILE", env = "AWS_CA_BUNDLE")]
    pub(crate) ca_bundle: Option<PathBuf>,

    /// One more AWS shared credentials file, read by the chain's profile step after
    /// ~/.aws/credentials, so that its profiles win over those of the same name there (a
    /// server's data folder's `root-credentials`). Not a flag: a tool sets it.
    #[arg(skip)]
    pub(crate) credentials_file: Option<PathBuf>,
}

/// Explicit credentials that win over the whole chain (an s3cmd.config with keys).
#[derive(Debug, Clone)]
pub(crate) struct ExplicitKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: keyless_types::Secret,
    pub(crate) session_token: Option<String>,
    /// Where they came from, for whoami and the logs.
    pub(crate) origin: String,
}

/// The SDK configuration the tools share, and where its parts came from.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) config: SdkConfig,
    /// The S3 endpoint, when one is set (custom endpoints use path-style addressing).
    pub(crate) s3_endpoint: Option<String>,
    /// The STS endpoint, when one is set.
    pub(crate) sts_endpoint: Option<String>,
}

impl Client {
    /// Loads the configuration: explicit keys if any, else the SDK's default chain.
    pub(crate) async fn load(
        args: &ClientArgs,
        explicit: Option<ExplicitKeys>,
    ) -> anyhow::Result<Self> {
        // One HTTP stack: rustls on ring, the platform's roots plus an optional CA bundle.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context(args.ca_bundle.as_deref())?)
            .build_https();
        let s3_endpoint = args
            .endpoint
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
        let sts_endpoint = args
            .sts_endpoint
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_STS"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
            .or_else(|| args.endpoint.clone());
        for url in [&s3_endpoint, &sts_endpoint].into_iter().flatten() {
            check_endpoint(url)?;
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http.clone())
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        let profile_files = args.credentials_file.as_ref().map(|file| {
            EnvConfigFiles::builder()
                .include_default_config_file(true)
                .include_default_credentials_file(true)
                .with_file(EnvConfigFileKind::Credentials, file)
                .build()
        });
        if let Some(files) = &profile_files {
            loader = loader.profile_files(files.clone());
        }
        // The region: the command line, AWS_REGION, the profile, then us-east-1 as s3cmd and
        // the registry default to. Not IMDS: off EC2 it costs a timeout, and a Keyless endpoint
        // does not care which region a request is signed for.
        let mut profile_region = aws_config::profile::ProfileFileRegionProvider::builder();
        if let Some(profile) = &args.profile {
            profile_region = profile_region.profile_name(profile);
        }
        let region = RegionProviderChain::first_try(args.region.clone().map(Region::new))
            .or_else(aws_config::environment::EnvironmentVariableRegionProvider::new())
            .or_else(profile_region.build())
            .or_else(Region::from_static("us-east-1"));
        loader = loader.region(region);
        let mut config = loader.load().await;

        let provider = match explicit {
            Some(keys) => {
                tracing::info!(origin = %keys.origin, "explicit keys win over any role");
                let mut credentials = Credentials::new(
                    keys.access_key_id,
                    keys.secret_access_key.expose().to_owned(),
                    keys.session_token,
                    None,
                    "ExplicitKeys",
                );
                credentials.set_property(vec![
                    aws_credential_types::credential_feature::AwsCredentialFeature::CredentialsCode,
                ]);
                Some(provider::SharedCredentialsProvider::new(credentials))
            }
            // The default chain's web-identity step calls the STS of the environment
            // (AWS_ENDPOINT_URL_STS); an endpoint given on the command line must reach it too.
            None if args.sts_endpoint.is_some() || args.endpoint.is_some() => {
                web_identity_from_env(&config, sts_endpoint.as_deref()).map(|web| {
                    let default = config.credentials_provider();
                    // The default chain's order, with this web identity in its place.
                    let provider_config =
                        aws_config::provider_config::ProviderConfig::without_region()
                            .with_http_client(http.clone())
                            .with_region(config.region().cloned());
                    let mut profile =
                        aws_config::profile::ProfileFileCredentialsProvider::builder()
                            .configure(&provider_config);
                    if let Some(name) = &args.profile {
                        profile = profile.profile_name(name);
                    }
                    if let Some(files) = &profile_files {
                        profile = profile.profile_files(files.clone());
                    }
                    let mut chain = CredentialsProviderChain::first_try(
                        "Environment",
                        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                    )
                    .or_else("Profile", profile.build())
                    .or_else("WebIdentityToken", web);
                    if let Some(default) = default {
                        chain = chain.or_else("Default", default);
                    }
                    provider::SharedCredentialsProvider::new(chain)
                })
            }
            None => None,
        };
        // One lookup serves the tool's own report and every client: a web identity is
        // exchanged once per command, not once per caller.
        if let Some(inner) = provider.or_else(|| config.credentials_provider()) {
            let cached = provider::SharedCredentialsProvider::new(Cached {
                inner,
                last: tokio::sync::Mutex::new(None),
            });
            config = config.into_builder().credentials_provider(cached).build();
        }
        Ok(Self {
            config,
            s3_endpoint,
            sts_endpoint,
        })
    }

    /// An S3 client: path-style addressing on a custom endpoint (an IP or one host name serves
    /// every bucket), virtual-hosted on AWS.
    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::from(&self.config);
        if let Some(url) = &self.s3_endpoint {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// An S3 client for bulk transfers, whose integrity rests on `Content-MD5` and the ETag:
    /// the SDK's own CRC32 on every upload (checked by the server too) would only add a third
    /// pass over each byte.
    pub(crate) fn s3_for_transfers(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
        let mut builder = aws_sdk_s3::config::Builder::from(&self.config)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = &self.s3_endpoint {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// An STS client.
    pub(crate) fn sts(&self) -> aws_sdk_sts::Client {
        sts_client(&self.config, self.sts_endpoint.as_deref())
    }

    /// An IAM client of the endpoint `url`, signing with `credentials` instead of the chain's
    /// when given.
    pub(crate) fn iam(&self, url: &str, credentials: Option<Credentials>) -> aws_sdk_iam::Client {
        let mut builder = aws_sdk_iam::config::Builder::from(&self.config).endpoint_url(url);
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        aws_sdk_iam::Client::from_conf(builder.build())
    }

    /// The credentials the chain finds now, with the name of the step that found them.
    pub(crate) async fn credentials(&self) -> anyhow::Result<Credentials> {
        let provider = self
            .config
            .credentials_provider()
            .context("no credential provider is configured")?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| anyhow::anyhow!(keyless_types::error_chain(&e)))
    }
}

fn sts_client(config: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_sts::Client {
    let mut builder = aws_sdk_sts::config::Builder::from(config);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(builder.build())
}

fn tls_context(ca_bundle: Option<&std::path::Path>) -> anyhow::Result<tls::TlsContext> {
    let mut trust = tls::TrustStore::default();
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA bundle {}", path.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .context("building the TLS context")
}

fn check_endpoint(url: &str) -> anyhow::Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    anyhow::ensure!(ok, "the endpoint `{url}` is not an http:// or https:// URL");
    Ok(())
}

#[allow(clippy::disallowed_methods)] // the binary reads its configuration
pub(crate) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An SDK error in one line: the service's code and message when it answered (`AccessDenied:
/// Access Denied`, HTTP 403), else the error and its causes (a refused connection, a timeout).
pub(crate) fn sdk_error<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
{
    if let aws_sdk_s3::error::SdkError::ServiceError(service) = e {
        let err = service.err();
        let status = service.raw().status().as_u16();
        return match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            _ => format!("HTTP {status}"),
        };
    }
    keyless_types::error_chain(e)
}

/// The web-identity settings of the environment (IRSA's AWS_ROLE_ARN and
/// AWS_WEB_IDENTITY_TOKEN_FILE), as a provider that calls the given STS endpoint.
fn web_identity_from_env(config: &SdkConfig, endpoint: Option<&str>) -> Option<WebIdentity> {
    let token_file = env_nonempty("AWS_WEB_IDENTITY_TOKEN_FILE")?;
    let role_arn = env_nonempty("AWS_ROLE_ARN")?;
    Some(WebIdentity {
        sts: sts_client(config, endpoint),
        token_file: token_file.into(),
        role_arn,
        session_name: env_nonempty("AWS_ROLE_SESSION_NAME"),
    })
}

/// AssumeRoleWithWebIdentity with the token file read afresh on every call (kubelet rotates it).
#[derive(Debug)]
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    token_file: PathBuf,
    role_arn: String,
    session_name: Option<String>,
}

impl WebIdentity {
    async fn assume(&self) -> provider::Result {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                provider::error::CredentialsError::invalid_configuration(format!(
                    "reading the web identity token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let session = self.session_name.clone().unwrap_or_else(|| {
            #[allow(clippy::disallowed_methods)] // a unique session name, as the SDK makes one
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            format!("keyless-{now}")
        });
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(session)
            .web_identity_token(token.trim())
            .send()
            .await
            .map_err(provider::error::CredentialsError::provider_error)?;
        let creds = out.credentials.ok_or_else(|| {
            provider::error::CredentialsError::unhandled("STS answered without credentials")
        })?;
        let expiry = std::time::SystemTime::try_from(creds.expiration).ok();
        let mut credentials = Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            expiry,
            "WebIdentityToken",
        );
        credentials.set_property(vec![
            aws_credential_types::credential_feature::AwsCredentialFeature::CredentialsStsAssumeRoleWebId,
        ]);
        Ok(credentials)
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// The chain step that found the credentials, from the features the SDK's providers record on
/// them (for its user agent): `EnvironmentVariable`, `ProfileFile`, `WebIdentityToken`,
/// `EcsContainer`, `IMDSv2` or `ExplicitKeys`.
fn provider_name(credentials: &Credentials) -> &'static str {
    use aws_credential_types::credential_feature::AwsCredentialFeature as F;
    let features = credentials
        .get_property::<Vec<F>>()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let has = |f: F| features.contains(&f);
    if has(F::CredentialsImds) {
        "IMDSv2"
    } else if has(F::CredentialsHttp) {
        "EcsContainer"
    } else if has(F::CredentialsProfileStsWebIdToken)
        || has(F::CredentialsEnvVarsStsWebIdToken)
        || has(F::CredentialsStsAssumeRoleWebId)
    {
        "WebIdentityToken"
    } else if has(F::CredentialsEnvVars) {
        "EnvironmentVariable"
    } else if has(F::CredentialsProfile) {
        "ProfileFile"
    } else if has(F::CredentialsCode) {
        "ExplicitKeys"
    } else {
        "unknown"
    }
}

/// Credentials reused until five minutes before they expire.
#[derive(Debug)]
struct Cached {
    inner: provider::SharedCredentialsProvider,
    last: tokio::sync::Mutex<Option<Credentials>>,
}

impl Cached {
    async fn get(&self) -> provider::Result {
        let mut last = self.last.lock().await;
        #[allow(clippy::disallowed_methods)] // the binary's wall clock, for expiry
        let now = std::time::SystemTime::now();
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|t| t > now + Duration::from_secs(300))
        };
        if let Some(credentials) = last.as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let credentials = self.inner.provide_credentials().await?;
        *last = Some(credentials.clone());
        Ok(credentials)
    }
}

impl ProvideCredentials for Cached {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

/// Where a set of credentials came from, in words, from the name of the chain step that
/// found them and the environment that step read.
pub(crate) fn describe_source(credentials: &Credentials, profile: Option<&str>) -> Source {
    let env = |k: &str| env_nonempty(k);
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    match provider_name(credentials) {
        "ExplicitKeys" => Source::new("explicit keys", HashMap::new()),
        "EnvironmentVariable" => Source::new(
            "environment",
            HashMap::from([(
                "variables",
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY".to_owned(),
            )]),
        ),
        "ProfileFile" => Source::new(
            "profile",
            HashMap::from([
                ("profile", profile),
                (
                    "files",
                    format!("{}, {}", config_file_path(), credentials_file_path()),
                ),
            ]),
        ),
        "WebIdentityToken" => {
            let mut details = HashMap::new();
            if let Some(v) = env("AWS_ROLE_ARN") {
                details.insert("role", v);
            }
            if let Some(v) = env("AWS_WEB_IDENTITY_TOKEN_FILE") {
                details.insert("token_file", v);
            }
            Source::new("web identity", details)
        }
        "EcsContainer" => {
            let url = env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                .or_else(|| {
                    env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                        .map(|p| format!("http://169.254.170.2{p}"))
                })
                .unwrap_or_default();
            Source::new("container endpoint", HashMap::from([("endpoint", url)]))
        }
        "IMDSv2" | "IMDS" => {
            let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".to_owned());
            Source::new(
                "instance metadata (IMDS)",
                HashMap::from([("endpoint", endpoint)]),
            )
        }
        other => Source::new(other, HashMap::new()),
    }
}

/// A credential source in words.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Source {
    pub(crate) kind: String,
    pub(crate) details: std::collections::BTreeMap<&'static str, String>,
}

/// `web identity (role ARN, token file PATH)`.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)?;
        for (i, (key, value)) in self.details.iter().enumerate() {
            let open = if i == 0 { " (" } else { ", " };
            write!(f, "{open}{} {value}", key.replace('_', " "))?;
        }
        if !self.details.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl Source {
    fn new(kind: &str, details: HashMap<&'static str, String>) -> Self {
        Self {
            kind: kind.to_owned(),
            details: details.into_iter().collect(),
        }
    }
}

pub(crate) fn credentials_file_path() -> String {
    env_nonempty("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| "~/.aws/credentials".to_owned())
}

pub(crate) fn config_file_path() -> String {
    env_nonempty("AWS_CONFIG_FILE").unwrap_or_else(|| "~/.aws/config".to_owned())
}

/// The runtime of a command: two workers, so that hashing a part overlaps the network.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
