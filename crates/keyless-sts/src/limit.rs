//! STS's issuance limits: a token bucket per principal (an IAM user or session, or a web
//! identity's provider and subject) and one per role, refilled by the request's own clock, so
//! that a flood of calls from one service account is answered `Throttling` (which the SDKs
//! retry with backoff) while other principals keep their share. A principal is counted only once
//! it is verified, so no one can spend another's bucket; a role only once it exists.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html>

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::StsError;

/// How many buckets of one kind are kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

/// A rate: `per_second` calls, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// `per_second`, with bursts of twice as many (at least one).
    pub fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: ((per_second * 2.0).ceil() as u32).max(1),
        }
    }
}

/// The limits of an STS: none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Issuances per principal.
    pub per_principal: Option<Rate>,
    /// Issuances per role.
    pub per_role: Option<Rate>,
    /// The longest session STS issues, seconds (below a role's MaxSessionDuration).
    pub max_session_seconds: Option<u32>,
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The caller's own.
    Principal,
    /// The role's.
    Role,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// Token buckets by key.
#[derive(Debug, Default)]
struct Buckets(Mutex<Map>);

#[derive(Debug, Default)]
struct Map {
    buckets: HashMap<String, Bucket>,
    /// When idle buckets were last dropped: at most once a second.
    swept: Option<i64>,
}

/// The bucket new keys share while the map is full of busy ones.
const OVERFLOW: &str = "";

impl Buckets {
    /// Takes one token from `key`'s bucket at `now` (seconds), if it has one.
    fn take(&self, key: &str, rate: Rate, now: i64) -> bool {
        let burst = f64::from(rate.burst);
        let refill = |b: &mut Bucket| {
            let elapsed = now.saturating_sub(b.at).max(0) as f64;
            b.tokens = (b.tokens + elapsed * rate.per_second).min(burst);
            b.at = b.at.max(now);
        };
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = key;
        if map.buckets.len() >= MAX_BUCKETS && !map.buckets.contains_key(key) {
            if map.swept != Some(now) {
                map.swept = Some(now);
                map.buckets.retain(|_, b| {
                    refill(b);
                    b.tokens < burst
                });
            }
            if map.buckets.len() >= MAX_BUCKETS {
                key = OVERFLOW;
            }
        }
        let bucket = map.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        refill(bucket);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The limits and their buckets.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    pub(crate) limits: Limits,
    principals: Buckets,
    roles: Buckets,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Counts one issuance to `principal` of `role` at `now`; `Throttling` past a limit.
    /// The principal's bucket is spent first: a call it refuses spends none of the role's.
    pub(crate) fn admit(
        &self,
        principal: &str,
        role: Option<&str>,
        now: i64,
    ) -> Result<(), StsError> {
        if let Some(rate) = self.limits.per_principal
            && !self.principals.take(principal, rate, now)
        {
            return Err(throttled(Limited::Principal, principal));
        }
        if let (Some(rate), Some(role)) = (self.limits.per_role, role)
            && !self.roles.take(role, rate, now)
        {
            return Err(throttled(Limited::Role, role));
        }
        Ok(())
    }
}

fn throttled(limit: Limited, key: &str) -> StsError {
    tracing::warn!(?limit, key, "sts: issuance throttled");
    StsError::Throttling("Rate exceeded".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(principal: f64, role: f64) -> Limiter {
        Limiter::new(Limits {
            per_principal: Some(Rate::per_second(principal)),
            per_role: Some(Rate::per_second(role)),
            max_session_seconds: None,
        })
    }

    #[test]
    fn a_flood_from_one_principal_does_not_starve_another() {
        let l = limiter(1.0, 100.0);
        // A burst of two, then nothing until the next second.
        assert!(l.admit("sa:flood", Some("r"), 10).is_ok());
        assert!(l.admit("sa:flood", Some("r"), 10).is_ok());
        let e = l.admit("sa:flood", Some("r"), 10).unwrap_err();
        assert_eq!(e.wire(), ("Throttling", 400));
        assert_eq!(e.message(), "Rate exceeded");
        assert!(l.admit("sa:other", Some("r"), 10).is_ok());
        assert!(l.admit("sa:flood", Some("r"), 11).is_ok());
        assert!(l.admit("sa:flood", Some("r"), 11).is_err());
    }

    #[test]
    fn a_role_has_its_own_limit_and_a_refused_principal_spends_none_of_it() {
        let l = limiter(1.0, 1.0);
        assert!(l.admit("a", Some("r"), 0).is_ok());
        assert!(l.admit("b", Some("r"), 0).is_ok());
        // The role's burst of two is spent: a third principal is refused by the role.
        assert!(l.admit("c", Some("r"), 0).is_err());
        assert!(l.admit("c", Some("other"), 0).is_ok());
        // A refused principal does not spend the role's bucket.
        let l = limiter(1.0, 1.0);
        for _ in 0..2 {
            assert!(l.admit("a", None, 0).is_ok());
        }
        assert!(l.admit("a", Some("r"), 0).is_err());
        assert!(l.admit("b", Some("r"), 0).is_ok());
        assert!(l.admit("c", Some("r"), 0).is_ok());
    }

    #[test]
    fn no_limits_admit_everything_and_idle_buckets_are_dropped() {
        let l = Limiter::default();
        for _ in 0..1000 {
            assert!(l.admit("a", Some("r"), 0).is_ok());
        }
        let b = Buckets::default();
        let rate = Rate::per_second(1.0);
        for i in 0..MAX_BUCKETS {
            assert!(b.take(&format!("k{i}"), rate, 0));
        }
        // While they are all busy, new keys share one overflow bucket (burst of two).
        assert!(b.take("x1", rate, 0));
        assert!(b.take("x2", rate, 0));
        assert!(!b.take("x3", rate, 0));
        // Later, every bucket is full again and makes room for a new key.
        assert!(b.take("new", rate, 5));
        assert_eq!(b.0.lock().unwrap().buckets.len(), 1);
        // A clock that goes back refills nothing and breaks nothing.
        assert!(b.take("new", rate, 1));
    }
}
