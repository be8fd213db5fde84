//! Temporary credentials and the `RoleAssumer` seam that gets them (STS `AssumeRole` on a pod's
//! behalf), with `MemoryAssumer`, its in-memory double.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use keyless_types::{Clock, Secret};

use crate::AssumeError;

/// Temporary credentials of a role session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id, `ASIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token.
    pub session_token: Secret,
    /// When they expire, unix seconds.
    pub expiration: i64,
    /// When they were obtained, unix seconds.
    pub last_updated: i64,
}

impl Credentials {
    /// Seconds left at `now` (negative once expired).
    pub fn remaining(&self, now: i64) -> i64 {
        self.expiration.saturating_sub(now)
    }

    /// Their lifetime in seconds, as obtained.
    pub fn lifetime(&self) -> i64 {
        self.expiration.saturating_sub(self.last_updated).max(0)
    }
}

/// An `AssumeRole` call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssumeRequest {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `ExternalId`.
    pub external_id: Option<String>,
    /// `DurationSeconds`.
    pub duration_seconds: u32,
    /// `Tags.member.N`: the session tags naming the pod.
    pub tags: Vec<(String, String)>,
}

/// Gets credentials for a role.
#[async_trait]
pub trait RoleAssumer: Send + Sync {
    /// Assumes `req.role_arn`. `last_updated` of the answer is the time of the call.
    async fn assume(&self, req: &AssumeRequest) -> Result<Credentials, AssumeError>;
}

/// An in-memory [`RoleAssumer`]: makes up credentials lasting the requested duration from the
/// clock's now, counts calls, remembers requests, and can be made slow or failing. For tests.
pub struct MemoryAssumer {
    clock: Arc<dyn Clock>,
    calls: AtomicUsize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    failure: Option<AssumeError>,
    delay: Duration,
    requests: Vec<AssumeRequest>,
}

impl std::fmt::Debug for MemoryAssumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAssumer")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl MemoryAssumer {
    /// An assumer that always succeeds, at once.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            calls: AtomicUsize::new(0),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, fails with `failure`; or succeeds again, given `None`.
    pub fn set_failure(&self, failure: Option<AssumeError>) {
        self.lock().failure = failure;
    }

    /// From now on, takes `delay` to answer.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// How many times [`RoleAssumer::assume`] was called.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The requests received, oldest first.
    pub fn requests(&self) -> Vec<AssumeRequest> {
        self.lock().requests.clone()
    }
}

#[async_trait]
impl RoleAssumer for MemoryAssumer {
    async fn assume(&self, req: &AssumeRequest) -> Result<Credentials, AssumeError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = {
            let mut state = self.lock();
            state.requests.push(req.clone());
            state.delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(failure) = self.lock().failure.clone() {
            return Err(failure);
        }
        let now = self.clock.unix_seconds();
        Ok(Credentials {
            access_key_id: format!("ASIAMEMORY{n:010}"),
            secret_access_key: Secret::new(format!("secret-{n}")),
            session_token: Secret::new(format!("token-{n}-{}", req.session_name)),
            expiration: now.saturating_add(i64::from(req.duration_seconds)),
            last_updated: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyless_types::FixedClock;

    fn request() -> AssumeRequest {
        AssumeRequest {
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            session_name: "shop.web".into(),
            external_id: None,
            duration_seconds: 3600,
            tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_double_makes_credentials_counts_and_fails_on_demand() {
        let clock = Arc::new(FixedClock::at_unix(1_000));
        let assumer = MemoryAssumer::new(clock);
        let creds = assumer.assume(&request()).await.unwrap();
        assert_eq!((creds.last_updated, creds.expiration), (1_000, 4_600));
        assert_eq!(creds.remaining(1_600), 3_000);
        assert_eq!(creds.lifetime(), 3_600);
        assert!(creds.access_key_id.starts_with("ASIA"));
        assert!(!format!("{creds:?}").contains("secret-1"));
        assert_eq!(creds.session_token.expose(), "token-1-shop.web");
        assumer.set_failure(Some(AssumeError::Unavailable("down".into())));
        assert!(assumer.assume(&request()).await.is_err());
        assumer.set_failure(None);
        assert!(assumer.assume(&request()).await.is_ok());
        assert_eq!(assumer.calls(), 3);
        assert_eq!(assumer.requests().len(), 3);
        assert_eq!(assumer.requests()[0], request());
    }
}
