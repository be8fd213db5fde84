//! [`PodRecord`]: a running pod as the report of unmutated pods keeps it, and the rule that says
//! it missed its mutation.

use serde_json::Value;

use crate::identity::identity;
use crate::mutate::{PodView, is_token_volume};
use crate::{Associations, Directory, IRSA_VOLUME, POD_IDENTITY_VOLUME, SKIP_LABEL, Settings};

/// A pod of the cluster, as much as the report needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// Its UID.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its service account.
    pub service_account: String,
    /// Its annotations that the rules read (`eks.amazonaws.com/`).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Whether it carries the skip label.
    pub skipped: bool,
    /// Whether it has a web-identity token volume.
    pub web_identity_token: bool,
    /// Whether it has a container-credentials token volume.
    pub pod_identity_token: bool,
}

impl PodRecord {
    /// The record of a `Pod` object; `None` when it has no UID, or is finished or going.
    pub fn from_object(object: &Value) -> Option<Self> {
        let metadata = &object["metadata"];
        let uid = metadata["uid"]
            .as_str()
            .filter(|s| !s.is_empty())?
            .to_owned();
        if !metadata["deletionTimestamp"].is_null()
            || matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        {
            return None;
        }
        let namespace = metadata["namespace"].as_str().unwrap_or("default");
        let view = PodView::new(object, namespace);
        let token = |name: &str| view.volume(name).is_some_and(is_token_volume);
        Some(Self {
            uid,
            namespace: namespace.to_owned(),
            name: view.name.clone(),
            service_account: view.service_account.clone(),
            skipped: view.labels.contains_key(SKIP_LABEL),
            web_identity_token: token(IRSA_VOLUME),
            pod_identity_token: token(POD_IDENTITY_VOLUME),
            annotations: view
                .annotations
                .iter()
                .filter(|(k, _)| k.starts_with(crate::EKS_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Why this pod runs without the credentials its service account asks for, when it does:
    /// it would be mutated now, but has no token volume of the kind it would get.
    pub fn missed(
        &self,
        settings: &Settings,
        directory: &Directory,
        associations: &Associations,
    ) -> Option<String> {
        if self.skipped {
            return None;
        }
        let account = directory.service_account(&self.namespace, &self.service_account);
        let identity = identity(
            settings,
            &self.namespace,
            &self.service_account,
            account.as_deref(),
            &self.annotations,
            associations,
        )?;
        let (has, what) = match identity.kind {
            crate::IdentityKind::WebIdentity => (self.web_identity_token, "a web-identity token"),
            crate::IdentityKind::PodIdentity => {
                (self.pod_identity_token, "a container-credentials token")
            }
        };
        (!has).then(|| {
            format!(
                "pod {}/{} runs as service account {} (role {}) without {what}: it was created while the webhook was not mutating it (down, or before the role was given); restart it (kubectl -n {} delete pod {}, or roll out its deployment) to get credentials",
                self.namespace, self.name, self.service_account, identity.role, self.namespace, self.name
            )
        })
    }
}
