//! The pods file: what `kubectl get pods,namespaces -o json` prints (a `List` of `Pod` and
//! `Namespace` items), or a bare `PodList`; parsed into the pods and namespaces of the index,
//! and watched for changes.
//!
//! <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/>
//!
//! Only pods that can make requests are kept: those with a `status.podIP`, not `Succeeded` or
//! `Failed` and not terminating (a `deletionTimestamp`: their addresses are handed to new pods
//! while they are still listed, as kube2iam's `isPodActive` knows), and not on the host network
//! (they share the node's address, so one pod's role would answer for all of them and for the
//! node).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use crate::ImdsError;
use crate::pods::{Namespace, Pod, PodIndex};

/// The largest pods file read, in bytes.
pub const MAX_PODS_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What a pods file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodList {
    /// The pods that can make requests.
    pub pods: Vec<Pod>,
    /// The namespaces.
    pub namespaces: Vec<Namespace>,
    /// How many pods were left out (no address, finished, terminating, host network).
    pub skipped: usize,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    service_account_name: Option<String>,
    service_account: Option<String>,
    host_network: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    phase: Option<String>,
}

#[derive(Deserialize)]
struct PodItem {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
struct NamespaceItem {
    #[serde(default)]
    metadata: Metadata,
}

/// Parses a pods file: a `List`, `PodList` or `NamespaceList` object with `items`, a JSON array
/// of items, or a single `Pod` or `Namespace`. Items of other kinds are ignored. An item that
/// is malformed fails the whole file, naming the item.
pub fn parse_pod_list(json: &[u8]) -> Result<PodList, ImdsError> {
    let document: Value =
        serde_json::from_slice(json).map_err(|e| ImdsError::Source(format!("not JSON: {e}")))?;
    let list_kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    let (items, implied_kind) = match &document {
        Value::Array(items) => (items.as_slice(), None),
        Value::Object(map) => match map.get("items") {
            Some(Value::Array(items)) => (items.as_slice(), list_kind.strip_suffix("List")),
            Some(Value::Null) => (&[][..], None),
            Some(_) => return Err(ImdsError::Source("`items` is not an array".into())),
            None if matches!(list_kind, "Pod" | "Namespace") => {
                (std::slice::from_ref(&document), None)
            }
            None => {
                return Err(ImdsError::Source(format!(
                    "expected a `List` with `items`, found kind `{list_kind}`"
                )));
            }
        },
        _ => return Err(ImdsError::Source("expected a JSON object or array".into())),
    };
    let mut list = PodList::default();
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .or(implied_kind.filter(|k| !k.is_empty()))
            .unwrap_or("");
        match kind {
            "Pod" => {
                match pod_from_object(item).map_err(|reason| item_error(i, kind, item, reason))? {
                    Some(pod) => list.pods.push(pod),
                    None => list.skipped += 1,
                }
            }
            "Namespace" => list.namespaces.push(
                namespace_from_object(item).map_err(|reason| item_error(i, kind, item, reason))?,
            ),
            "" => return Err(item_error(i, "", item, "has no `kind`".into())),
            _ => tracing::debug!(item = i, kind, "imds: pods file: ignoring item"),
        }
    }
    Ok(list)
}

fn item_error(index: usize, kind: &str, item: &Value, reason: String) -> ImdsError {
    let field = |name: &str| {
        item.pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) => format!(" `{ns}/{name}`"),
        (None, Some(name)) => format!(" `{name}`"),
        _ => String::new(),
    };
    let space = if kind.is_empty() { "" } else { " " };
    ImdsError::Item {
        item: format!("{index}{space}{kind}{name}"),
        reason,
    }
}

fn required(value: Option<String>, field: &str) -> Result<String, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("has no `metadata.{field}`"))
}

/// A Kubernetes `Pod` object (JSON, as the API and kubectl give it) as the index wants it:
/// `None` when it is not to be indexed (no address yet, finished, terminating, host network);
/// an error, saying why, without a name or UID or with an address that does not parse. The
/// pods file and the Kubernetes watch both decide by this one rule.
pub fn pod_from_object(object: &Value) -> Result<Option<Pod>, String> {
    let parsed = PodItem::deserialize(object).map_err(|e| e.to_string())?;
    let name = required(parsed.metadata.name, "name")?;
    let uid = required(parsed.metadata.uid, "uid")?;
    let namespace = parsed
        .metadata
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    if matches!(parsed.status.phase.as_deref(), Some("Succeeded" | "Failed"))
        || parsed.spec.host_network == Some(true)
        || parsed.metadata.deletion_timestamp.is_some()
    {
        return Ok(None);
    }
    let Some(ip) = parsed.status.pod_ip.filter(|ip| !ip.is_empty()) else {
        return Ok(None);
    };
    let ip = ip
        .parse()
        .map_err(|_| format!("`status.podIP` `{ip}` is not an IP address"))?;
    Ok(Some(Pod {
        ip,
        namespace,
        name,
        uid,
        service_account: parsed
            .spec
            .service_account_name
            .or(parsed.spec.service_account)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        annotations: parsed.metadata.annotations.unwrap_or_default(),
    }))
}

/// A Kubernetes `Namespace` object (JSON) as the index wants it.
pub fn namespace_from_object(object: &Value) -> Result<Namespace, String> {
    let parsed = NamespaceItem::deserialize(object).map_err(|e| e.to_string())?;
    Ok(Namespace {
        name: required(parsed.metadata.name, "name")?,
        annotations: parsed.metadata.annotations.unwrap_or_default(),
    })
}

/// Reads and parses the pods file at `path`.
pub async fn load_file(path: &Path) -> Result<PodList, ImdsError> {
    let io = |e: std::io::Error| ImdsError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    if size > MAX_PODS_FILE_BYTES {
        return Err(ImdsError::Source(format!(
            "`{}` is larger than {MAX_PODS_FILE_BYTES} bytes",
            path.display()
        )));
    }
    parse_pod_list(&tokio::fs::read(path).await.map_err(io)?)
}

/// What tells that a file changed: modification time, size and (on Unix) inode, which an
/// atomic rename changes even within one second.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

async fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = tokio::fs::metadata(path).await?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Loads the pods file at `path` into `index`, then again whenever it changes (checked every
/// `every`). A file that does not parse (caught mid-write, say) is logged and the index keeps
/// its last good state; a file that is gone or cannot be read empties the index until it is
/// back, since nothing vouches for its pods any more. Runs until dropped: spawn it, abort it to
/// stop.
pub async fn watch_file(path: PathBuf, index: PodIndex, every: Duration) {
    let mut changes = FileWatch::new(path.clone(), every);
    loop {
        match changes.next().await {
            FileChange::Changed => match load_file(&path).await {
                Ok(list) => {
                    tracing::info!(
                        path = %path.display(),
                        pods = list.pods.len(),
                        namespaces = list.namespaces.len(),
                        skipped = list.skipped,
                        "imds: pods file loaded"
                    );
                    index.replace(list.pods, list.namespaces);
                    index.set_synced(true);
                }
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    %error,
                    "imds: pods file not loaded; keeping the last good pods"
                ),
            },
            FileChange::Unreadable(error) => {
                // Nothing vouches for the pods any more, and their addresses may be handed to
                // other pods meanwhile: none is served until the file is back (a request in the
                // gap waits for it, up to the unknown-pod wait).
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "imds: cannot read pods file; no pod is served until it is back"
                );
                index.replace(Vec::new(), Vec::new());
                index.set_synced(false);
            }
        }
    }
}

/// What [`FileWatch::next`] saw.
#[derive(Debug)]
pub enum FileChange {
    /// The file is new or changed (or back): read it.
    Changed,
    /// The file cannot be looked at (gone, no permission); said once until it is back.
    Unreadable(std::io::Error),
}

/// Polls a file for changes: its modification time, size and inode.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    every: Duration,
    last: Option<Stamp>,
    failing: bool,
    first: bool,
}

impl FileWatch {
    /// A watch of `path`, looked at every `every`; the first [`FileWatch::next`] answers at once.
    pub fn new(path: PathBuf, every: Duration) -> Self {
        Self {
            path,
            every,
            last: None,
            failing: false,
            first: true,
        }
    }

    /// The next change.
    pub async fn next(&mut self) -> FileChange {
        loop {
            if !std::mem::take(&mut self.first) {
                tokio::time::sleep(self.every).await;
            }
            match stamp(&self.path).await {
                Ok(now) if self.last.as_ref() != Some(&now) => {
                    self.last = Some(now);
                    self.failing = false;
                    return FileChange::Changed;
                }
                Ok(_) => {}
                Err(error) => {
                    self.last = None;
                    if !std::mem::replace(&mut self.failing, true) {
                        return FileChange::Unreadable(error);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: &str = r#"{
      "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
      "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-0", "namespace": "shop", "uid": "11111111-aaaa",
                      "annotations": {"iam.amazonaws.com/role": "shop-reader"}},
         "spec": {"serviceAccountName": "web", "containers": [{"name": "c", "image": "x"}]},
         "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "job-1", "namespace": "shop", "uid": "22222222-bbbb"},
         "spec": {}, "status": {"phase": "Succeeded", "podIP": "10.1.0.6"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "pending", "namespace": "shop", "uid": "33333333-cccc"},
         "spec": {}, "status": {"phase": "Pending"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "node-agent", "namespace": "kube-system", "uid": "44444444-dddd"},
         "spec": {"hostNetwork": true}, "status": {"phase": "Running", "podIP": "192.168.1.10"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-old", "namespace": "shop", "uid": "55555555-eeee",
                      "deletionTimestamp": "2026-11-26T02:00:00Z",
                      "annotations": {"iam.amazonaws.com/role": "shop-admin"}},
         "spec": {}, "status": {"phase": "Running", "podIP": "10.1.0.5"}},
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": "shop-.*"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}
      ]
    }"#;

    #[test]
    fn parses_what_kubectl_prints() {
        let list = parse_pod_list(KUBECTL.as_bytes()).unwrap();
        // Finished, pending, host-network and terminating pods are left out; the terminating
        // one shares web-0's address and must not lend it its role.
        assert_eq!(list.pods.len(), 1);
        assert_eq!(list.skipped, 4);
        let pod = &list.pods[0];
        assert_eq!(pod.ip, "10.1.0.5".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str(), pod.uid.as_str()),
            ("shop", "web-0", "11111111-aaaa")
        );
        assert_eq!(pod.service_account, "web");
        assert_eq!(pod.annotations["iam.amazonaws.com/role"], "shop-reader");
        assert_eq!(list.namespaces.len(), 1);
        assert_eq!(
            list.namespaces[0].annotations["iam.amazonaws.com/permitted"],
            "shop-.*"
        );
    }

    #[test]
    fn accepts_a_bare_pod_list_an_array_and_a_single_pod() {
        let pod_list = r#"{"kind": "PodList", "items": [
            {"metadata": {"name": "a", "uid": "u1"}, "status": {"podIP": "fd00::1"}}]}"#;
        let list = parse_pod_list(pod_list.as_bytes()).unwrap();
        assert_eq!(list.pods[0].namespace, "default");
        assert_eq!(list.pods[0].service_account, "default");
        assert!(list.pods[0].ip.is_ipv6());
        let array = r#"[{"kind": "Pod", "metadata": {"name": "a", "uid": "u1"},
                         "status": {"podIP": "10.0.0.1"}}]"#;
        assert_eq!(parse_pod_list(array.as_bytes()).unwrap().pods.len(), 1);
        let single = r#"{"kind": "Pod", "metadata": {"name": "a", "uid": "u1"},
                         "status": {"podIP": "10.0.0.1"}}"#;
        assert_eq!(parse_pod_list(single.as_bytes()).unwrap().pods.len(), 1);
        let empty = r#"{"kind": "List", "items": null}"#;
        assert_eq!(
            parse_pod_list(empty.as_bytes()).unwrap(),
            PodList::default()
        );
    }

    #[test]
    fn errors_name_the_item() {
        let cases = [
            (
                r#"{"kind": "List", "items": [{"kind": "Namespace", "metadata": {"name": "ok"}},
                   {"kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
                    "status": {"podIP": "10.0.0.300"}}]}"#,
                "item 1 Pod `shop/web`: `status.podIP` `10.0.0.300` is not an IP address",
            ),
            (
                r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "web"}}]}"#,
                "item 0 Pod `web`: has no `metadata.uid`",
            ),
            (
                r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": 5}}]}"#,
                "item 0 Pod: invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"kind": "List", "items": [{"metadata": {"name": "x"}}]}"#,
                "item 0 `x`: has no `kind`",
            ),
            (
                r#"{"kind": "List", "items": {}}"#,
                "`items` is not an array",
            ),
            (r#"{"kind": "Secret"}"#, "found kind `Secret`"),
            ("[1", "not JSON"),
            ("42", "expected a JSON object or array"),
        ];
        for (json, expected) in cases {
            let error = parse_pod_list(json.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[tokio::test]
    async fn watching_reloads_changes_keeps_the_last_good_state_and_drops_a_missing_file() {
        let next_again = || KUBECTL.replace("10.1.0.5", "10.1.0.7");
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("pods.json");
        tokio::fs::write(&path, KUBECTL).await.unwrap();
        let index = PodIndex::new();
        let watcher = tokio::spawn(watch_file(
            path.clone(),
            index.clone(),
            Duration::from_millis(10),
        ));
        let web: std::net::IpAddr = "10.1.0.5".parse().unwrap();
        assert!(index.wait_for(web, Duration::from_secs(5)).await.is_some());
        // A broken file keeps what was loaded.
        tokio::fs::write(&path, "{ not json").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(index.by_ip(web).is_some());
        // A good one replaces it (written aside and renamed, as tools do).
        let next = KUBECTL.replace("10.1.0.5", "10.1.0.7");
        let aside = dir.join("pods.json.tmp");
        tokio::fs::write(&aside, next).await.unwrap();
        tokio::fs::rename(&aside, &path).await.unwrap();
        let moved: std::net::IpAddr = "10.1.0.7".parse().unwrap();
        assert!(
            index
                .wait_for(moved, Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(index.by_ip(web).is_none());
        // A file that disappears vouches for nobody: its pods are no longer served, until it is
        // back.
        tokio::fs::remove_file(&path).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(index.by_ip(moved).is_none());
        tokio::fs::write(&path, next_again()).await.unwrap();
        assert!(
            index
                .wait_for(moved, Duration::from_secs(5))
                .await
                .is_some()
        );
        watcher.abort();
        let missing = load_file(&dir.join("nothing.json")).await.unwrap_err();
        assert!(matches!(missing, ImdsError::Io { .. }), "{missing}");
    }
}
