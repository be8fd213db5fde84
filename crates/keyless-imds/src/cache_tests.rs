//! Tests of the credential cache: freshness, background refresh, stale serving while STS fails,
//! one STS call per key at a time, and eviction.

use std::sync::Arc;
use std::time::Duration;

use keyless_types::FixedClock;

use super::*;
use crate::credentials::MemoryAssumer;

const START: u64 = 1_795_650_000;

struct Fixture {
    clock: Arc<FixedClock>,
    assumer: Arc<MemoryAssumer>,
    cache: CredentialCache,
}

fn fixture() -> Fixture {
    let clock = Arc::new(FixedClock::at_unix(START));
    let assumer = Arc::new(MemoryAssumer::new(clock.clone()));
    let cache = CredentialCache::new(assumer.clone(), clock.clone(), CacheConfig::default());
    Fixture {
        clock,
        assumer,
        cache,
    }
}

fn key(uid: &str) -> CacheKey {
    CacheKey {
        pod_uid: uid.into(),
        role_arn: "arn:aws:iam::123456789012:role/app".into(),
        session_name: "shop.web".into(),
        external_id: None,
        tags: Vec::new(),
    }
}

fn advance(f: &Fixture, secs: u64) {
    f.clock.advance(Duration::from_secs(secs));
}

/// Waits (a little) for background calls to reach `calls`.
async fn until_calls(assumer: &MemoryAssumer, calls: usize) {
    for _ in 0..500 {
        if assumer.calls() >= calls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{} calls, expected {calls}", assumer.calls());
}

fn transient() -> AssumeError {
    AssumeError::Unavailable("connection refused".into())
}

#[test]
fn refresh_margins() {
    let creds = |lifetime: i64| Credentials {
        access_key_id: "ASIA".into(),
        secret_access_key: keyless_types::Secret::new("s"),
        session_token: keyless_types::Secret::new("t"),
        expiration: 1_000 + lifetime,
        last_updated: 1_000,
    };
    assert_eq!(refresh_margin(&creds(3600)), 1800);
    assert_eq!(refresh_margin(&creds(43_200)), 21_600);
    assert_eq!(refresh_margin(&creds(900)), 600);
    assert_eq!(refresh_margin(&creds(7200)), 3600);
}

#[tokio::test]
async fn fresh_credentials_come_from_the_cache() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    advance(&f, 1000);
    let second = f.cache.get(&key("u1")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(f.assumer.calls(), 1);
    let request = &f.assumer.requests()[0];
    assert_eq!(request.duration_seconds, 3600);
    assert_eq!(request.session_name, "shop.web");
    // Another pod with the same role has its own credentials.
    let other = f.cache.get(&key("u2")).await.unwrap();
    assert_ne!(other.access_key_id, first.access_key_id);
    assert_eq!(f.cache.len(), 2);
    let stats = f.cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.refreshes), (1, 2, 2));
    assert_eq!((stats.failures, stats.stale_serves), (0, 0));
}

#[tokio::test]
async fn revoked_credentials_are_forgotten_and_fetched_afresh() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    let other = f.cache.get(&key("u2")).await.unwrap();
    // A revocation older than the credentials changes nothing.
    f.cache.forget_fetched_before("u1", first.last_updated);
    assert_eq!(f.cache.get(&key("u1")).await.unwrap(), first);
    advance(&f, 10);
    f.cache.forget_fetched_before("u1", START as i64 + 5);
    let fresh = f.cache.get(&key("u1")).await.unwrap();
    assert_ne!(fresh.access_key_id, first.access_key_id);
    // Another pod's are untouched.
    assert_eq!(f.cache.get(&key("u2")).await.unwrap(), other);
}

#[tokio::test]
async fn prefetches_and_refreshes_are_not_counted_as_requests() {
    let f = fixture();
    f.cache.prefetch(&key("u1")).await.unwrap();
    f.cache.get(&key("u1")).await.unwrap();
    let stats = f.cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.refreshes), (1, 0, 1));
    // STS fails as the credentials near expiry: the refresher's attempt serves no one.
    f.assumer.set_failure(Some(transient()));
    advance(&f, 3600 - 60);
    f.cache.refresh_due().await;
    let stats = f.cache.stats();
    assert_eq!((stats.failures, stats.stale_serves), (1, 0), "{stats:?}");
    // A request then gets the nearly expired credentials: that is a stale serve.
    f.cache.get(&key("u1")).await.unwrap();
    let stats = f.cache.stats();
    assert_eq!(
        (stats.misses, stats.failures, stats.stale_serves),
        (1, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn due_credentials_are_served_and_refreshed_in_the_background() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    advance(&f, 1801); // 1799 s left: due, still servable
    let served = f.cache.get(&key("u1")).await.unwrap();
    assert_eq!(served, first);
    until_calls(&f.assumer, 2).await;
    // Let the refresh store its answer.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let next = f.cache.get(&key("u1")).await.unwrap();
    assert_ne!(next.access_key_id, first.access_key_id);
    assert_eq!(next.expiration, START as i64 + 1801 + 3600);
    assert_eq!(f.assumer.calls(), 2);
}

#[tokio::test]
async fn nearly_expired_credentials_are_not_served_while_sts_answers() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    advance(&f, 3600 - 300); // exactly 5 minutes left
    let next = f.cache.get(&key("u1")).await.unwrap();
    assert_ne!(next.access_key_id, first.access_key_id);
    assert_eq!(f.assumer.calls(), 2);
}

#[tokio::test]
async fn while_sts_fails_cached_credentials_are_served_until_they_expire() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    f.assumer.set_failure(Some(transient()));
    advance(&f, 3600 - 60); // one minute left
    assert_eq!(f.cache.get(&key("u1")).await.unwrap(), first);
    assert_eq!(f.assumer.calls(), 2);
    advance(&f, 59);
    assert_eq!(f.cache.get(&key("u1")).await.unwrap(), first);
    let stats = f.cache.stats();
    // Both STS calls failed; both answers were the cached, nearly expired credentials.
    assert_eq!((stats.failures, stats.stale_serves), (2, 2), "{stats:?}");
    advance(&f, 1); // expired
    let error = f.cache.get(&key("u1")).await.unwrap_err();
    assert_eq!(error, transient());
    // STS is back.
    f.assumer.set_failure(None);
    advance(&f, 10);
    let next = f.cache.get(&key("u1")).await.unwrap();
    assert_ne!(next.access_key_id, first.access_key_id);
}

#[tokio::test]
async fn a_refusal_drops_the_cached_credentials() {
    let f = fixture();
    f.cache.get(&key("u1")).await.unwrap();
    f.assumer.set_failure(Some(AssumeError::Denied {
        code: "AccessDenied".into(),
        message: "not allowed".into(),
    }));
    advance(&f, 3600 - 60);
    let error = f.cache.get(&key("u1")).await.unwrap_err();
    assert!(!error.is_transient());
    // The credentials are gone even once STS would answer again, until it does.
    f.assumer.set_failure(Some(transient()));
    advance(&f, 10);
    assert!(f.cache.get(&key("u1")).await.is_err());
}

#[tokio::test]
async fn after_a_failure_requests_wait_before_calling_again() {
    let f = fixture();
    f.assumer.set_failure(Some(transient()));
    assert!(f.cache.get(&key("u1")).await.is_err());
    assert!(f.cache.get(&key("u1")).await.is_err());
    assert_eq!(f.assumer.calls(), 1);
    advance(&f, 5);
    f.assumer.set_failure(None);
    assert!(f.cache.get(&key("u1")).await.is_ok());
    assert_eq!(f.assumer.calls(), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_sts_call() {
    let f = fixture();
    f.assumer.set_delay(Duration::from_millis(50));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let cache = f.cache.clone();
        tasks.spawn(async move { cache.get(&key("u1")).await });
    }
    let mut keys = Vec::new();
    while let Some(result) = tasks.join_next().await {
        keys.push(result.unwrap().unwrap().access_key_id.clone());
    }
    keys.dedup();
    assert_eq!(keys.len(), 1);
    assert_eq!(f.assumer.calls(), 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_failure_too() {
    let f = fixture();
    f.assumer.set_delay(Duration::from_millis(50));
    f.assumer.set_failure(Some(transient()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let cache = f.cache.clone();
        tasks.spawn(async move { cache.get(&key("u1")).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap_err(), transient());
    }
    assert_eq!(f.assumer.calls(), 1);
}

#[tokio::test]
async fn the_refresher_renews_due_entries_and_drops_idle_expired_ones() {
    let f = fixture();
    let first = f.cache.get(&key("u1")).await.unwrap();
    f.cache.refresh_due().await;
    assert_eq!(f.assumer.calls(), 1, "fresh entries are left alone");
    advance(&f, 1801);
    f.cache.refresh_due().await;
    assert_eq!(f.assumer.calls(), 2);
    let renewed = f.cache.get(&key("u1")).await.unwrap();
    assert_ne!(renewed.access_key_id, first.access_key_id);
    // Not asked for in four hours: no longer renewed, then dropped once expired.
    advance(&f, 4 * 3600 + 1);
    f.cache.refresh_due().await;
    assert_eq!(f.assumer.calls(), 2);
    assert!(f.cache.is_empty());
}

#[tokio::test]
async fn the_refresher_retries_failed_prefetches() {
    let f = fixture();
    f.assumer.set_failure(Some(transient()));
    assert!(f.cache.get(&key("u1")).await.is_err());
    f.assumer.set_failure(None);
    f.cache.refresh_due().await;
    assert_eq!(f.assumer.calls(), 1, "within retry_after");
    advance(&f, 5);
    f.cache.refresh_due().await;
    assert_eq!(f.assumer.calls(), 2);
    f.cache.get(&key("u1")).await.unwrap();
    assert_eq!(f.assumer.calls(), 2);
}

#[tokio::test]
async fn entries_of_removed_pods_are_dropped() {
    let f = fixture();
    f.cache.get(&key("u1")).await.unwrap();
    f.cache.get(&key("u2")).await.unwrap();
    f.cache.get(&key("u3")).await.unwrap();
    f.cache.forget_pod("u1");
    assert_eq!(f.cache.len(), 2);
    f.cache.retain_keys(|k| k.pod_uid == "u2");
    assert_eq!(f.cache.len(), 1);
    f.cache.get(&key("u2")).await.unwrap();
    assert_eq!(f.assumer.calls(), 3);
}

/// Counts how many calls are in flight at once, around a [`MemoryAssumer`].
struct Gauge {
    inner: MemoryAssumer,
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl RoleAssumer for Gauge {
    async fn assume(&self, request: &AssumeRequest) -> Result<Credentials, AssumeError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let result = self.inner.assume(request).await;
        self.now.fetch_sub(1, SeqCst);
        result
    }
}

#[tokio::test]
async fn sts_calls_in_flight_are_capped() {
    let clock = Arc::new(FixedClock::at_unix(START));
    let gauge = Arc::new(Gauge {
        inner: MemoryAssumer::new(clock.clone()),
        now: 0.into(),
        most: 0.into(),
    });
    let config = CacheConfig {
        max_concurrent_calls: 4,
        ..CacheConfig::default()
    };
    let cache = CredentialCache::new(gauge.clone(), clock, config);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let cache = cache.clone();
        tasks.spawn(async move { cache.get(&key(&format!("pod-{i}"))).await.is_ok() });
    }
    while let Some(ok) = tasks.join_next().await {
        assert!(ok.unwrap());
    }
    assert_eq!(gauge.inner.calls(), 40);
    assert_eq!(gauge.most.load(std::sync::atomic::Ordering::SeqCst), 4);
}
