//! CORS on the wire: preflight `OPTIONS` requests answered before s3s (browsers send them
//! without a signature, and s3s routes no `OPTIONS`), and the `Access-Control-*` headers added
//! to the responses of requests that carry an `Origin`, from the bucket's rules.

use std::sync::Arc;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN,
    VARY,
};
use s3s::{HttpResponse, S3Error, S3ErrorCode};

use crate::cors::{Allowed, Cors};
use crate::store::{BucketConfig, ObjectStore};

/// Where the front finds a bucket's CORS rules.
#[async_trait::async_trait]
pub trait CorsSource: Send + Sync {
    /// The rules of `bucket`, if it has any.
    async fn cors(&self, bucket: &str) -> Option<Cors>;
}

/// The rules a store keeps in its buckets' records.
pub struct StoreCors<S>(pub Arc<S>);

#[async_trait::async_trait]
impl<S: ObjectStore> CorsSource for StoreCors<S> {
    async fn cors(&self, bucket: &str) -> Option<Cors> {
        let text = self
            .0
            .bucket_config(bucket, BucketConfig::Cors)
            .await
            .ok()??;
        serde_json::from_str(&text).ok()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Origin`, if any.
pub(super) fn origin(headers: &HeaderMap) -> Option<String> {
    header(headers, &ORIGIN).map(str::to_owned)
}

fn forbidden(message: &'static str) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom("AccessForbidden".into()), message);
    e.set_status_code(http::StatusCode::FORBIDDEN);
    e
}

fn put(headers: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Adds what `allowed` says to a response.
pub(super) fn add_headers(headers: &mut HeaderMap, allowed: &Allowed) {
    put(headers, ACCESS_CONTROL_ALLOW_ORIGIN, &allowed.origin);
    put(headers, ACCESS_CONTROL_ALLOW_METHODS, &allowed.methods);
    if let Some(h) = &allowed.headers {
        put(headers, ACCESS_CONTROL_ALLOW_HEADERS, h);
    }
    if let Some(h) = &allowed.expose {
        put(headers, ACCESS_CONTROL_EXPOSE_HEADERS, h);
    }
    if let Some(age) = allowed.max_age {
        put(headers, ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
    if allowed.credentials {
        put(headers, ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    put(
        headers,
        VARY,
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// The answer to a preflight for `bucket`, as S3 gives it.
pub(super) async fn preflight(
    source: &dyn CorsSource,
    bucket: Option<&str>,
    headers: &HeaderMap,
) -> Result<HttpResponse, S3Error> {
    let Some(origin) = header(headers, &ORIGIN) else {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Insufficient information. Origin request header needed.",
        ));
    };
    let Some(method) = header(headers, &ACCESS_CONTROL_REQUEST_METHOD) else {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Invalid Access-Control-Request-Method: null",
        ));
    };
    let found = match bucket {
        Some(bucket) => source.cors(bucket).await,
        None => None,
    };
    let Some(cors) = found else {
        return Err(forbidden(
            "CORSResponse: CORS is not enabled for this bucket.",
        ));
    };
    let Some(allowed) = cors.preflight(
        origin,
        method,
        header(headers, &ACCESS_CONTROL_REQUEST_HEADERS),
    ) else {
        return Err(forbidden(
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ));
    };
    let mut response = HttpResponse::new(s3s::Body::empty());
    add_headers(response.headers_mut(), &allowed);
    Ok(response)
}
