//! `CredentialCache`: role credentials per pod, fetched once, refreshed before clients need new
//! ones, and served from the cache while STS is down.
//!
//! <https://docs.aws.amazon.com/sdkref/latest/guide/feature-imds-credentials.html> (SDKs cache
//! what IMDS gives and ask again some minutes before `Expiration`; so IMDS hands out credentials
//! with plenty of time left).
//!
//! The rules, with `lifetime` the credentials' duration and `remaining` their time left:
//! - *fresh* while `remaining > max(lifetime / 2, min(30 min, lifetime - 5 min))` (30 minutes for
//!   the default hour): served as they are;
//! - *due* after that, but still served while more than 5 minutes remain, a refresh starting in
//!   the background;
//! - with 5 minutes or less, a request waits for STS; if STS fails for a passing reason
//!   ([`AssumeError::is_transient`]), the cached credentials are served until they expire. A
//!   refusal drops them.
//!
//! Requests for one key wait on one STS call and share its outcome, success or failure; after a
//! failure no new call is made for that key for `retry_after_seconds`. Keys name the pod's UID,
//! so a new pod on a reused address never shares an entry with the pod before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyless_types::Clock;

use crate::AssumeError;
use crate::credentials::{AssumeRequest, Credentials, RoleAssumer};
use crate::roles::RoleTarget;

/// Credentials with this much time left or less are not handed out while STS answers, seconds.
pub const MIN_SERVE_SECONDS: i64 = 300;
/// Credentials are refreshed once this much time is left (or half their lifetime), seconds.
pub const REFRESH_MARGIN_SECONDS: i64 = 1800;
/// The `DurationSeconds` asked for by default.
pub const DEFAULT_SESSION_SECONDS: u32 = 3600;

/// How the cache asks for and keeps credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `DurationSeconds` of each `AssumeRole`, 900 to 43200 (the role's maximum must allow it).
    pub session_seconds: u32,
    /// After a failed call, how long requests for the same key get its outcome without a new
    /// call, seconds.
    pub retry_after_seconds: i64,
    /// Credentials not asked for in this long are no longer refreshed, and are dropped once
    /// expired, seconds.
    pub idle_seconds: i64,
    /// How many STS calls may be in flight at once: a node starting hundreds of pods asks for
    /// their credentials in waves, not in one burst that STS would throttle.
    pub max_concurrent_calls: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            session_seconds: DEFAULT_SESSION_SECONDS,
            retry_after_seconds: 5,
            idle_seconds: 4 * 3600,
            max_concurrent_calls: 32,
        }
    }
}

/// What credentials are cached by: the pod and everything of the `AssumeRole` call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The pod's UID.
    pub pod_uid: String,
    /// The role.
    pub role_arn: String,
    /// The session name.
    pub session_name: String,
    /// The external id.
    pub external_id: Option<String>,
    /// The session tags.
    pub tags: Vec<(String, String)>,
}

impl CacheKey {
    /// The key of `role` for the pod of UID `pod_uid`.
    pub fn new(pod_uid: &str, role: &RoleTarget) -> Self {
        Self {
            pod_uid: pod_uid.to_owned(),
            role_arn: role.arn.clone(),
            session_name: role.session_name.clone(),
            external_id: role.external_id.clone(),
            tags: role.tags.clone(),
        }
    }
}

/// The time left above which credentials are fresh.
pub fn refresh_margin(creds: &Credentials) -> i64 {
    let lifetime = creds.lifetime();
    (lifetime / 2).max(REFRESH_MARGIN_SECONDS.min(lifetime - MIN_SERVE_SECONDS))
}

fn is_fresh(creds: &Credentials, now: i64) -> bool {
    creds.remaining(now) > refresh_margin(creds)
}

fn is_servable(creds: &Credentials, now: i64) -> bool {
    creds.remaining(now) > MIN_SERVE_SECONDS
}

#[derive(Default)]
struct Current {
    creds: Option<Arc<Credentials>>,
    failure: Option<(i64, AssumeError)>,
    /// How many STS calls completed, so that a request that waited on one uses its outcome.
    attempts: u64,
    last_used: i64,
}

/// What the cache has done since it started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from the cache ([`CredentialCache::get`]; not prefetches).
    pub hits: u64,
    /// Requests that waited for an STS call (not prefetches).
    pub misses: u64,
    /// STS calls that returned credentials.
    pub refreshes: u64,
    /// STS calls that failed.
    pub failures: u64,
    /// Answers to requests of credentials close to expiry, given because STS was failing.
    pub stale_serves: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    refreshes: AtomicU64,
    failures: AtomicU64,
    stale_serves: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Current {
    /// What a request gets now from what is cached.
    /// `counters` are the cache's when the answer goes to a request, `None` for a refresh.
    fn outcome(
        &self,
        key: &CacheKey,
        now: i64,
        counters: Option<&Counters>,
    ) -> Result<Arc<Credentials>, AssumeError> {
        if let Some(creds) = &self.creds {
            if is_servable(creds, now) {
                return Ok(creds.clone());
            }
            let sts_failing = self.failure.as_ref().is_some_and(|(_, e)| e.is_transient());
            if sts_failing && creds.remaining(now) > 0 {
                let Some(counters) = counters else {
                    return Ok(creds.clone());
                };
                bump(&counters.stale_serves);
                tracing::warn!(
                    role = %key.role_arn,
                    pod_uid = %key.pod_uid,
                    remaining = creds.remaining(now),
                    "imds: sts failing; serving cached credentials close to expiry"
                );
                return Ok(creds.clone());
            }
        }
        Err(match &self.failure {
            Some((_, error)) => error.clone(),
            None => AssumeError::Unavailable("no credentials fetched yet".into()),
        })
    }
}

#[derive(Default)]
struct Slot {
    current: Mutex<Current>,
    /// Held during an STS call: one call per key at a time.
    fetch: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Inner {
    assumer: Arc<dyn RoleAssumer>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
    /// Permits for STS calls ([`CacheConfig::max_concurrent_calls`]).
    calls: tokio::sync::Semaphore,
    counters: Counters,
}

/// Role credentials by [`CacheKey`]. Cheap to clone: clones share one cache.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("config", &self.inner.config)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// A cache that gets credentials from `assumer`.
    pub fn new(assumer: Arc<dyn RoleAssumer>, clock: Arc<dyn Clock>, config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                assumer,
                clock,
                calls: tokio::sync::Semaphore::new(config.max_concurrent_calls.max(1)),
                config,
                slots: Mutex::default(),
                counters: Counters::default(),
            }),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Slot>>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, key: &CacheKey) -> Arc<Slot> {
        self.slots().entry(key.clone()).or_default().clone()
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What it has done since it started.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&c.hits),
            misses: read(&c.misses),
            refreshes: read(&c.refreshes),
            failures: read(&c.failures),
            stale_serves: read(&c.stale_serves),
        }
    }

    /// Credentials for `key`: cached ones while fresh; cached ones while due (refreshing them in
    /// the background); else from STS, sharing the call with other requests for `key`.
    pub async fn get(&self, key: &CacheKey) -> Result<Arc<Credentials>, AssumeError> {
        self.lookup(key, Some(&self.inner.counters)).await
    }

    /// As [`CredentialCache::get`], ahead of any request (a pod that just appeared): nothing
    /// is counted as a hit, miss or stale serve.
    pub async fn prefetch(&self, key: &CacheKey) -> Result<Arc<Credentials>, AssumeError> {
        self.lookup(key, None).await
    }

    async fn lookup(
        &self,
        key: &CacheKey,
        counters: Option<&Counters>,
    ) -> Result<Arc<Credentials>, AssumeError> {
        let count = |pick: fn(&Counters) -> &AtomicU64| {
            if let Some(c) = counters {
                bump(pick(c));
            }
        };
        let now = self.inner.clock.unix_seconds();
        let slot = self.slot(key);
        let (creds, seen) = {
            let mut current = slot.current();
            current.last_used = now;
            (current.creds.clone(), current.attempts)
        };
        if let Some(creds) = creds {
            if is_fresh(&creds, now) {
                count(|c| &c.hits);
                return Ok(creds);
            }
            if is_servable(&creds, now) {
                count(|c| &c.hits);
                self.refresh_in_background(key.clone(), slot);
                return Ok(creds);
            }
        }
        count(|c| &c.misses);
        let _fetching = slot.fetch.lock().await;
        self.attempt(key, &slot, Some(seen), counters).await
    }

    fn refresh_in_background(&self, key: CacheKey, slot: Arc<Slot>) {
        let cache = self.clone();
        tokio::spawn(async move {
            // Someone is at it already.
            let Ok(_fetching) = slot.fetch.try_lock() else {
                return;
            };
            let _ = cache.attempt(&key, &slot, None, None).await;
        });
    }

    /// One STS call for `key`, the fetch lock held; unless another request's call completed
    /// while this one waited (`seen` attempts before), the credentials are fresh, or a call
    /// failed moments ago; then their outcome is the answer. `counters` as in
    /// [`Current::outcome`].
    async fn attempt(
        &self,
        key: &CacheKey,
        slot: &Slot,
        seen: Option<u64>,
        counters: Option<&Counters>,
    ) -> Result<Arc<Credentials>, AssumeError> {
        let now = self.inner.clock.unix_seconds();
        {
            let current = slot.current();
            let waited_on_another = seen.is_some_and(|seen| seen != current.attempts);
            let fresh = current.creds.as_ref().is_some_and(|c| is_fresh(c, now));
            let backing_off = current.failure.as_ref().is_some_and(|(at, _)| {
                now.saturating_sub(*at) < self.inner.config.retry_after_seconds
            });
            if waited_on_another || fresh || backing_off {
                return current.outcome(key, now, counters);
            }
        }
        let request = AssumeRequest {
            role_arn: key.role_arn.clone(),
            session_name: key.session_name.clone(),
            external_id: key.external_id.clone(),
            tags: key.tags.clone(),
            duration_seconds: self.inner.config.session_seconds,
        };
        let result = {
            // The semaphore is never closed, so a permit always comes.
            let _permit = self.inner.calls.acquire().await.ok();
            self.inner.assumer.assume(&request).await
        };
        let now = self.inner.clock.unix_seconds();
        let mut current = slot.current();
        current.attempts = current.attempts.wrapping_add(1);
        match result {
            Ok(creds) => {
                bump(&self.inner.counters.refreshes);
                tracing::debug!(role = %key.role_arn, pod_uid = %key.pod_uid, expiration = creds.expiration, "imds: credentials fetched");
                current.creds = Some(Arc::new(creds));
                current.failure = None;
            }
            Err(error) => {
                bump(&self.inner.counters.failures);
                tracing::warn!(role = %key.role_arn, pod_uid = %key.pod_uid, %error, "imds: assume role failed");
                if !error.is_transient() {
                    current.creds = None;
                }
                current.failure = Some((now, error));
            }
        }
        current.outcome(key, now, counters)
    }

    /// Refreshes every entry that is due (or failed and may be retried) and was asked for
    /// within `idle_seconds`; drops idle entries once their credentials expired. Concurrent calls
    /// for distinct keys; returns when all are done.
    pub async fn refresh_due(&self) {
        let now = self.inner.clock.unix_seconds();
        let idle = self.inner.config.idle_seconds;
        let mut due = Vec::new();
        self.slots().retain(|key, slot| {
            let current = slot.current();
            let usable = current.creds.as_ref().is_some_and(|c| c.remaining(now) > 0);
            if now.saturating_sub(current.last_used) > idle {
                return usable;
            }
            if !current.creds.as_ref().is_some_and(|c| is_fresh(c, now)) {
                due.push((key.clone(), slot.clone()));
            }
            true
        });
        let mut tasks = tokio::task::JoinSet::new();
        for (key, slot) in due {
            let cache = self.clone();
            tasks.spawn(async move {
                if let Ok(_fetching) = slot.fetch.try_lock() {
                    let _ = cache.attempt(&key, &slot, None, None).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Calls [`CredentialCache::refresh_due`] every `every`, forever: spawn it.
    pub async fn run_refresher(self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            self.refresh_due().await;
        }
    }

    /// Drops the entries of the pod of UID `pod_uid` whose credentials were fetched before
    /// `before` (seconds): they were revoked, and the next request fetches fresh ones.
    pub fn forget_fetched_before(&self, pod_uid: &str, before: i64) {
        self.slots().retain(|key, slot| {
            key.pod_uid != pod_uid
                || slot
                    .current()
                    .creds
                    .as_ref()
                    .is_none_or(|c| c.last_updated >= before)
        });
    }

    /// Drops every entry of the pod of UID `pod_uid`.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.slots().retain(|key, _| key.pod_uid != pod_uid);
    }

    /// Keeps only the entries whose key `keep` holds for.
    pub fn retain_keys(&self, mut keep: impl FnMut(&CacheKey) -> bool) {
        self.slots().retain(|key, _| keep(key));
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
