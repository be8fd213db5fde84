//! Conditional requests as S3 evaluates them: `If-Match`, `If-None-Match`, `If-Modified-Since`
//! and `If-Unmodified-Since` on GET and HEAD, their `x-amz-copy-source-if-*` forms on copies,
//! and the conditional writes of PUT and CompleteMultipartUpload (`If-None-Match: *`,
//! `If-Match`), which the store checks in the same transaction that commits the object, so
//! that of two writers racing for one key exactly one wins.
//!
//! Pure: the caller passes the object's metadata.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax>
//! <https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2> (the order of evaluation)

use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};

use crate::store::{ObjectInfo, WriteCondition};

/// A conditional write S3 does not do: `If-None-Match` with an ETag (S3 takes only `*` there),
/// or both headers at once. S3 answers `NotImplemented`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedWriteCondition;

/// The condition of a conditional write from its `If-Match` and `If-None-Match`.
pub fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Result<Option<WriteCondition>, UnsupportedWriteCondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::Exists)),
        (Some(ETagCondition::ETag(etag)), None) => {
            Ok(Some(WriteCondition::ETag(etag.value().to_owned())))
        }
        (None, Some(ETagCondition::ETag(_))) | (Some(_), Some(_)) => Err(UnsupportedWriteCondition),
    }
}

/// The conditions of one request on one object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    /// `If-Match`: the object's ETag must be this (or it must exist, for `*`).
    pub if_match: Option<&'a ETagCondition>,
    /// `If-None-Match`: the object's ETag must not be this (or it must not exist, for `*`).
    pub if_none_match: Option<&'a ETagCondition>,
    /// `If-Modified-Since`, seconds since the epoch.
    pub if_modified_since: Option<i64>,
    /// `If-Unmodified-Since`, seconds since the epoch.
    pub if_unmodified_since: Option<i64>,
}

/// Why a condition stops a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// 304 Not Modified (GET and HEAD, `If-None-Match` or `If-Modified-Since`).
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Seconds since the epoch of an HTTP date.
pub fn seconds(timestamp: &Timestamp) -> i64 {
    let mut text = Vec::new();
    let _ = timestamp.format(TimestampFormat::EpochSeconds, &mut text);
    let text = String::from_utf8_lossy(&text);
    // `1700000000` or `1700000000.5`: whole seconds are what HTTP dates carry.
    text.split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        // S3's ETags are strong; a client's `W/"..."` compares by value, as S3 does.
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl Conditions<'_> {
    /// Whether any condition is given.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// The conditions of a GET or HEAD on `object`, in S3's order: `If-Match` (412), else
    /// `If-Unmodified-Since` (412); then `If-None-Match` (304), else `If-Modified-Since` (304).
    /// A true `If-Match` makes `If-Unmodified-Since` moot, and a true `If-None-Match` makes
    /// `If-Modified-Since` moot, as S3 documents.
    pub fn check_read(&self, object: &ObjectInfo) -> Result<(), Unmet> {
        // HTTP dates have whole seconds: an object written at 10.7 s was modified "at 10".
        let modified = object.last_modified_ms.div_euclid(1000);
        match (self.if_match, self.if_unmodified_since) {
            (Some(condition), _) if !matches(condition, &object.etag) => {
                return Err(Unmet::PreconditionFailed);
            }
            (None, Some(since)) if modified > since => return Err(Unmet::PreconditionFailed),
            _ => {}
        }
        match (self.if_none_match, self.if_modified_since) {
            (Some(condition), _) if matches(condition, &object.etag) => Err(Unmet::NotModified),
            (None, Some(since)) if modified <= since => Err(Unmet::NotModified),
            _ => Ok(()),
        }
    }

    /// The `x-amz-copy-source-if-*` conditions of a copy on its source: the same tests, every
    /// failure a 412.
    pub fn check_copy_source(&self, source: &ObjectInfo) -> Result<(), Unmet> {
        self.check_read(source)
            .map_err(|_| Unmet::PreconditionFailed)
    }
}

#[cfg(test)]
mod tests {
    use s3s::dto::ETag;

    use super::*;

    const ETAG: &str = "0cc175b9c0f1b6a831c399e269772661";
    /// Last modified at 1,700,000,000.5 s.
    const MODIFIED: i64 = 1_700_000_000;

    fn object() -> ObjectInfo {
        ObjectInfo {
            key: "k".into(),
            size: 1,
            etag: ETAG.into(),
            last_modified_ms: MODIFIED * 1000 + 500,
            content_type: None,
            metadata: Default::default(),
            sealed: false,
            tags: Vec::new(),
            headers: Default::default(),
            parts: Vec::new(),
            version_id: None,
            versioned: false,
            lock: Default::default(),
        }
    }

    fn etag(value: &str) -> ETagCondition {
        ETagCondition::ETag(ETag::Strong(value.into()))
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let (right, wrong) = (etag(ETAG), etag("other"));
        let o = object();
        let c = |if_match, if_unmodified_since| Conditions {
            if_match,
            if_unmodified_since,
            ..Default::default()
        };
        assert_eq!(c(Some(&right), None).check_read(&o), Ok(()));
        assert_eq!(c(Some(&ETagCondition::Any), None).check_read(&o), Ok(()));
        assert_eq!(
            c(Some(&wrong), None).check_read(&o),
            Err(Unmet::PreconditionFailed)
        );
        assert_eq!(
            c(None, Some(MODIFIED - 1)).check_read(&o),
            Err(Unmet::PreconditionFailed)
        );
        // Within the same second is not "modified since".
        assert_eq!(c(None, Some(MODIFIED)).check_read(&o), Ok(()));
        // A true If-Match wins over a false If-Unmodified-Since.
        assert_eq!(c(Some(&right), Some(MODIFIED - 1)).check_read(&o), Ok(()));
    }

    #[test]
    fn if_none_match_and_if_modified_since_answer_304() {
        let (right, wrong) = (etag(ETAG), etag("other"));
        let o = object();
        let c = |if_none_match, if_modified_since| Conditions {
            if_none_match,
            if_modified_since,
            ..Default::default()
        };
        assert_eq!(
            c(Some(&right), None).check_read(&o),
            Err(Unmet::NotModified)
        );
        assert_eq!(
            c(Some(&ETagCondition::Any), None).check_read(&o),
            Err(Unmet::NotModified)
        );
        assert_eq!(c(Some(&wrong), None).check_read(&o), Ok(()));
        assert_eq!(
            c(None, Some(MODIFIED)).check_read(&o),
            Err(Unmet::NotModified)
        );
        assert_eq!(
            c(None, Some(MODIFIED + 86_400)).check_read(&o),
            Err(Unmet::NotModified)
        );
        assert_eq!(c(None, Some(MODIFIED - 1)).check_read(&o), Ok(()));
        // A true If-None-Match wins over a false If-Modified-Since.
        assert_eq!(c(Some(&wrong), Some(MODIFIED + 10)).check_read(&o), Ok(()));
    }

    #[test]
    fn a_412_comes_before_a_304_and_copies_only_know_412() {
        let (right, wrong) = (etag(ETAG), etag("other"));
        let o = object();
        let both = Conditions {
            if_match: Some(&wrong),
            if_none_match: Some(&right),
            ..Default::default()
        };
        assert_eq!(both.check_read(&o), Err(Unmet::PreconditionFailed));
        let not_modified = Conditions {
            if_none_match: Some(&right),
            ..Default::default()
        };
        assert_eq!(
            not_modified.check_copy_source(&o),
            Err(Unmet::PreconditionFailed)
        );
        assert!(Conditions::default().is_empty());
        assert_eq!(Conditions::default().check_read(&o), Ok(()));
    }

    #[test]
    fn writes_take_if_none_match_star_and_if_match() {
        let e = etag(ETAG);
        assert_eq!(write_condition(None, None), Ok(None));
        assert_eq!(
            write_condition(None, Some(&ETagCondition::Any)),
            Ok(Some(WriteCondition::Absent))
        );
        assert_eq!(
            write_condition(Some(&e), None),
            Ok(Some(WriteCondition::ETag(ETAG.into())))
        );
        assert_eq!(
            write_condition(Some(&ETagCondition::Any), None),
            Ok(Some(WriteCondition::Exists))
        );
        assert!(write_condition(None, Some(&e)).is_err());
        assert!(write_condition(Some(&e), Some(&ETagCondition::Any)).is_err());
    }

    #[test]
    fn http_dates_read_as_epoch_seconds() {
        let date =
            Timestamp::parse(TimestampFormat::HttpDate, "Tue, 14 Nov 2023 22:13:20 GMT").unwrap();
        assert_eq!(seconds(&date), 1_700_000_000);
    }
}
