//! Inside a Kubernetes pod that has no role credentials at all: whether its service account
//! asks for one, in which case the pod was started without the webhook's mutation (created
//! while the webhook was down, or before the annotation) and only a restart gives it its
//! token. `keyless webhook` reports such pods from outside; this says it from inside.

use std::path::Path;

use keyless_webhook::{ROLE_ARN, ServiceAccount};

use super::report::{Check, Status};
use super::token;

/// Where the kubelet puts the pod's own service-account token and namespace.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const STEP: &str = "pod identity";

/// Who the pod runs as, from its Kubernetes service-account token (unverified: this is a
/// diagnosis, not an authorization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodAccount {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// The service account of the pod this runs in; `None` outside a pod.
pub(crate) fn pod_account(dir: &Path) -> Option<PodAccount> {
    let token = std::fs::read_to_string(dir.join("token")).ok()?;
    let claims = token::decode_claims(&token).ok()?;
    let k8s = claims.all.get("kubernetes.io");
    let from_claims = k8s.and_then(|k| {
        Some(PodAccount {
            namespace: k["namespace"].as_str()?.to_owned(),
            name: k["serviceaccount"]["name"].as_str()?.to_owned(),
        })
    });
    // Older, secret-based tokens: `system:serviceaccount:NS:NAME`.
    from_claims.or_else(|| {
        let sub = claims
            .sub
            .as_deref()?
            .strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = sub.split_once(':')?;
        Some(PodAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    })
}

/// The check for `pod`, given what reading its service account from the API gave.
pub(crate) fn pod_check(pod: &PodAccount, read: Result<Option<ServiceAccount>, String>) -> Check {
    let who = format!("{}/{}", pod.namespace, pod.name);
    let restart = format!(
        "restart the pod so that the webhook mutates it (kubectl -n {} rollout restart deployment/NAME, or delete the pod); `keyless webhook` must be running and this namespace not excluded from it",
        pod.namespace
    );
    match read {
        Ok(Some(account)) => match account.annotation(ROLE_ARN) {
            Some(role) => Check::new(
                STEP,
                Status::Fail,
                format!(
                    "this pod's service account {who} asks for {role} ({}), but the pod has no web-identity token: it was created without the webhook's mutation (while the webhook was down, or before the annotation)",
                    ROLE_ARN
                ),
            )
            .hint(restart),
            None => Check::new(STEP, Status::Info, format!("this pod's service account {who} asks for no role (no {} annotation)", ROLE_ARN))
                .hint(format!("to give the pod a role: kubectl -n {} annotate serviceaccount {} {}=arn:aws:iam::ACCOUNT:role/NAME, then restart the pod", pod.namespace, pod.name, ROLE_ARN)),
        },
        Ok(None) => Check::new(STEP, Status::Warn, format!("this pod's service account {who} does not exist any more")),
        Err(e) => Check::new(
            STEP,
            Status::Warn,
            format!("this pod runs as service account {who} and has no role credentials; cannot read the service account to say whether it asks for a role: {e}"),
        )
        .hint(format!(
            "if `kubectl -n {} get serviceaccount {} -o yaml` shows {}, {restart}",
            pod.namespace,
            pod.name,
            ROLE_ARN
        )),
    }
}

/// The check inside a pod without role credentials; `None` outside a pod.
pub(crate) async fn check() -> Option<Check> {
    let pod = pod_account(Path::new(SERVICE_ACCOUNT_DIR))?;
    let kubeconfig = crate::tools::client::env_nonempty("KUBECONFIG")
        .and_then(|list| std::env::split_paths(&list).next())
        .filter(|p| !p.as_os_str().is_empty());
    let read = match keyless_k8s::client(kubeconfig.as_deref()).await {
        Ok(client) => keyless_k8s::get_service_account(client, &pod.namespace, &pod.name)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Some(pod_check(&pod, read))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!("{}.{}.sig", b64(&json!({"alg": "RS256"})), b64(&claims))
    }

    #[test]
    fn a_pod_of_an_annotated_account_without_its_token_is_told_to_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), jwt(json!({
            "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:gitlab:gitlab-webservice",
            "kubernetes.io": {"namespace": "gitlab", "serviceaccount": {"name": "gitlab-webservice", "uid": "u"}}}))).unwrap();
        let pod = pod_account(dir.path()).unwrap();
        assert_eq!(
            pod,
            PodAccount {
                namespace: "gitlab".into(),
                name: "gitlab-webservice".into()
            }
        );
        let account = ServiceAccount::from_object(
            &json!({"metadata": {"namespace": "gitlab", "name": "gitlab-webservice",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::000000000000:role/web"}}}),
        )
        .unwrap();
        let check = pod_check(&pod, Ok(Some(account)));
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .message
                .contains("asks for arn:aws:iam::000000000000:role/web"),
            "{}",
            check.message
        );
        assert!(check.hint.unwrap().starts_with("restart the pod"));

        let plain = ServiceAccount::from_object(
            &json!({"metadata": {"namespace": "gitlab", "name": "gitlab-webservice"}}),
        )
        .unwrap();
        assert_eq!(pod_check(&pod, Ok(Some(plain))).status, Status::Info);
        let forbidden = pod_check(&pod, Err("403 Forbidden".into()));
        assert_eq!(forbidden.status, Status::Warn);
        assert!(forbidden.hint.unwrap().contains("restart the pod"));
    }

    #[test]
    fn old_tokens_name_the_account_in_sub_and_outside_a_pod_there_is_no_check() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pod_account(dir.path()), None);
        std::fs::write(
            dir.path().join("token"),
            jwt(json!({"sub": "system:serviceaccount:ci:runner"})),
        )
        .unwrap();
        assert_eq!(
            pod_account(dir.path()).unwrap(),
            PodAccount {
                namespace: "ci".into(),
                name: "runner".into()
            }
        );
    }
}
