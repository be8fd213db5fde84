//! Bucket lifecycle: S3's rules (expiration after days or at a date, the expiration of
//! noncurrent versions and of delete markers left alone, the abort of incomplete multipart
//! uploads, filtered by prefix and object size), as PutBucketLifecycleConfiguration
//! takes them and checks them, and the sweep that applies them: a pass over the buckets that
//! have rules, bounded in work, that the server runs periodically. The configuration lives in
//! the bucket's record, so it survives restarts; a pass picks up where the rules say, not where
//! the last pass stopped.
//!
//! In a bucket with versioning, an expired current version gets a delete marker (the versions
//! stay); `NoncurrentVersionExpiration` deletes versions for good, counting days from when a
//! newer version replaced them and keeping `NewerNoncurrentVersions`; and
//! `ExpiredObjectDeleteMarker` removes a delete marker that no version is left under. What
//! needs other storage classes (transitions) and tag filters are refused with
//! `NotImplemented`, never ignored.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html>
//!
//! No clock here: every check takes `now_ms`.

use s3s::dto::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    Timestamp, TimestampFormat,
};
use serde::{Deserialize, Serialize};

use crate::object_lock::Governance;
use crate::store::{
    BucketConfig, ListQuery, ObjectStore, StoreError, UploadRef, VersionEntry, VersionQuery,
};

/// Rules one configuration may hold (S3's limit).
pub const MAX_RULES: usize = 1000;
const DAY_MS: i64 = 86_400_000;

/// Why a configuration was refused: S3's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `MalformedXML`, `InvalidArgument` or `NotImplemented`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// When the objects a rule selects expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// This many days after creation, at the following midnight UTC (S3 rounds up).
    Days(u32),
    /// At this midnight UTC, milliseconds since the epoch.
    Date(i64),
}

/// One rule, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `ID`.
    pub id: String,
    /// `Status` is `Enabled`.
    pub enabled: bool,
    /// Only keys that start with this.
    pub prefix: String,
    /// Only objects larger than this many bytes.
    pub size_greater_than: Option<u64>,
    /// Only objects smaller than this many bytes.
    pub size_less_than: Option<u64>,
    /// When its objects expire.
    pub expiry: Option<Expiry>,
    /// Incomplete multipart uploads are aborted this many days after they started.
    pub abort_incomplete_after_days: Option<u32>,
    /// Noncurrent versions are deleted this many days after they became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// ... except this many of the newest noncurrent versions of each key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// A delete marker with no version left under it is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
}

/// A bucket's lifecycle configuration, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// The rules, in the order given.
    pub rules: Vec<Rule>,
}

fn midnight_after(ms: i64) -> i64 {
    (ms.div_euclid(DAY_MS) + 1) * DAY_MS
}

fn epoch_ms(date: &Timestamp) -> Option<i64> {
    let mut text = Vec::new();
    date.format(TimestampFormat::EpochSeconds, &mut text).ok()?;
    let text = String::from_utf8(text).ok()?;
    let seconds: f64 = text.parse().ok()?;
    Some((seconds * 1000.0) as i64)
}

fn timestamp(ms: i64) -> Timestamp {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    Timestamp::from(time)
}

impl Rule {
    fn selects(&self, key: &str, size: u64) -> bool {
        self.enabled
            && key.starts_with(&self.prefix)
            && self.size_greater_than.is_none_or(|min| size > min)
            && self.size_less_than.is_none_or(|max| size < max)
    }

    /// Whether an object created at `created_ms` has expired at `now_ms`.
    pub fn expires(&self, key: &str, size: u64, created_ms: i64, now_ms: i64) -> bool {
        if !self.selects(key, size) {
            return false;
        }
        match self.expiry {
            None => false,
            Some(Expiry::Days(days)) => {
                now_ms >= midnight_after(created_ms + i64::from(days - 1) * DAY_MS)
            }
            Some(Expiry::Date(at)) => now_ms >= at,
        }
    }

    /// Whether a noncurrent version, the `newer`-th newest of its key's noncurrent versions
    /// (0: the newest), noncurrent since `since_ms`, has expired at `now_ms`.
    /// Size filters do not apply to delete markers.
    pub fn expires_noncurrent(
        &self,
        key: &str,
        size: u64,
        delete_marker: bool,
        newer: usize,
        since_ms: i64,
        now_ms: i64,
    ) -> bool {
        let kept = self
            .newer_noncurrent_versions
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let selected = match delete_marker {
            true => self.enabled && key.starts_with(&self.prefix),
            false => self.selects(key, size),
        };
        selected
            && newer >= kept
            && self.noncurrent_days.is_some_and(|days| {
                now_ms >= midnight_after(since_ms + i64::from(days.max(1) - 1) * DAY_MS)
            })
    }

    /// Whether a delete marker of `key` with no version under it is to be removed.
    pub fn removes_lone_marker(&self, key: &str) -> bool {
        self.enabled && self.expired_object_delete_marker && key.starts_with(&self.prefix)
    }

    /// Whether an upload of `key` started at `initiated_ms` is to be aborted at `now_ms`.
    pub fn aborts(&self, key: &str, initiated_ms: i64, now_ms: i64) -> bool {
        self.enabled
            && key.starts_with(&self.prefix)
            && self.abort_incomplete_after_days.is_some_and(|days| {
                now_ms >= midnight_after(initiated_ms + i64::from(days.max(1) - 1) * DAY_MS)
            })
    }
}

fn positive_days(days: i32, what: &str) -> Result<u32, Refused> {
    u32::try_from(days).ok().filter(|d| *d > 0).ok_or_else(|| {
        refused(
            "InvalidArgument",
            format!("'{what}' for Expiration action must be a positive integer"),
        )
    })
}

fn size(value: Option<i64>) -> Result<Option<u64>, Refused> {
    value
        .map(|v| {
            u64::try_from(v).map_err(|_| {
                refused(
                    "InvalidArgument",
                    "Object size filters must be non-negative",
                )
            })
        })
        .transpose()
}

impl Lifecycle {
    /// Checks a configuration as PutBucketLifecycleConfiguration does.
    pub fn from_s3(config: &BucketLifecycleConfiguration) -> Result<Self, Refused> {
        if config.rules.is_empty() {
            return Err(refused(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema",
            ));
        }
        if config.rules.len() > MAX_RULES {
            return Err(refused(
                "InvalidRequest",
                format!("The number of lifecycle rules must not exceed {MAX_RULES}"),
            ));
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            rules.push(Self::rule(rule, i)?);
        }
        let mut ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(refused(
                "InvalidArgument",
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        Ok(Self { rules })
    }

    fn rule(rule: &LifecycleRule, index: usize) -> Result<Rule, Refused> {
        let not_implemented = |what: &str| {
            refused(
                "NotImplemented",
                format!("Keyless does not implement {what} in lifecycle rules"),
            )
        };
        if rule.noncurrent_version_transitions.is_some() || rule.transitions.is_some() {
            return Err(not_implemented("transitions (there is one storage class)"));
        }
        let id = rule
            .id
            .clone()
            .unwrap_or_else(|| format!("rule-{}", index + 1));
        if id.len() > 255 {
            return Err(refused(
                "InvalidArgument",
                "ID length should not exceed allowed limit of 255",
            ));
        }
        let enabled = match rule.status.as_str() {
            ExpirationStatus::ENABLED => true,
            ExpirationStatus::DISABLED => false,
            _ => {
                return Err(refused(
                    "MalformedXML",
                    "Status must be Enabled or Disabled",
                ));
            }
        };
        let (mut prefix, mut greater, mut less) = (rule.prefix.clone(), None, None);
        if let Some(filter) = &rule.filter {
            let LifecycleRuleFilter {
                and,
                object_size_greater_than,
                object_size_less_than,
                prefix: filter_prefix,
                tag,
            } = filter;
            if tag.is_some()
                || and
                    .as_ref()
                    .is_some_and(|a| a.tags.as_ref().is_some_and(|t| !t.is_empty()))
            {
                return Err(not_implemented("tag filters (objects carry no tags yet)"));
            }
            if prefix.is_some() && (filter_prefix.is_some() || and.is_some()) {
                return Err(refused(
                    "MalformedXML",
                    "a rule has a Prefix both in and outside its Filter",
                ));
            }
            if let Some(and) = and {
                prefix = and.prefix.clone().or(prefix);
                greater = and.object_size_greater_than;
                less = and.object_size_less_than;
            } else {
                prefix = filter_prefix.clone().or(prefix);
                greater = *object_size_greater_than;
                less = *object_size_less_than;
            }
        }
        let mut lone_markers = false;
        let expiry = match &rule.expiration {
            None => None,
            Some(LifecycleExpiration {
                expired_object_delete_marker: Some(remove),
                days,
                date,
            }) => {
                if days.is_some() || date.is_some() {
                    return Err(refused(
                        "InvalidArgument",
                        "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy",
                    ));
                }
                lone_markers = *remove;
                None
            }
            Some(LifecycleExpiration {
                days: Some(_),
                date: Some(_),
                ..
            }) => {
                return Err(refused(
                    "MalformedXML",
                    "an Expiration has both Days and Date",
                ));
            }
            Some(LifecycleExpiration {
                days: Some(days), ..
            }) => Some(Expiry::Days(positive_days(*days, "Days")?)),
            Some(LifecycleExpiration {
                date: Some(date), ..
            }) => {
                let ms = epoch_ms(date).unwrap_or(1);
                if ms.rem_euclid(DAY_MS) != 0 {
                    return Err(refused("InvalidArgument", "'Date' must be at midnight GMT"));
                }
                Some(Expiry::Date(ms))
            }
            Some(_) => return Err(refused("MalformedXML", "an Expiration needs Days or Date")),
        };
        let abort = match &rule.abort_incomplete_multipart_upload {
            None => None,
            Some(AbortIncompleteMultipartUpload {
                days_after_initiation: Some(days),
            }) => Some(u32::try_from(*days).ok().filter(|d| *d > 0).ok_or_else(|| {
                refused(
                    "InvalidArgument",
                    "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer",
                )
            })?),
            Some(_) => return Err(refused("MalformedXML", "AbortIncompleteMultipartUpload needs DaysAfterInitiation")),
        };
        let (noncurrent_days, newer_noncurrent_versions) = match &rule.noncurrent_version_expiration
        {
            None => (None, None),
            Some(NoncurrentVersionExpiration {
                noncurrent_days: Some(days),
                newer_noncurrent_versions,
            }) => {
                let days = u32::try_from(*days).ok().filter(|d| *d > 0).ok_or_else(|| {
                        refused(
                            "InvalidArgument",
                            "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer",
                        )
                    })?;
                let newer = newer_noncurrent_versions
                    .map(|n| {
                        u32::try_from(n)
                            .ok()
                            .filter(|n| (1..=100).contains(n))
                            .ok_or_else(|| {
                                refused(
                                    "InvalidArgument",
                                    "'NewerNoncurrentVersions' must be between 1 and 100",
                                )
                            })
                    })
                    .transpose()?;
                (Some(days), newer)
            }
            Some(_) => {
                return Err(refused(
                    "MalformedXML",
                    "NoncurrentVersionExpiration needs NoncurrentDays",
                ));
            }
        };
        if expiry.is_none() && abort.is_none() && noncurrent_days.is_none() && !lone_markers {
            return Err(refused(
                "InvalidRequest",
                "At least one action needs to be specified in a rule",
            ));
        }
        Ok(Rule {
            id,
            enabled,
            prefix: prefix.unwrap_or_default(),
            size_greater_than: size(greater)?,
            size_less_than: size(less)?,
            expiry,
            abort_incomplete_after_days: abort,
            noncurrent_days,
            newer_noncurrent_versions,
            expired_object_delete_marker: lone_markers,
        })
    }

    /// The configuration as GetBucketLifecycleConfiguration answers it.
    pub fn to_s3(&self) -> Vec<LifecycleRule> {
        self.rules
            .iter()
            .map(|rule| LifecycleRule {
                id: Some(rule.id.clone()),
                status: ExpirationStatus::from_static(if rule.enabled {
                    ExpirationStatus::ENABLED
                } else {
                    ExpirationStatus::DISABLED
                }),
                filter: Some(
                    if rule.size_greater_than.is_some() || rule.size_less_than.is_some() {
                        LifecycleRuleFilter {
                            and: Some(s3s::dto::LifecycleRuleAndOperator {
                                prefix: Some(rule.prefix.clone()),
                                object_size_greater_than: rule.size_greater_than.map(|v| v as i64),
                                object_size_less_than: rule.size_less_than.map(|v| v as i64),
                                tags: None,
                            }),
                            ..Default::default()
                        }
                    } else {
                        LifecycleRuleFilter {
                            prefix: Some(rule.prefix.clone()),
                            ..Default::default()
                        }
                    },
                ),
                expiration: match (rule.expiry, rule.expired_object_delete_marker) {
                    (Some(Expiry::Days(days)), _) => Some(LifecycleExpiration {
                        days: Some(days as i32),
                        ..Default::default()
                    }),
                    (Some(Expiry::Date(ms)), _) => Some(LifecycleExpiration {
                        date: Some(timestamp(ms)),
                        ..Default::default()
                    }),
                    (None, true) => Some(LifecycleExpiration {
                        expired_object_delete_marker: Some(true),
                        ..Default::default()
                    }),
                    (None, false) => None,
                },
                abort_incomplete_multipart_upload: rule.abort_incomplete_after_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: Some(d as i32),
                    }
                }),
                noncurrent_version_expiration: rule.noncurrent_days.map(|days| {
                    NoncurrentVersionExpiration {
                        noncurrent_days: Some(days as i32),
                        newer_noncurrent_versions: rule.newer_noncurrent_versions.map(|n| n as i32),
                    }
                }),
                noncurrent_version_transitions: None,
                prefix: None,
                transitions: None,
            })
            .collect()
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Objects deleted because they expired (a delete marker put on top, with versioning).
    pub expired: usize,
    /// Noncurrent versions and lone delete markers deleted for good.
    pub versions_removed: usize,
    /// Versions that expired but are kept because Object Lock protects them (S3 keeps them
    /// too, until their retention ends and their legal hold is lifted).
    pub locked: usize,
    /// Incomplete uploads aborted.
    pub aborted: usize,
    /// Objects and uploads looked at.
    pub examined: usize,
    /// Whether the pass stopped at its budget, with more to look at.
    pub stopped_at_budget: bool,
}

/// Where the last pass stopped at its budget, bucket by bucket, so that the next one goes on
/// from there: a bucket larger than one pass's budget is still covered, a pass at a time. Kept
/// by whoever runs the passes (a fresh one starts from the beginning).
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    /// Where the versions pass goes on.
    versions: std::collections::HashMap<String, Resume>,
    /// The last key the current-objects pass looked at.
    objects: std::collections::HashMap<String, String>,
}

/// Where a versions pass goes on: after the last version it kept, with what it knew of the
/// key there (the entry before, and how many noncurrent versions of its key came by).
#[derive(Debug, Clone)]
struct Resume {
    key_marker: String,
    version_marker: Option<String>,
    previous: Option<VersionEntry>,
    noncurrent: usize,
}

/// One pass of every bucket's rules at `now_ms`, looking at `budget` objects, versions and
/// uploads at most; a pass stopped at its budget leaves `cursor` where the next one goes on.
pub async fn sweep<S: ObjectStore>(
    store: &S,
    now_ms: i64,
    budget: usize,
    cursor: &mut Cursor,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for bucket in store.list_buckets().await? {
        let Some(text) = store
            .bucket_config(&bucket.name, BucketConfig::Lifecycle)
            .await?
        else {
            continue;
        };
        let Ok(lifecycle) = serde_json::from_str::<Lifecycle>(&text) else {
            tracing::warn!(bucket = %bucket.name, "unreadable lifecycle configuration; skipped");
            continue;
        };
        if lifecycle
            .rules
            .iter()
            .any(|r| r.abort_incomplete_after_days.is_some())
        {
            for upload in store.list_uploads(&bucket.name, "").await? {
                if swept.examined >= budget {
                    swept.stopped_at_budget = true;
                    return Ok(swept);
                }
                swept.examined += 1;
                if lifecycle
                    .rules
                    .iter()
                    .any(|r| r.aborts(&upload.key, upload.initiated_ms, now_ms))
                {
                    let target = UploadRef {
                        bucket: &bucket.name,
                        key: &upload.key,
                        upload_id: &upload.upload_id,
                    };
                    match store.abort_upload(target).await {
                        Ok(()) => swept.aborted += 1,
                        Err(StoreError::NoSuchUpload(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let versioned = store.versioning(&bucket.name).await?.keeps_versions();
        if versioned
            && lifecycle
                .rules
                .iter()
                .any(|r| r.noncurrent_days.is_some() || r.expired_object_delete_marker)
            && !sweep_versions(
                store,
                &bucket.name,
                &lifecycle,
                now_ms,
                budget,
                &mut swept,
                cursor,
            )
            .await?
        {
            return Ok(swept);
        }
        if !lifecycle.rules.iter().any(|r| r.expiry.is_some()) {
            continue;
        }
        let mut after: Option<String> = cursor.objects.remove(&bucket.name);
        loop {
            let page = store
                .list_objects(
                    &bucket.name,
                    ListQuery {
                        after: after.as_deref(),
                        max_keys: 1000,
                        ..Default::default()
                    },
                )
                .await?;
            for object in &page.objects {
                if swept.examined >= budget {
                    swept.stopped_at_budget = true;
                    if let Some(last) = after {
                        cursor.objects.insert(bucket.name.clone(), last);
                    }
                    return Ok(swept);
                }
                swept.examined += 1;
                if lifecycle
                    .rules
                    .iter()
                    .any(|r| r.expires(&object.key, object.size, object.last_modified_ms, now_ms))
                {
                    store
                        .delete_object(&bucket.name, &object.key, None, Governance::Binds)
                        .await?;
                    swept.expired += 1;
                }
                after = Some(object.key.clone());
            }
            if !page.truncated {
                break;
            }
        }
    }
    Ok(swept)
}

/// Deletes a version for good, unless Object Lock protects it.
async fn remove_version<S: ObjectStore>(
    store: &S,
    bucket: &str,
    key: &str,
    version: &str,
    swept: &mut Swept,
) -> Result<(), StoreError> {
    match store
        .delete_object(bucket, key, Some(version), Governance::Binds)
        .await
    {
        Ok(_) => swept.versions_removed += 1,
        Err(StoreError::ObjectLocked(_)) => swept.locked += 1,
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The versions pass over one bucket: noncurrent versions and lone delete markers, as the
/// listing streams by (newest first, so each version's successor is the entry before it),
/// from where the last pass stopped. A version to delete that is the last of its page is
/// deleted only once the next page is listed, so the listing's marker stays valid. Returns
/// whether it reached the bucket's end within the budget.
async fn sweep_versions<S: ObjectStore>(
    store: &S,
    bucket: &str,
    lifecycle: &Lifecycle,
    now_ms: i64,
    budget: usize,
    swept: &mut Swept,
    cursor: &mut Cursor,
) -> Result<bool, StoreError> {
    let id = |e: &VersionEntry| e.info.version_id.clone().unwrap_or_else(|| "null".into());
    // The entry before (the next one's successor, or its key's lone delete marker so far), and
    // how many noncurrent versions of its key came by.
    let (mut key_marker, mut version_marker, mut previous, mut noncurrent) =
        match cursor.versions.remove(bucket) {
            Some(r) => (
                Some(r.key_marker),
                r.version_marker,
                r.previous,
                r.noncurrent,
            ),
            None => (None, None, None, 0),
        };
    let mut deferred: Option<(String, String)> = None;
    let mut last_kept: Option<(String, Option<String>)> = None;
    loop {
        let page = store
            .list_versions(
                bucket,
                VersionQuery {
                    key_marker: key_marker.as_deref(),
                    version_id_marker: version_marker.as_deref(),
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await?;
        if let Some((key, version)) = deferred.take() {
            remove_version(store, bucket, &key, &version, swept).await?;
        }
        let count = page.versions.len();
        for (i, entry) in page.versions.into_iter().enumerate() {
            let new_key = previous
                .as_ref()
                .is_none_or(|p| p.info.key != entry.info.key);
            if new_key {
                // The key before this one was a delete marker alone.
                if let Some(p) = previous
                    .take()
                    .filter(|p| p.delete_marker && p.is_latest && noncurrent == 0)
                    && lifecycle
                        .rules
                        .iter()
                        .any(|r| r.removes_lone_marker(&p.info.key))
                {
                    remove_version(store, bucket, &p.info.key, &id(&p), swept).await?;
                }
                noncurrent = 0;
            }
            if swept.examined >= budget {
                swept.stopped_at_budget = true;
                if let Some((key, version)) = deferred.take() {
                    remove_version(store, bucket, &key, &version, swept).await?;
                }
                if let Some((key_marker, version_marker)) = last_kept {
                    cursor.versions.insert(
                        bucket.to_owned(),
                        Resume {
                            key_marker,
                            version_marker,
                            previous,
                            noncurrent,
                        },
                    );
                }
                return Ok(false);
            }
            swept.examined += 1;
            let expired = !new_key
                && previous.as_ref().is_some_and(|successor| {
                    lifecycle.rules.iter().any(|r| {
                        r.expires_noncurrent(
                            &entry.info.key,
                            entry.info.size,
                            entry.delete_marker,
                            noncurrent,
                            successor.info.last_modified_ms,
                            now_ms,
                        )
                    })
                });
            if !new_key {
                noncurrent += 1;
            }
            if expired {
                if i + 1 == count && page.truncated {
                    deferred = Some((entry.info.key.clone(), id(&entry)));
                } else {
                    remove_version(store, bucket, &entry.info.key, &id(&entry), swept).await?;
                }
            } else {
                last_kept = Some((entry.info.key.clone(), Some(id(&entry))));
            }
            // The successor of the next version: S3 counts a version's noncurrent days from
            // when the one after it was written, whether or not that one is still there.
            previous = Some(entry);
        }
        match (page.truncated, page.next_key_marker) {
            (true, Some(next)) => {
                key_marker = Some(next);
                version_marker = page.next_version_id_marker;
            }
            _ => break,
        }
    }
    if let Some((key, version)) = deferred.take() {
        remove_version(store, bucket, &key, &version, swept).await?;
    }
    if let Some(p) = previous.filter(|p| p.delete_marker && p.is_latest && noncurrent == 0)
        && lifecycle
            .rules
            .iter()
            .any(|r| r.removes_lone_marker(&p.info.key))
    {
        remove_version(store, bucket, &p.info.key, &id(&p), swept).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

    /// Stores one byte under `key`.
    async fn put_x(store: &impl ObjectStore, bucket: &str, key: &str) {
        let body: crate::store::ByteStream = Box::pin(futures_util::stream::iter([Ok(
            bytes::Bytes::from_static(b"x"),
        )]));
        store
            .put_object(bucket, key, body, crate::store::PutOptions::default())
            .await
            .unwrap();
    }

    fn rule(expiry: Option<Expiry>, abort: Option<u32>) -> Rule {
        Rule {
            id: "r".into(),
            enabled: true,
            prefix: "logs/".into(),
            size_greater_than: None,
            size_less_than: Some(1000),
            expiry,
            abort_incomplete_after_days: abort,
            noncurrent_days: None,
            newer_noncurrent_versions: None,
            expired_object_delete_marker: false,
        }
    }

    #[test]
    fn days_count_to_the_following_midnight_utc() {
        let r = rule(Some(Expiry::Days(1)), None);
        let midnight = midnight_after(T0);
        assert!(!r.expires("logs/a", 10, T0, midnight - 1));
        assert!(r.expires("logs/a", 10, T0, midnight));
        // Outside the filter: never.
        assert!(!r.expires("other/a", 10, T0, midnight + 10 * DAY_MS));
        assert!(!r.expires("logs/a", 5000, T0, midnight + 10 * DAY_MS));
        let r = rule(Some(Expiry::Days(3)), None);
        assert!(!r.expires("logs/a", 10, T0, midnight + 2 * DAY_MS - 1));
        assert!(r.expires("logs/a", 10, T0, midnight + 2 * DAY_MS));
        let disabled = Rule {
            enabled: false,
            ..r
        };
        assert!(!disabled.expires("logs/a", 10, T0, T0 + 100 * DAY_MS));
    }

    #[test]
    fn uploads_abort_after_their_days() {
        let r = rule(None, Some(2));
        let midnight = midnight_after(T0);
        assert!(!r.aborts("logs/x", T0, midnight + DAY_MS - 1));
        assert!(r.aborts("logs/x", T0, midnight + DAY_MS));
        assert!(!r.aborts("else/x", T0, midnight + 9 * DAY_MS));
    }

    fn config(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
        BucketLifecycleConfiguration { rules }
    }

    fn s3_rule(expiration: Option<LifecycleExpiration>) -> LifecycleRule {
        LifecycleRule {
            id: Some("r1".into()),
            status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
            filter: Some(LifecycleRuleFilter {
                prefix: Some("tmp/".into()),
                ..Default::default()
            }),
            expiration,
            abort_incomplete_multipart_upload: None,
            noncurrent_version_expiration: None,
            noncurrent_version_transitions: None,
            prefix: None,
            transitions: None,
        }
    }

    #[test]
    fn configurations_are_checked_as_s3_checks_them() {
        let days = |d| {
            Some(LifecycleExpiration {
                days: Some(d),
                ..Default::default()
            })
        };
        let ok = Lifecycle::from_s3(&config(vec![s3_rule(days(7))])).unwrap();
        assert_eq!(ok.rules[0].prefix, "tmp/");
        assert_eq!(ok.rules[0].expiry, Some(Expiry::Days(7)));
        // It reads back as it was given.
        let back = Lifecycle::from_s3(&config(ok.to_s3())).unwrap();
        assert_eq!(back, ok);
        for (bad, code) in [
            (config(vec![]), "MalformedXML"),
            (config(vec![s3_rule(days(0))]), "InvalidArgument"),
            (config(vec![s3_rule(None)]), "InvalidRequest"),
            (
                config(vec![s3_rule(days(1)), s3_rule(days(2))]),
                "InvalidArgument",
            ),
            (
                config(vec![LifecycleRule {
                    noncurrent_version_expiration: Some(Default::default()),
                    ..s3_rule(days(1))
                }]),
                "MalformedXML",
            ),
            (
                config(vec![s3_rule(Some(LifecycleExpiration {
                    expired_object_delete_marker: Some(true),
                    days: Some(3),
                    ..Default::default()
                }))]),
                "InvalidArgument",
            ),
            (
                config(vec![LifecycleRule {
                    noncurrent_version_transitions: Some(Default::default()),
                    ..s3_rule(days(1))
                }]),
                "NotImplemented",
            ),
        ] {
            assert_eq!(Lifecycle::from_s3(&bad).unwrap_err().code, code, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_sweep_deletes_what_expired_aborts_old_uploads_and_keeps_to_its_budget() {
        use crate::store::{MemoryStore, PutOptions};
        let clock = std::sync::Arc::new(keyless_types::FixedClock::at_unix((T0 / 1000) as u64));
        let store = MemoryStore::new(clock);
        store.create_bucket("b").await.unwrap();
        store.create_bucket("untouched").await.unwrap();
        for key in ["logs/1", "logs/2", "keep/1"] {
            for bucket in ["b", "untouched"] {
                put_x(&store, bucket, key).await;
            }
        }
        store
            .create_upload("b", "logs/big", PutOptions::default())
            .await
            .unwrap();
        let lifecycle = Lifecycle {
            rules: vec![rule(Some(Expiry::Days(1)), Some(1))],
        };
        store
            .set_bucket_config(
                "b",
                BucketConfig::Lifecycle,
                Some(serde_json::to_string(&lifecycle).unwrap()),
            )
            .await
            .unwrap();
        // Not yet.
        let early = sweep(&store, T0 + 1000, 100, &mut Cursor::default())
            .await
            .unwrap();
        assert_eq!((early.expired, early.aborted), (0, 0));
        // A budget of 2: stopped, with work left.
        let later = midnight_after(T0) + 1;
        let bounded = sweep(&store, later, 2, &mut Cursor::default())
            .await
            .unwrap();
        assert!(
            bounded.stopped_at_budget && bounded.examined == 2,
            "{bounded:?}"
        );
        let swept = sweep(&store, later, 100, &mut Cursor::default())
            .await
            .unwrap();
        assert!(!swept.stopped_at_budget);
        let listed = |bucket: &'static str| {
            let store = &store;
            async move {
                let page = store
                    .list_objects(
                        bucket,
                        ListQuery {
                            max_keys: 100,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                page.objects.into_iter().map(|o| o.key).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed("b").await, ["keep/1"]);
        assert_eq!(listed("untouched").await.len(), 3);
        assert!(store.list_uploads("b", "").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_sweep_expires_noncurrent_versions_and_lone_delete_markers() {
        use crate::store::{MemoryStore, Versioning};
        let clock = std::sync::Arc::new(keyless_types::FixedClock::at_unix((T0 / 1000) as u64));
        let store = MemoryStore::new(clock);
        store.create_bucket("b").await.unwrap();
        store
            .set_versioning("b", Versioning::Enabled)
            .await
            .unwrap();
        for key in ["logs/k", "logs/k", "logs/k", "gone/k"] {
            put_x(&store, "b", key).await;
        }
        store
            .delete_object("b", "gone/k", None, Governance::Binds)
            .await
            .unwrap();
        let noncurrent = |prefix: &str, keep: Option<u32>, markers: bool| Rule {
            id: prefix.into(),
            prefix: prefix.into(),
            size_less_than: None,
            noncurrent_days: Some(1),
            newer_noncurrent_versions: keep,
            expired_object_delete_marker: markers,
            ..rule(None, None)
        };
        let lifecycle = Lifecycle {
            rules: vec![
                noncurrent("logs/", Some(1), false),
                noncurrent("gone/", None, true),
            ],
        };
        let back = Lifecycle::from_s3(&config(lifecycle.to_s3())).unwrap();
        assert_eq!(back, lifecycle);
        store
            .set_bucket_config(
                "b",
                BucketConfig::Lifecycle,
                Some(serde_json::to_string(&lifecycle).unwrap()),
            )
            .await
            .unwrap();
        let count = |prefix: &'static str| {
            let store = &store;
            async move {
                store
                    .list_versions(
                        "b",
                        VersionQuery {
                            prefix,
                            max_keys: 100,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap()
                    .versions
                    .len()
            }
        };
        // Not a day noncurrent yet: nothing goes.
        assert_eq!(
            sweep(&store, T0 + 1000, 100, &mut Cursor::default())
                .await
                .unwrap()
                .versions_removed,
            0
        );
        let later = midnight_after(T0) + 1;
        let swept = sweep(&store, later, 100, &mut Cursor::default())
            .await
            .unwrap();
        // logs/k keeps its current and newest noncurrent version; gone/k loses its version.
        assert_eq!(swept.versions_removed, 2, "{swept:?}");
        assert_eq!(count("logs/").await, 2);
        assert_eq!(count("gone/").await, 1);
        // The marker is alone now: the next pass removes it.
        let swept = sweep(&store, later, 100, &mut Cursor::default())
            .await
            .unwrap();
        assert_eq!(swept.versions_removed, 1, "{swept:?}");
        assert_eq!(count("gone/").await, 0);
    }

    #[tokio::test]
    async fn versions_under_object_lock_outlive_their_expiry() {
        use crate::object_lock::{LockConfig, ObjectLock};
        use crate::store::{MemoryStore, ObjectUpdate, Versioning};
        let clock = std::sync::Arc::new(keyless_types::FixedClock::at_unix((T0 / 1000) as u64));
        let store = MemoryStore::new(clock);
        store.create_bucket("b").await.unwrap();
        store
            .set_versioning("b", Versioning::Enabled)
            .await
            .unwrap();
        let no_default = serde_json::to_string(&LockConfig::default()).unwrap();
        store
            .set_bucket_config("b", BucketConfig::ObjectLock, Some(no_default))
            .await
            .unwrap();
        put_x(&store, "b", "logs/k").await;
        let held = store.head_object("b", "logs/k", None).await.unwrap();
        store
            .update_object("b", "logs/k", None, ObjectUpdate::LegalHold(true))
            .await
            .unwrap();
        put_x(&store, "b", "logs/k").await;
        let lifecycle = Lifecycle {
            rules: vec![Rule {
                size_less_than: None,
                noncurrent_days: Some(1),
                ..rule(None, None)
            }],
        };
        store
            .set_bucket_config(
                "b",
                BucketConfig::Lifecycle,
                Some(serde_json::to_string(&lifecycle).unwrap()),
            )
            .await
            .unwrap();
        let later = midnight_after(T0) + 10 * DAY_MS;
        let swept = sweep(&store, later, 100, &mut Cursor::default())
            .await
            .unwrap();
        assert_eq!((swept.versions_removed, swept.locked), (0, 1), "{swept:?}");
        let version = held.version_id.as_deref();
        let kept = store.head_object("b", "logs/k", version).await.unwrap();
        assert_eq!(
            kept.lock,
            ObjectLock {
                retention: None,
                legal_hold: Some(true)
            }
        );
        // Once the hold is lifted the next pass removes it.
        store
            .update_object("b", "logs/k", version, ObjectUpdate::LegalHold(false))
            .await
            .unwrap();
        let swept = sweep(&store, later, 100, &mut Cursor::default())
            .await
            .unwrap();
        assert_eq!((swept.versions_removed, swept.locked), (1, 0), "{swept:?}");
    }

    #[tokio::test]
    async fn passes_over_budget_go_on_where_the_last_one_stopped() {
        use crate::store::{MemoryStore, Versioning};
        let clock = std::sync::Arc::new(keyless_types::FixedClock::at_unix((T0 / 1000) as u64));
        let store = MemoryStore::new(clock);
        store.create_bucket("b").await.unwrap();
        store
            .set_versioning("b", Versioning::Enabled)
            .await
            .unwrap();
        // One hot key with 30 versions, and 10 keys after it with 3 each.
        let mut keys = vec!["logs/hot".to_owned(); 30];
        for i in 0..10 {
            keys.extend(std::iter::repeat_n(format!("logs/k{i}"), 3));
        }
        for key in &keys {
            put_x(&store, "b", key).await;
        }
        let lifecycle = Lifecycle {
            rules: vec![Rule {
                size_less_than: None,
                noncurrent_days: Some(1),
                newer_noncurrent_versions: Some(1),
                ..rule(None, None)
            }],
        };
        store
            .set_bucket_config(
                "b",
                BucketConfig::Lifecycle,
                Some(serde_json::to_string(&lifecycle).unwrap()),
            )
            .await
            .unwrap();
        let later = midnight_after(T0) + 1;
        let mut cursor = Cursor::default();
        let mut passes = 0;
        loop {
            passes += 1;
            let swept = sweep(&store, later, 8, &mut cursor).await.unwrap();
            if !swept.stopped_at_budget {
                break;
            }
            assert!(passes < 20, "no progress");
        }
        assert!(passes > 3, "{passes}");
        // Every key keeps its current and newest noncurrent version.
        let left = store
            .list_versions(
                "b",
                VersionQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .versions;
        assert_eq!(left.len(), 22, "{left:?}");
    }
}
