//! Object Lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
//! Put/GetObjectLegalHold, and the `x-amz-object-lock-*` headers of the writes and reads. The
//! rules (what a lock forbids, what may change it) are [`crate::object_lock`]'s; the store
//! applies them in the transaction that deletes or changes a version.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectLockConfiguration.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectRetention.html>

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::bucket::timestamp;
use crate::extensions::MayBypassGovernance;
use crate::object_lock::{
    BadDefault, DefaultRetention, Governance, LockConfig, LockMode, ObjectLock, Retention,
};
use crate::store::{BucketConfig, ObjectInfo, ObjectStore, ObjectUpdate, StoreError};
use crate::wire::{aws_error, store_error};

/// A time as milliseconds since the epoch.
pub(crate) fn millis(t: &Timestamp) -> i64 {
    let mut text = Vec::new();
    let _ = t.format(TimestampFormat::EpochSeconds, &mut text);
    String::from_utf8_lossy(&text)
        .parse::<f64>()
        .map_or(0, |s| (s * 1000.0).round() as i64)
}

/// S3's `MalformedXML`, with its text.
fn malformed() -> s3s::S3Error {
    aws_error(S3ErrorCode::MalformedXML)
}

fn mode_in(mode: &str) -> S3Result<LockMode> {
    LockMode::parse(mode).ok_or_else(malformed)
}

fn past() -> s3s::S3Error {
    s3_error!(
        InvalidArgument,
        "The retain until date must be in the future!"
    )
}

/// Whether governance retention gives way to the request: it asked (`x-amz-bypass-governance-
/// retention: true`) and the authorizer found its caller may (absent for the root user).
pub(super) fn governance(asked: Option<bool>, extensions: &http::Extensions) -> Governance {
    let may = extensions.get::<MayBypassGovernance>().is_none_or(|m| m.0);
    match asked == Some(true) && may {
        true => Governance::Bypassed,
        false => Governance::Binds,
    }
}

/// The lock the `x-amz-object-lock-*` headers of a write ask for. Mode and date come together,
/// the date in the future, as S3 has them.
pub(super) fn lock_headers(
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
    now_ms: i64,
) -> S3Result<ObjectLock> {
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(mode), Some(until)) => {
            let mode = LockMode::parse(mode.as_str())
                .ok_or_else(|| s3_error!(InvalidArgument, "Unknown wormMode directive."))?;
            let until_ms = millis(until);
            if until_ms <= now_ms {
                return Err(past());
            }
            Some(Retention { mode, until_ms })
        }
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            ));
        }
    };
    let legal_hold = match legal_hold.map(ObjectLockLegalHoldStatus::as_str) {
        None => None,
        Some(ObjectLockLegalHoldStatus::ON) => Some(true),
        Some(ObjectLockLegalHoldStatus::OFF) => Some(false),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "Legal Hold must be either of 'ON' or 'OFF'"
            ));
        }
    };
    Ok(ObjectLock {
        retention,
        legal_hold,
    })
}

/// What GET and HEAD answer of a version's lock: `x-amz-object-lock-mode`,
/// `-retain-until-date` and `-legal-hold`.
pub(super) struct LockOut {
    pub(super) mode: Option<ObjectLockMode>,
    pub(super) until: Option<Timestamp>,
    pub(super) legal_hold: Option<ObjectLockLegalHoldStatus>,
}

pub(super) fn lock_out(info: &ObjectInfo) -> LockOut {
    let retention = info.lock.retention;
    LockOut {
        mode: retention.map(|r| ObjectLockMode::from(r.mode.as_str().to_owned())),
        until: retention.map(|r| timestamp(r.until_ms)),
        legal_hold: info.lock.legal_hold.map(hold_status),
    }
}

fn hold_status(on: bool) -> ObjectLockLegalHoldStatus {
    ObjectLockLegalHoldStatus::from_static(match on {
        true => ObjectLockLegalHoldStatus::ON,
        false => ObjectLockLegalHoldStatus::OFF,
    })
}

fn no_version_lock() -> s3s::S3Error {
    s3_error!(
        NoSuchObjectLockConfiguration,
        "The specified object does not have a ObjectLock configuration"
    )
}

impl<S: ObjectStore> KeylessS3<S> {
    /// The bucket's Object Lock configuration, if it has Object Lock.
    pub(super) async fn lock_config(&self, bucket: &str) -> S3Result<Option<LockConfig>> {
        let text = self
            .store
            .bucket_config(bucket, BucketConfig::ObjectLock)
            .await
            .map_err(store_error)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                tracing::error!(bucket, error = %e, "stored object lock configuration does not parse");
                s3_error!(InternalError, "We encountered an internal error. Please try again.")
            })
        })
        .transpose()
    }

    /// Turns Object Lock on for `bucket` (with versioning, which it needs), for good.
    pub(super) async fn enable_object_lock(
        &self,
        bucket: &str,
        config: LockConfig,
    ) -> S3Result<()> {
        let text = serde_json::to_string(&config)
            .map_err(|e| s3_error!(InternalError, "cannot encode the configuration: {e}"))?;
        self.store
            .set_bucket_config(bucket, BucketConfig::ObjectLock, Some(text))
            .await
            .map_err(store_error)
    }

    pub(super) async fn get_object_lock_configuration_(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let Some(config) = self.lock_config(&req.input.bucket).await? else {
            return Err(super::probes::not_configured(
                "ObjectLockConfigurationNotFoundError",
            ));
        };
        let rule = config.default.map(|d| ObjectLockRule {
            default_retention: Some(s3s::dto::DefaultRetention {
                mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_owned())),
                days: d.days.and_then(|n| i32::try_from(n).ok()),
                years: d.years.and_then(|n| i32::try_from(n).ok()),
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule,
            }),
        }))
    }

    /// Enables Object Lock on a bucket with versioning enabled (as S3 allows since 2023), and
    /// sets or clears its default retention. It cannot be turned off.
    pub(super) async fn put_object_lock_configuration_(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let input = req.input;
        let config = input.object_lock_configuration.ok_or_else(malformed)?;
        if config
            .object_lock_enabled
            .as_ref()
            .map(ObjectLockEnabled::as_str)
            != Some(ObjectLockEnabled::ENABLED)
        {
            return Err(malformed());
        }
        let default = match config.rule.map(|r| r.default_retention) {
            None => None,
            Some(None) => return Err(malformed()),
            Some(Some(d)) => {
                let mode = mode_in(d.mode.as_ref().ok_or_else(malformed)?.as_str())?;
                let checked =
                    DefaultRetention::new(mode, d.days.map(i64::from), d.years.map(i64::from));
                Some(checked.map_err(|e| match e {
                    BadDefault::Period => malformed(),
                    BadDefault::NotPositive => s3_error!(
                        InvalidArgument,
                        "Default retention period must be a positive integer value"
                    ),
                })?)
            }
        };
        self.enable_object_lock(&input.bucket, LockConfig { default })
            .await?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    /// A version of a bucket that has Object Lock.
    async fn locked_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectInfo> {
        if self.lock_config(bucket).await?.is_none() {
            return Err(store_error(StoreError::NoObjectLock(bucket.to_owned())));
        }
        self.store
            .head_object(bucket, key, version)
            .await
            .map_err(store_error)
    }

    pub(super) async fn get_object_retention_(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let i = &req.input;
        let info = self
            .locked_version(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        let retention = info.lock.retention.ok_or_else(no_version_lock)?;
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(
                    retention.mode.as_str().to_owned(),
                )),
                retain_until_date: Some(timestamp(retention.until_ms)),
            }),
        }))
    }

    /// Sets a version's retention, or removes it (an empty `Retention`): protection may grow;
    /// it shrinks only in governance mode with `x-amz-bypass-governance-retention`.
    pub(super) async fn put_object_retention_(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let governance = governance(req.input.bypass_governance_retention, &req.extensions);
        let input = req.input;
        let retention = match input.retention.map(|r| (r.mode, r.retain_until_date)) {
            None | Some((None, None)) => None,
            Some((Some(mode), Some(until))) => {
                let until_ms = millis(&until);
                if until_ms <= self.clock.unix_millis() {
                    return Err(past());
                }
                Some(Retention {
                    mode: mode_in(mode.as_str())?,
                    until_ms,
                })
            }
            Some(_) => {
                return Err(malformed());
            }
        };
        self.store
            .update_object(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                ObjectUpdate::Retention(retention, governance),
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(super) async fn get_object_legal_hold_(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let i = &req.input;
        let info = self
            .locked_version(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        let on = info.lock.legal_hold.ok_or_else(no_version_lock)?;
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(hold_status(on)),
            }),
        }))
    }

    pub(super) async fn put_object_legal_hold_(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let input = req.input;
        let on = match input
            .legal_hold
            .and_then(|h| h.status)
            .as_ref()
            .map(ObjectLockLegalHoldStatus::as_str)
        {
            Some(ObjectLockLegalHoldStatus::ON) => true,
            Some(ObjectLockLegalHoldStatus::OFF) => false,
            _ => {
                return Err(malformed());
            }
        };
        self.store
            .update_object(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                ObjectUpdate::LegalHold(on),
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_headers_come_together_and_in_the_future() {
        let now = 1_800_000_000_000;
        let later = timestamp(now + 60_000);
        let mode = ObjectLockMode::from_static(ObjectLockMode::GOVERNANCE);
        let lock = lock_headers(Some(&mode), Some(&later), None, now).unwrap();
        assert_eq!(
            lock.retention,
            Some(Retention {
                mode: LockMode::Governance,
                until_ms: now + 60_000
            })
        );
        let code = |r: S3Result<ObjectLock>| r.unwrap_err().code().as_str().to_owned();
        assert_eq!(
            code(lock_headers(Some(&mode), None, None, now)),
            "InvalidArgument"
        );
        assert_eq!(
            code(lock_headers(None, Some(&later), None, now)),
            "InvalidArgument"
        );
        let earlier = timestamp(now - 1);
        assert_eq!(
            code(lock_headers(Some(&mode), Some(&earlier), None, now)),
            "InvalidArgument"
        );
        let on = ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON);
        assert_eq!(
            lock_headers(None, None, Some(&on), now).unwrap().legal_hold,
            Some(true)
        );
        assert!(lock_headers(None, None, None, now).unwrap().is_empty());
        assert_eq!(millis(&timestamp(now + 1)), now + 1);
    }
}
