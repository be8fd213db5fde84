//! The HTTP client of the upstream store: path-style requests signed with SigV4 by Keyless's
//! own upstream key pair, over one pool of keep-alive connections (plain HTTP, or TLS with the
//! platform's roots and an optional private CA). Bodies stream as `UNSIGNED-PAYLOAD` with their
//! `Content-Length` (never `aws-chunked`, which not every store takes: Ceph 16.2 refuses the
//! trailer form); small XML documents are signed by their hash and carry a `Content-MD5`.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyless_s3::store::{ByteStream, StoreError};
use keyless_types::Clock;
use keyless_types::Secret;
use keyless_types::encoding::uri_encode;
use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::xml;

/// How the gateway reaches its upstream store.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `http://host:port` or `https://host[:port]`, optionally with a path prefix.
    pub endpoint: String,
    /// The region requests are signed for.
    pub region: String,
    /// Keyless's access key id at the upstream.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: Secret,
    /// A PEM bundle of CAs to trust besides the platform's (a private upstream).
    pub ca_bundle: Option<Vec<u8>>,
    /// Put before every bucket name upstream, so several Keyless tenants share one account
    /// (`tenant-a-`: the client's bucket `logs` is the upstream's `tenant-a-logs`).
    pub bucket_prefix: String,
    /// How long the upstream may take to begin its answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("bucket_prefix", &self.bucket_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the upstream client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint is not an `http` or `https` URL with a host.
    #[error("the upstream endpoint `{0}` is not an http:// or https:// URL with a host")]
    Endpoint(String),
    /// The CA bundle holds no certificate, or one rustls refuses.
    #[error("the upstream CA bundle: {0}")]
    CaBundle(String),
}

/// The body of a request upstream.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// What a request sends.
pub(crate) enum Payload {
    /// Nothing.
    Empty,
    /// A small document, signed by its hash, with its `Content-MD5`.
    Document(Bytes),
    /// A stream of exactly this many bytes (`None`: chunked), sent as `UNSIGNED-PAYLOAD`.
    Stream(ByteStream, Option<u64>),
}

/// One request upstream.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// The client's bucket name (the prefix is added here), or none for ListBuckets.
    pub(crate) bucket: Option<&'a str>,
    pub(crate) key: Option<&'a str>,
    /// Parameters, unencoded; an empty value is sent as the bare name (`?uploads`).
    pub(crate) query: Vec<(&'static str, String)>,
    /// Headers besides `host`, `content-length` and the signature's.
    pub(crate) headers: Vec<(Cow<'static, str>, String)>,
    pub(crate) payload: Payload,
    /// Told when a streamed body has been sent whole (or failed).
    pub(crate) body_sent: Option<Arc<tokio::sync::Notify>>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, bucket: Option<&'a str>, key: Option<&'a str>) -> Self {
        Self {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
            body_sent: None,
        }
    }

    pub(crate) fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((Cow::Borrowed(name), value.into()));
        self
    }

    pub(crate) fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }
}

/// The most of an error answer read: S3's are a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most of a document answer read (a listing page of 1,000 long keys fits).
pub(crate) const MAX_DOCUMENT: usize = 8 * 1024 * 1024;

/// Told of every request Keyless sends the upstream, for metrics.
pub trait UpstreamObserver: Send + Sync {
    /// A request of `method` was answered with `status` (none: no answer came, the connection
    /// failed or the time ran out) `elapsed` after it was sent.
    fn answered(&self, method: &Method, status: Option<u16>, elapsed: Duration);
}

/// The signed client of one upstream.
pub(crate) struct Upstream {
    http: Client<HttpsConnector<HttpConnector>, Body>,
    /// `scheme://authority`.
    origin: String,
    /// The `host` header.
    host: String,
    /// A path prefix of the endpoint, without its trailing slash.
    base_path: String,
    region: String,
    access_key_id: String,
    secret: Secret,
    pub(crate) bucket_prefix: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    pub(crate) observer: Option<Arc<dyn UpstreamObserver>>,
}

impl Upstream {
    pub(crate) fn new(config: &UpstreamConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let uri: http::Uri = config
            .endpoint
            .parse()
            .map_err(|_| ConfigError::Endpoint(config.endpoint.clone()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(ConfigError::Endpoint(config.endpoint.clone()));
        };
        if (scheme != "http" && scheme != "https") || authority.as_str().contains('@') {
            return Err(ConfigError::Endpoint(config.endpoint.clone()));
        }
        // The Host sent and signed: the authority without its scheme's default port.
        let host = match (scheme, authority.port_u16()) {
            ("http", Some(80)) | ("https", Some(443)) => authority.host().to_owned(),
            _ => authority.as_str().to_owned(),
        };
        let tls = client_tls(config.ca_bundle.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            http: client,
            origin: format!("{scheme}://{authority}"),
            host,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            region: config.region.clone(),
            access_key_id: config.access_key_id.clone(),
            secret: config.secret_access_key.clone(),
            bucket_prefix: config.bucket_prefix.clone(),
            timeout: config.timeout,
            clock,
            observer: None,
        })
    }

    /// The region requests are signed for.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// The upstream's name of the client's bucket.
    pub(crate) fn bucket_name(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.bucket_prefix)
    }

    /// Sends `call` and answers the upstream's response when it is a success, or the storage
    /// error it stands for.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response<Incoming>, StoreError> {
        let response = self.send_head(call).await?;
        Ok(response.0)
    }

    /// [`Self::send`], with the answer's headers kept for the caller of a document.
    async fn send_head(
        &self,
        call: Call<'_>,
    ) -> Result<(Response<Incoming>, HeaderMap), StoreError> {
        let bucket = call.bucket;
        let key = call.key;
        let sent = call.body_sent.clone();
        let method = call.method.clone();
        let request = self.request(call)?;
        let started = self.clock.now();
        let observe = |status: Option<u16>| {
            if let Some(observer) = &self.observer {
                let elapsed = self.clock.now().duration_since(started).unwrap_or_default();
                observer.answered(&method, status, elapsed);
            }
        };
        // The upstream answers once it has the whole body: the wait for its answer starts when
        // the body has been sent (at once for a request without one), however long that takes.
        let deadline = async {
            if let Some(sent) = &sent {
                sent.notified().await;
            }
            tokio::time::sleep(self.timeout).await;
        };
        let response = tokio::select! {
            answer = self.http.request(request) => match answer {
                Ok(response) => response,
                Err(e) => {
                    observe(None);
                    return Err(StoreError::Unavailable(keyless_types::error_chain(&e)));
                }
            },
            () = deadline => {
                observe(None);
                return Err(StoreError::Unavailable(format!(
                    "no answer within {:?}",
                    self.timeout
                )));
            }
        };
        observe(Some(response.status().as_u16()));
        if response.status().is_success() {
            let headers = response.headers().clone();
            return Ok((response, headers));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        Err(upstream_error(status, &headers, &body, bucket, key))
    }

    /// Sends `call` and reads the success's body as an XML document.
    pub(crate) async fn document(&self, call: Call<'_>) -> Result<xml::Element, StoreError> {
        Ok(self.document_head(call).await?.0)
    }

    /// [`Self::document`] and the answer's headers.
    pub(crate) async fn document_head(
        &self,
        call: Call<'_>,
    ) -> Result<(xml::Element, HeaderMap), StoreError> {
        let (response, headers) = self.send_head(call).await?;
        let body = read_capped(response.into_body(), MAX_DOCUMENT).await?;
        let root = xml::parse(&body).map_err(|e| {
            StoreError::Unavailable(format!("the upstream's answer is not S3's XML: {e}"))
        })?;
        // CompleteMultipartUpload and CopyObject may fail after their 200 has begun.
        if root.name == "Error" {
            return Err(error_of(
                StatusCode::INTERNAL_SERVER_ERROR,
                &root,
                None,
                None,
            ));
        }
        Ok((root, headers))
    }

    fn request(&self, call: Call<'_>) -> Result<Request<Body>, StoreError> {
        let mut path = self.base_path.clone();
        path.push('/');
        if let Some(bucket) = call.bucket {
            path.push_str(&uri_encode(&self.bucket_name(bucket), false));
            if let Some(key) = call.key {
                path.push('/');
                path.push_str(&uri_encode(key, true));
            }
        }
        let query = call
            .query
            .iter()
            .map(|(name, value)| match value.is_empty() {
                true => (*name).to_owned(),
                false => format!("{name}={}", uri_encode(value, false)),
            })
            .collect::<Vec<_>>()
            .join("&");
        let (body, payload_hash, length, md5): (Body, String, Option<u64>, Option<String>) =
            match call.payload {
                Payload::Empty => (
                    Empty::new().map_err(|never| match never {}).boxed_unsync(),
                    EMPTY_SHA256.to_owned(),
                    // A PUT or POST says it has no body (Ceph 16.2 refuses an UploadPartCopy
                    // without `Content-Length: 0`, MissingContentLength).
                    matches!(call.method, Method::PUT | Method::POST).then_some(0),
                    None,
                ),
                Payload::Document(bytes) => {
                    let hash = keyless_types::hex::encode(&Sha256::digest(&bytes));
                    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes));
                    let len = bytes.len() as u64;
                    (
                        Full::new(bytes)
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                        hash,
                        Some(len),
                        Some(md5),
                    )
                }
                Payload::Stream(stream, length) => (
                    http_body_util::BodyExt::boxed_unsync(StreamBody::new(
                        stream.map(|chunk| chunk.map(Frame::data)),
                    )),
                    "UNSIGNED-PAYLOAD".to_owned(),
                    length,
                    None,
                ),
            };
        let mut headers: Vec<(&str, String)> = vec![
            ("host", self.host.clone()),
            ("x-amz-content-sha256", payload_hash.clone()),
        ];
        if let Some(md5) = md5 {
            headers.push(("content-md5", md5));
        }
        headers.extend(call.headers.iter().map(|(n, v)| (n.as_ref(), v.clone())));
        let amz_date = keyless_types::time::amz_date(self.clock.unix_seconds());
        let signer = keyless_sigv4::Signer {
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret.expose(),
            session_token: None,
            region: &self.region,
            service: "s3",
            amz_date: &amz_date,
        };
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let added = keyless_sigv4::sign_payload(
            &signer,
            call.method.as_str(),
            &path,
            &query,
            &pairs,
            &payload_hash,
        );
        let uri = match query.is_empty() {
            true => format!("{}{path}", self.origin),
            false => format!("{}{path}?{query}", self.origin),
        };
        let mut builder = Request::builder().method(call.method).uri(uri);
        for (name, value) in headers.iter().chain(added.iter()) {
            let refused = || StoreError::Upstream {
                status: 400,
                code: "InvalidArgument".into(),
                message: format!("header `{name}` cannot be sent on"),
            };
            // User metadata may carry UTF-8, which HTTP passes as opaque bytes.
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| refused())?;
            let value = http::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| refused())?;
            builder = builder.header(name, value);
        }
        if let Some(length) = length {
            builder = builder.header(http::header::CONTENT_LENGTH, length);
        }
        builder
            .body(body)
            .map_err(|e| StoreError::Unavailable(format!("cannot build the request: {e}")))
    }
}

/// The SHA-256 of nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Reads a body whole, refusing more than `cap` bytes.
/// A TLS client configuration trusting the platform's roots and, when given, the PEM
/// certificates of `ca_bundle` (a private CA): for the upstream store, and for any other
/// HTTPS endpoint Keyless reaches out to (the audit trail's).
pub fn client_tls(ca_bundle: Option<&[u8]>) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A platform certificate rustls cannot read is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_bundle {
        use rustls_pki_types::pem::PemObject as _;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ConfigError::CaBundle(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ConfigError::CaBundle(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::CaBundle("no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::CaBundle(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

pub(crate) async fn read_capped(mut body: Incoming, cap: usize) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| StoreError::Unavailable(keyless_types::error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > cap {
                return Err(StoreError::Unavailable(format!(
                    "the upstream's answer runs past {cap} bytes"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The storage error an upstream's refusal stands for: S3's codes that Keyless's stores have
/// a variant for map to it; anything else passes through with its status, code and message.
pub(crate) fn upstream_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    bucket: Option<&str>,
    key: Option<&str>,
) -> StoreError {
    let marker = headers
        .get("x-amz-delete-marker")
        .is_some_and(|v| v.as_bytes() == b"true");
    if marker && (status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED) {
        return StoreError::DeleteMarker {
            version_id: headers
                .get("x-amz-version-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| *v != "null")
                .map(str::to_owned),
            requested: status == StatusCode::METHOD_NOT_ALLOWED,
        };
    }
    let code = xml::parse(body)
        .ok()
        .filter(|root| root.name == "Error")
        .map(|root| {
            let code = root.text_of("Code").unwrap_or_default().to_owned();
            (root, code)
        });
    // A refusal of Keyless's own request (its key, its clock, its region, the endpoint) is
    // the gateway's fault, never the client's: 503, and a log line that says what.
    let own = status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_redirection()
        || (status == StatusCode::BAD_REQUEST
            && matches!(
                code.as_ref().map(|(_, c)| c.as_str()),
                Some("AuthorizationHeaderMalformed" | "ExpiredToken" | "InvalidToken")
            ));
    if own {
        let (code, message) = code
            .as_ref()
            .map(|(root, c)| {
                (
                    c.clone(),
                    root.text_of("Message").unwrap_or_default().to_owned(),
                )
            })
            .unwrap_or_else(|| (status.to_string(), String::new()));
        tracing::warn!(%status, code, message, "the upstream store refused Keyless's own request");
        return StoreError::Unavailable(format!(
            "the upstream refused Keyless's request: {status} {code} {message}"
        ));
    }
    match code {
        Some((root, _)) => error_of(status, &root, bucket, key),
        // HEAD answers have no body: the status alone.
        _ => match (status, key) {
            (StatusCode::NOT_FOUND, Some(key)) => StoreError::NoSuchKey {
                bucket: bucket.unwrap_or_default().to_owned(),
                key: key.to_owned(),
            },
            (StatusCode::NOT_FOUND, None) => {
                StoreError::NoSuchBucket(bucket.unwrap_or_default().to_owned())
            }
            (StatusCode::PRECONDITION_FAILED, _) => StoreError::PreconditionFailed,
            (StatusCode::SERVICE_UNAVAILABLE, _) => StoreError::Upstream {
                status: 503,
                code: "SlowDown".into(),
                message: String::new(),
            },
            _ => StoreError::Upstream {
                status: status.as_u16(),
                code: status
                    .canonical_reason()
                    .unwrap_or("UnknownError")
                    .replace(' ', ""),
                message: String::new(),
            },
        },
    }
}

fn error_of(
    status: StatusCode,
    root: &xml::Element,
    bucket: Option<&str>,
    key: Option<&str>,
) -> StoreError {
    let code = root.text_of("Code").unwrap_or_default();
    let bucket = || bucket.unwrap_or_default().to_owned();
    let key = || key.unwrap_or_default().to_owned();
    match code {
        "NoSuchBucket" => StoreError::NoSuchBucket(bucket()),
        "NoSuchKey" => StoreError::NoSuchKey {
            bucket: bucket(),
            key: key(),
        },
        "BucketNotEmpty" => StoreError::BucketNotEmpty(bucket()),
        "BucketAlreadyOwnedByYou" => StoreError::BucketAlreadyExists(bucket()),
        "PreconditionFailed" => StoreError::PreconditionFailed,
        "NoSuchUpload" => {
            StoreError::NoSuchUpload(root.text_of("UploadId").unwrap_or_default().into())
        }
        "InvalidPart" => StoreError::InvalidPart(0),
        "InvalidPartOrder" => StoreError::InvalidPartOrder,
        "EntityTooSmall" => StoreError::EntityTooSmall { part: 0, size: 0 },
        "BadDigest" => StoreError::BadDigest,
        "NoSuchVersion" => StoreError::NoSuchVersion {
            bucket: bucket(),
            key: key(),
            version_id: root.text_of("VersionId").unwrap_or_default().into(),
        },
        _ => StoreError::Upstream {
            status: status.as_u16(),
            code: match code.is_empty() {
                true => "InternalError".into(),
                false => code.to_owned(),
            },
            message: root.text_of("Message").unwrap_or_default().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_codes_map_to_their_variants_and_the_rest_pass_through() {
        let body = |code: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
        };
        let none = HeaderMap::new();
        let e = upstream_error(
            StatusCode::NOT_FOUND,
            &none,
            body("NoSuchBucket").as_bytes(),
            Some("b"),
            Some("k"),
        );
        assert!(matches!(e, StoreError::NoSuchBucket(b) if b == "b"));
        let e = upstream_error(
            StatusCode::NOT_IMPLEMENTED,
            &none,
            body("NotImplemented").as_bytes(),
            Some("b"),
            None,
        );
        assert!(matches!(
            e,
            StoreError::Upstream { status: 501, ref code, ref message } if code == "NotImplemented" && message == "m"
        ));
        // A HEAD's 404 has no body.
        let e = upstream_error(StatusCode::NOT_FOUND, &none, b"", Some("b"), Some("k"));
        assert!(matches!(e, StoreError::NoSuchKey { .. }));
        let e = upstream_error(StatusCode::NOT_FOUND, &none, b"", Some("b"), None);
        assert!(matches!(e, StoreError::NoSuchBucket(_)));
        let mut marker = HeaderMap::new();
        marker.insert("x-amz-delete-marker", "true".parse().unwrap());
        marker.insert("x-amz-version-id", "v1".parse().unwrap());
        let e = upstream_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &marker,
            b"",
            Some("b"),
            Some("k"),
        );
        assert!(matches!(
            e,
            StoreError::DeleteMarker { version_id: Some(ref v), requested: true } if v == "v1"
        ));
    }
}
