//! `watch_node_pods` and `client` against the fake Kubernetes API server of `fake_api`.
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::PodIndex;
use keyless_k8s::{K8sError, watch_node_pods};
use serde_json::{Value, json};

mod fake_api;
use fake_api::{FakeApi, WAIT, until};

fn pod(uid: &str, ip: &str, phase: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{uid}"), "namespace": "shop", "uid": uid,
                     "annotations": {"iam.amazonaws.com/role": role}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": phase, "podIP": ip},
    })
}

fn namespace(name: &str, permitted: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "annotations": {"iam.amazonaws.com/permitted": permitted}},
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn role(index: &PodIndex, address: &str) -> Option<String> {
    let pod = index.by_ip(ip(address))?;
    pod.annotations.get("iam.amazonaws.com/role").cloned()
}

#[tokio::test]
async fn follows_the_pods_of_the_node_and_the_namespaces() {
    let api = FakeApi::start().await;
    api.event("pods", "ADDED", pod("u1", "10.0.0.1", "Running", "reader"));
    api.event("pods", "ADDED", pod("u2", "10.0.0.2", "Succeeded", "batch"));
    api.event("namespaces", "ADDED", namespace("shop", "shop-.*"));
    let index = PodIndex::new();
    let watch = tokio::spawn(watch_node_pods(
        api.client(),
        Some("node-a".into()),
        index.clone(),
    ));

    // The listing fills the index; the finished pod is left out.
    assert!(index.wait_for(ip("10.0.0.1"), WAIT).await.is_some());
    assert!(index.by_ip(ip("10.0.0.2")).is_none());
    assert_eq!(index.len(), 1);
    let shop = index.namespace("shop").unwrap();
    assert_eq!(shop.annotations["iam.amazonaws.com/permitted"], "shop-.*");

    api.watched("pods").await;
    api.watched("namespaces").await;
    api.bookmark("pods");
    api.event("pods", "ADDED", pod("u3", "10.0.0.3", "Running", "api"));
    let added = index.wait_for(ip("10.0.0.3"), WAIT).await.unwrap();
    assert_eq!((added.uid.as_str(), added.name.as_str()), ("u3", "pod-u3"));

    api.event(
        "pods",
        "MODIFIED",
        pod("u1", "10.0.0.1", "Running", "writer"),
    );
    until("the new annotation", || {
        role(&index, "10.0.0.1").as_deref() == Some("writer")
    })
    .await;

    // A terminating pod leaves before it is deleted: its address may go to a new pod.
    let mut terminating = pod("u3", "10.0.0.3", "Running", "api");
    terminating["metadata"]["deletionTimestamp"] = json!("2026-11-26T02:00:00Z");
    api.event("pods", "MODIFIED", terminating);
    until("the terminating pod to leave", || {
        index.by_ip(ip("10.0.0.3")).is_none()
    })
    .await;

    api.event("pods", "ADDED", pod("u4", "10.0.0.4", "Running", "api"));
    assert!(index.wait_for(ip("10.0.0.4"), WAIT).await.is_some());
    api.event("pods", "DELETED", pod("u4", "10.0.0.4", "Running", "api"));
    until("the deleted pod to leave", || {
        index.by_ip(ip("10.0.0.4")).is_none()
    })
    .await;

    api.event(
        "pods",
        "MODIFIED",
        pod("u1", "10.0.0.1", "Succeeded", "writer"),
    );
    until("the finished pod to leave", || index.is_empty()).await;

    api.event(
        "namespaces",
        "MODIFIED",
        namespace("shop", "shop-(reader|writer)"),
    );
    until("the namespace annotation", || {
        index.namespace("shop").unwrap().annotations["iam.amazonaws.com/permitted"]
            == "shop-(reader|writer)"
    })
    .await;

    // Pods are selected by node on the server, list and watch alike; namespaces are not.
    let requests = api.requests();
    let pods: Vec<_> = requests
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods?"))
        .collect();
    assert!(
        pods.iter().any(|r| r.contains("watch=true")),
        "{requests:?}"
    );
    assert!(
        pods.iter().any(|r| !r.contains("watch=true")),
        "{requests:?}"
    );
    for request in pods {
        assert!(
            request.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "{request}"
        );
    }
    let namespaces = requests
        .iter()
        .filter(|r| r.starts_with("/api/v1/namespaces"));
    for request in namespaces {
        assert!(!request.contains("fieldSelector"), "{request}");
    }
    assert!(!watch.is_finished());
    watch.abort();
}

#[tokio::test]
async fn a_lost_watch_lists_again_and_drops_what_left_meanwhile() {
    let api = FakeApi::start().await;
    api.event("pods", "ADDED", pod("u1", "10.0.0.1", "Running", "a"));
    api.event("pods", "ADDED", pod("u2", "10.0.0.2", "Running", "b"));
    let index = PodIndex::new();
    let watch = tokio::spawn(watch_node_pods(api.client(), None, index.clone()));
    assert!(index.wait_for(ip("10.0.0.2"), WAIT).await.is_some());
    api.watched("pods").await;

    // Events lost while the watch was down: u2 deleted, u3 added.
    api.quietly("pods", |pods| {
        pods.remove("shop/pod-u2").unwrap();
        pods.insert("shop/pod-u3".into(), pod("u3", "10.0.0.3", "Running", "c"));
    });
    api.gone("pods");
    assert!(index.wait_for(ip("10.0.0.3"), WAIT).await.is_some());
    assert!(index.by_ip(ip("10.0.0.2")).is_none());
    assert!(index.by_ip(ip("10.0.0.1")).is_some());
    // Every pod was asked for: no node, no selector.
    assert!(api.requests().iter().all(|r| !r.contains("fieldSelector")));
    watch.abort();
}

#[tokio::test]
async fn an_invalid_node_name_is_refused_at_once() {
    let api = FakeApi::start().await;
    let refused = watch_node_pods(api.client(), Some("a,b".into()), PodIndex::new()).await;
    assert!(matches!(refused, Err(K8sError::NodeName(_))), "{refused:?}");
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn a_client_from_a_kubeconfig_file() {
    let api = FakeApi::start().await;
    api.event("namespaces", "ADDED", namespace("shop", ".*"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
         users: [{{name: fake, user: {{token: not-a-secret}}}}]\n",
        api.url
    );
    std::fs::write(&path, kubeconfig).unwrap();
    let client = keyless_k8s::client(Some(&path)).await.unwrap();
    let listed = kube::Api::<k8s::Namespace>::all(client)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("shop"));

    // A kubeconfig that exists but is broken stops the chain.
    std::fs::write(&path, "clusters: [").unwrap();
    let broken = keyless_k8s::client(Some(&path)).await.err();
    assert!(
        matches!(broken, Some(K8sError::Kubeconfig { .. })),
        "{broken:?}"
    );
    // One that does not exist is not an error of its own: in-cluster is tried next (and, out
    // of a pod, says what was tried).
    let missing = keyless_k8s::client(Some(&dir.path().join("nothing"))).await;
    match missing {
        Err(K8sError::NoConfig(message)) => {
            assert!(message.contains("no kubeconfig at"), "{message}")
        }
        Err(K8sError::Kubeconfig { .. }) => panic!("a missing kubeconfig stopped the chain"),
        _ => {} // in a pod: in-cluster, working or broken
    }
}
