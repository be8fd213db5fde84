//! `watch_node_pods` and `client` against a fake Kubernetes API server: plain HTTP on
//! `127.0.0.1:0`, serving `GET /api/v1/{pods,namespaces}` as a list, and with `watch=true` as a
//! chunked stream of newline-delimited watch events.
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::PodIndex;
use keyless_k8s::{K8sError, watch_node_pods};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(10);

/// The objects of one resource, and the open watches to tell of changes.
struct Resource {
    objects: BTreeMap<String, Value>,
    watches: broadcast::Sender<Bytes>,
}

impl Default for Resource {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            watches: broadcast::channel(64).0,
        }
    }
}

#[derive(Default)]
struct State {
    version: u64,
    pods: Resource,
    namespaces: Resource,
    /// Every request's path and query, in order.
    requests: Vec<String>,
}

impl State {
    fn resource(&mut self, path: &str) -> Option<&mut Resource> {
        match path {
            "/api/v1/pods" | "pods" => Some(&mut self.pods),
            "/api/v1/namespaces" | "namespaces" => Some(&mut self.namespaces),
            _ => None,
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// A fake API server for pods and namespaces: lists what it holds, streams what it is told.
#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<State>>,
    url: String,
}

impl FakeApi {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = FakeApi {
            state: Arc::default(),
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = server.clone();
                let service = service_fn(move |request| {
                    let answer = api.answer(&request);
                    async move { Ok::<_, Infallible>(answer) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        api
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Body> {
        let uri = request.uri();
        let mut state = self.state();
        state.requests.push(uri.to_string());
        let version = state.version.to_string();
        let Some(resource) = state.resource(uri.path()) else {
            let mut response = Response::new(full(json!({"kind": "Status", "code": 404})));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        };
        if uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|q| q == "watch=true")
        {
            let lines =
                futures_util::stream::unfold(resource.watches.subscribe(), |mut rx| async {
                    loop {
                        match rx.recv().await {
                            Ok(line) => return Some((Ok(Frame::data(line)), rx)),
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                });
            return Response::new(BodyExt::boxed(StreamBody::new(lines)));
        }
        let kind = if uri.path().ends_with("pods") {
            "PodList"
        } else {
            "NamespaceList"
        };
        let items: Vec<&Value> = resource.objects.values().collect();
        Response::new(full(json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": {"resourceVersion": version}, "items": items,
        })))
    }

    /// Stores `object` in `resource` (or deletes it, for `DELETED`) and tells the open watches
    /// with an event of type `kind`.
    fn event(&self, resource: &str, kind: &str, mut object: Value) {
        let mut state = self.state();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        let field = |name: &str| object["metadata"][name].as_str().unwrap_or("").to_owned();
        let key = format!("{}/{}", field("namespace"), field("name"));
        let resource = state.resource(resource).unwrap();
        if kind == "DELETED" {
            resource.objects.remove(&key);
        } else {
            resource.objects.insert(key, object.clone());
        }
        send(resource, &json!({"type": kind, "object": object}));
    }

    /// Tells the watches of `resource` only that the server has reached a new version.
    fn bookmark(&self, resource: &str) {
        let mut state = self.state();
        state.version += 1;
        let version = state.version.to_string();
        let resource = state.resource(resource).unwrap();
        send(
            resource,
            &json!({"type": "BOOKMARK", "object": {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": version}}}),
        );
    }

    /// Ends the watches of `resource` with `410 Gone`, so that the watcher lists again.
    fn gone(&self, resource: &str) {
        send(
            self.state().resource(resource).unwrap(),
            &json!({"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410,
            "reason": "Expired", "message": "too old resource version"}}),
        );
    }

    /// Changes `resource` without telling anyone, as if the event had been lost.
    fn quietly(&self, resource: &str, change: impl FnOnce(&mut BTreeMap<String, Value>)) {
        let mut state = self.state();
        state.version += 1;
        change(&mut state.resource(resource).unwrap().objects);
    }

    /// Waits until `resource` has an open watch.
    async fn watched(&self, resource: &str) {
        until(&format!("a watch of {resource}"), || {
            self.state()
                .resource(resource)
                .unwrap()
                .watches
                .receiver_count()
                > 0
        })
        .await;
    }

    fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

fn full(json: Value) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(json.to_string())))
}

fn send(resource: &Resource, event: &Value) {
    // No open watch is fine: the next list has the object.
    let _ = resource.watches.send(Bytes::from(format!("{event}\n")));
}

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

/// Waits until `done` holds, for at most [`WAIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..WAIT.as_millis() / 10 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
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
