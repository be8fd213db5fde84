//! [`webhook_configuration`]: the `MutatingWebhookConfiguration` that sends pod creations to
//! the webhook.
//!
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#configure-admission-webhooks-on-the-fly>
//!
//! Only `CREATE pods`; `sideEffects: None`; `admissionReviewVersions: [v1]`;
//! `reinvocationPolicy: IfNeeded`, so that containers a later webhook adds get their share (the
//! webhook is idempotent); a namespace selector that leaves out the webhook's own namespace and
//! `kube-system` (a `Fail` policy must never block the webhook's own pods or the control
//! plane's, as kOps learnt); the skip label as object selector, as AWS's.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::SKIP_LABEL;

/// What the API server does when the webhook cannot be reached or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The pod is created unmutated (AWS's default; the report of unmutated pods finds it).
    Ignore,
    /// The pod is refused.
    Fail,
}

impl FailurePolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "Ignore",
            Self::Fail => "Fail",
        }
    }
}

/// The configuration's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOptions {
    /// The configuration's (and the webhook's) name.
    pub name: String,
    /// The namespace of the webhook's Service.
    pub namespace: String,
    /// The webhook's Service.
    pub service_name: String,
    /// The Service's port.
    pub port: u16,
    /// The PEM bundle that signs the webhook's certificate; none leaves `caBundle` out (for
    /// cert-manager's injector, or `keyless webhook --self-signed`, to fill).
    pub ca_bundle: Option<Vec<u8>>,
    /// The failure policy.
    pub failure_policy: FailurePolicy,
    /// How long the API server waits, 1 to 30 seconds.
    pub timeout_seconds: u8,
}

/// The webhook's name in the configuration: a qualified name, as the API requires.
pub fn webhook_name(options: &ConfigOptions) -> String {
    format!("{}.keyless.dev", options.name)
}

/// The `MutatingWebhookConfiguration`.
pub fn webhook_configuration(options: &ConfigOptions) -> Value {
    let mut client = json!({"service": {
        "name": options.service_name,
        "namespace": options.namespace,
        "path": "/mutate",
        "port": options.port,
    }});
    if let Some(pem) = &options.ca_bundle {
        client["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": options.name, "labels": {"app.kubernetes.io/name": "keyless-webhook"}},
        "webhooks": [{
            "name": webhook_name(options),
            "admissionReviewVersions": ["v1"],
            "clientConfig": client,
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }],
            "failurePolicy": options.failure_policy.as_str(),
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": options.timeout_seconds,
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [options.namespace, "kube-system"],
            }]},
            "objectSelector": {"matchExpressions": [{
                "key": SKIP_LABEL,
                "operator": "DoesNotExist",
            }]},
        }],
    })
}
