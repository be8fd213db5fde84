//! [`watch_node_pods`]: the pods of one node (or of the cluster) and all namespaces, watched
//! with kube-rs's watcher and folded into a [`PodIndex`].
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
//!
//! The pods are selected on the server by `spec.nodeName`, so the agent of a node lists and
//! hears only its own pods. A failed list or watch is logged and retried with kube-rs's
//! default backoff (0.8 s doubling to 30 s, with jitter); meanwhile the index keeps what it
//! knew, and a watch that comes back lists again and replaces it.

use std::pin::pin;

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::PodIndex;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::K8sError;
use crate::reflect::Reflector;

/// One item of either watcher.
#[expect(
    clippy::large_enum_variant,
    reason = "one item at a time, moved once from the stream to its handler; a box would add an allocation per event"
)]
enum Change {
    Pods(Result<watcher::Event<k8s::Pod>, watcher::Error>),
    Namespaces(Result<watcher::Event<k8s::Namespace>, watcher::Error>),
}

/// Watches the pods of node `node_name` (every pod of the cluster when `None`) and every
/// namespace through `client`, and keeps `index` up to date: a full listing replaces it, an
/// added or changed pod is upserted, a deleted or finished one removed at once. The index is
/// first filled when both pods and namespaces have been listed.
///
/// Runs until dropped: spawn it, abort it to stop. Errors of the API server are logged and
/// retried; it returns only an invalid `node_name` at once, or [`K8sError::WatchEnded`] if the
/// watchers ever stop (they do not).
///
/// The client's identity needs `list` and `watch` on `pods` and `namespaces`, cluster-wide.
pub async fn watch_node_pods(
    client: Client,
    node_name: Option<String>,
    index: PodIndex,
) -> Result<(), K8sError> {
    let mut pods_config = watcher::Config::default();
    if let Some(node) = &node_name {
        check_node_name(node)?;
        pods_config = pods_config.fields(&format!("spec.nodeName={node}"));
    }
    let pods = watcher(Api::<k8s::Pod>::all(client.clone()), pods_config)
        .default_backoff()
        .map(Change::Pods);
    let namespaces = watcher(
        Api::<k8s::Namespace>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Namespaces);
    let mut changes = pin!(stream::select(pods, namespaces));
    let mut reflector = Reflector::new(index);
    tracing::info!(
        node = node_name.as_deref().unwrap_or("(all nodes)"),
        "k8s: watching pods and namespaces"
    );
    while let Some(change) = changes.next().await {
        match change {
            Change::Pods(Ok(event)) => reflector.pod_event(event),
            Change::Namespaces(Ok(event)) => reflector.namespace_event(event),
            Change::Pods(Err(error)) => tracing::warn!(
                resource = "pods",
                error = %error,
                "k8s: watch failed; keeping the last known pods and retrying"
            ),
            Change::Namespaces(Err(error)) => tracing::warn!(
                resource = "namespaces",
                error = %error,
                "k8s: watch failed; keeping the last known namespaces and retrying"
            ),
        }
    }
    Err(K8sError::WatchEnded)
}

/// Refuses a node name that is not a DNS subdomain, as Kubernetes names nodes: an empty one
/// would select the pods of no node (the unscheduled ones), a `,` would add a selector.
pub fn check_node_name(name: &str) -> Result<(), K8sError> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = name.len() <= 253
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().next_back())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(K8sError::NodeName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_subdomains() {
        for good in ["node-a", "ip-10-0-0-1.eu-west-1.compute.internal", "n", "0"] {
            assert_eq!(check_node_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Node",
            "a,b",
            "a=b",
            "-a",
            "a-",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
