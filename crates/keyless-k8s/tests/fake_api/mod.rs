//! A fake Kubernetes API server for the tests: plain HTTP on `127.0.0.1:0`, serving the
//! collections it holds (`GET /api/v1/{pods,namespaces,serviceaccounts}`) as a list, and with
//! `watch=true` as a chunked stream of newline-delimited watch events; single service accounts
//! (`GET /api/v1/namespaces/NS/serviceaccounts/NAME`, also those hidden from lists and
//! watches); Events posted (`POST /api/v1/namespaces/NS/events`); and mutating webhook
//! configurations (`GET` and JSON-Patch `PATCH`).
//!
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/>
#![allow(dead_code)] // each test file uses its part

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub const WAIT: Duration = Duration::from_secs(10);

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
    /// By collection name: `pods`, `namespaces`, `serviceaccounts`, `secrets`,
    /// `mutatingwebhookconfigurations`.
    resources: BTreeMap<String, Resource>,
    /// Service accounts a GET finds but lists and watches do not (yet), by `ns/name`.
    hidden: BTreeMap<String, Value>,
    /// Events posted.
    events: Vec<Value>,
    /// Every request's method, path and query, in order.
    requests: Vec<String>,
}

impl State {
    fn resource(&mut self, name: &str) -> &mut Resource {
        self.resources.entry(name.to_owned()).or_default()
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// A fake API server: lists what it holds, streams what it is told.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    pub url: String,
}

fn full(json: Value) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(json.to_string())))
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let mut response = Response::new(full(json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code.as_u16(), "reason": reason, "message": reason,
    })));
    *response.status_mut() = code;
    response
}

fn send(resource: &Resource, event: &Value) {
    // No open watch is fine: the next list has the object.
    let _ = resource.watches.send(Bytes::from(format!("{event}\n")));
}

fn key(object: &Value) -> String {
    let field = |name: &str| object["metadata"][name].as_str().unwrap_or("").to_owned();
    format!("{}/{}", field("namespace"), field("name"))
}

impl FakeApi {
    pub async fn start() -> Self {
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
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.answer(request).await) }
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

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let uri = parts.uri;
        let mut state = self.state();
        state.requests.push(if parts.method == Method::GET {
            uri.to_string()
        } else {
            format!("{} {uri}", parts.method)
        });
        let version = state.version.to_string();
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        match (&parts.method, segments.as_slice()) {
            (&Method::GET, ["api", "v1", collection]) => {
                let resource = state.resource(collection);
                if uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .any(|q| q == "watch=true")
                {
                    let lines = futures_util::stream::unfold(
                        resource.watches.subscribe(),
                        |mut rx| async {
                            loop {
                                match rx.recv().await {
                                    Ok(line) => return Some((Ok(Frame::data(line)), rx)),
                                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                                    Err(broadcast::error::RecvError::Closed) => return None,
                                }
                            }
                        },
                    );
                    return Response::new(BodyExt::boxed(StreamBody::new(lines)));
                }
                let kind = match *collection {
                    "pods" => "PodList",
                    "namespaces" => "NamespaceList",
                    _ => "ServiceAccountList",
                };
                let items: Vec<&Value> = resource.objects.values().collect();
                Response::new(full(json!({
                    "apiVersion": "v1", "kind": kind,
                    "metadata": {"resourceVersion": version}, "items": items,
                })))
            }
            (&Method::GET, ["api", "v1", "namespaces", ns, "serviceaccounts", name]) => {
                let key = format!("{ns}/{name}");
                let found = state
                    .resource("serviceaccounts")
                    .objects
                    .get(&key)
                    .cloned()
                    .or_else(|| state.hidden.get(&key).cloned());
                match found {
                    Some(object) => Response::new(full(object)),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            (&Method::POST, ["api", "v1", "namespaces", _, "events"]) => {
                let mut event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                event["metadata"]["name"] = json!(format!("event-{}", state.events.len()));
                state.events.push(event.clone());
                let mut response = Response::new(full(event));
                *response.status_mut() = StatusCode::CREATED;
                response
            }
            (
                method,
                [
                    "apis",
                    "admissionregistration.k8s.io",
                    "v1",
                    "mutatingwebhookconfigurations",
                    name,
                ],
            ) => {
                let key = format!("/{name}");
                let resource = state.resource("mutatingwebhookconfigurations");
                let Some(object) = resource.objects.get_mut(&key) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if method == Method::PATCH {
                    let patch: json_patch::Patch = match serde_json::from_slice(&body) {
                        Ok(patch) => patch,
                        Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest"),
                    };
                    if json_patch::patch(object, &patch).is_err() {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
                    }
                }
                Response::new(full(object.clone()))
            }
            (&Method::POST, ["api", "v1", "namespaces", ns, "secrets"]) => {
                let mut secret: Value = match serde_json::from_slice(&body) {
                    Ok(secret) => secret,
                    Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest"),
                };
                let key = format!("{ns}/{}", secret["metadata"]["name"].as_str().unwrap_or(""));
                let secrets = &mut state.resource("secrets").objects;
                if secrets.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                secret["metadata"]["resourceVersion"] = json!(version);
                secrets.insert(key, secret.clone());
                let mut response = Response::new(full(secret));
                *response.status_mut() = StatusCode::CREATED;
                response
            }
            (method, ["api", "v1", "namespaces", ns, "secrets", name]) => {
                let key = format!("{ns}/{name}");
                let Some(secret) = state.resource("secrets").objects.get_mut(&key) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if method == Method::PATCH {
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(patch) => json_patch::merge(secret, &patch),
                        Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest"),
                    }
                }
                Response::new(full(secret.clone()))
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }

    /// Stores `object` in `resource` (or deletes it, for `DELETED`) and tells the open watches
    /// with an event of type `kind`.
    pub fn event(&self, resource: &str, kind: &str, mut object: Value) {
        let mut state = self.state();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        let key = key(&object);
        let resource = state.resource(resource);
        if kind == "DELETED" {
            resource.objects.remove(&key);
        } else {
            resource.objects.insert(key, object.clone());
        }
        send(resource, &json!({"type": kind, "object": object}));
    }

    /// A service account a GET finds, but no list or watch.
    pub fn hidden_service_account(&self, object: Value) {
        let mut state = self.state();
        state.hidden.insert(key(&object), object);
    }

    /// Tells the watches of `resource` only that the server has reached a new version.
    pub fn bookmark(&self, resource: &str) {
        let mut state = self.state();
        state.version += 1;
        let version = state.version.to_string();
        send(
            state.resource(resource),
            &json!({"type": "BOOKMARK", "object": {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": version}}}),
        );
    }

    /// Ends the watches of `resource` with `410 Gone`, so that the watcher lists again.
    pub fn gone(&self, resource: &str) {
        send(
            self.state().resource(resource),
            &json!({"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410,
            "reason": "Expired", "message": "too old resource version"}}),
        );
    }

    /// Changes `resource` without telling anyone, as if the event had been lost.
    pub fn quietly(&self, resource: &str, change: impl FnOnce(&mut BTreeMap<String, Value>)) {
        let mut state = self.state();
        state.version += 1;
        change(&mut state.resource(resource).objects);
    }

    /// Waits until `resource` has an open watch.
    pub async fn watched(&self, resource: &str) {
        until(&format!("a watch of {resource}"), || {
            self.state().resource(resource).watches.receiver_count() > 0
        })
        .await;
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.state().events.clone()
    }

    /// The object `key` (`ns/name`, `/name` for cluster objects) of `resource`.
    pub fn object(&self, resource: &str, key: &str) -> Option<Value> {
        self.state().resource(resource).objects.get(key).cloned()
    }
}

/// Waits until `done` holds, for at most [`WAIT`].
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..WAIT.as_millis() / 10 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
