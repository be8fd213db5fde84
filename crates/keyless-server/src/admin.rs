//! The management listener (`--admin-listen`, apart from the S3 and metadata ports, so that a
//! probe never competes with clients and a network policy can keep it private):
//! `GET /healthz`, 200 while the process serves, and `GET /readyz`, 200 only when everything
//! the process needs is open and no shutdown is in progress, else 503 with a one-line reason;
//! `GET /metrics`, the process's Prometheus metrics ([`crate::metrics`]).
//!
//! <https://kubernetes.io/docs/reference/using-api/health-checks/>

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::lifecycle::{Readiness, Shutdown, ShutdownTrigger, shutdown_channel};
use crate::listener::{self, Limits};
use crate::metrics::{self, Metrics};

/// A server's admin listener while it runs. Once the shutdown is asked for, `/readyz` says so
/// at once; the listener goes on answering until [`Admin::stop`], which the server calls when
/// its other listeners have drained, so probes see the drain.
pub(crate) struct Admin {
    done: ShutdownTrigger,
    task: Option<JoinHandle<()>>,
}

impl Admin {
    /// Serves `listener`, if any, with `readiness` (marked not ready once `shutdown` is asked)
    /// and `metrics`.
    pub(crate) fn start(
        listener: Option<TcpListener>,
        readiness: Readiness,
        metrics: Metrics,
        shutdown: &Shutdown,
    ) -> Self {
        {
            let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
            tokio::spawn(async move {
                shutdown.requested().await;
                readiness.pending("shutdown", "shutting down");
            });
        }
        let (done, admin_shutdown) = shutdown_channel();
        let task =
            listener.map(|l| tokio::spawn(serve_admin(l, readiness, metrics, admin_shutdown)));
        Self { done, task }
    }

    /// Stops the listener and waits for it.
    pub(crate) async fn stop(self) {
        self.done.trigger();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// Answers one request to the admin listener.
pub(crate) fn handle(
    readiness: &Readiness,
    metrics: &Metrics,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let notes: String = readiness.notes().iter().map(|n| format!("{n}\n")).collect();
            match readiness.check() {
                Ok(()) => text(StatusCode::OK, format!("ok\n{notes}")),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n{notes}"),
                ),
            }
        }
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The service of one admin connection.
pub(crate) fn service(
    readiness: Readiness,
    metrics: Metrics,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Send
+ 'static {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        std::future::ready(Ok(handle(&readiness, &metrics, &req)))
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

/// The admin listener's limits: a few probes at a time, answered at once.
const ADMIN_LIMITS: Limits = Limits {
    max_connections: 64,
    idle_timeout: Duration::from_secs(10),
    shutdown_grace: Duration::from_secs(1),
};

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`.
async fn serve_admin(
    listener: TcpListener,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(ADMIN_LIMITS.idle_timeout);
    listener::serve(
        "admin",
        listener,
        http,
        None,
        ADMIN_LIMITS,
        shutdown,
        move |_| service(readiness.clone(), metrics.clone()),
    )
    .await;
}
