//! Keyless's audit trail: one record per S3, IAM and STS request in CloudTrail's format, so
//! that tools that read CloudTrail read it; written to a rotated JSON-lines file, standard
//! output, or an HTTPS endpoint through a bounded queue that never holds a request up; and
//! read back by `keyless audit` with filters.
//!
//! A record says who (the `userIdentity` IAM and STS settled, down to a pod's session tags),
//! what (the operation, its parameters without secrets, the resources), from where (address,
//! user agent, TLS) and with what result (the error, and for a denial the policy engine's
//! explanation, which the client never sees). It never holds a secret key, session token, web
//! identity token or signature.
//!
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>
#![warn(missing_docs, unreachable_pub)]

mod file;
mod http;
pub mod read;
mod record;
mod trail;

use std::path::PathBuf;

pub use record::{DECISION_KEY, EVENT_VERSION, Exchange, Record, TlsDetails};
pub use trail::{Trail, TrailStats, Writer};

/// Where a trail goes, as `--audit-log` names it.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// `-`: standard output, a record a line.
    Stdout,
    /// A file path: JSON lines, rotated by size.
    File {
        /// The file.
        path: PathBuf,
        /// Rotated once it passes this many bytes.
        max_size: u64,
        /// Rotated files kept (`FILE.1` ... `FILE.keep`).
        keep: usize,
    },
    /// `http://` or `https://`: batches POSTed as `{"Records": [...]}`.
    Http {
        /// The endpoint.
        url: String,
        /// The TLS client configuration (its roots).
        tls: std::sync::Arc<rustls::ClientConfig>,
        /// A file holding a bearer token, read for every batch.
        token_file: Option<PathBuf>,
    },
}

impl SinkSpec {
    /// What `--audit-log VALUE` names: `-`, an `http(s)://` URL, or a file.
    pub fn kind_of(value: &str) -> SinkKind {
        if value == "-" {
            SinkKind::Stdout
        } else if value.starts_with("http://") || value.starts_with("https://") {
            SinkKind::Http
        } else {
            SinkKind::File
        }
    }
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Standard output.
    Stdout,
    /// A file.
    File,
    /// An HTTP(S) endpoint.
    Http,
}

/// Why the trail could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened.
    #[error("cannot open `{}`", .0.display())]
    Open(PathBuf, #[source] std::io::Error),
    /// A write failed.
    #[error("cannot write the audit trail")]
    Write(#[source] std::io::Error),
    /// Not an `http://` or `https://` URL.
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    /// The endpoint could not be reached, or answered that it could not take the batch now.
    #[error("the audit endpoint is unavailable: {0}")]
    Unreachable(String),
    /// The endpoint refused the batch for good.
    #[error("the audit endpoint refused the records with HTTP {0}")]
    Refused(u16),
}

impl AuditError {
    /// Whether trying the same batch again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Write(_) | Self::Unreachable(_))
    }
}
