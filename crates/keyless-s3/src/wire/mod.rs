//! S3 on the wire: what Keyless adds around s3s for every S3 request. Presigned URLs are
//! checked before s3s sees them ([`presign`]), and so are the lengths of the bodies it reads
//! whole ([`body`]); every response leaves with the request's id
//! (`x-amz-request-id`, and `x-amz-id-2` for the host id), and every error body with AWS's
//! message for its code and the elements AWS adds ([`errors`]); storage errors become S3's
//! here too ([`store_error`]).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonResponseHeaders.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

mod body;
mod cors;
mod domains;
pub mod errors;
pub mod form;
mod kept;
pub mod presign;
mod signing;
mod store;

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use keyless_types::{RequestId, RequestLog};
use s3s::host::S3Host;
use s3s::service::S3Service;
use s3s::{Body, HttpError, HttpResponse, S3Error};

use kept::Kept;

pub use cors::{CorsSource, StoreCors};
pub use domains::{Domains, InvalidDomain};
pub use errors::{aws_error, aws_message};
pub use store::store_error;

/// The header of S3's request id.
pub const REQUEST_ID: &str = "x-amz-request-id";

/// The header of S3's host id, which AWS's support reads with the request id.
pub const HOST_ID: &str = "x-amz-id-2";

/// The virtual-host parser, shared by s3s (which routes with it) and the error bodies (which
/// name the bucket a request was for).
#[derive(Clone)]
pub struct SharedHost(Arc<dyn S3Host>);

impl SharedHost {
    /// Shares `host`.
    pub fn new(host: impl S3Host) -> Self {
        Self(Arc::new(host))
    }
}

impl S3Host for SharedHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        self.0.parse_host_header(host)
    }
}

/// The host id of a request (`x-amz-id-2`, `HostId`): its request id, base64, so that either
/// finds the request in the log.
pub fn host_id(id: &RequestId) -> String {
    base64::engine::general_purpose::STANDARD.encode(id.as_str())
}

/// The S3 endpoint: s3s with Keyless's checks before it and AWS's ids and error texts after.
#[derive(Clone)]
pub struct S3Front {
    service: S3Service,
    host: Option<SharedHost>,
    cors: Option<Arc<dyn CorsSource>>,
}

impl S3Front {
    /// `service` (built with `host` as its virtual-host parser, if any) behind the front.
    pub fn new(service: S3Service, host: Option<SharedHost>) -> Self {
        Self {
            service,
            host,
            cors: None,
        }
    }

    /// Answers preflights and adds CORS headers from the buckets' rules in `source`.
    #[must_use]
    pub fn with_cors(mut self, source: Arc<dyn CorsSource>) -> Self {
        self.cors = Some(source);
        self
    }

    /// Serves one S3 request: its id is the [`RequestId`] in its extensions (made where the
    /// request entered the server), and is put in the response's extensions too.
    pub async fn serve<B: Into<Body>>(
        &self,
        req: http::Request<B>,
    ) -> Result<HttpResponse, HttpError> {
        let kept = Kept::of(&req);
        let id = request_id(req.extensions());
        let log = req.extensions().get::<RequestLog>().cloned();
        let (bucket, key) = self.resource(&kept);
        let has_key = key.is_some();
        if let Some(log) = &log {
            let parameters = audit_parameters(&kept, bucket.as_deref(), key.as_deref());
            log.update(|f| f.request_parameters = parameters);
        }
        if let Some(source) = &self.cors
            && kept.method == http::Method::OPTIONS
        {
            if let Some(log) = &log {
                log.update(|f| f.operation = Some("PreflightRequest".into()));
            }
            let response = cors::preflight(source.as_ref(), bucket.as_deref(), &kept.headers)
                .await
                .unwrap_or_else(serialize);
            return Ok(self.complete(response, &kept, id, log.as_ref()));
        }
        let form = form::is_form(&kept.method, &kept.headers);
        let mut response =
            match presign::check(req.uri().query()).and_then(|()| body::check(&kept, has_key)) {
                Ok(()) => self.service.call(req.map(Into::into)).await?,
                Err(refused) => serialize(refused),
            };
        if form {
            response = form::as_s3_refuses_it(response);
        }
        if let (Some(source), Some(origin), Some(bucket)) =
            (&self.cors, cors::origin(&kept.headers), bucket.as_deref())
            && let Some(rules) = source.cors(bucket).await
            && let Some(allowed) = rules.actual(&origin, kept.method.as_str())
        {
            cors::add_headers(response.headers_mut(), &allowed);
        }
        Ok(self.complete(response, &kept, id, log.as_ref()))
    }

    /// The response to a request refused before it reached s3s, completed like every other.
    pub fn refuse<B>(&self, req: &http::Request<B>, error: S3Error) -> HttpResponse {
        let id = request_id(req.extensions());
        let log = req.extensions().get::<RequestLog>();
        self.complete(serialize(error), &Kept::of(req), id, log)
    }

    /// Adds the ids to `response` and completes its body if it is an S3 error (whose code goes
    /// to the request's log).
    fn complete(
        &self,
        mut response: HttpResponse,
        kept: &Kept,
        id: RequestId,
        log: Option<&RequestLog>,
    ) -> HttpResponse {
        let host_id = host_id(&id);
        if kept.method == http::Method::HEAD
            && response.status() == http::StatusCode::OK
            && response.headers().contains_key(http::header::CONTENT_RANGE)
        {
            // A HEAD of one part (`partNumber`) answers 206 as its GET does; s3s 0.14 answers
            // every HEAD 200 whatever the handler asks for.
            *response.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        }
        if response.status().as_u16() >= 300
            && let Some(body) = response.body().bytes()
        {
            if let Some(log) = log
                && let Some(fields) = errors::parse(&body)
            {
                let mut code = None;
                let mut message = None;
                for (name, value) in fields {
                    match name.as_str() {
                        "Code" => code = Some(value),
                        "Message" => message = Some(value),
                        _ => {}
                    }
                }
                if code.is_some() {
                    log.update(|f| {
                        f.error_code = code;
                        f.error_message = message;
                    });
                }
            }
            let request = errors::Request {
                kept,
                resource: self.resource(kept),
                id: &id,
                host_id: &host_id,
            };
            if response.status() == http::StatusCode::NOT_MODIFIED {
                // A 304 has no body (RFC 9110 §15.4.5); its ETag and Last-Modified say why.
                *response.body_mut() = Body::empty();
                response.headers_mut().remove(http::header::CONTENT_LENGTH);
                response.headers_mut().remove(http::header::CONTENT_TYPE);
            } else if let Some(completed) = errors::complete(&body, &request) {
                *response.body_mut() = Body::from(completed);
                response.headers_mut().remove(http::header::CONTENT_LENGTH);
            }
        }
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            headers.insert(REQUEST_ID, value);
        }
        if let Ok(value) = HeaderValue::from_str(&host_id) {
            headers.insert(HOST_ID, value);
        }
        response.extensions_mut().insert(id);
        response
    }

    /// The bucket and key a request names, read as s3s reads them (virtual host or path),
    /// without judging whether they are valid.
    fn resource(&self, kept: &Kept) -> (Option<String>, Option<String>) {
        let path = percent_encoding::percent_decode_str(kept.uri.path()).decode_utf8_lossy();
        let path = path.strip_prefix('/').unwrap_or(&path);
        let host = kept
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| kept.uri.authority().map(|a| a.as_str()));
        let is_address = |h: &str| {
            h.parse::<std::net::SocketAddr>().is_ok() || h.parse::<std::net::IpAddr>().is_ok()
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        if let (Some(parser), Some(host)) = (&self.host, host)
            && !is_address(host)
            && let Ok(vh) = parser.parse_host_header(host)
            && let Some(bucket) = vh.bucket()
        {
            return (Some(bucket.to_owned()), non_empty(path));
        }
        match path.split_once('/') {
            Some((bucket, key)) => (non_empty(bucket), non_empty(key)),
            None => (non_empty(path), None),
        }
    }
}

/// The request headers S3's CloudTrail records keep in `requestParameters`, by their names:
/// how the object is to be stored and encrypted (never SSE-C's key, only its MD5).
const RECORDED_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key-MD5",
    "x-amz-storage-class",
];

/// CloudTrail's `requestParameters` of an S3 request: `bucketName`, `Host`, `key`, the
/// headers S3 records and the query's parameters as sent, without the presigned URL's
/// signature and token.
fn audit_parameters(
    kept: &Kept,
    bucket: Option<&str>,
    key: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    if let Some(bucket) = bucket {
        out.insert("bucketName".into(), bucket.into());
    }
    if let Some(host) = kept
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| kept.uri.authority().map(|a| a.as_str()))
    {
        out.insert("Host".into(), host.into());
    }
    if let Some(key) = key {
        out.insert("key".into(), key.into());
    }
    for name in RECORDED_HEADERS {
        if let Some(value) = kept.headers.get(*name).and_then(|v| v.to_str().ok()) {
            out.insert((*name).into(), value.into());
        }
    }
    let query = keyless_types::query::Params::parse_form(kept.uri.query().unwrap_or(""));
    for (name, value) in query.pairs() {
        if !keyless_types::audit::is_secret_parameter(name) {
            out.entry(name.to_owned()).or_insert_with(|| value.into());
        }
    }
    out
}

/// The request id in `extensions`; one is made if the listener gave none (tests that build
/// requests by hand).
fn request_id(extensions: &http::Extensions) -> RequestId {
    extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(keyless_iam::ids::request_id)
}

fn serialize(error: S3Error) -> HttpResponse {
    error.to_http_response().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot write an S3 error");
        let mut response = HttpResponse::new(Body::empty());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

#[cfg(test)]
mod tests;
