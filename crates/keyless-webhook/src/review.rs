//! The AdmissionReview wire format, `admission.k8s.io/v1` (and `v1beta1`, the same shape).
//!
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request>,
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response>
//!
//! The answer echoes the request's `apiVersion` and `uid`; a mutation is a base64 JSON Patch
//! with `patchType: JSONPatch`; warnings are single lines of at most 256 characters, as the API
//! server keeps them.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::WebhookError;

/// The most characters a warning keeps.
const MAX_WARNING: usize = 256;

/// What the webhook reads of an AdmissionReview's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// `admission.k8s.io/v1` or `/v1beta1`, echoed.
    pub api_version: String,
    /// The request's UID, echoed.
    pub uid: String,
    /// The object's kind (`Pod`) and group (empty for the core group).
    pub kind: String,
    /// The group of the kind.
    pub group: String,
    /// `CREATE`, `UPDATE`, ...
    pub operation: String,
    /// The namespace of the request.
    pub namespace: String,
    /// The object, raw.
    pub object: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<WireRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    uid: String,
    #[serde(default)]
    kind: Option<WireKind>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Value,
}

#[derive(Deserialize)]
struct WireKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

/// Reads an AdmissionReview.
pub fn parse(body: &[u8]) -> Result<Review, WebhookError> {
    let bad = |why: String| WebhookError::Review(why);
    let wire: Wire = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if wire.kind.as_deref() != Some("AdmissionReview") {
        return Err(bad("`kind` is not `AdmissionReview`".into()));
    }
    let api_version = wire.api_version.unwrap_or_default();
    if !matches!(
        api_version.as_str(),
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) {
        return Err(bad(format!(
            "`apiVersion` `{api_version}` is not admission.k8s.io/v1"
        )));
    }
    let request = wire
        .request
        .ok_or_else(|| bad("it has no `request`".into()))?;
    if request.uid.is_empty() {
        return Err(bad("`request.uid` is empty".into()));
    }
    let kind = request.kind.unwrap_or(WireKind {
        group: String::new(),
        kind: String::new(),
    });
    Ok(Review {
        api_version,
        uid: request.uid,
        kind: kind.kind,
        group: kind.group,
        operation: request.operation.unwrap_or_default(),
        namespace: request.namespace.unwrap_or_default(),
        object: request.object,
    })
}

impl Review {
    /// Whether this is the creation of a pod, the one request the webhook mutates.
    pub fn is_pod_creation(&self) -> bool {
        self.kind == "Pod"
            && self.group.is_empty()
            && self.operation == "CREATE"
            && self.object.is_object()
    }

    /// The namespace of the pod: the request's, else the object's, else `default`.
    pub fn pod_namespace(&self) -> &str {
        Some(self.namespace.as_str())
            .filter(|ns| !ns.is_empty())
            .or_else(|| {
                self.object["metadata"]["namespace"]
                    .as_str()
                    .filter(|ns| !ns.is_empty())
            })
            .unwrap_or("default")
    }

    /// The answer allowing the pod, with `patch` (none when empty) and `warnings`.
    pub fn allow(&self, patch: &[Value], warnings: &[String]) -> Vec<u8> {
        let mut response = json!({"uid": self.uid, "allowed": true});
        if !patch.is_empty() {
            let patch = serde_json::to_vec(patch).unwrap_or_default();
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
        }
        add_warnings(&mut response, warnings);
        self.wrap(response)
    }

    /// The answer refusing the pod, with `message` for whoever created it.
    pub fn deny(&self, code: u16, message: &str, warnings: &[String]) -> Vec<u8> {
        let mut response = json!({"uid": self.uid, "allowed": false,
            "status": {"code": code, "message": message}});
        add_warnings(&mut response, warnings);
        self.wrap(response)
    }

    fn wrap(&self, response: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": self.api_version,
            "kind": "AdmissionReview",
            "response": response,
        }))
        .unwrap_or_default()
    }
}

fn add_warnings(response: &mut Value, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    let lines: Vec<String> = warnings
        .iter()
        .map(|w| {
            let line: String = w
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let line = format!("keyless webhook: {line}");
            match line.char_indices().nth(MAX_WARNING) {
                Some((cut, _)) => line[..cut].to_owned(),
                None => line,
            }
        })
        .collect();
    response["warnings"] = json!(lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(operation: &str) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": operation, "namespace": "gitlab",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {}},
        }})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reviews_are_read_and_answered_as_the_api_server_expects() {
        let r = parse(&review("CREATE")).unwrap();
        assert!(r.is_pod_creation());
        assert_eq!(r.pod_namespace(), "gitlab");
        let answer: Value = serde_json::from_slice(&r.allow(
            &[json!({"op": "add", "path": "/spec/volumes", "value": []})],
            &["a\nb".into(), "x".repeat(400)],
        ))
        .unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            patch,
            br#"[{"op":"add","path":"/spec/volumes","value":[]}]"#
        );
        assert_eq!(answer["response"]["warnings"][0], "keyless webhook: a b");
        assert_eq!(
            answer["response"]["warnings"][1].as_str().unwrap().len(),
            256
        );
        let none: Value = serde_json::from_slice(&r.allow(&[], &[])).unwrap();
        assert!(
            none["response"].get("patch").is_none() && none["response"].get("warnings").is_none()
        );
        let denied: Value = serde_json::from_slice(&r.deny(500, "no", &[])).unwrap();
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(denied["response"]["status"]["message"], "no");
        assert!(!parse(&review("UPDATE")).unwrap().is_pod_creation());
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (body, why) in [
            (&b"not json"[..], "expected"),
            (br#"{"kind": "Pod"}"#, "AdmissionReview"),
            (br#"{"kind": "AdmissionReview", "apiVersion": "v2"}"#, "admission.k8s.io/v1"),
            (br#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}"#, "request"),
            (br#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}"#, "uid"),
            (br#"[1, 2]"#, "expected"),
        ] {
            let err = parse(body).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
