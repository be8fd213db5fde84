//! The webhook's side of the API: the service accounts and namespaces watched into a
//! [`Directory`], a direct GET for a service account the watch has not delivered yet (AWS's
//! issue #174: a pod created right after its service account), the pods of the cluster watched
//! for the report of pods that run without their credentials, a Warning Event on such a pod,
//! and the `caBundle` of the webhook's configuration.
//!
//! <https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/>
//!
//! The client's identity needs `get`, `list` and `watch` on `serviceaccounts` and `namespaces`,
//! `list` and `watch` on `pods`, `create` on `events`, and with `--self-signed`, `get`, `create`
//! and `patch` on its Secret and `get` and `patch` on its `mutatingwebhookconfigurations`.

use std::pin::pin;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::Namespace;
use keyless_webhook::{Directory, PodRecord, ServiceAccount};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::K8sError;

/// How long the GET of a missing service account may take: the API server gives the whole
/// review 10 s at the most.
pub const GET_TIMEOUT: Duration = Duration::from_secs(2);

enum Change {
    Accounts(Result<watcher::Event<k8s::ServiceAccount>, watcher::Error>),
    Namespaces(Result<watcher::Event<k8s::Namespace>, watcher::Error>),
}

fn account(object: k8s::ServiceAccount) -> Option<ServiceAccount> {
    let metadata = object.metadata;
    Some(ServiceAccount::new(
        metadata.namespace?,
        metadata.name?,
        metadata.annotations,
    ))
}

fn namespace(object: k8s::Namespace) -> Option<Namespace> {
    let metadata = object.metadata;
    Some(keyless_webhook::namespace(
        metadata.name?,
        metadata.annotations,
    ))
}

/// Watches every service account and namespace into `directory`: a full listing replaces what
/// it held, single changes update it. `synced` is called each time both have been listed
/// (first at start, then after each relist). Runs until dropped; API errors are logged and
/// retried with backoff.
pub async fn watch_service_accounts(
    client: Client,
    directory: Directory,
    synced: impl Fn() + Send,
) -> Result<(), K8sError> {
    let accounts = watcher(
        Api::<k8s::ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Accounts);
    let namespaces = watcher(
        Api::<k8s::Namespace>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Namespaces);
    let mut changes = pin!(stream::select(accounts, namespaces));
    let (mut listing_accounts, mut listing_namespaces) = (Vec::new(), Vec::new());
    let (mut accounts_listed, mut namespaces_listed) = (false, false);
    tracing::info!("k8s: watching service accounts and namespaces");
    while let Some(change) = changes.next().await {
        match change {
            Change::Accounts(Ok(event)) => match event {
                watcher::Event::Init => listing_accounts.clear(),
                watcher::Event::InitApply(object) => listing_accounts.extend(account(object)),
                watcher::Event::InitDone => {
                    let listed = std::mem::take(&mut listing_accounts);
                    tracing::info!(
                        service_accounts = listed.len(),
                        "k8s: service accounts listed"
                    );
                    directory.replace_accounts(listed);
                    accounts_listed = true;
                    if namespaces_listed {
                        synced();
                    }
                }
                watcher::Event::Apply(object) => {
                    if let Some(account) = account(object) {
                        directory.upsert_account(account);
                    }
                }
                watcher::Event::Delete(object) => {
                    if let (Some(ns), Some(name)) =
                        (object.metadata.namespace, object.metadata.name)
                    {
                        directory.remove_account(&ns, &name);
                    }
                }
            },
            Change::Namespaces(Ok(event)) => match event {
                watcher::Event::Init => listing_namespaces.clear(),
                watcher::Event::InitApply(object) => listing_namespaces.extend(namespace(object)),
                watcher::Event::InitDone => {
                    directory.replace_namespaces(std::mem::take(&mut listing_namespaces));
                    namespaces_listed = true;
                    if accounts_listed {
                        synced();
                    }
                }
                watcher::Event::Apply(object) => {
                    if let Some(ns) = namespace(object) {
                        directory.upsert_namespace(ns);
                    }
                }
                watcher::Event::Delete(object) => {
                    if let Some(name) = object.metadata.name {
                        directory.remove_namespace(&name);
                    }
                }
            },
            Change::Accounts(Err(error)) => {
                tracing::warn!(resource = "serviceaccounts", %error, "k8s: watch failed; keeping the last known and retrying")
            }
            Change::Namespaces(Err(error)) => {
                tracing::warn!(resource = "namespaces", %error, "k8s: watch failed; keeping the last known and retrying")
            }
        }
    }
    Err(K8sError::WatchEnded)
}

/// The service account `name` of `namespace`, read from the API server at once; `None` when it
/// does not exist.
pub async fn get_service_account(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ServiceAccount>, K8sError> {
    let api = Api::<k8s::ServiceAccount>::namespaced(client, namespace);
    match tokio::time::timeout(GET_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(found)) => Ok(found.and_then(account)),
        Ok(Err(e)) => Err(K8sError::Api(e.to_string())),
        Err(_) => Err(K8sError::Api(format!(
            "no answer in {} s",
            GET_TIMEOUT.as_secs()
        ))),
    }
}

/// A change of the cluster's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodChange {
    /// Every pod, after a (re)listing.
    Listed(Vec<PodRecord>),
    /// A pod appeared or changed.
    Upserted(PodRecord),
    /// A pod left (deleted, finished, terminating): its UID.
    Removed(String),
}

fn record(object: &k8s::Pod) -> Result<Option<PodRecord>, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    Ok(PodRecord::from_object(&value))
}

/// Watches every pod of the cluster and hands each change to `on_change`. Runs until dropped.
pub async fn watch_pods(
    client: Client,
    mut on_change: impl FnMut(PodChange) + Send,
) -> Result<(), K8sError> {
    let mut pods =
        pin!(watcher(Api::<k8s::Pod>::all(client), watcher::Config::default()).default_backoff());
    let mut listing = Vec::new();
    tracing::info!("k8s: watching pods for the ones created without their credentials");
    while let Some(event) = pods.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(object)) => match record(&object) {
                Ok(found) => listing.extend(found),
                Err(reason) => tracing::warn!(%reason, "k8s: pod not read"),
            },
            Ok(watcher::Event::InitDone) => {
                on_change(PodChange::Listed(std::mem::take(&mut listing)))
            }
            Ok(watcher::Event::Apply(object)) => match record(&object) {
                Ok(Some(found)) => on_change(PodChange::Upserted(found)),
                Ok(None) => {
                    if let Some(uid) = object.metadata.uid {
                        on_change(PodChange::Removed(uid));
                    }
                }
                Err(reason) => tracing::warn!(%reason, "k8s: pod not read"),
            },
            Ok(watcher::Event::Delete(object)) => {
                if let Some(uid) = object.metadata.uid {
                    on_change(PodChange::Removed(uid));
                }
            }
            Err(error) => tracing::warn!(resource = "pods", %error, "k8s: watch failed; retrying"),
        }
    }
    Err(K8sError::WatchEnded)
}

async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<Value, K8sError> {
    client
        .request::<Value>(request)
        .await
        .map_err(|e| K8sError::Api(e.to_string()))
}

/// Posts a `Warning` Event about `pod`, from `component`, at `now` (RFC 3339), as `kubectl
/// describe pod` shows them.
pub async fn warn_pod(
    client: &Client,
    pod: &PodRecord,
    reason: &str,
    message: &str,
    component: &str,
    now: &str,
) -> Result<(), K8sError> {
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{}.", pod.name), "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace,
                           "name": pod.name, "uid": pod.uid},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let request = http::Request::post(format!("/api/v1/namespaces/{}/events", pod.namespace))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&event).unwrap_or_default())
        .map_err(|e| K8sError::Api(e.to_string()))?;
    send(client, request).await.map(drop)
}

/// What [`patch_ca_bundle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaBundlePatched {
    /// The configuration's webhooks: all of them carry the bundle now.
    pub webhooks: usize,
    /// Those that did not before.
    pub changed: usize,
}

/// Sets the `caBundle` of every webhook of the `MutatingWebhookConfiguration` `name` to `pem`.
pub async fn patch_ca_bundle(
    client: &Client,
    name: &str,
    pem: &[u8],
) -> Result<CaBundlePatched, K8sError> {
    use base64::Engine as _;
    let path =
        format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}");
    let get = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| K8sError::Api(e.to_string()))?;
    let current = send(client, get).await?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(pem);
    let webhooks = current["webhooks"].as_array().cloned().unwrap_or_default();
    let ops: Vec<Value> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| w["clientConfig"]["caBundle"].as_str() != Some(&bundle))
        .map(|(i, _)| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect();
    let done = CaBundlePatched {
        webhooks: webhooks.len(),
        changed: ops.len(),
    };
    if ops.is_empty() {
        return Ok(done);
    }
    let patch = http::Request::patch(&path)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap_or_default())
        .map_err(|e| K8sError::Api(e.to_string()))?;
    send(client, patch).await?;
    Ok(done)
}

/// A Secret's data and annotations.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData {
    /// Its data, decoded.
    pub data: std::collections::BTreeMap<String, Vec<u8>>,
    /// Its annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Names the keys, never their values (private keys live in Secrets).
impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("annotations", &self.annotations)
            .finish()
    }
}

/// The Secret `name` of `namespace`; `None` when it does not exist.
pub async fn get_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<SecretData>, K8sError> {
    let api = Api::<k8s::Secret>::namespaced(client.clone(), namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| K8sError::Api(e.to_string()))?;
    Ok(found.map(|secret| SecretData {
        data: secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
        annotations: secret.metadata.annotations.unwrap_or_default(),
    }))
}

/// Creates the Secret `name` of `namespace` with `secret`; `false` when one of that name
/// exists already (another replica made it first).
pub async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret: &SecretData,
) -> Result<bool, K8sError> {
    let api = Api::<k8s::Secret>::namespaced(client.clone(), namespace);
    let object = k8s::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(secret.annotations.clone()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            secret
                .data
                .iter()
                .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    };
    match api.create(&Default::default(), &object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(K8sError::Api(e.to_string())),
    }
}

/// Replaces the data and annotations of the Secret `name` of `namespace`.
pub async fn replace_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret: &SecretData,
) -> Result<(), K8sError> {
    let api = Api::<k8s::Secret>::namespaced(client.clone(), namespace);
    let patch = json!({
        "metadata": {"annotations": secret.annotations},
        "data": secret.data.iter().map(|(k, v)| {
            use base64::Engine as _;
            (k.clone(), Value::String(base64::engine::general_purpose::STANDARD.encode(v)))
        }).collect::<serde_json::Map<String, Value>>(),
    });
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|e| K8sError::Api(e.to_string()))
}
