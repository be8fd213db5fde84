//! A per-pod EC2 instance metadata service (IMDS), in the manner of kube2iam and kiam: each pod
//! of the node asks `169.254.169.254` for credentials, as on EC2, and gets those of the IAM role
//! its annotation names, assumed on its behalf through STS and cached.
//!
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html>
//!
//! The parts, and how the binary wires them:
//!
//! 1. [`PodIndex`] knows the node's pods by address; [`watch_file`] (or a Kubernetes watch) fills
//!    it, [`PodIndex::wait_for`] covers the moment before it knows a new pod.
//! 2. [`RoleResolver`] turns a pod into a [`Resolution`]: its role, or none, or a refusal by
//!    its namespace's annotations.
//! 3. [`CredentialCache`] gets credentials from a [`RoleAssumer`] ([`StsAssumer`] over HTTP,
//!    [`MemoryAssumer`] in tests), once per pod and role, and keeps them fresh.
//! 4. [`Imds::handle`] answers the HTTP requests; [`Imds::run_background`] prefetches and
//!    refreshes. IMDSv2 session tokens are [`TokenKey`]s' HMACs, bound to pod UID and address.
//!
//! The library reads no clock and no environment: a [`keyless_types::Clock`] is injected.
#![warn(missing_docs, unreachable_pub)]

mod agent;
mod cache;
mod credentials;
mod documents;
mod error;
mod pods;
mod roles;
mod server;
mod source;
mod sts_client;
mod tokens;

pub use agent::CredentialLookup;
pub use cache::{
    CacheConfig, CacheKey, CacheStats, CredentialCache, DEFAULT_SESSION_SECONDS, MIN_SERVE_SECONDS,
    REFRESH_MARGIN_SECONDS, refresh_margin,
};
pub use credentials::{AssumeRequest, Credentials, MemoryAssumer, RoleAssumer};
pub use error::{AssumeError, ImdsError};
pub use pods::{Namespace, Pod, PodEvent, PodIndex};
pub use roles::{
    ALLOWED_ROLES_ANNOTATION, EXTERNAL_ID_ANNOTATION, PERMITTED_ANNOTATION, REVOKED_AT_ANNOTATION,
    ROLE_ANNOTATION, Resolution, RoleConfig, RoleResolver, RoleTarget, SESSION_NAME_ANNOTATION,
    default_session_name, is_session_name,
};
pub use server::{Imds, ImdsConfig, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER, TokenMode};
pub use source::{
    FileChange, FileWatch, MAX_PODS_FILE_BYTES, PodList, load_file, namespace_from_object,
    parse_pod_list, pod_from_object, watch_file,
};
pub use sts_client::{DEFAULT_STS_TIMEOUT, StsAssumer, StsClientConfig, StsTls};
pub use tokens::{MAX_TOKEN_TTL, MIN_TOKEN_TTL, TokenBinding, TokenKey};
