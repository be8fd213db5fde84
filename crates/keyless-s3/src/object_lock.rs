//! Object Lock's rules (write once, read many): what a version's retention and legal hold
//! forbid, what may change them, and a bucket's default retention. Pure: the time is given.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html>
//!
//! A version under retention until some time, or under a legal hold, cannot be deleted (nor
//! its retention shortened or removed) until then. Compliance mode binds everyone, the root
//! user too; governance mode gives way to a request with `x-amz-bypass-governance-retention:
//! true` from a caller allowed `s3:BypassGovernanceRetention`. A legal hold binds until it is
//! lifted, whatever the mode. Deleting without a version id only adds a delete marker, which
//! no lock forbids.

use serde::{Deserialize, Serialize};

/// A day, in milliseconds.
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The longest retention Keyless keeps: 100 years, as S3 caps a bucket's default.
pub const MAX_RETENTION_DAYS: i64 = 36_500;

/// A retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LockMode {
    /// Gives way to a caller allowed to bypass it.
    Governance,
    /// Binds everyone until it ends.
    Compliance,
}

impl LockMode {
    /// As S3 writes it: `GOVERNANCE`, `COMPLIANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    /// The mode S3 names so, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

/// A version's retention: protected in `mode` until `until_ms` (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// The mode.
    pub mode: LockMode,
    /// The end, milliseconds since the epoch.
    pub until_ms: i64,
}

/// A version's lock: its retention and legal hold, as they were set (an ended retention stays
/// recorded, as S3 keeps answering it, but protects nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// The retention, if one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// The legal hold: on, off (lifted), or never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
}

/// Whether governance-mode retention gives way to this request: it asked to bypass
/// (`x-amz-bypass-governance-retention: true`) and its caller may (`s3:BypassGovernanceRetention`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Governance {
    /// Governance mode binds, as compliance does.
    #[default]
    Binds,
    /// Governance mode gives way.
    Bypassed,
}

/// Why a lock forbids a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Locked {
    /// A legal hold is on.
    #[error("the version is under a legal hold")]
    LegalHold,
    /// Retention has not ended.
    #[error("the version is under {} retention until {until_ms} ms", mode.as_str())]
    Retained {
        /// Its mode.
        mode: LockMode,
        /// Its end.
        until_ms: i64,
    },
}

impl ObjectLock {
    /// Whether nothing was ever set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a legal hold is on.
    pub fn held(&self) -> bool {
        self.legal_hold == Some(true)
    }

    /// The retention in force at `now_ms`, if any.
    pub fn retained(&self, now_ms: i64) -> Option<Retention> {
        self.retention.filter(|r| r.until_ms > now_ms)
    }

    /// Whether the version may be deleted (or overwritten in place) at `now_ms`.
    pub fn may_delete(&self, now_ms: i64, governance: Governance) -> Result<(), Locked> {
        if self.held() {
            return Err(Locked::LegalHold);
        }
        match self.retained(now_ms) {
            Some(Retention {
                mode: LockMode::Governance,
                ..
            }) if governance == Governance::Bypassed => Ok(()),
            Some(Retention { mode, until_ms }) => Err(Locked::Retained { mode, until_ms }),
            None => Ok(()),
        }
    }

    /// Whether the retention may become `new` (`None`: removed) at `now_ms`. Protection may
    /// always grow (a later end, or governance to compliance); it may shrink only once it has
    /// ended, or in governance mode when that gives way. A legal hold is its own matter.
    pub fn may_set_retention(
        &self,
        new: Option<Retention>,
        now_ms: i64,
        governance: Governance,
    ) -> Result<(), Locked> {
        let Some(current) = self.retained(now_ms) else {
            return Ok(());
        };
        let grows = new.is_some_and(|n| n.until_ms >= current.until_ms && n.mode >= current.mode);
        match current.mode {
            _ if grows => Ok(()),
            LockMode::Governance if governance == Governance::Bypassed => Ok(()),
            mode => Err(Locked::Retained {
                mode,
                until_ms: current.until_ms,
            }),
        }
    }
}

/// A bucket's default retention: every new version is retained so long from its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// The mode.
    pub mode: LockMode,
    /// How long, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i64>,
    /// How long, in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<i64>,
}

impl DefaultRetention {
    /// The retention of a version created at `created_ms`. A year is 365 days, as the
    /// retention S3 computes for a default in years.
    pub fn from(&self, created_ms: i64) -> Retention {
        let days = self.days.unwrap_or(0) + self.years.unwrap_or(0) * 365;
        Retention {
            mode: self.mode,
            until_ms: created_ms.saturating_add(days.saturating_mul(DAY_MS)),
        }
    }
}

/// A bucket's Object Lock configuration (its presence means Object Lock is enabled, for good).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockConfig {
    /// The default retention of new versions, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultRetention>,
}

impl LockConfig {
    /// The lock of a version created at `created_ms` that asked for `asked`: its own
    /// retention if it asked for one, else the bucket's default.
    pub fn lock_of(&self, asked: ObjectLock, created_ms: i64) -> ObjectLock {
        ObjectLock {
            retention: asked
                .retention
                .or_else(|| self.default.map(|d| d.from(created_ms))),
            legal_hold: asked.legal_hold,
        }
    }
}

/// Why a requested default retention is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadDefault {
    /// Neither or both of days and years (S3 answers `MalformedXML`).
    #[error("a default retention needs days or years, and not both")]
    Period,
    /// Not a positive number, or over 100 years.
    #[error("the default retention period must be a positive integer value")]
    NotPositive,
}

impl DefaultRetention {
    /// Checks a default as a request gave it.
    pub fn new(mode: LockMode, days: Option<i64>, years: Option<i64>) -> Result<Self, BadDefault> {
        let total = match (days, years) {
            (Some(d), None) => d,
            (None, Some(y)) => y.saturating_mul(365),
            _ => return Err(BadDefault::Period),
        };
        if total <= 0 || total > MAX_RETENTION_DAYS {
            return Err(BadDefault::NotPositive);
        }
        Ok(Self { mode, days, years })
    }
}

/// Whole days left until `until_ms` at `now_ms`, rounded up, as
/// `s3:object-lock-remaining-retention-days` counts them.
pub fn remaining_days(until_ms: i64, now_ms: i64) -> i64 {
    let left = until_ms.saturating_sub(now_ms).max(0);
    (left + DAY_MS - 1) / DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn retained(mode: LockMode, until_ms: i64) -> ObjectLock {
        ObjectLock {
            retention: Some(Retention { mode, until_ms }),
            legal_hold: None,
        }
    }

    #[test]
    fn compliance_binds_everyone_until_it_ends() {
        let lock = retained(LockMode::Compliance, NOW + DAY_MS);
        for governance in [Governance::Binds, Governance::Bypassed] {
            assert!(lock.may_delete(NOW, governance).is_err());
        }
        assert_eq!(lock.may_delete(NOW + DAY_MS, Governance::Binds), Ok(()));
    }

    #[test]
    fn governance_gives_way_only_when_bypassed() {
        let lock = retained(LockMode::Governance, NOW + DAY_MS);
        assert_eq!(
            lock.may_delete(NOW, Governance::Binds),
            Err(Locked::Retained {
                mode: LockMode::Governance,
                until_ms: NOW + DAY_MS
            })
        );
        assert_eq!(lock.may_delete(NOW, Governance::Bypassed), Ok(()));
    }

    #[test]
    fn a_legal_hold_binds_whatever_the_retention() {
        let mut lock = retained(LockMode::Governance, NOW - 1);
        lock.legal_hold = Some(true);
        assert_eq!(
            lock.may_delete(NOW, Governance::Bypassed),
            Err(Locked::LegalHold)
        );
        assert_eq!(
            ObjectLock::default().may_delete(NOW, Governance::Binds),
            Ok(())
        );
    }

    #[test]
    fn retention_grows_freely_and_shrinks_only_when_allowed() {
        let later = |mode, days| {
            Some(Retention {
                mode,
                until_ms: NOW + days * DAY_MS,
            })
        };
        let gov = retained(LockMode::Governance, NOW + 2 * DAY_MS);
        let binds = Governance::Binds;
        assert_eq!(
            gov.may_set_retention(later(LockMode::Governance, 3), NOW, binds),
            Ok(())
        );
        assert_eq!(
            gov.may_set_retention(later(LockMode::Compliance, 2), NOW, binds),
            Ok(())
        );
        assert!(
            gov.may_set_retention(later(LockMode::Governance, 1), NOW, binds)
                .is_err()
        );
        assert!(gov.may_set_retention(None, NOW, binds).is_err());
        assert_eq!(
            gov.may_set_retention(None, NOW, Governance::Bypassed),
            Ok(())
        );

        let comp = retained(LockMode::Compliance, NOW + 2 * DAY_MS);
        assert_eq!(
            comp.may_set_retention(later(LockMode::Compliance, 5), NOW, binds),
            Ok(())
        );
        for shrink in [
            later(LockMode::Compliance, 1),
            later(LockMode::Governance, 5),
            None,
        ] {
            assert!(
                comp.may_set_retention(shrink, NOW, Governance::Bypassed)
                    .is_err(),
                "{shrink:?}"
            );
        }
        // Once it has ended, anything goes.
        assert_eq!(
            comp.may_set_retention(None, NOW + 2 * DAY_MS, binds),
            Ok(())
        );
    }

    #[test]
    fn bucket_defaults_apply_unless_the_version_asked() {
        let config = LockConfig {
            default: Some(DefaultRetention::new(LockMode::Compliance, Some(3), None).unwrap()),
        };
        let lock = config.lock_of(ObjectLock::default(), NOW);
        assert_eq!(
            lock.retention,
            Some(Retention {
                mode: LockMode::Compliance,
                until_ms: NOW + 3 * DAY_MS
            })
        );
        let asked = retained(LockMode::Governance, NOW + 1);
        assert_eq!(config.lock_of(asked, NOW), asked);
        let years = DefaultRetention::new(LockMode::Governance, None, Some(1)).unwrap();
        assert_eq!(years.from(NOW).until_ms, NOW + 365 * DAY_MS);
    }

    #[test]
    fn defaults_need_one_positive_period() {
        let g = LockMode::Governance;
        assert_eq!(
            DefaultRetention::new(g, None, None),
            Err(BadDefault::Period)
        );
        assert_eq!(
            DefaultRetention::new(g, Some(1), Some(1)),
            Err(BadDefault::Period)
        );
        for days in [0, -1, MAX_RETENTION_DAYS + 1] {
            assert_eq!(
                DefaultRetention::new(g, Some(days), None),
                Err(BadDefault::NotPositive)
            );
        }
        assert_eq!(
            DefaultRetention::new(g, None, Some(101)),
            Err(BadDefault::NotPositive)
        );
    }

    #[test]
    fn remaining_days_round_up() {
        assert_eq!(remaining_days(NOW + 1, NOW), 1);
        assert_eq!(remaining_days(NOW + DAY_MS, NOW), 1);
        assert_eq!(remaining_days(NOW + DAY_MS + 1, NOW), 2);
        assert_eq!(remaining_days(NOW - 5, NOW), 0);
        assert_eq!(LockMode::parse("COMPLIANCE"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("compliance"), None);
    }
}
