//! Web identity tokens as STS sees them: the [`TokenVerifier`] seam STS checks them through
//! (a [`KeyChain`] of the server's key sources in production, doubles in tests), and what a
//! verified token says ([`WebToken`]): its subject, audience, the claims the trust policy's
//! condition keys read, and its session tags.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html#id_session-tags_adding-assume-role-idp>

use std::pin::Pin;

use keyless_iam::ProviderIdentity;
use keyless_oidc::{Expectations, KeyChain, KubernetesClaims, VerifiedToken};
use keyless_types::pod_tags::PodFacts;

use crate::StsError;

/// The claim that carries session tags in a web identity token.
const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";

/// What a verified web identity token says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebToken {
    /// `sub`.
    pub subject: String,
    /// The audience that matched one of the provider's client ids.
    pub audience: String,
    /// Every claim with a string value or a list of strings, by claim name (`sub`, `aud`,
    /// `amr`, `kubernetes.io/...` flattened are not included), for the trust policy's keys.
    pub claims: Vec<(String, Vec<String>)>,
    /// Session tags from the `https://aws.amazon.com/tags` claim's `principal_tags`, less
    /// those `pod_tags` names.
    pub session_tags: Vec<(String, String)>,
    /// The pod's session tags, from the `kubernetes.io` claims.
    pub pod_tags: Vec<(String, String)>,
}

/// Checks web identity tokens for a provider: signature against the issuer's keys, issuer,
/// audience, expiry. Implemented by [`KeyChain`], and by doubles in tests.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` as issued by `provider`, at `now`.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        provider: &'a ProviderIdentity,
        now: i64,
    ) -> Pin<Box<dyn Future<Output = Result<WebToken, StsError>> + Send + 'a>>;
}

/// Session tags from the token's tag claim: `{"principal_tags": {"k": ["v"]}}`.
pub fn session_tags(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let Some(tags) = claims
        .get(TAGS_CLAIM)
        .and_then(|t| t.get("principal_tags"))
        .and_then(|t| t.as_object())
    else {
        return Vec::new();
    };
    tags.iter()
        .filter_map(|(key, value)| {
            let value = match value {
                serde_json::Value::Array(values) => values.first()?.as_str()?,
                serde_json::Value::String(s) => s,
                _ => return None,
            };
            Some((key.clone(), value.to_owned()))
        })
        .collect()
}

/// Session tags naming the pod of a Kubernetes service-account token, from its `kubernetes.io`
/// claim (namespace, service account, and the pod a bound token names), with EKS Pod
/// Identity's names ([`keyless_types::pod_tags`]); none for a token without that claim.
fn pod_session_tags(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let Some(KubernetesClaims {
        namespace: Some(namespace),
        service_account: Some(service_account),
        pod_name,
        pod_uid,
    }) = KubernetesClaims::of(claims)
    else {
        return Vec::new();
    };
    PodFacts {
        cluster: None,
        namespace,
        service_account,
        pod_name,
        pod_uid,
    }
    .tags()
}

type Tags = Vec<(String, String)>;

/// The session tags of a web identity: the token's tag claim, and the pod's tags from its
/// `kubernetes.io` claim, which win over tag claims of the same names (they are the cluster's
/// facts about the pod).
fn web_session_tags(claims: &serde_json::Map<String, serde_json::Value>) -> (Tags, Tags) {
    use keyless_types::pod_tags::{NAMESPACE_TAG, POD_NAME_TAG, POD_UID_TAG, SERVICE_ACCOUNT_TAG};
    let pod = pod_session_tags(claims);
    let mut tags = session_tags(claims);
    if !pod.is_empty() {
        // A service-account token's pod is the cluster's to say: a tag claim names none (not
        // even the pod of an unbound token); a cluster name it may give.
        let facts = [
            NAMESPACE_TAG,
            SERVICE_ACCOUNT_TAG,
            POD_NAME_TAG,
            POD_UID_TAG,
        ];
        tags.retain(|(key, _)| !facts.iter().any(|f| f.eq_ignore_ascii_case(key)));
    }
    (tags, pod)
}

impl WebToken {
    /// What `verified` says, for STS.
    pub fn of(verified: VerifiedToken) -> Self {
        let mut claims: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in verified.string_claims() {
            match claims.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value.to_owned()),
                None => claims.push((name.to_owned(), vec![value.to_owned()])),
            }
        }
        let (session_tags, pod_tags) = web_session_tags(&verified.claims);
        WebToken {
            session_tags,
            pod_tags,
            subject: verified.subject,
            audience: verified.audience,
            claims,
        }
    }
}

/// The provider's issuer and client ids checked against the chain's key sources; each
/// source's attempt is in the log line of a refusal.
impl TokenVerifier for KeyChain {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        provider: &'a ProviderIdentity,
        now: i64,
    ) -> Pin<Box<dyn Future<Output = Result<WebToken, StsError>> + Send + 'a>> {
        Box::pin(async move {
            let expect = Expectations::new(provider.url.as_str(), &provider.client_ids);
            let checked = KeyChain::verify(self, token, &provider.url, &expect, now).await;
            match checked.result {
                Ok(verified) => {
                    tracing::debug!(provider = %provider.arn, attempts = %checked.attempts, "web identity token verified");
                    Ok(WebToken::of(verified))
                }
                Err(e) => {
                    tracing::info!(provider = %provider.arn, error = %e, attempts = %checked.attempts, "web identity token refused");
                    Err(StsError::from(&e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_service_account_token_tags_the_session_with_its_pod() {
        let token = claims(serde_json::json!({
            "sub": "system:serviceaccount:gitlab:registry",
            "kubernetes.io": {
                "namespace": "gitlab",
                "serviceaccount": {"name": "registry", "uid": "sa-1"},
                "pod": {"name": "registry-0", "uid": "pod-1"}
            },
            TAGS_CLAIM: {"principal_tags": {"team": ["ci"], "kubernetes-namespace": ["forged"]}}
        }));
        let (passed, pod) = web_session_tags(&token);
        assert_eq!(passed, [("team".to_owned(), "ci".to_owned())]);
        let names: Vec<&str> = pod.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-pod-name",
                "kubernetes-pod-uid"
            ]
        );
        assert_eq!(pod[0].1, "gitlab");
        assert_eq!(pod[3].1, "pod-1");
        // The claim's own cluster name is kept; a forged namespace in any case is not.
        let clustered = claims(serde_json::json!({
            "kubernetes.io": {"namespace": "gitlab", "serviceaccount": {"name": "registry"}},
            TAGS_CLAIM: {"principal_tags": {"eks-cluster-name": ["main"], "KUBERNETES-NAMESPACE": ["x"]}}
        }));
        assert_eq!(
            web_session_tags(&clustered).0,
            [("eks-cluster-name".to_owned(), "main".to_owned())]
        );
        // A token bound to no pod names its service account only, and its tag claim cannot
        // name a pod for it; a token without the claim, none.
        let unbound = claims(serde_json::json!({
            "kubernetes.io": {"namespace": "gitlab", "serviceaccount": {"name": "registry"}},
            TAGS_CLAIM: {"principal_tags": {"kubernetes-pod-uid": ["someone-else"]}}
        }));
        assert_eq!(
            web_session_tags(&unbound),
            (vec![], web_session_tags(&unbound).1)
        );
        assert_eq!(web_session_tags(&unbound).1.len(), 2);
        let other = claims(serde_json::json!({
            TAGS_CLAIM: {"principal_tags": {"kubernetes-namespace": ["kept"]}}
        }));
        assert_eq!(
            web_session_tags(&other),
            (
                vec![("kubernetes-namespace".to_owned(), "kept".to_owned())],
                vec![]
            )
        );
    }
}
