//! [`client`]: a Kubernetes API client from a kubeconfig file, or from the service account of
//! the pod the agent runs in.
//!
//! <https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/> (in-cluster: the
//! `KUBERNETES_SERVICE_HOST`/`_PORT` variables and the token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount/`, read by kube-rs, not by this crate).
//!
//! The order is kubectl's and kube-rs's `Config::infer`'s: a kubeconfig file first, then
//! in-cluster. As a credential chain (CONVENTIONS.md, habit 6): a kubeconfig that does not exist
//! is "not mine" and in-cluster is tried; one that exists but is broken stops, as does an
//! in-cluster setup that is present but broken. The caller finds the path (`--kubeconfig`,
//! `$KUBECONFIG`, `~/.kube/config`); this crate reads no environment itself.

use std::io::ErrorKind;
use std::path::Path;

use kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::K8sError;

/// A client of the API server: from the kubeconfig at `kubeconfig` (its current context) when
/// given and the file exists, else from the service account of the pod this runs in.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, K8sError> {
    let config = match kubeconfig {
        Some(path) => from_kubeconfig(path).await?,
        None => None,
    };
    let config = match config {
        Some(config) => config,
        None => in_cluster(kubeconfig)?,
    };
    tracing::info!(server = %config.cluster_url, "k8s: api server");
    Client::try_from(config).map_err(|e| K8sError::Client(e.to_string()))
}

/// The configuration of the kubeconfig at `path`; `None` when there is no such file.
async fn from_kubeconfig(path: &Path) -> Result<Option<Config>, K8sError> {
    let broken = |reason: String| K8sError::Kubeconfig {
        path: path.display().to_string(),
        reason,
    };
    let kubeconfig = match Kubeconfig::read_from(path) {
        Ok(kubeconfig) => kubeconfig,
        Err(KubeconfigError::ReadConfig(e, _)) if e.kind() == ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "k8s: no kubeconfig; trying in-cluster");
            return Ok(None);
        }
        Err(KubeconfigError::ReadConfig(e, _)) => return Err(broken(e.to_string())),
        Err(e) => return Err(broken(e.to_string())),
    };
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map(Some)
        .map_err(|e| broken(e.to_string()))
}

/// The in-cluster configuration; `kubeconfig` is what was tried before, for the message.
fn in_cluster(kubeconfig: Option<&Path>) -> Result<Config, K8sError> {
    match Config::incluster() {
        Ok(config) => Ok(config),
        Err(InClusterError::ReadEnvironmentVariable(_)) => {
            let tried = match kubeconfig {
                Some(path) => format!("no kubeconfig at `{}`", path.display()),
                None => "no kubeconfig given".to_owned(),
            };
            Err(K8sError::NoConfig(format!(
                "{tried}, and not running in a pod (`KUBERNETES_SERVICE_HOST` or `KUBERNETES_SERVICE_PORT` is not set)"
            )))
        }
        Err(e) => Err(K8sError::InCluster(e.to_string())),
    }
}
