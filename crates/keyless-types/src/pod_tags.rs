//! The session tags that name the pod a session was issued for, with the names EKS Pod Identity
//! gives them, so that one role can serve many namespaces by ABAC
//! (`arn:aws:s3:::uploads/${aws:PrincipalTag/kubernetes-namespace}/*`) and the audit trail says
//! which pod made a request. The metadata agent and container credentials pass them on
//! `AssumeRole`; web-identity sessions take them from the token's `kubernetes.io` claims.
//!
//! <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html>

/// The cluster's name, when one is configured.
pub const CLUSTER_NAME_TAG: &str = "eks-cluster-name";
/// The pod's namespace.
pub const NAMESPACE_TAG: &str = "kubernetes-namespace";
/// The pod's service account.
pub const SERVICE_ACCOUNT_TAG: &str = "kubernetes-service-account";
/// The pod's name.
pub const POD_NAME_TAG: &str = "kubernetes-pod-name";
/// The pod's UID.
pub const POD_UID_TAG: &str = "kubernetes-pod-uid";

/// The longest tag value STS takes; longer facts are not tagged rather than cut.
const MAX_VALUE_LEN: usize = 256;

/// What names a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFacts<'a> {
    /// The cluster's name, if configured.
    pub cluster: Option<&'a str>,
    /// The pod's namespace.
    pub namespace: &'a str,
    /// Its service account.
    pub service_account: &'a str,
    /// Its name, if known (a token bound to no pod names none).
    pub pod_name: Option<&'a str>,
    /// Its UID, if known.
    pub pod_uid: Option<&'a str>,
}

impl PodFacts<'_> {
    /// The session tags, in EKS Pod Identity's order; empty facts and values STS would refuse
    /// (over 256 characters) are left out.
    pub fn tags(&self) -> Vec<(String, String)> {
        [
            (CLUSTER_NAME_TAG, self.cluster),
            (NAMESPACE_TAG, Some(self.namespace)),
            (SERVICE_ACCOUNT_TAG, Some(self.service_account)),
            (POD_NAME_TAG, self.pod_name),
            (POD_UID_TAG, self.pod_uid),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            let value = value.filter(|v| !v.is_empty() && v.len() <= MAX_VALUE_LEN)?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_named_by_five_tags_and_missing_facts_by_none() {
        let facts = PodFacts {
            cluster: Some("main"),
            namespace: "gitlab",
            service_account: "registry",
            pod_name: Some("registry-0"),
            pod_uid: Some("8d6f7a3c-0000-4000-8000-000000000001"),
        };
        let tags = facts.tags();
        let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "eks-cluster-name",
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-pod-name",
                "kubernetes-pod-uid"
            ]
        );
        let bare = PodFacts {
            cluster: None,
            pod_name: None,
            pod_uid: Some(""),
            ..facts
        };
        assert_eq!(
            bare.tags(),
            [
                ("kubernetes-namespace".to_owned(), "gitlab".to_owned()),
                (
                    "kubernetes-service-account".to_owned(),
                    "registry".to_owned()
                )
            ]
        );
        let long = "a".repeat(257);
        let too_long = PodFacts {
            pod_name: Some(&long),
            ..bare
        };
        assert_eq!(too_long.tags().len(), 2);
    }
}
