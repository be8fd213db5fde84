//! What the metadata service does besides answering: a pod's credentials as a value (the seam
//! for other credential endpoints, such as EKS Pod Identity's container credentials), and the
//! background work that keeps credentials ready: prefetch when a pod appears, drop when it
//! leaves, refresh before expiry.
//!
//! <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html> (the container
//! credentials endpoint another listener may serve from [`Imds::pod_credentials`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::cache::CacheKey;
use crate::credentials::Credentials;
use crate::pods::{Pod, PodEvent};
use crate::roles::{Resolution, RoleTarget};
use crate::{AssumeError, Imds};

/// The outcome of asking for a pod's credentials.
#[derive(Debug, Clone)]
pub enum CredentialLookup {
    /// The pod's role and credentials.
    Granted {
        /// The role.
        role: RoleTarget,
        /// Its credentials, with more than 5 minutes left (or less while STS is failing).
        credentials: Arc<Credentials>,
    },
    /// The pod has no role.
    NoRole,
    /// The pod asks for a role it may not have; `reason` is for the log.
    Forbidden {
        /// The role as the pod wrote it.
        role: String,
        /// Why it is refused.
        reason: String,
    },
    /// STS gave no credentials and none are cached.
    Failed {
        /// The role.
        role: RoleTarget,
        /// Why.
        error: AssumeError,
    },
}

impl Imds {
    /// The role of `pod`, under the namespace rules.
    pub fn resolve(&self, pod: &Pod) -> Resolution {
        let namespace = self.inner.index.namespace(&pod.namespace);
        self.inner.resolver.resolve(pod, namespace.as_deref())
    }

    /// The credentials of `pod`'s role, from the cache or STS.
    pub async fn pod_credentials(&self, pod: &Pod) -> CredentialLookup {
        let role = match self.resolve(pod) {
            Resolution::Role(role) => role,
            Resolution::NoRole => return CredentialLookup::NoRole,
            Resolution::Forbidden { role, reason } => {
                return CredentialLookup::Forbidden { role, reason };
            }
        };
        self.role_credentials(pod, role).await
    }

    /// The credentials of `role`, already resolved for `pod`, from the cache or STS.
    pub(crate) async fn role_credentials(&self, pod: &Pod, role: RoleTarget) -> CredentialLookup {
        match self.inner.cache.get(&CacheKey::new(&pod.uid, &role)).await {
            Ok(credentials) => CredentialLookup::Granted { role, credentials },
            Err(error) => CredentialLookup::Failed { role, error },
        }
    }

    /// Starts fetching `pod`'s credentials, if it has a role, so that its first request finds
    /// them; drops what is cached for roles it no longer has.
    pub fn prefetch(&self, pod: &Pod) {
        let cache = &self.inner.cache;
        if let Some(text) = pod.annotations.get(crate::REVOKED_AT_ANNOTATION) {
            match keyless_types::time::parse_iso8601(text.trim()) {
                Some(at) => cache.forget_fetched_before(&pod.uid, at),
                None => tracing::warn!(
                    pod = %pod.name, namespace = %pod.namespace, value = %text,
                    "imds: {} is not a UTC time like 2026-12-07T13:00:00Z; ignored",
                    crate::REVOKED_AT_ANNOTATION
                ),
            }
        }
        match self.resolve(pod) {
            Resolution::Role(role) => {
                let key = CacheKey::new(&pod.uid, &role);
                cache.retain_keys(|k| k.pod_uid != pod.uid || *k == key);
                let (cache, index) = (cache.clone(), self.inner.index.clone());
                tokio::spawn(async move {
                    // The pod may be gone by the time this runs, or while STS answers: its
                    // removal must not be undone by a fetch that outlived it.
                    if index.by_uid(&key.pod_uid).is_none() {
                        return;
                    }
                    if let Err(error) = cache.prefetch(&key).await {
                        tracing::warn!(role = %key.role_arn, pod_uid = %key.pod_uid, %error, "imds: prefetch failed");
                    }
                    if index.by_uid(&key.pod_uid).is_none() {
                        cache.forget_pod(&key.pod_uid);
                    }
                });
            }
            Resolution::NoRole | Resolution::Forbidden { .. } => cache.forget_pod(&pod.uid),
        }
    }

    /// Keeps credentials ready, forever (spawn it; abort it to stop): prefetches those of every
    /// pod now and of each pod that appears or changes, drops those of pods that leave, and
    /// every `refresh_every` renews those that are due.
    pub async fn run_background(self, refresh_every: Duration) {
        let index = self.inner.index.clone();
        let mut events = index.subscribe();
        for pod in index.pods() {
            self.prefetch(&pod);
        }
        let refresher = self.inner.cache.clone().run_refresher(refresh_every);
        tokio::pin!(refresher);
        loop {
            tokio::select! {
                () = &mut refresher => return,
                event = events.recv() => match event {
                    Ok(PodEvent::Upserted(pod)) => self.prefetch(&pod),
                    Ok(PodEvent::Removed(pod)) => self.inner.cache.forget_pod(&pod.uid),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "imds: pod events lagged; resyncing the cache");
                        let pods = index.pods();
                        let uids: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
                        self.inner.cache.retain_keys(|k| uids.contains(k.pod_uid.as_str()));
                        for pod in &pods {
                            self.prefetch(pod);
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keyless_types::{AccountId, FixedClock};

    use super::*;
    use crate::credentials::MemoryAssumer;
    use crate::pods::PodIndex;
    use crate::pods::tests::{namespace, pod};
    use crate::roles::{PERMITTED_ANNOTATION, ROLE_ANNOTATION};
    use crate::tokens::TokenKey;
    use crate::{ImdsConfig, TokenMode};

    fn imds() -> (Imds, Arc<MemoryAssumer>) {
        let clock = Arc::new(FixedClock::at_unix(1_795_654_800));
        let assumer = Arc::new(MemoryAssumer::new(clock.clone()));
        let config = ImdsConfig {
            tokens: TokenMode::Optional,
            ..ImdsConfig::new(AccountId::parse("123456789012").unwrap(), "us-east-1")
        };
        let imds = Imds::new(
            config,
            PodIndex::new(),
            assumer.clone(),
            TokenKey::from_bytes(b"k"),
            clock,
        )
        .unwrap();
        (imds, assumer)
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never happened");
    }

    #[tokio::test]
    async fn the_lookup_seam_tells_every_outcome() {
        let (imds, assumer) = imds();
        let web = pod("u1", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, "app")]);
        match imds.pod_credentials(&web).await {
            CredentialLookup::Granted { role, credentials } => {
                assert_eq!(role.name, "app");
                assert!(credentials.access_key_id.starts_with("ASIA"));
            }
            other => panic!("{other:?}"),
        }
        let bare = pod("u2", "10.0.0.2", "shop", "bare", &[]);
        assert!(matches!(
            imds.pod_credentials(&bare).await,
            CredentialLookup::NoRole
        ));
        imds.index()
            .upsert_namespace(namespace("shop", &[(PERMITTED_ANNOTATION, "other")]));
        assert!(matches!(
            imds.pod_credentials(&web).await,
            CredentialLookup::Forbidden { .. }
        ));
        imds.index().upsert_namespace(namespace("shop", &[]));
        let other = pod("u3", "10.0.0.3", "shop", "x", &[(ROLE_ANNOTATION, "app")]);
        assumer.set_failure(Some(AssumeError::Unavailable("down".into())));
        assert!(matches!(
            imds.pod_credentials(&other).await,
            CredentialLookup::Failed { .. }
        ));
    }

    #[tokio::test]
    async fn pods_get_credentials_before_they_ask_and_lose_them_when_they_leave() {
        let (imds, assumer) = imds();
        imds.index().upsert_pod(pod(
            "u0",
            "10.0.0.9",
            "shop",
            "early",
            &[(ROLE_ANNOTATION, "app")],
        ));
        let background = tokio::spawn(imds.clone().run_background(Duration::from_secs(3600)));
        until(|| imds.cache().len() == 1 && assumer.calls() == 1).await;
        imds.index().upsert_pod(pod(
            "u1",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, "app")],
        ));
        until(|| assumer.calls() == 2).await;
        // A pod without a role costs nothing.
        imds.index()
            .upsert_pod(pod("u2", "10.0.0.2", "shop", "bare", &[]));
        // A changed role replaces the cached one.
        imds.index().upsert_pod(pod(
            "u1",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, "other")],
        ));
        until(|| assumer.calls() == 3).await;
        until(|| imds.cache().len() == 2).await;
        imds.index().remove_pod("u1");
        until(|| imds.cache().len() == 1).await;
        imds.index().remove_pod("u0");
        until(|| imds.cache().is_empty()).await;
        background.abort();
    }
}
