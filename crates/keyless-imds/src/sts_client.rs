//! `StsAssumer`: the real [`RoleAssumer`], calling STS `AssumeRole` over HTTP/1.1, signed with
//! SigV4 by the agent's own credentials, and reading STS's XML answer or error.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>,
//! <https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html>,
//! <https://docs.aws.amazon.com/sdkref/latest/guide/feature-gen-config.html> (`AWS_CA_BUNDLE`)
//!
//! `https://` endpoints are checked with rustls ([`StsTls`]: the platform's authorities, or a
//! CA bundle, and the endpoint's host name); plain `http://` is for Keyless's own STS beside
//! the agent. One connection per call, since each role is assumed about once an hour per pod:
//! a certificate the server rotated is met on the next call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use keyless_sigv4::{Signer, sign};
use keyless_types::encoding::uri_encode;
use keyless_types::{Clock, Secret};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::credentials::{AssumeRequest, Credentials, RoleAssumer};
use crate::{AssumeError, ImdsError};

/// How long an STS call may take by default, connection included.
pub const DEFAULT_STS_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest STS answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// How the certificate of an `https://` STS endpoint is checked: by whom it must be issued (the
/// host name it must carry is the endpoint's).
#[derive(Clone)]
pub struct StsTls {
    connector: TlsConnector,
    /// What is trusted, for messages.
    trusted: String,
}

impl std::fmt::Debug for StsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsTls")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl StsTls {
    /// The platform's certificate authorities, as `rustls-native-certs` finds them (which
    /// honours `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    pub fn platform() -> StsTls {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(error = %error, "imds: cannot load some of the platform's certificate authorities");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(
            added,
            ignored,
            "imds: the platform's certificate authorities"
        );
        StsTls::with_roots(roots, "the platform's certificate authorities".to_owned())
    }

    /// Only the certificate authorities of the PEM bundle `pem`, read from `path` (named in
    /// messages): what the AWS SDKs do with `AWS_CA_BUNDLE`.
    pub fn bundle(pem: &[u8], path: &str) -> Result<StsTls, ImdsError> {
        let refuse = |reason: String| ImdsError::Config(format!("ca bundle `{path}`: {reason}"));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| refuse(format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| refuse(format!("bad certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(refuse("no `CERTIFICATE` in the PEM".to_owned()));
        }
        Ok(StsTls::with_roots(
            roots,
            format!("the certificate authorities of `{path}`"),
        ))
    }

    /// A client configuration of the caller's, `trusted` saying what it trusts (Keyless's
    /// embedded metadata service trusts its own server's certificate). Sessions are not
    /// resumed: a resumed session shows no certificate, and each call (about one per pod an
    /// hour) is to check the one the server has now.
    pub fn custom(mut config: rustls::ClientConfig, trusted: &str) -> StsTls {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        StsTls {
            connector: TlsConnector::from(Arc::new(config)),
            trusted: trusted.to_owned(),
        }
    }

    fn with_roots(roots: RootCertStore, trusted: String) -> StsTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tls = StsTls::custom(config, "");
        tls.trusted = trusted;
        tls
    }
}

/// Where STS is and who the agent is.
#[derive(Debug, Clone)]
pub struct StsClientConfig {
    /// The STS endpoint, `https://host[:port][/path]`, or `http://` (for an STS on the same
    /// host: the caller decides where plain HTTP may go).
    pub endpoint: String,
    /// How an `https://` endpoint's certificate is checked; `None` is
    /// [`StsTls::platform`].
    pub tls: Option<StsTls>,
    /// The region of the signature's scope, such as `us-east-1`.
    pub region: String,
    /// The agent's access key id.
    pub access_key_id: String,
    /// The agent's secret access key.
    pub secret_access_key: Secret,
    /// The agent's session token, when its credentials are temporary.
    pub session_token: Option<Secret>,
    /// How long a call may take.
    pub timeout: Duration,
}

/// Assumes roles by calling STS.
pub struct StsAssumer {
    config: StsClientConfig,
    /// The TLS client and the name the certificate must carry, for an `https://` endpoint.
    tls: Option<(StsTls, ServerName<'static>)>,
    authority: String,
    host: String,
    port: u16,
    path: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StsAssumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsAssumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StsAssumer {
    /// A client of the STS at `config.endpoint`; fails when the endpoint is not an `https://`
    /// or `http://` URL or a setting is empty.
    pub fn new(config: StsClientConfig, clock: Arc<dyn Clock>) -> Result<Self, ImdsError> {
        let bad = |reason: &str| {
            ImdsError::Config(format!("sts endpoint `{}`: {reason}", config.endpoint))
        };
        let uri: Uri = config.endpoint.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("only https:// and http:// endpoints are supported")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') || uri.query().is_some() {
            return Err(bad("user info and query strings are not allowed"));
        }
        if config.region.is_empty() || config.access_key_id.is_empty() {
            return Err(ImdsError::Config(
                "sts client: region and access key id are required".into(),
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = match https {
            true => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| bad("the host is not a valid TLS server name"))?;
                let tls = config.tls.clone().unwrap_or_else(StsTls::platform);
                Some((tls, name))
            }
            false => None,
        };
        Ok(Self {
            authority: authority.as_str().to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            tls,
            path: match uri.path() {
                "" => "/".to_owned(),
                path => path.to_owned(),
            },
            config,
            clock,
        })
    }

    async fn call(&self, body: String, now: i64) -> Result<(u16, Vec<u8>), AssumeError> {
        let amz_date = keyless_types::time::amz_date(now);
        let signer = Signer {
            access_key_id: &self.config.access_key_id,
            secret_access_key: self.config.secret_access_key.expose(),
            session_token: self.config.session_token.as_ref().map(Secret::expose),
            region: &self.config.region,
            service: "sts",
            amz_date: &amz_date,
        };
        let headers = [("host", self.authority.as_str()), ("content-type", FORM)];
        let added = sign(&signer, "POST", &self.path, "", &headers, body.as_bytes());
        let mut request = Request::post(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, FORM)
            .header(
                USER_AGENT,
                concat!("keyless-imds/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &added {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AssumeError::Unavailable(format!("cannot build request: {e}")))?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            AssumeError::Unavailable(format!("{what} `{}`: {e}", self.config.endpoint))
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unavailable("cannot connect to", &e))?;
        match &self.tls {
            None => self.exchange(tcp, request).await,
            Some((tls, name)) => {
                let stream = tls
                    .connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        AssumeError::Unavailable(format!(
                            "tls handshake with `{}` failed: {e} (trusted: {})",
                            self.config.endpoint, tls.trusted
                        ))
                    })?;
                self.exchange(stream, request).await
            }
        }
    }

    /// Sends the request on `stream` and reads the answer.
    async fn exchange<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<u8>), AssumeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            AssumeError::Unavailable(format!("{what} `{}`: {e}", self.config.endpoint))
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable("http error with", &e))?;
        // Drives the connection; aborted when this call ends or is dropped (timed out).
        let _driver = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "imds: sts connection ended");
            }
        }));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unavailable("http error with", &e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable("cannot read the answer of", &e))?;
        Ok((status, body.to_bytes().to_vec()))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl RoleAssumer for StsAssumer {
    async fn assume(&self, req: &AssumeRequest) -> Result<Credentials, AssumeError> {
        let now = self.clock.unix_seconds();
        let body = form(req);
        let (status, answer) = tokio::time::timeout(self.config.timeout, self.call(body, now))
            .await
            .map_err(|_| {
                AssumeError::Unavailable(format!(
                    "no answer from `{}` within {} ms",
                    self.config.endpoint,
                    self.config.timeout.as_millis()
                ))
            })??;
        let answer = String::from_utf8_lossy(&answer);
        if status == 200 {
            parse_credentials(&answer, now)
        } else {
            Err(classify_error(status, &answer))
        }
    }
}

/// The form body of an `AssumeRole` call.
fn form(req: &AssumeRequest) -> String {
    let mut params = vec![
        ("Action", "AssumeRole".to_owned()),
        ("DurationSeconds", req.duration_seconds.to_string()),
        ("RoleArn", req.role_arn.clone()),
        ("RoleSessionName", req.session_name.clone()),
        ("Version", "2011-06-15".to_owned()),
    ];
    if let Some(id) = &req.external_id {
        params.push(("ExternalId", id.clone()));
    }
    let mut params: Vec<(String, String)> =
        params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (n, (key, value)) in req.tags.iter().enumerate() {
        params.push((format!("Tags.member.{}.Key", n + 1), key.clone()));
        params.push((format!("Tags.member.{}.Value", n + 1), value.clone()));
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The text of the first `<name>` element, unescaped.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let text = xml[start..end].trim();
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The credentials of an `AssumeRoleResponse`.
fn parse_credentials(xml: &str, now: i64) -> Result<Credentials, AssumeError> {
    let credentials = element(xml, "Credentials")
        .ok_or_else(|| AssumeError::BadResponse("no `<Credentials>` in the answer".into()))?;
    let field = |name: &str| {
        element(&credentials, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AssumeError::BadResponse(format!("no `<{name}>` in `<Credentials>`")))
    };
    let expiration = field("Expiration")?;
    let expiration = keyless_types::time::parse_iso8601(&expiration).ok_or_else(|| {
        AssumeError::BadResponse(format!(
            "`<Expiration>` `{expiration}` is not a UTC timestamp"
        ))
    })?;
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Secret::new(field("SessionToken")?),
        expiration,
        last_updated: now,
    })
}

/// Error codes that say nothing about the role: STS is busy or failing, or refuses the agent's
/// own credentials.
const NOT_ABOUT_THE_ROLE: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "IDPCommunicationError",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "ExpiredToken",
    "MissingAuthenticationToken",
    "RequestExpired",
];

/// The [`AssumeError`] of a non-200 answer.
fn classify_error(status: u16, xml: &str) -> AssumeError {
    let code = element(xml, "Code").unwrap_or_default();
    let message = element(xml, "Message").unwrap_or_default();
    if code.is_empty() {
        return AssumeError::Unavailable(format!("sts answered {status} without an error code"));
    }
    if status >= 500 || NOT_ABOUT_THE_ROLE.contains(&code.as_str()) {
        return AssumeError::Unavailable(format!("sts answered {status} {code}: {message}"));
    }
    AssumeError::Denied { code, message }
}

#[cfg(test)]
#[path = "sts_client_tests.rs"]
mod tests;
