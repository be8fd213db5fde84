//! `keyless serve`'s audit trail (`--audit-log`): once a request is answered, its record (what
//! the layers wrote in its [`keyless_types::RequestLog`], and what the server saw of the exchange) goes to
//! the trail's queue; a writer task empties the queue into the sink, and is given the
//! shutdown grace to write what is left when the server stops.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use keyless_audit::{Exchange, Record, SinkKind, SinkSpec, TlsDetails, Trail, Writer};
use keyless_types::RequestFields;

use crate::listener::TlsSession;
use crate::options::AuditOptions;

/// The trail, and what every record of this server shares.
#[derive(Clone)]
pub(crate) struct Audit {
    trail: Trail,
    region: String,
    account_id: String,
}

/// What the record needs of a request, kept before the request is consumed.
pub(crate) struct Asked {
    pub(crate) time: i64,
    pub(crate) user_agent: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) tls: Option<TlsSession>,
}

impl Asked {
    /// What `headers` and the connection's `tls` tell of a request arrived at `time`.
    pub(crate) fn of(time: i64, headers: &http::HeaderMap, tls: Option<TlsSession>) -> Self {
        Self {
            time,
            user_agent: header(headers, "user-agent"),
            host: header(headers, "host"),
            tls,
        }
    }
}

/// The body's length of a request with `headers`: its Content-Length, which hyper holds the
/// body to; for an aws-chunked upload (`x-amz-content-sha256: STREAMING-...`), whose own
/// length counts its chunk signatures too, the decoded length S3 checks the chunks against.
/// Never more than S3's largest object, 5 TiB.
pub(crate) fn bytes_in(headers: &http::HeaderMap) -> Option<u64> {
    const MAX: u64 = 5 << 40;
    let streaming =
        header(headers, "x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    let length = match streaming {
        true => header(headers, "x-amz-decoded-content-length"),
        false => None,
    };
    length
        .or_else(|| header(headers, "content-length"))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n.min(MAX))
}

/// The body's length of an answer with `headers`.
pub(crate) fn bytes_out(headers: &http::HeaderMap) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.parse().ok())
}

fn header(map: &http::HeaderMap, name: &str) -> Option<String> {
    map.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What the server saw of one request and its answer.
pub(crate) struct Seen<'a> {
    pub(crate) asked: &'a Asked,
    pub(crate) request_id: &'a str,
    pub(crate) source_ip: IpAddr,
    pub(crate) bytes_in: Option<u64>,
    pub(crate) status: u16,
    pub(crate) response: &'a http::HeaderMap,
}

impl Audit {
    /// The trail `options` asks for, and its writer; `None` when there is none.
    pub(crate) fn open(
        options: &AuditOptions,
        region: &str,
        account_id: &str,
    ) -> anyhow::Result<Option<(Self, Writer)>> {
        let Some(target) = &options.audit_log else {
            return Ok(None);
        };
        let sink = match SinkSpec::kind_of(target) {
            SinkKind::Stdout => SinkSpec::Stdout,
            SinkKind::File => SinkSpec::File {
                path: target.into(),
                max_size: options.audit_log_max_size,
                keep: usize::from(options.audit_log_keep),
            },
            SinkKind::Http => {
                let ca =
                    match &options.audit_log_ca_bundle {
                        Some(file) => Some(std::fs::read(file).with_context(|| {
                            format!("--audit-log-ca-bundle `{}`", file.display())
                        })?),
                        None => None,
                    };
                SinkSpec::Http {
                    url: target.clone(),
                    tls: std::sync::Arc::new(
                        keyless_upstream::client_tls(ca.as_deref())
                            .context("--audit-log-ca-bundle")?,
                    ),
                    token_file: options.audit_log_token_file.clone(),
                }
            }
        };
        let buffer = usize::try_from(options.audit_log_buffer).unwrap_or(usize::MAX);
        let (trail, writer) = Trail::open(&sink, buffer).context("--audit-log")?;
        Ok(Some((
            Self {
                trail,
                region: region.to_owned(),
                account_id: account_id.to_owned(),
            },
            writer,
        )))
    }

    /// Records one answered request (nothing for the issuer's documents).
    pub(crate) fn record(&self, fields: RequestFields, seen: Seen<'_>) {
        let host_id = header(seen.response, "x-amz-id-2");
        let mut written = Vec::new();
        for name in ["x-amz-version-id", "x-amz-server-side-encryption"] {
            if let Some(value) = header(seen.response, name) {
                written.push((name, value));
            }
        }
        if let Some(etag) = header(seen.response, "etag") {
            written.push(("ETag", etag.trim_matches('"').to_owned()));
        }
        let asked = seen.asked;
        let exchange = Exchange {
            time: asked.time,
            event_id: keyless_iam::ids::guid(),
            request_id: seen.request_id,
            region: &self.region,
            account_id: &self.account_id,
            source_ip: Some(seen.source_ip),
            user_agent: asked.user_agent.as_deref(),
            status: seen.status,
            bytes_in: seen.bytes_in,
            bytes_out: bytes_out(seen.response),
            host_id: host_id.as_deref(),
            written,
            tls: asked.tls.map(|tls| TlsDetails {
                tls_version: tls.version.into(),
                cipher_suite: tls.cipher_suite.into(),
                client_provided_host_header: asked.host.clone(),
            }),
        };
        if let Some(record) = Record::of(fields, exchange) {
            self.trail.record(&record);
        }
    }
}

impl Audit {
    /// The trail's figures for `/metrics`.
    pub(crate) fn metrics(&self) -> crate::metrics::Snapshot {
        use crate::metrics::Kind::{Counter, Gauge};
        let trail = self.trail.clone();
        crate::metrics::Snapshot::new(
            vec![
                (
                    "audit_records_written",
                    "Audit records the sink took",
                    Counter,
                ),
                (
                    "audit_records_dropped",
                    "Audit records dropped because the queue was full",
                    Counter,
                ),
                (
                    "audit_records_lost",
                    "Audit records the sink refused for good or the stop cut off",
                    Counter,
                ),
                (
                    "audit_write_failures",
                    "Writes to the audit sink that failed and were retried",
                    Counter,
                ),
                (
                    "audit_batches_written",
                    "Writes of a batch of audit records to the sink",
                    Counter,
                ),
                (
                    "audit_records_queued",
                    "Audit records waiting in the queue",
                    Gauge,
                ),
            ],
            move || {
                let s = trail.stats();
                vec![
                    s.written, s.dropped, s.lost, s.failures, s.batches, s.queued,
                ]
            },
        )
    }
}

/// How long the writer has to write what is left once the server has stopped.
pub(crate) fn final_grace(shutdown_grace: Duration) -> Duration {
    shutdown_grace.clamp(Duration::from_secs(1), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn a_body_is_as_long_as_hyper_read_unless_it_is_aws_chunked() {
        assert_eq!(bytes_in(&headers(&[("content-length", "10")])), Some(10));
        // The decoded length counts only for a streaming upload, whose chunks S3 checks by it.
        let claimed = [
            ("content-length", "10"),
            ("x-amz-decoded-content-length", "18446744073709551615"),
        ];
        assert_eq!(bytes_in(&headers(&claimed)), Some(10));
        let chunked = [
            ("content-length", "180"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("x-amz-decoded-content-length", "100"),
        ];
        assert_eq!(bytes_in(&headers(&chunked)), Some(100));
        let huge = [
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-decoded-content-length", "18446744073709551615"),
        ];
        assert_eq!(bytes_in(&headers(&huge)), Some(5 << 40));
        assert_eq!(bytes_in(&headers(&[])), None);
    }
}
