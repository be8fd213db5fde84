//! `K8sError`, what can go wrong connecting to the Kubernetes API server and watching it.
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
//! (watches, and the `410 Gone` that makes a watcher list again: not an error here, the
//! watcher recovers from it by itself).

/// Why the Kubernetes pod source could not be set up, or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    /// The kubeconfig file exists but could not be read, parsed or used.
    #[error("cannot load kubeconfig `{path}`: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither a kubeconfig file nor the in-cluster service account could be used.
    #[error("no kubernetes configuration: {0}")]
    NoConfig(String),
    /// The in-cluster configuration (service account token, CA) is present but broken.
    #[error("cannot load the in-cluster kubernetes configuration: {0}")]
    InCluster(String),
    /// The configuration was loaded but no client could be built from it (TLS, proxy, URL).
    #[error("cannot build the kubernetes client: {0}")]
    Client(String),
    /// The node name cannot be used in a field selector.
    #[error(
        "invalid node name `{0}`: expected a DNS subdomain (lowercase letters, digits, `-`, `.`)"
    )]
    NodeName(String),
    /// A request to the API server failed.
    #[error("kubernetes api: {0}")]
    Api(String),
    /// The watch streams ended, which kube-rs's watchers never do on their own.
    #[error("the kubernetes watch ended")]
    WatchEnded,
}
