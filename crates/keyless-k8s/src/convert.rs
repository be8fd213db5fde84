//! Kubernetes `Pod` and `Namespace` objects into the index's [`Pod`] and [`Namespace`], by the
//! rules of the pods file ([`keyless_imds::parse_pod_list`]).
//!
//! <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/>
//!
//! Both go through keyless-imds's own rule ([`keyless_imds::pod_from_object`]) as JSON, so the
//! watch and the pods file cannot disagree on which pods are indexed: one with a `status.podIP`,
//! not `Succeeded` or `Failed`, not terminating and not on the host network.

use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::{Namespace, Pod};

/// `object` as the index wants it: `Ok(None)` when it is not to be indexed (no address yet,
/// finished, terminating, host network).
pub(crate) fn pod(object: k8s::Pod) -> Result<Option<Pod>, String> {
    let json = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    keyless_imds::pod_from_object(&json)
}

/// `object` as the index wants it.
pub(crate) fn namespace(object: k8s::Namespace) -> Result<Namespace, String> {
    let json = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    keyless_imds::namespace_from_object(&json)
}

/// `namespace/name` of an object, for logs.
pub(crate) fn display_name(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    match (&metadata.namespace, &metadata.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => String::from("?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A pod object with `metadata`, `spec` and `status` as given (each may be `null`).
    fn object(metadata: Value, spec: Value, status: Value) -> k8s::Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata, "spec": spec, "status": status,
        }))
        .unwrap()
    }

    /// What the pods file makes of `object`: the same shape as [`pod`]'s answer.
    fn pods_file(object: &k8s::Pod) -> Result<Option<Pod>, String> {
        let json = serde_json::to_vec(object).unwrap();
        match keyless_imds::parse_pod_list(&json) {
            Ok(list) if list.skipped == 1 && list.pods.is_empty() => Ok(None),
            Ok(mut list) if list.skipped == 0 && list.pods.len() == 1 => Ok(list.pods.pop()),
            Ok(list) => panic!("one pod became {list:?}"),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn indexes_exactly_the_pods_the_pods_file_indexes() {
        let meta = json!({"name": "web", "namespace": "shop", "uid": "u1",
                          "annotations": {"iam.amazonaws.com/role": "reader"}});
        let running = json!({"phase": "Running", "podIP": "10.0.0.1"});
        let cases = [
            (
                "running",
                object(
                    meta.clone(),
                    json!({"serviceAccountName": "web"}),
                    running.clone(),
                ),
            ),
            (
                "no spec",
                object(meta.clone(), Value::Null, running.clone()),
            ),
            ("no status", object(meta.clone(), json!({}), Value::Null)),
            (
                "pending",
                object(meta.clone(), json!({}), json!({"phase": "Pending"})),
            ),
            (
                "empty ip",
                object(meta.clone(), json!({}), json!({"podIP": ""})),
            ),
            (
                "ipv6",
                object(meta.clone(), json!({}), json!({"podIP": "fd00::5"})),
            ),
            (
                "succeeded",
                object(
                    meta.clone(),
                    json!({}),
                    json!({"phase": "Succeeded", "podIP": "10.0.0.1"}),
                ),
            ),
            (
                "failed",
                object(
                    meta.clone(),
                    json!({}),
                    json!({"phase": "Failed", "podIP": "10.0.0.1"}),
                ),
            ),
            (
                "host network",
                object(meta.clone(), json!({"hostNetwork": true}), running.clone()),
            ),
            (
                "pod network",
                object(meta.clone(), json!({"hostNetwork": false}), running.clone()),
            ),
            (
                "finished host pod without ip",
                object(
                    meta.clone(),
                    json!({"hostNetwork": true}),
                    json!({"phase": "Failed"}),
                ),
            ),
            (
                "bad ip",
                object(meta.clone(), json!({}), json!({"podIP": "10.0.0.300"})),
            ),
            (
                "bad ip but finished",
                object(
                    meta.clone(),
                    json!({}),
                    json!({"phase": "Failed", "podIP": "x"}),
                ),
            ),
            (
                "old service account field",
                object(
                    meta.clone(),
                    json!({"serviceAccount": "old"}),
                    running.clone(),
                ),
            ),
            (
                "empty name wins over the old field",
                object(
                    meta.clone(),
                    json!({"serviceAccountName": "", "serviceAccount": "old"}),
                    running.clone(),
                ),
            ),
            (
                "terminating",
                object(
                    json!({"name": "web", "namespace": "shop", "uid": "u1",
                           "deletionTimestamp": "2026-11-26T02:00:00Z"}),
                    json!({}),
                    running.clone(),
                ),
            ),
            (
                "terminating with a bad ip",
                object(
                    json!({"name": "web", "uid": "u1", "deletionTimestamp": "2026-11-26T02:00:00Z"}),
                    json!({}),
                    json!({"podIP": "x"}),
                ),
            ),
            (
                "no namespace",
                object(
                    json!({"name": "web", "uid": "u1"}),
                    json!({}),
                    running.clone(),
                ),
            ),
            (
                "empty namespace",
                object(
                    json!({"name": "web", "namespace": "", "uid": "u1"}),
                    json!({}),
                    running.clone(),
                ),
            ),
            (
                "no uid",
                object(json!({"name": "web"}), json!({}), running.clone()),
            ),
            (
                "empty name",
                object(json!({"name": "", "uid": "u1"}), json!({}), running.clone()),
            ),
            (
                "no uid and finished",
                object(
                    json!({"name": "web"}),
                    json!({}),
                    json!({"phase": "Failed"}),
                ),
            ),
        ];
        for (case, object) in cases {
            let expected = pods_file(&object);
            let got = pod(object);
            match (&got, &expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{case}"),
                (Err(got), Err(expected)) => {
                    assert!(
                        expected.ends_with(got.as_str()),
                        "{case}: {got} / {expected}"
                    );
                }
                _ => panic!("{case}: {got:?} but the pods file says {expected:?}"),
            }
        }
    }

    #[test]
    fn a_running_pod_keeps_what_role_resolution_needs() {
        let got = pod(object(
            json!({"name": "web", "namespace": "shop", "uid": "u1", "annotations": {"k": "v"}}),
            json!({"serviceAccountName": "web"}),
            json!({"phase": "Running", "podIP": "10.0.0.1"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (got.namespace.as_str(), got.name.as_str(), got.uid.as_str()),
            ("shop", "web", "u1")
        );
        assert_eq!(got.service_account, "web");
        assert_eq!(got.annotations["k"], "v");
        assert_eq!(got.ip, "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
    }

    #[test]
    fn namespaces_keep_their_annotations() {
        let object: k8s::Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": "shop-.*"}},
        }))
        .unwrap();
        let got = namespace(object).unwrap();
        assert_eq!(got.name, "shop");
        assert_eq!(got.annotations["iam.amazonaws.com/permitted"], "shop-.*");
        let nameless: k8s::Namespace = serde_json::from_value(json!({"metadata": {}})).unwrap();
        assert_eq!(namespace(nameless).unwrap_err(), "has no `metadata.name`");
    }
}
