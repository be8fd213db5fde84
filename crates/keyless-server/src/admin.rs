//! The management listener (`--admin-listen`, apart from the S3 and metadata ports, so that a
//! probe never competes with clients and a network policy can keep it private):
//! `GET /healthz`, 200 while the process serves, and `GET /readyz`, 200 only when everything
//! the process needs is open and no shutdown is in progress, else 503 with a one-line reason.
//!
//! <https://kubernetes.io/docs/reference/using-api/health-checks/>

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::lifecycle::Readiness;

/// Answers one request to the admin listener.
pub(crate) fn handle(readiness: &Readiness, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz or /readyz\n".into(),
        ),
    }
}

type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The service of one admin connection.
pub(crate) fn service(
    readiness: Readiness,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Send
+ 'static {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        std::future::ready(Ok(handle(&readiness, &req)))
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
