//! `Fetch`, how discovery documents and key sets are got: `HttpFetch` over HTTPS (rustls with
//! the ring provider), and `MemoryFetch`, its in-memory double for tests.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc_verify-thumbprint.html>
//! (what STS fetches), <https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfigurationRequest>.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, HOST, LOCATION, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::OidcError;
use crate::url::{check_fetch_url, discovery_url};

/// The largest document fetched, in bytes.
pub const MAX_FETCH_BYTES: usize = 256 * 1024;

/// How long a fetch may take, connection and TLS included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Gets the document at a URL. Implementations refuse redirects and documents over
/// [`MAX_FETCH_BYTES`].
#[async_trait]
pub trait Fetch: Send + Sync {
    /// The body of a `200 OK` answer to `GET url`.
    async fn get(&self, url: &str) -> Result<Vec<u8>, OidcError>;
}

/// Fetches over HTTPS (HTTP/1.1, rustls), or plain HTTP to a loopback host; follows no
/// redirect; gives up after [`FETCH_TIMEOUT`]. One connection per fetch: key sets are fetched
/// at most once per issuer every few seconds, so pooling would buy nothing.
#[derive(Clone)]
pub struct HttpFetch {
    tls: TlsConnector,
    timeout: Duration,
    /// A bearer token for one origin: `(file, origin)`. Sent with requests over HTTPS to that
    /// origin (`https://host[:port]`) alone, the file re-read each time (a kubelet rotates
    /// projected tokens): a Kubernetes API server serves its issuer's discovery document and
    /// keys to service accounts only.
    bearer_token: Option<(std::path::PathBuf, String)>,
}

impl HttpFetch {
    /// Trusts the platform's certificate authorities, as `rustls-native-certs` finds them
    /// (which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    pub fn new() -> Result<HttpFetch, OidcError> {
        Ok(HttpFetch::with_store(native_roots()))
    }

    /// Trusts the platform's certificate authorities and those of `ca_pem` (a private CA).
    pub fn with_extra_roots(ca_pem: &[u8]) -> Result<HttpFetch, OidcError> {
        let mut roots = native_roots();
        add_pem(&mut roots, ca_pem)?;
        Ok(HttpFetch::with_store(roots))
    }

    /// Trusts only the certificate authorities of `ca_pem`.
    pub fn with_only_roots(ca_pem: &[u8]) -> Result<HttpFetch, OidcError> {
        let mut roots = RootCertStore::empty();
        add_pem(&mut roots, ca_pem)?;
        Ok(HttpFetch::with_store(roots))
    }

    fn with_store(roots: RootCertStore) -> HttpFetch {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        HttpFetch {
            tls: TlsConnector::from(Arc::new(config)),
            timeout: FETCH_TIMEOUT,
            bearer_token: None,
        }
    }

    /// Sends `Authorization: Bearer` with the token in `file` (re-read on every fetch) to the
    /// origin of `issuer` (its scheme, host and port) over HTTPS, and to no other: the pod's
    /// service-account token, for the cluster's own issuer.
    pub fn with_bearer_token_file(
        mut self,
        file: impl Into<std::path::PathBuf>,
        issuer: &str,
    ) -> Result<HttpFetch, OidcError> {
        let origin = origin(issuer).ok_or_else(|| OidcError::Discovery {
            issuer: issuer.to_owned(),
            reason: "a token is sent only to an https:// issuer".to_owned(),
        })?;
        self.bearer_token = Some((file.into(), origin));
        Ok(self)
    }

    #[cfg(test)]
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> HttpFetch {
        self.timeout = timeout;
        self
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        check_fetch_url(url)?;
        let uri: Uri = url.parse().map_err(|e| format!("bad url: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let authority = uri.authority().ok_or("the url has no host")?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::get(path)
            .header(HOST, authority.as_str())
            .header(
                USER_AGENT,
                concat!("keyless-oidc/", env!("CARGO_PKG_VERSION")),
            )
            .header(ACCEPT, "application/json");
        if let Some((file, _)) = self
            .bearer_token
            .as_ref()
            .filter(|(_, to)| origin(url).as_deref() == Some(to.as_str()))
        {
            let token = tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("cannot read the token file `{}`: {e}", file.display()))?;
            let mut value = http::HeaderValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| format!("the token file `{}` is not a token", file.display()))?;
            value.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        if https {
            let name = ServerName::try_from(host).map_err(|e| format!("bad host name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            exchange(tls, request).await
        } else {
            exchange(tcp, request).await
        }
    }
}

/// The origin of an https:// URL, as `https://host:port` (the port spelled out, the host in
/// lower case); `None` for anything else.
pub fn origin(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let authority = uri.authority()?;
    Some(format!(
        "https://{}:{}",
        authority.host().to_ascii_lowercase(),
        authority.port_u16().unwrap_or(443)
    ))
}

/// Sends one request on a fresh connection and reads the answer's body.
async fn exchange<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    // Drives the connection; aborted with this fetch, should it time out.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "oidc: fetch connection ended");
        }
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "answered {status} to `{to}`; redirects are not followed"
        ));
    }
    if status != StatusCode::OK {
        return Err(format!("answered {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_FETCH_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the document is larger than {MAX_FETCH_BYTES} bytes")
            } else {
                format!("http: {e}")
            }
        })?;
    Ok(body.to_bytes().to_vec())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn native_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(error = %error, "oidc: cannot load some of the platform's certificate authorities");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        ignored,
        "oidc: the platform's certificate authorities"
    );
    roots
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), OidcError> {
    let refuse = |reason: String| OidcError::Fetch {
        url: "(certificate authorities)".into(),
        reason,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| refuse(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| refuse(format!("bad certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(refuse("no `CERTIFICATE` in the PEM".to_owned()));
    }
    Ok(())
}

#[async_trait]
impl Fetch for HttpFetch {
    async fn get(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        let failed = |reason: String| OidcError::Fetch {
            url: url.to_owned(),
            reason,
        };
        match tokio::time::timeout(self.timeout, self.fetch(url)).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// An in-memory [`Fetch`]: documents by URL, and a count of requests. For tests.
#[derive(Debug, Default)]
pub struct MemoryFetch {
    documents: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicUsize,
}

impl MemoryFetch {
    /// No documents yet.
    pub fn new() -> MemoryFetch {
        MemoryFetch::default()
    }

    /// Serves `body` at `url`.
    pub fn insert(&self, url: &str, body: impl Into<Vec<u8>>) {
        self.lock().insert(url.to_owned(), body.into());
    }

    /// Stops serving `url`.
    pub fn remove(&self, url: &str) {
        self.lock().remove(url);
    }

    /// Serves a discovery document for `issuer` whose key set is `jwks_json`.
    pub fn serve_issuer(&self, issuer: &str, jwks_json: &str) {
        let jwks_uri = format!("{}/keys", issuer.trim_end_matches('/'));
        let discovery = json!({ "issuer": issuer, "jwks_uri": jwks_uri }).to_string();
        self.insert(&discovery_url(issuer), discovery);
        self.insert(&jwks_uri, jwks_json);
    }

    /// How many times [`Fetch::get`] was called.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Fetch for MemoryFetch {
    async fn get(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.lock()
            .get(url)
            .cloned()
            .ok_or_else(|| OidcError::Fetch {
                url: url.to_owned(),
                reason: "answered 404 Not Found".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_to_its_issuers_origin_alone() {
        assert_eq!(
            origin("https://Kubernetes.default.svc.cluster.local").as_deref(),
            Some("https://kubernetes.default.svc.cluster.local:443")
        );
        assert_eq!(
            origin("https://kubernetes.default.svc.cluster.local:443/openid/v1/jwks"),
            origin("https://kubernetes.default.svc.cluster.local")
        );
        assert_ne!(
            origin("https://10.0.0.1:6443/openid/v1/jwks"),
            origin("https://kubernetes.default.svc.cluster.local")
        );
        assert_eq!(origin("http://127.0.0.1:9000"), None);
        // Never over plain HTTP.
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        assert!(
            fetch
                .clone()
                .with_bearer_token_file("/token", "http://127.0.0.1:9000")
                .is_err()
        );
        assert!(
            fetch
                .with_bearer_token_file("/token", "https://kubernetes.default.svc")
                .is_ok()
        );
    }
    use crate::testkit::server::{Reply, TestServer};

    #[tokio::test]
    async fn fetches_over_http_from_loopback() {
        let server = TestServer::start(|path| match path {
            "/doc" => Reply::ok(r#"{"a":1}"#),
            _ => Reply::status(404),
        })
        .await;
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        assert_eq!(fetch.get(&server.url("/doc")).await.unwrap(), br#"{"a":1}"#);
        let err = fetch.get(&server.url("/missing")).await.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn fetches_over_https_with_the_given_roots() {
        let server = TestServer::start_tls(|_| Reply::ok("{}")).await;
        let url = server.url("/doc").replace("127.0.0.1", "localhost");
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        assert_eq!(fetch.get(&url).await.unwrap(), b"{}");
        // By IP address too: the certificate names 127.0.0.1.
        assert_eq!(fetch.get(&server.url("/doc")).await.unwrap(), b"{}");
        // The platform's authorities do not know the test CA.
        let platform = HttpFetch::new().unwrap();
        let err = platform.get(&url).await.unwrap_err();
        assert!(err.to_string().contains("tls"), "{err}");
        let extra = HttpFetch::with_extra_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        assert_eq!(extra.get(&url).await.unwrap(), b"{}");
    }

    #[tokio::test]
    async fn follows_no_redirect_and_caps_the_body() {
        let server = TestServer::start(|path| match path {
            "/moved" => Reply::redirect("https://evil.example/keys"),
            _ => Reply::ok("x".repeat(MAX_FETCH_BYTES + 1)),
        })
        .await;
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        let err = fetch.get(&server.url("/moved")).await.unwrap_err();
        assert!(
            err.to_string().contains("redirects are not followed"),
            "{err}"
        );
        let err = fetch.get(&server.url("/big")).await.unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn refuses_plain_http_elsewhere_and_times_out() {
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        let err = fetch.get("http://issuer.example/keys").await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let silent = TestServer::start_silent().await;
        let fetch = fetch.with_timeout(Duration::from_millis(200));
        let err = fetch.get(&silent.url("/keys")).await.unwrap_err();
        assert!(err.to_string().contains("no answer within 200 ms"), "{err}");
    }

    #[tokio::test]
    async fn memory_fetch_serves_and_counts() {
        let fetch = MemoryFetch::new();
        fetch.serve_issuer("https://a.example/", r#"{"keys":[]}"#);
        let doc = fetch
            .get("https://a.example/.well-known/openid-configuration")
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(doc["jwks_uri"], "https://a.example/keys");
        assert!(fetch.get("https://a.example/other").await.is_err());
        assert_eq!(fetch.requests(), 2);
    }

    #[test]
    fn refuses_pem_without_certificates() {
        assert!(HttpFetch::with_only_roots(b"nothing here").is_err());
        assert!(HttpFetch::with_only_roots(include_bytes!("../testdata/server.pk8.pem")).is_err());
    }
}
