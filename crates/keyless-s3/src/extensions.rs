//! What travels with an S3 request in its `http::Extensions` between the layers that learn it
//! and the layers that read it: the listener's facts about the connection, and what the
//! authorizer decided for the handlers to answer with.

use std::net::SocketAddr;

/// The client's address, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Whether the connection is TLS, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport(pub bool);

/// Whether the caller of a GET or HEAD may list the bucket, which decides whether a missing
/// key answers `NoSuchKey` or `AccessDenied`. Absent for the root user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MayList(pub bool);

/// What a browser-form POST carries that s3s does not hand on, found by the front as the
/// form streams into s3s (the fields come before the file, and s3s reads them before any
/// check): the `x-amz-security-token` field (temporary credentials' session token travels
/// there, not in a header), the `acl` field and the file's name (for `${filename}` in the
/// key).
#[derive(Debug, Clone, Default)]
pub struct FormFields {
    /// The `x-amz-security-token` field.
    pub token: std::sync::Arc<std::sync::OnceLock<String>>,
    /// The `acl` field (s3s reads only `x-amz-acl`).
    pub acl: std::sync::Arc<std::sync::OnceLock<String>>,
    /// The file part's `filename`.
    pub filename: std::sync::Arc<std::sync::OnceLock<String>>,
}

/// Keys (and the versions named) of a DeleteObjects request that the caller may not delete,
/// set aside by the authorizer for the handler to report.
#[derive(Debug, Clone, Default)]
pub struct DeniedKeys(pub Vec<(String, Option<String>)>);

/// Whether the caller may bypass governance-mode retention (`s3:BypassGovernanceRetention`),
/// decided by the authorizer when a request asks to (`x-amz-bypass-governance-retention:
/// true`). Absent for the root user, who may. For DeleteObjects, whether it may for every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MayBypassGovernance(pub bool);
