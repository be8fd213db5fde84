//! The container credentials endpoint, as EKS Pod Identity's agent serves it: `GET
//! /v1/credentials` with the pod's service-account token in `Authorization`. The SDKs call it
//! when `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` are
//! set. The token is verified against the cluster's issuer (`keyless serve`'s own issuer
//! against the keys in memory, never fetched over the network); its namespace and service
//! account name a role through the associations given to the agent; the credentials come from
//! the metadata service's cache, assumed with the agent's identity like a pod's.
//!
//! <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html>
//! <https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html>

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use keyless_imds::{CredentialLookup, Imds, Pod, ROLE_ANNOTATION};
use keyless_oidc::{
    Expectations, HttpFetch, JwksCache, KeyChain, KeySet, KubernetesClaims, OidcError, StaticKeys,
    VerifiedToken,
};
use keyless_types::time::iso8601;
use keyless_types::{Clock, ProviderUrl};

use crate::issuer::OwnIssuer;

/// The path the SDKs call.
pub(crate) const PATH: &str = "/v1/credentials";

/// Pods' service-account tokens, mapped to roles.
pub(crate) struct PodIdentity {
    issuer: String,
    /// `issuer`, as the key sources know it.
    issuer_url: ProviderUrl,
    audiences: Vec<String>,
    keys: KeyChain,
    /// `(namespace, service account)` → role name or ARN.
    associations: HashMap<(String, String), String>,
    account_id: String,
    imds: Imds,
    clock: Arc<dyn Clock>,
}

/// `NAMESPACE/SERVICE-ACCOUNT=ROLE`, as `--association` takes it (the agent's and the
/// webhook's).
pub(crate) fn parse_association(text: &str) -> Result<keyless_webhook::Association, String> {
    keyless_webhook::parse_association(text).map_err(|e| e.to_string())
}

/// The keys tokens of `issuer` are checked with: those of `own` when `issuer` is that
/// server's own issuer (in memory, never fetched), else those of `jwks` (JSON text, never
/// fetched), else the issuer's own documents, fetched as any issuer's or with `access` (a
/// CA, a token: [`JwksCache::set_fetch`]).
pub(crate) fn key_chain(
    issuer: &str,
    own: Option<Arc<OwnIssuer>>,
    jwks: Option<&[u8]>,
    access: Option<HttpFetch>,
) -> anyhow::Result<KeyChain> {
    let chain = KeyChain::new();
    Ok(match (own.filter(|own| own.is(issuer)), jwks) {
        (Some(own), jwks) => {
            if jwks.is_some() {
                tracing::warn!(%issuer, "--pod-identity-jwks-file is ignored: the issuer is this server's own, whose keys are in memory");
            }
            chain.with(own)
        }
        (None, Some(text)) => {
            let keys = KeySet::from_jwks_json(text).context("the JWKS file")?;
            let url = ProviderUrl::read(issuer)
                .with_context(|| format!("--pod-identity-issuer `{issuer}`"))?;
            chain.with(Arc::new(StaticKeys::new([(url.key().to_owned(), keys)])))
        }
        (None, None) => {
            let cache = JwksCache::new(Arc::new(HttpFetch::new()?));
            if let Some(access) = access {
                cache.set_fetch(issuer, Arc::new(access));
            }
            chain.with(Arc::new(cache))
        }
    })
}

impl PodIdentity {
    /// Verifies tokens of `issuer` for `audiences` with `keys`.
    pub(crate) fn new(
        issuer: &str,
        audiences: Vec<String>,
        keys: KeyChain,
        associations: Vec<keyless_webhook::Association>,
        account_id: &str,
        imds: Imds,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if associations.is_empty() {
            bail!("the container credentials endpoint needs at least one --association");
        }
        let issuer_url = ProviderUrl::read(issuer)
            .with_context(|| format!("--pod-identity-issuer `{issuer}`"))?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            issuer_url,
            audiences,
            keys,
            associations: associations.into_iter().collect(),
            account_id: account_id.to_owned(),
            imds,
            clock,
        })
    }

    /// Answers `GET /v1/credentials` carrying `authorization`.
    pub(crate) async fn handle(&self, authorization: Option<&str>) -> Response<Full<Bytes>> {
        let Some(token) = authorization.map(str::trim).filter(|t| !t.is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                "Authorization header is missing",
            );
        };
        let verified = match self.verify(token).await {
            Ok(verified) => verified,
            Err(e) => {
                tracing::info!(error = %e, "container credentials: token refused");
                return error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidTokenException",
                    "the service account token is not valid",
                );
            }
        };
        let Some((namespace, account)) = service_account(&verified.subject) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "InvalidTokenException",
                "the token is not a service account's",
            );
        };
        let Some(role) = self
            .associations
            .get(&(namespace.to_owned(), account.to_owned()))
        else {
            tracing::info!(%namespace, service_account = %account, "container credentials: no association");
            return error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "no role is associated with this service account",
            );
        };
        // EKS Pod Identity's tokens are bound to their pod; an unbound one (`kubectl create
        // token`) could be used from anywhere until it expires. A pod the agent knows must be the
        // one the token names, in its namespace, under its service account.
        let Some(pod) = self.pod(&verified, namespace, account, role) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "InvalidTokenException",
                "the service account token is not bound to a pod",
            );
        };
        if let Some(known) = self.imds.pod_by_uid(&pod.uid)
            && (known.namespace != pod.namespace || known.service_account != pod.service_account)
        {
            tracing::warn!(pod_uid = %pod.uid, "container credentials: the token's pod is another service account's");
            return error(
                StatusCode::UNAUTHORIZED,
                "InvalidTokenException",
                "the service account token does not match its pod",
            );
        }
        match self.imds.pod_credentials(&pod).await {
            CredentialLookup::Granted { credentials, .. } => {
                let body = serde_json::json!({
                    "AccessKeyId": credentials.access_key_id,
                    "SecretAccessKey": credentials.secret_access_key.expose(),
                    "Token": credentials.session_token.expose(),
                    "AccountId": self.account_id,
                    "Expiration": iso8601(credentials.expiration),
                });
                json(StatusCode::OK, body.to_string())
            }
            CredentialLookup::NoRole => error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "no role is associated with this service account",
            ),
            CredentialLookup::Forbidden { role, reason } => {
                tracing::info!(%role, %reason, "container credentials: role refused");
                error(
                    StatusCode::FORBIDDEN,
                    "AccessDeniedException",
                    "the associated role may not be used here",
                )
            }
            CredentialLookup::Failed { role, error: e } => {
                tracing::warn!(role = %role.arn, error = %e, "container credentials: STS failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServerException",
                    "credentials are not available now",
                )
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<VerifiedToken, OidcError> {
        let now = self.clock.unix_seconds();
        let expect = Expectations::new(&self.issuer, &self.audiences);
        let checked = self
            .keys
            .verify(token, &self.issuer_url, &expect, now)
            .await;
        tracing::debug!(attempts = %checked.attempts, "container credentials: token checked");
        checked.result
    }

    /// The pod a bound token speaks for (its `kubernetes.io.pod` claim), carrying the
    /// associated role; `None` for an unbound token.
    fn pod(
        &self,
        token: &VerifiedToken,
        namespace: &str,
        account: &str,
        role: &str,
    ) -> Option<Pod> {
        let k8s = KubernetesClaims::of(&token.claims)?;
        Some(Pod {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            namespace: namespace.to_owned(),
            name: k8s.pod_name?.to_owned(),
            uid: k8s.pod_uid?.to_owned(),
            service_account: account.to_owned(),
            annotations: BTreeMap::from([(ROLE_ANNOTATION.to_owned(), role.to_owned())]),
        })
    }
}

/// `system:serviceaccount:NAMESPACE:NAME` → `(NAMESPACE, NAME)`.
fn service_account(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "code": code, "message": message }).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_and_subjects_are_read_strictly() {
        assert_eq!(
            parse_association("gitlab/registry=gitlab-registry"),
            Ok((
                ("gitlab".into(), "registry".into()),
                "gitlab-registry".into()
            ))
        );
        for bad in [
            "gitlab=role",
            "gitlab/registry",
            "/registry=r",
            "gitlab/=r",
            "a/b=",
        ] {
            assert!(parse_association(bad).is_err(), "{bad}");
        }
        assert_eq!(
            service_account("system:serviceaccount:gitlab:registry"),
            Some(("gitlab", "registry"))
        );
        for bad in [
            "system:serviceaccount:gitlab",
            "system:node:x",
            "system:serviceaccount::x",
            "system:serviceaccount:a:b:c",
        ] {
            assert_eq!(service_account(bad), None, "{bad}");
        }
    }
}
