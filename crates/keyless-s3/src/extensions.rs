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

/// Keys (and the versions named) of a DeleteObjects request that the caller may not delete,
/// set aside by the authorizer for the handler to report.
#[derive(Debug, Clone, Default)]
pub struct DeniedKeys(pub Vec<(String, Option<String>)>);
