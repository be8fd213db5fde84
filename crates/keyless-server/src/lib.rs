//! Keyless's servers as a library: `keyless serve` (S3, IAM, STS and the OIDC issuer on one
//! port, the metadata service beside it), `keyless agent` (the node's instance metadata
//! service) and `keyless webhook` (the pod-identity admission webhook), each opened on listeners its caller bound and run until a [`Shutdown`], so that
//! tests start a real server in process on `127.0.0.1:0` and stop it (mini-redis's shape).
//!
//! This crate is the composition root: it reads files, the environment and the clock, and
//! wires the pure crates and the stores together. Its errors are `anyhow` chains for the
//! operator, as the binary's are; nothing matches on them.
//!
//! A request meets, in order: [`listener`] (limits, idle and drain), `serve`'s router (the
//! OIDC documents, the query APIs in `query`, or S3 through s3s), SigV4, the principal, the
//! policy decision, and storage.
#![warn(missing_docs, unreachable_pub)]

mod admin;
pub mod agent;
mod audit;
mod buckets;
mod config;
mod container;
pub mod encryption;
pub mod issuer;
mod lifecycle;
mod listener;
pub mod metrics;
mod objects;
pub mod options;
mod private;
mod query;
pub mod replicas;
mod request_log;
pub mod root;
mod self_signed;
pub mod serve;
mod tls;
pub mod webhook;

pub use agent::{Agent, AgentListeners};
pub use lifecycle::{
    Readiness, Shutdown, ShutdownTrigger, on_signals, open_file_limit, raise_open_file_limit,
    shutdown_channel,
};
pub use listener::Limits;
pub use options::{AgentOptions, ImdsOptions, ServeOptions, ServerOptions, WebhookOptions};
pub use request_log::RequestLogLevel;
pub use serve::{Listeners, Server};
pub use webhook::{Webhook, WebhookListeners};
