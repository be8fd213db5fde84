//! `Imds`, the metadata service's HTTP handler: IMDSv2 session tokens, a pod's role and its
//! credentials, and the few instance facts SDKs ask for (region, zone, instance id, identity
//! document). The binary accepts connections and passes each request with its peer address.
//!
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html>,
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>
//!
//! Every answer carries `Server: EC2ws` and is `text/plain`, as EC2's are. Refusals are bare
//! (`403 Forbidden`, `500 Internal Server Error`); why goes to the log.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, SERVER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use keyless_types::{AccountId, Clock};

use crate::cache::{CacheConfig, CredentialCache};
use crate::credentials::RoleAssumer;
use crate::documents::{self, Identity};
use crate::pods::{Pod, PodIndex};
use crate::roles::{Resolution, RoleConfig, RoleResolver};
use crate::tokens::{MAX_TOKEN_TTL, MIN_TOKEN_TTL, TokenBinding, TokenKey};
use crate::{CredentialLookup, ImdsError};

/// The header carrying an IMDSv2 session token.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// The header asking for (and answering) a token's lifetime in seconds.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The path of IMDSv2 session tokens.
pub const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials";

/// Whether requests need an IMDSv2 session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// IMDSv1 and v2: a request without a token is answered (a bad token is still refused).
    #[default]
    Optional,
    /// IMDSv2 only: a request without a token is refused with 401.
    Required,
}

/// What the metadata service needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsConfig {
    /// The region of `placement/region` and the identity document.
    pub region: String,
    /// How roles are resolved (account, default role, namespace restrictions).
    pub roles: RoleConfig,
    /// How credentials are fetched and kept.
    pub cache: CacheConfig,
    /// Whether requests need an IMDSv2 session token.
    pub tokens: TokenMode,
    /// How long a request from an unknown address waits for the pod source to tell of its pod.
    pub unknown_pod_wait: Duration,
    /// The `instance-type` answered.
    pub instance_type: String,
    /// The `instance-id` answered; by default each pod gets its own, made from its UID.
    pub instance_id: Option<String>,
}

impl ImdsConfig {
    /// Roles of `account_id`, in `region`; IMDSv1 allowed; unknown pods waited for 2 seconds.
    pub fn new(account_id: AccountId, region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            roles: RoleConfig::new(account_id),
            cache: CacheConfig::default(),
            tokens: TokenMode::Optional,
            unknown_pod_wait: Duration::from_secs(2),
            instance_type: "keyless.pod".into(),
            instance_id: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: ImdsConfig,
    pub(crate) index: PodIndex,
    pub(crate) resolver: RoleResolver,
    pub(crate) cache: CredentialCache,
    pub(crate) tokens: TokenKey,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The metadata service. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct Imds {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Imds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imds")
            .field("config", &self.inner.config)
            .field("index", &self.inner.index)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

/// A text/plain answer with EC2's `Server` header.
fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static("EC2ws"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// An answer that is only its status.
fn status(status: StatusCode) -> Response<Full<Bytes>> {
    reply(status, status.canonical_reason().unwrap_or(""))
}

impl Imds {
    /// The service over the pods of `index`, getting credentials from `assumer` and signing
    /// session tokens with `tokens`. Fails when the configuration is invalid.
    pub fn new(
        config: ImdsConfig,
        index: PodIndex,
        assumer: Arc<dyn RoleAssumer>,
        tokens: TokenKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ImdsError> {
        let valid_region = !config.region.is_empty()
            && config
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_region {
            return Err(ImdsError::Config(format!(
                "region `{}` is not a region name",
                config.region
            )));
        }
        if !(900..=43_200).contains(&config.cache.session_seconds) {
            return Err(ImdsError::Config(format!(
                "session duration {} is not 900 to 43200 seconds",
                config.cache.session_seconds
            )));
        }
        let resolver = RoleResolver::new(config.roles.clone())?;
        let cache = CredentialCache::new(assumer, clock.clone(), config.cache.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                index,
                resolver,
                cache,
                tokens,
                clock,
            }),
        })
    }

    /// The pods it serves.
    pub fn index(&self) -> &PodIndex {
        &self.inner.index
    }

    /// Its credential cache.
    pub fn cache(&self) -> &CredentialCache {
        &self.inner.cache
    }

    /// Its role resolver.
    pub fn resolver(&self) -> &RoleResolver {
        &self.inner.resolver
    }

    /// The pod of UID `uid`, if the pod source knows it.
    pub fn pod_by_uid(&self, uid: &str) -> Option<Arc<Pod>> {
        self.inner.index.by_uid(uid)
    }

    /// The pod on `peer`, waiting up to `unknown_pod_wait` for the pod source to tell of it.
    pub async fn find_pod(&self, peer: IpAddr) -> Option<Arc<Pod>> {
        self.inner
            .index
            .wait_for(peer.to_canonical(), self.inner.config.unknown_pod_wait)
            .await
    }

    /// Answers one request from `peer` (its body is not read).
    pub async fn handle<B>(&self, peer: IpAddr, req: Request<B>) -> Response<Full<Bytes>> {
        let peer = peer.to_canonical();
        let (method, path) = (req.method(), req.uri().path());
        let response = if path == TOKEN_PATH {
            if method == Method::PUT {
                self.put_token(peer, req.headers()).await
            } else {
                status(StatusCode::METHOD_NOT_ALLOWED)
            }
        } else if method != Method::GET && method != Method::HEAD {
            status(StatusCode::METHOD_NOT_ALLOWED)
        } else {
            let pod = self.find_pod(peer).await;
            if self.token_accepted(peer, pod.as_deref(), req.headers()) {
                self.get(peer, pod.as_deref(), path).await
            } else {
                status(StatusCode::UNAUTHORIZED)
            }
        };
        tracing::debug!(%peer, %method, path, status = response.status().as_u16(), "imds: request");
        response
    }

    /// `PUT /latest/api/token`: a token bound to the pod on `peer` (or, for an address no pod
    /// is known on, to the address alone, which no pod's request will match).
    async fn put_token(&self, peer: IpAddr, headers: &HeaderMap) -> Response<Full<Bytes>> {
        if headers.contains_key("x-forwarded-for") {
            return status(StatusCode::FORBIDDEN);
        }
        let ttl = headers
            .get(TOKEN_TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|ttl| (MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(ttl));
        let Some(ttl) = ttl else {
            return status(StatusCode::BAD_REQUEST);
        };
        let pod = self.find_pod(peer).await;
        let binding = pod
            .as_deref()
            .map_or(TokenBinding { uid: "", ip: peer }, TokenBinding::of);
        let now = self.inner.clock.unix_seconds();
        let mut response = reply(StatusCode::OK, self.inner.tokens.issue(binding, ttl, now));
        response
            .headers_mut()
            .insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
        response
    }

    /// Whether the request's token (or its lack of one) lets it through: a token issued to the
    /// pod now on `peer`, or one issued to `peer` when no pod was known there. The latter is a
    /// pod that asked before the source told of it (kube2iam issue #46); accepting it grants
    /// nothing, since whatever sends from `peer` can get a token for the pod there anyway, and
    /// botocore, aws-sdk-go and s3cmd do not retry a 401. A token issued to another pod (one
    /// that had this address before) is refused.
    fn token_accepted(&self, peer: IpAddr, pod: Option<&Pod>, headers: &HeaderMap) -> bool {
        let Some(token) = headers.get(TOKEN_HEADER) else {
            return self.inner.config.tokens == TokenMode::Optional;
        };
        let Ok(token) = token.to_str() else {
            return false;
        };
        let now = self.inner.clock.unix_seconds();
        let address_only = TokenBinding { uid: "", ip: peer };
        let tokens = &self.inner.tokens;
        pod.is_some_and(|pod| tokens.check(token, TokenBinding::of(pod), now))
            || tokens.check(token, address_only, now)
    }

    /// A `GET` (or `HEAD`) of `path`.
    async fn get(&self, peer: IpAddr, pod: Option<&Pod>, path: &str) -> Response<Full<Bytes>> {
        let config = &self.inner.config;
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        let ok = |body: String| reply(StatusCode::OK, body);
        match path {
            "/" => ok(documents::ROOT.into()),
            "/latest" => ok(documents::LATEST.into()),
            "/latest/meta-data" => ok(documents::META_DATA.into()),
            "/latest/meta-data/instance-id" => ok(self.instance_id(peer, pod)),
            "/latest/meta-data/instance-type" => ok(config.instance_type.clone()),
            "/latest/meta-data/local-ipv4" => match pod.map_or(peer, |p| p.ip) {
                IpAddr::V4(ip) => ok(ip.to_string()),
                IpAddr::V6(_) => status(StatusCode::NOT_FOUND),
            },
            "/latest/meta-data/placement" => ok(documents::PLACEMENT.into()),
            "/latest/meta-data/placement/region" => ok(config.region.clone()),
            "/latest/meta-data/placement/availability-zone" => {
                ok(documents::availability_zone(&config.region))
            }
            "/latest/meta-data/services" => ok(documents::SERVICES.into()),
            "/latest/meta-data/services/domain" => {
                ok(documents::domain(&config.roles.partition).into())
            }
            "/latest/meta-data/services/partition" => ok(config.roles.partition.clone()),
            "/latest/dynamic" => ok(documents::DYNAMIC.into()),
            "/latest/dynamic/instance-identity" => ok(documents::INSTANCE_IDENTITY.into()),
            "/latest/dynamic/instance-identity/document" => {
                let instance_id = self.instance_id(peer, pod);
                ok(documents::identity_json(&Identity {
                    account_id: config.roles.account_id.as_str(),
                    region: &config.region,
                    instance_id: &instance_id,
                    instance_type: &config.instance_type,
                    private_ip: pod.map_or(peer, |p| p.ip),
                }))
            }
            "/latest/meta-data/iam" => self.with_role(pod, |_| ok(documents::IAM.into())),
            "/latest/meta-data/iam/info" => self.with_role(pod, |role| {
                let now = self.inner.clock.unix_seconds();
                ok(documents::info_json(&role.arn, now))
            }),
            CREDENTIALS_PATH => self.with_role(pod, |role| ok(role.name.clone())),
            _ => match path
                .strip_prefix(CREDENTIALS_PATH)
                .and_then(|p| p.strip_prefix('/'))
            {
                Some(name) if !name.contains('/') => match pod {
                    Some(pod) => self.credentials(pod, name).await,
                    None => status(StatusCode::NOT_FOUND),
                },
                _ => status(StatusCode::NOT_FOUND),
            },
        }
    }

    /// The instance id of the request's pod.
    fn instance_id(&self, peer: IpAddr, pod: Option<&Pod>) -> String {
        match (&self.inner.config.instance_id, pod) {
            (Some(id), _) => id.clone(),
            (None, Some(pod)) => documents::instance_id(&pod.uid),
            (None, None) => documents::instance_id(&peer.to_string()),
        }
    }

    /// `answer(role)` if the pod has a role; 404 without one (or without a known pod), 403 if
    /// it asks for one it may not have.
    fn with_role(
        &self,
        pod: Option<&Pod>,
        answer: impl FnOnce(&crate::RoleTarget) -> Response<Full<Bytes>>,
    ) -> Response<Full<Bytes>> {
        let Some(pod) = pod else {
            return status(StatusCode::NOT_FOUND);
        };
        match self.resolve(pod) {
            Resolution::Role(role) => answer(&role),
            Resolution::NoRole => status(StatusCode::NOT_FOUND),
            Resolution::Forbidden { role, reason } => {
                forbidden(pod, &role, &reason);
                status(StatusCode::FORBIDDEN)
            }
        }
    }

    /// `/latest/meta-data/iam/security-credentials/NAME` for `pod`.
    async fn credentials(&self, pod: &Pod, name: &str) -> Response<Full<Bytes>> {
        let role = match self.resolve(pod) {
            Resolution::Role(role) if role.name == name => role,
            Resolution::Forbidden { role, reason } => {
                forbidden(pod, &role, &reason);
                return status(StatusCode::FORBIDDEN);
            }
            Resolution::Role(_) | Resolution::NoRole => return status(StatusCode::NOT_FOUND),
        };
        match self.role_credentials(pod, role).await {
            CredentialLookup::Granted { credentials, .. } => {
                reply(StatusCode::OK, documents::credentials_json(&credentials))
            }
            CredentialLookup::NoRole => status(StatusCode::NOT_FOUND),
            CredentialLookup::Forbidden { role, reason } => {
                forbidden(pod, &role, &reason);
                status(StatusCode::FORBIDDEN)
            }
            CredentialLookup::Failed { role, error } => {
                tracing::error!(
                    pod = %format_args!("{}/{}", pod.namespace, pod.name),
                    pod_uid = %pod.uid,
                    role = %role.arn,
                    %error,
                    "imds: no credentials for the pod"
                );
                status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

fn forbidden(pod: &Pod, role: &str, reason: &str) {
    tracing::warn!(
        pod = %format_args!("{}/{}", pod.namespace, pod.name),
        pod_uid = %pod.uid,
        role,
        reason,
        "imds: role refused"
    );
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
