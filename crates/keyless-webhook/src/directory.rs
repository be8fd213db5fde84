//! [`Directory`]: the service accounts and namespaces the webhook knows, each stripped to the
//! annotations it reads (AWS's `eks.amazonaws.com/`, kube2iam's `iam.amazonaws.com/`,
//! Keyless's `keyless.dev/`), so that a cluster of 10,000 service accounts costs a few
//! megabytes, as AWS's webhook strips them (its PR #301).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use keyless_imds::Namespace;
use serde::Deserialize;
use serde_json::Value;

use crate::{EKS_PREFIX, KEYLESS_PREFIX, WebhookError};

/// The prefix of kube2iam's and kiam's namespace annotations.
const IAM_PREFIX: &str = "iam.amazonaws.com/";

/// A service account, as much of it as the webhook reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its annotations under `eks.amazonaws.com/` and `keyless.dev/`.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn keep(
    annotations: Option<BTreeMap<String, String>>,
    prefixes: &[&str],
) -> BTreeMap<String, String> {
    annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| prefixes.iter().any(|p| key.starts_with(p)))
        .collect()
}

fn required(value: Option<String>, field: &str) -> Result<String, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("has no `metadata.{field}`"))
}

impl ServiceAccount {
    /// The service account `name` of `namespace`, keeping of `annotations` those the webhook
    /// reads.
    pub fn new(
        namespace: String,
        name: String,
        annotations: Option<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            namespace,
            name,
            annotations: keep(annotations, &[EKS_PREFIX, KEYLESS_PREFIX]),
        }
    }

    /// A `ServiceAccount` object (JSON, as the API and kubectl give it).
    pub fn from_object(object: &Value) -> Result<Self, String> {
        let parsed = Object::deserialize(object).map_err(|e| e.to_string())?;
        Ok(Self::new(
            required(parsed.metadata.namespace, "namespace")?,
            required(parsed.metadata.name, "name")?,
            parsed.metadata.annotations,
        ))
    }

    /// The annotation `key`, trimmed, when set and not empty.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        annotation(&self.annotations, key)
    }
}

/// The annotation `key` of `annotations`, trimmed, when set and not empty.
pub(crate) fn annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    annotations
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// The namespace `name`, keeping of `annotations` those the webhook reads.
pub fn namespace(name: String, annotations: Option<BTreeMap<String, String>>) -> Namespace {
    Namespace {
        name,
        annotations: keep(annotations, &[IAM_PREFIX, KEYLESS_PREFIX]),
    }
}

/// A `Namespace` object, stripped to the annotations the webhook reads.
fn namespace_from_object(object: &Value) -> Result<Namespace, String> {
    let parsed = Object::deserialize(object).map_err(|e| e.to_string())?;
    Ok(namespace(
        required(parsed.metadata.name, "name")?,
        parsed.metadata.annotations,
    ))
}

/// The service accounts and namespaces of a `List`, as `kubectl get serviceaccounts,namespaces
/// -A -o json` prints it (a `ServiceAccountList` or `NamespaceList` too); items of other kinds
/// are left out.
pub fn parse_list(json: &[u8]) -> Result<(Vec<ServiceAccount>, Vec<Namespace>), WebhookError> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        kind: Option<String>,
        items: Vec<Value>,
    }
    let list: List = serde_json::from_slice(json).map_err(|e| WebhookError::List(e.to_string()))?;
    let default_kind = match list.kind.as_deref() {
        Some("ServiceAccountList") => Some("ServiceAccount"),
        Some("NamespaceList") => Some("Namespace"),
        _ => None,
    };
    let (mut accounts, mut namespaces) = (Vec::new(), Vec::new());
    for (index, item) in list.items.iter().enumerate() {
        let item_error = |reason: String| WebhookError::Item { index, reason };
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .or(default_kind)
            .unwrap_or("");
        match kind {
            "ServiceAccount" => {
                accounts.push(ServiceAccount::from_object(item).map_err(item_error)?)
            }
            "Namespace" => namespaces.push(namespace_from_object(item).map_err(item_error)?),
            _ => {}
        }
    }
    Ok((accounts, namespaces))
}

#[derive(Default)]
struct State {
    /// Namespace → name → service account.
    accounts: HashMap<String, HashMap<String, Arc<ServiceAccount>>>,
    namespaces: HashMap<String, Arc<Namespace>>,
}

/// The known service accounts and namespaces, shared by the sources that fill it and the
/// handler that reads it. Cheap to clone; clones share one state.
#[derive(Clone, Default)]
pub struct Directory(Arc<RwLock<State>>);

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("service_accounts", &self.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The service account `name` of `namespace`.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<Arc<ServiceAccount>> {
        self.read().accounts.get(namespace)?.get(name).cloned()
    }

    /// The namespace `name`.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.read().namespaces.get(name).cloned()
    }

    /// Replaces every service account.
    pub fn replace_accounts(&self, accounts: Vec<ServiceAccount>) {
        let mut map: HashMap<String, HashMap<String, Arc<ServiceAccount>>> = HashMap::new();
        for account in accounts {
            map.entry(account.namespace.clone())
                .or_default()
                .insert(account.name.clone(), Arc::new(account));
        }
        self.write().accounts = map;
    }

    /// Replaces every namespace.
    pub fn replace_namespaces(&self, namespaces: Vec<Namespace>) {
        self.write().namespaces = namespaces
            .into_iter()
            .map(|ns| (ns.name.clone(), Arc::new(ns)))
            .collect();
    }

    /// Adds or changes one service account.
    pub fn upsert_account(&self, account: ServiceAccount) {
        self.write()
            .accounts
            .entry(account.namespace.clone())
            .or_default()
            .insert(account.name.clone(), Arc::new(account));
    }

    /// Removes one service account.
    pub fn remove_account(&self, namespace: &str, name: &str) {
        let mut state = self.write();
        if let Some(accounts) = state.accounts.get_mut(namespace) {
            accounts.remove(name);
            if accounts.is_empty() {
                state.accounts.remove(namespace);
            }
        }
    }

    /// Adds or changes one namespace.
    pub fn upsert_namespace(&self, namespace: Namespace) {
        self.write()
            .namespaces
            .insert(namespace.name.clone(), Arc::new(namespace));
    }

    /// Removes one namespace.
    pub fn remove_namespace(&self, name: &str) {
        self.write().namespaces.remove(name);
    }

    /// How many service accounts are known.
    pub fn len(&self) -> usize {
        self.read().accounts.values().map(HashMap::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_keep_service_accounts_and_namespaces_stripped() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "ServiceAccount", "metadata": {"namespace": "gitlab", "name": "gitlab",
              "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/gitlab",
                              "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                              "keyless.dev/s3-endpoint": "https://s3"}}},
            {"kind": "Namespace", "metadata": {"name": "gitlab",
              "annotations": {"iam.amazonaws.com/permitted": ".*", "other": "x"}}},
            {"kind": "Secret", "metadata": {"name": "token"}},
        ]});
        let (accounts, namespaces) = parse_list(list.to_string().as_bytes()).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].annotations.len(), 2, "{:?}", accounts[0]);
        assert_eq!(namespaces[0].annotations.len(), 1);
        let directory = Directory::new();
        directory.replace_accounts(accounts);
        directory.replace_namespaces(namespaces);
        assert!(directory.service_account("gitlab", "gitlab").is_some());
        assert!(directory.service_account("gitlab", "other").is_none());
        assert!(directory.namespace("gitlab").is_some());
        directory.remove_account("gitlab", "gitlab");
        assert!(directory.is_empty());
        let typed = json!({"kind": "ServiceAccountList", "items": [{"metadata": {"namespace": "a", "name": "b"}}]});
        assert_eq!(parse_list(typed.to_string().as_bytes()).unwrap().0.len(), 1);
        let broken = json!({"kind": "List", "items": [{"kind": "ServiceAccount", "metadata": {"name": "x"}}]});
        assert!(matches!(
            parse_list(broken.to_string().as_bytes()),
            Err(WebhookError::Item { index: 0, .. })
        ));
        assert!(parse_list(b"[]").is_err());
    }
}
