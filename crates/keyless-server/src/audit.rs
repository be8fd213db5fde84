//! `keyless serve`'s audit trail (`--audit-log`): once a request is answered, its record (what
//! the layers wrote in its [`RequestLog`], and what the server saw of the exchange) goes to
//! the trail's queue; a writer task empties the queue into the sink, and is given the
//! shutdown grace to write what is left when the server stops.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use keyless_audit::{Exchange, Record, SinkKind, SinkSpec, TlsDetails, Trail, Writer};
use keyless_types::RequestLog;

use crate::listener::TlsSession;
use crate::options::AuditOptions;

/// The trail, and what every record of this server shares.
#[derive(Clone)]
pub(crate) struct Audit {
    trail: Trail,
    region: String,
    account_id: String,
}

/// What the server saw of one request and its answer.
pub(crate) struct Seen<'a> {
    pub(crate) time: i64,
    pub(crate) request_id: &'a str,
    pub(crate) source_ip: IpAddr,
    pub(crate) request: &'a http::HeaderMap,
    pub(crate) tls: Option<TlsSession>,
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
    pub(crate) fn record(&self, log: &RequestLog, seen: Seen<'_>) {
        let fields = log.fields();
        let header = |map: &'_ http::HeaderMap, name: &str| -> Option<String> {
            map.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let length = |map: &http::HeaderMap| {
            header(map, "content-length").and_then(|v| v.parse::<u64>().ok())
        };
        let user_agent = header(seen.request, "user-agent");
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
        let exchange = Exchange {
            time: seen.time,
            event_id: keyless_iam::ids::guid(),
            request_id: seen.request_id,
            region: &self.region,
            account_id: &self.account_id,
            source_ip: Some(seen.source_ip),
            user_agent: user_agent.as_deref(),
            status: seen.status,
            // An aws-chunked body's own length counts its chunk signatures too.
            bytes_in: header(seen.request, "x-amz-decoded-content-length")
                .and_then(|v| v.parse().ok())
                .or_else(|| length(seen.request)),
            bytes_out: length(seen.response),
            host_id: host_id.as_deref(),
            written,
            tls: seen.tls.map(|tls| TlsDetails {
                tls_version: tls.version.into(),
                cipher_suite: tls.cipher_suite.into(),
                client_provided_host_header: header(seen.request, "host"),
            }),
        };
        if let Some(record) = Record::of(fields, exchange) {
            self.trail.record(&record);
        }
    }
}

/// How long the writer has to write what is left once the server has stopped.
pub(crate) fn final_grace(shutdown_grace: Duration) -> Duration {
    shutdown_grace.clamp(Duration::from_secs(1), Duration::from_secs(10))
}
