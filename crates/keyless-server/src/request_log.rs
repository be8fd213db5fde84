//! One log line per request, written once the answer is made: the request id, the protocol and
//! operation, who signed, the bucket and key, the status, the AWS error code and the time taken
//! (never a secret, token, signature or query string). At `info` by default; `--request-log
//! debug` keeps it out of the default output under load, `off` drops it. A client mistake
//! (AccessDenied, NoSuchKey, SignatureDoesNotMatch, ...) is never an error: `error` is for
//! faults of the server, which the failing layer logs with its cause; a 5xx line is a warning.
//!
//! Log shippers find the lines by their target, `keyless::request`.

use std::time::Duration;

use clap::ValueEnum;
use keyless_types::RequestFields;

/// The level of the per-request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestLogLevel {
    /// At `info`, in the default output.
    Info,
    /// At `debug`, shown with `RUST_LOG=keyless::request=debug`.
    Debug,
    /// Not logged.
    Off,
}

/// Logs the request's record `f` with the answer's `status`, `elapsed` after the request
/// arrived.
pub(crate) fn write(
    level: RequestLogLevel,
    f: &RequestFields,
    request_id: Option<&str>,
    method: &hyper::Method,
    status: u16,
    elapsed: Duration,
) {
    if level == RequestLogLevel::Off {
        return;
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "keyless::request",
                $level,
                request_id = request_id.unwrap_or("-"),
                api = f.api,
                operation = f.operation.as_deref().unwrap_or("-"),
                method = %method,
                principal = f.principal.as_deref().unwrap_or("-"),
                access_key_id = f.access_key_id.as_deref().unwrap_or("-"),
                bucket = f.bucket.as_deref().unwrap_or("-"),
                key = f.key.as_deref().unwrap_or("-"),
                status,
                code = f.error_code.as_deref().unwrap_or("-"),
                duration_ms = format_args!("{duration_ms:.3}"),
                "request"
            )
        };
    }
    match (status >= 500, level) {
        (true, _) => line!(tracing::Level::WARN),
        (false, RequestLogLevel::Info) => line!(tracing::Level::INFO),
        (false, _) => line!(tracing::Level::DEBUG),
    }
}
