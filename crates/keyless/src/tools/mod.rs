//! The client tools: programs that talk to a server (or to AWS) over the network the way any
//! AWS SDK application does, and never reach into a server's insides. Nothing under `tools/`
//! uses `keyless_server`; only `main.rs`'s `serve`, `agent`, `token` and `oidc rotate` do.

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod client;
pub(crate) mod doctor;
pub(crate) mod gitlab;
pub(crate) mod iam;
pub(crate) mod policy;
pub(crate) mod whoami;
