//! The Kubernetes pod source of the metadata agent: the pods of this node and every namespace,
//! watched on the API server and kept in a [`keyless_imds::PodIndex`], in place of the pods
//! file ([`keyless_imds::watch_file`]).
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/>
//!
//! The parts:
//!
//! 1. [`client`] connects: a kubeconfig file, or the pod's service account.
//! 2. [`watch_node_pods`] lists and watches pods (of one node, by field selector) and
//!    namespaces with kube-rs's `watcher`, retrying with backoff, and feeds the index; a full
//!    listing replaces it, single changes update it.
//! 3. The conversion keeps the pods the pods file keeps (an address, not finished, not
//!    terminating, not on the host network), tested against [`keyless_imds::parse_pod_list`].
//!
//! 4. For `keyless webhook`: service accounts and namespaces watched into a
//!    [`keyless_webhook::Directory`], a GET on a miss, the pods watched for the report of pods
//!    created without their credentials, Warning Events, and the webhook's `caBundle`.
//!
//! The crate reads no clock and no environment of its own (kube-rs reads the in-cluster
//! variables).
#![warn(missing_docs, unreachable_pub)]

mod config;
mod convert;
mod error;
mod reflect;
mod watch;
mod webhook;

pub use config::client;
pub use error::K8sError;
pub use kube::Client;
pub use watch::{check_node_name, watch_node_pods};
pub use webhook::{
    CaBundlePatched, GET_TIMEOUT, PodChange, SecretData, create_secret, get_secret,
    get_service_account, patch_ca_bundle, replace_secret, warn_pod, watch_pods,
    watch_service_accounts,
};
