//! The `ObjectStore` seam: buckets, objects and bucket policies, behind a trait with an
//! in-memory double (`MemoryStore`) and the embedded default (`DiskStore`: files and redb).
//!
//! Semantics follow S3's: deleting an absent key succeeds; listings are in UTF-8 byte order of
//! keys, with `CommonPrefixes` rolled up at the delimiter and counted against `max-keys`.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html>

mod disk;
mod memory;
pub mod seal;
mod versions;

pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use versions::{Deleted, VersionEntry, VersionPage, VersionQuery, Versioning};
pub(crate) use versions::{check_version_id, new_version_id, paginate_versions, version_seq};

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::object_lock::{Governance, LockConfig, Locked, ObjectLock, Retention};
use keyless_types::hex;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Object data as a stream of chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// The bucket still holds objects.
    #[error("bucket `{0}` is not empty")]
    BucketNotEmpty(String),
    /// The bucket exists already.
    #[error("bucket `{0}` already exists")]
    BucketAlreadyExists(String),
    /// The key does not exist.
    #[error("key `{key}` does not exist in bucket `{bucket}`")]
    NoSuchKey {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The data does not match the digest the client sent; nothing was stored.
    #[error("the body does not match its Content-MD5")]
    BadDigest,
    /// The data does not match the `x-amz-checksum-*` the client sent; nothing was stored.
    #[error("the body does not match its {0} checksum")]
    ChecksumMismatch(&'static str),
    /// The body ended before (or ran past) its declared length; nothing was stored.
    #[error("the body was {got} bytes where {expected} were declared")]
    IncompleteBody {
        /// Declared length.
        expected: u64,
        /// Received length.
        got: u64,
    },
    /// A conditional write's condition does not hold (`If-None-Match: *` on an existing key,
    /// `If-Match` with another ETag); nothing was written.
    #[error("the write's precondition does not hold")]
    PreconditionFailed,
    /// The range lies outside the object.
    #[error("the range is not satisfiable for an object of {size} bytes")]
    InvalidRange {
        /// The object's size.
        size: u64,
    },
    /// The version does not exist (or is not of this key).
    #[error("version `{version_id}` of `{key}` does not exist in bucket `{bucket}`")]
    NoSuchVersion {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The version asked for.
        version_id: String,
    },
    /// A version id that no version can have (neither `null` nor one Keyless made).
    #[error("`{0}` is not a version id")]
    InvalidVersionId(String),
    /// The key's latest version (`requested: false`) or the version asked for is a delete
    /// marker.
    #[error("the version is a delete marker")]
    DeleteMarker {
        /// The marker's version id (`None`: the null version).
        version_id: Option<String>,
        /// Whether the request named the version (S3 answers 405 then, else 404).
        requested: bool,
    },
    /// The multipart upload does not exist (or was completed or aborted).
    #[error("upload `{0}` does not exist")]
    NoSuchUpload(String),
    /// A part listed in a completion was not uploaded, or its ETag differs.
    #[error("part {0} was not uploaded or its ETag does not match")]
    InvalidPart(u32),
    /// Parts listed in a completion are not in ascending order.
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is smaller than 5 MiB.
    #[error("part {part} is {size} bytes; every part but the last needs at least 5 MiB")]
    EntityTooSmall {
        /// The part number.
        part: u32,
        /// Its size.
        size: u64,
    },
    /// The client's body stream failed; nothing was stored.
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// Disk IO failed.
    #[error("storage IO failed: {0}")]
    Io(#[from] io::Error),
    /// Sealed data or a data key could not be opened (altered on disk, or a master key
    /// missing); a fault of the server, never of the client.
    #[error("encryption at rest: {0}")]
    Sealed(String),
    /// Object Lock forbids the deletion or change (a retention in force, a legal hold).
    #[error("object lock: {0}")]
    ObjectLocked(#[from] Locked),
    /// Object Lock and the bucket's versioning disagree: Object Lock needs versioning enabled,
    /// and keeps it so (S3's `InvalidBucketState`, with this text).
    #[error("{0}")]
    InvalidBucketState(&'static str),
    /// A lock asked for an object in a bucket without Object Lock.
    #[error("bucket `{0}` has no Object Lock configuration")]
    NoObjectLock(String),
    /// The metadata database failed.
    #[error("metadata database failed: {0}")]
    Database(String),
    /// The upstream store (gateway mode) refused the request with an S3 error Keyless has no
    /// variant for: its status, code and message pass through to the client.
    #[error("the upstream store answered {status} {code}: {message}")]
    Upstream {
        /// The HTTP status, 400 to 599.
        status: u16,
        /// The S3 error code, such as `NotImplemented`.
        code: String,
        /// Its message.
        message: String,
    },
    /// The upstream store could not be reached or did not answer in time: retryable.
    #[error("the upstream store is unavailable: {0}")]
    Unavailable(String),
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Its name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: i64,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag without quotes: the MD5 of the data in hex.
    pub etag: String,
    /// Last modification, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// `Content-Type`, as stored.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), names lowercased.
    pub metadata: BTreeMap<String, String>,
    /// Whether its bytes are encrypted at rest (SSE-S3, `x-amz-server-side-encryption:
    /// AES256`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Its tags (`x-amz-tagging`, PutObjectTagging), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// `Cache-Control`, `Content-Disposition` and the other headers stored as given.
    #[serde(default, skip_serializing_if = "ContentHeaders::is_empty")]
    pub headers: ContentHeaders,
    /// The parts of an object completed from a multipart upload, in order; empty for an object
    /// stored whole (and for multipart objects written before parts were recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ObjectPart>,
    /// Its version id in a bucket with versioning; `None` for the null version (every object
    /// of a bucket that never had versioning, and those written while it was suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Whether it is a version in a bucket with versioning (where the null version answers
    /// `x-amz-version-id: null`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    /// Its Object Lock retention and legal hold.
    #[serde(default, skip_serializing_if = "ObjectLock::is_empty")]
    pub lock: ObjectLock,
}

/// The headers S3 stores with an object as the PUT (or CreateMultipartUpload, or a copy with
/// `REPLACE`) gave them, and returns on GET and HEAD.
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html#API_PutObject_RequestSyntax>
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Expires`, an HTTP date as S3 writes it (`Wed, 21 Oct 2015 07:28:00 GMT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl ContentHeaders {
    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One part of a multipart object, as GET with `partNumber` and GetObjectAttributes need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPart {
    /// The part number it was uploaded with.
    pub number: u32,
    /// Its size in bytes.
    pub size: u64,
}

impl ObjectInfo {
    /// A delete marker of `key` made at `now_ms`: no data, no ETag.
    pub(crate) fn delete_marker(key: &str, version_id: Option<String>, now_ms: i64) -> Self {
        Self {
            key: key.to_owned(),
            size: 0,
            etag: String::new(),
            last_modified_ms: now_ms,
            content_type: None,
            metadata: BTreeMap::new(),
            sealed: false,
            tags: Vec::new(),
            headers: ContentHeaders::default(),
            parts: Vec::new(),
            version_id,
            versioned: true,
            lock: ObjectLock::default(),
        }
    }

    /// The version id as S3 answers it: the id, `null` for the null version of a bucket with
    /// versioning, nothing without versioning.
    pub fn version_header(&self) -> Option<String> {
        self.version_id
            .clone()
            .or_else(|| self.versioned.then(|| "null".to_owned()))
    }

    /// The `(offset, length)` of part `number` and the part count, or `None` when the object
    /// has no such part. An object stored whole is one part.
    pub fn part_range(&self, number: u32) -> Option<((u64, u64), usize)> {
        if self.parts.is_empty() {
            return (number == 1).then_some(((0, self.size), 1));
        }
        let mut offset = 0;
        for part in &self.parts {
            if part.number == number {
                return Some(((offset, part.size), self.parts.len()));
            }
            offset += part.size;
        }
        None
    }
}

/// The parts of a completed upload as the object records them.
pub(crate) fn object_parts(parts: &[PartInfo]) -> Vec<ObjectPart> {
    parts
        .iter()
        .map(|p| ObjectPart {
            number: p.part_number,
            size: p.size,
        })
        .collect()
}

/// An extra check of a body as it streams, such as a client's `x-amz-checksum-*`. The store
/// feeds it every chunk and asks it once the body is whole, before anything is committed.
pub trait BodyVerifier: Send + Sync {
    /// Sees the next chunk.
    fn update(&mut self, chunk: &[u8]);
    /// Whether the body was right.
    fn verify(self: Box<Self>) -> Result<(), StoreError>;
}

/// A [`BodyVerifier`] in [`PutOptions`].
pub struct Verifier(pub Box<dyn BodyVerifier>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

/// What a PUT carries besides its data.
#[derive(Debug, Default)]
pub struct PutOptions {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags, checked by the caller.
    pub tags: Vec<(String, String)>,
    /// `Cache-Control`, `Expires` and the other stored headers.
    pub headers: ContentHeaders,
    /// `Content-MD5`, which the data must match.
    pub content_md5: Option<[u8; 16]>,
    /// `Content-Length` (decoded length for chunked uploads), which the data must match.
    pub content_length: Option<u64>,
    /// A further check of the data.
    pub verifier: Option<Verifier>,
    /// What the key must hold for the write to happen, checked when it commits.
    pub condition: Option<WriteCondition>,
    /// The retention and legal hold the request asks for (a bucket's default retention
    /// applies when it asks for none); only in a bucket with Object Lock.
    pub lock: ObjectLock,
    /// Whether the write asks for SSE-S3 (`x-amz-server-side-encryption: AES256`, or its
    /// bucket's default encryption): with [`Sealing::Requested`] only such writes are sealed.
    pub seal: bool,
}

/// Which new objects a store encrypts at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sealing {
    /// None (a store without master keys: tests, benchmarks, the in-memory double).
    #[default]
    Off,
    /// Those whose write asks for SSE-S3 ([`PutOptions::seal`]), as S3 did before 2023: for
    /// disks that encrypt already.
    Requested,
    /// Every one, as S3 does since 2023.
    All,
}

impl Sealing {
    /// Whether a write that asked for SSE-S3 (`asked`) or not is sealed.
    pub fn seals(self, asked: bool) -> bool {
        match self {
            Self::Off => false,
            Self::Requested => asked,
            Self::All => true,
        }
    }
}

/// A change to a version that keeps its data, ETag and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectUpdate {
    /// Replaces its tags.
    Tags(Vec<(String, String)>),
    /// Sets (`Some`) or removes its retention, as Object Lock allows.
    Retention(Option<Retention>, Governance),
    /// Puts a legal hold on (`true`) or lifts it.
    LegalHold(bool),
}

impl ObjectUpdate {
    /// Applies the change to `info` at `now_ms`, or says why Object Lock forbids it. Both
    /// stores call this in the transaction that writes the version back.
    pub(crate) fn apply(self, info: &mut ObjectInfo, now_ms: i64) -> Result<(), StoreError> {
        match self {
            Self::Tags(tags) => info.tags = tags,
            Self::Retention(retention, governance) => {
                info.lock.may_set_retention(retention, now_ms, governance)?;
                info.lock.retention = retention;
            }
            Self::LegalHold(on) => info.lock.legal_hold = Some(on),
        }
        Ok(())
    }

    /// Whether the change needs the bucket to have Object Lock.
    pub(crate) fn needs_object_lock(&self) -> bool {
        !matches!(self, Self::Tags(_))
    }
}

/// A bucket's Object Lock configuration from its stored JSON (`BucketConfig::ObjectLock`),
/// if it has one.
pub(crate) fn lock_config(json: Option<&str>) -> Result<Option<LockConfig>, StoreError> {
    json.map(|json| {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Database(format!("object lock configuration: {e}")))
    })
    .transpose()
}

/// Object Lock needs versioning enabled, for good: checked by both stores in the transaction
/// that changes either (`has_lock`: the bucket has or is given Object Lock; `versioning`: its
/// state, or the one it is given).
pub(crate) fn check_lock_versioning(
    versioning: Versioning,
    has_lock: bool,
) -> Result<(), StoreError> {
    if has_lock && versioning != Versioning::Enabled {
        return Err(StoreError::InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
        ));
    }
    Ok(())
}

/// The lock a new version of `bucket` gets, created at `created_ms` with `asked`: Object Lock
/// is refused in a bucket without it, and a bucket's default retention applies.
pub(crate) fn new_version_lock(
    bucket: &str,
    config: Option<LockConfig>,
    asked: ObjectLock,
    created_ms: i64,
) -> Result<ObjectLock, StoreError> {
    match config {
        Some(config) => Ok(config.lock_of(asked, created_ms)),
        None if asked.is_empty() => Ok(asked),
        None => Err(StoreError::NoObjectLock(bucket.to_owned())),
    }
}

/// The condition of a conditional write (PUT or CompleteMultipartUpload), checked in the
/// transaction that commits the object: of concurrent writers, exactly one can find the key
/// absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: the key must not exist.
    Absent,
    /// `If-Match: *`: the key must exist.
    Exists,
    /// `If-Match: ETAG`: the key must hold an object with this ETag (without quotes).
    ETag(String),
}

impl WriteCondition {
    /// Whether the write may replace `current`, the key's object now (`None` when absent).
    /// An `If-Match` on an absent key answers `NoSuchKey`, as S3 does.
    pub fn check(
        &self,
        bucket: &str,
        key: &str,
        current: Option<&ObjectInfo>,
    ) -> Result<(), StoreError> {
        match (self, current) {
            (Self::Absent, None) | (Self::Exists, Some(_)) => Ok(()),
            (Self::ETag(etag), Some(object)) if *etag == object.etag => Ok(()),
            (Self::Exists | Self::ETag(_), None) => Err(StoreError::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(StoreError::PreconditionFailed),
        }
    }
}

/// How long a completed multipart upload is remembered, so that a CompleteMultipartUpload
/// retried with the same parts (an SDK whose response was lost retries) answers the same
/// success instead of `NoSuchUpload`, in milliseconds.
pub const COMPLETED_UPLOAD_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// A completed multipart upload, remembered for [`COMPLETED_UPLOAD_MEMORY_MS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompletedUpload {
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The parts the completion listed (numbers and ETags without quotes).
    pub(crate) parts: Vec<(u32, String)>,
    /// The object it made.
    pub(crate) info: ObjectInfo,
}

impl CompletedUpload {
    /// Whether a completion of `upload` with `parts` repeats this one.
    pub(crate) fn repeats(&self, upload: UploadRef<'_>, parts: &[(u32, String)]) -> bool {
        self.bucket == upload.bucket
            && self.key == upload.key
            && self.parts.len() == parts.len()
            && self
                .parts
                .iter()
                .zip(parts)
                .all(|((n, e), (m, f))| n == m && e == f.trim_matches('"'))
    }
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// The upload id.
    pub upload_id: String,
    /// The key it will create.
    pub key: String,
    /// When it was started, milliseconds since the epoch.
    pub initiated_ms: i64,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// 1 to 10,000.
    pub part_number: u32,
    /// MD5 of the part, hex.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was uploaded, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Whether its bytes are encrypted at rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// The smallest size of every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The ETag of a multipart object: MD5 of the parts' binary MD5s, then `-` and the part count.
pub(crate) fn multipart_etag(parts: &[PartInfo]) -> String {
    multipart_etag_of(parts.iter().map(|p| p.etag.as_str()))
}

/// The ETag of a multipart object made of parts with these ETags (hex MD5s, quotes allowed).
pub fn multipart_etag_of<'a>(etags: impl ExactSizeIterator<Item = &'a str>) -> String {
    let count = etags.len();
    let mut md5 = Md5::new();
    for etag in etags {
        let raw: [u8; 16] = etag
            .trim_matches('"')
            .get(..32)
            .and_then(hex::decode)
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or_default();
        md5.update(raw);
    }
    format!("{}-{count}", hex::encode(&md5.finalize()))
}

/// Checks a completion's part list against the uploaded parts and returns them in order.
pub(crate) fn completed_parts(
    uploaded: &BTreeMap<u32, PartInfo>,
    requested: &[(u32, String)],
) -> Result<Vec<PartInfo>, StoreError> {
    let mut out: Vec<PartInfo> = Vec::with_capacity(requested.len());
    for (number, etag) in requested {
        if out.last().is_some_and(|p| p.part_number >= *number) {
            return Err(StoreError::InvalidPartOrder);
        }
        let part = uploaded
            .get(number)
            .filter(|p| p.etag == etag.trim_matches('"'))
            .ok_or(StoreError::InvalidPart(*number))?;
        out.push(part.clone());
    }
    let Some((_, all_but_last)) = out.split_last() else {
        return Err(StoreError::InvalidPart(0));
    };
    if let Some(small) = all_but_last.iter().find(|p| p.size < MIN_PART_SIZE) {
        return Err(StoreError::EntityTooSmall {
            part: small.part_number,
            size: small.size,
        });
    }
    Ok(out)
}

/// A byte range of a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (inclusive) or `bytes=first-`.
    From {
        /// First byte.
        first: u64,
        /// Last byte, inclusive; the end of the object when absent.
        last: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The `(offset, length)` this range selects in an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), StoreError> {
        match self {
            Self::From { first, last } if first < size => {
                let last = last.map_or(size - 1, |l| l.min(size - 1));
                if last < first {
                    return Err(StoreError::InvalidRange { size });
                }
                Ok((first, last - first + 1))
            }
            Self::Suffix(n) if n > 0 && size > 0 => {
                let n = n.min(size);
                Ok((size - n, n))
            }
            _ => Err(StoreError::InvalidRange { size }),
        }
    }
}

/// A listing request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    /// Only keys that start with this.
    pub prefix: &'a str,
    /// Roll keys up into common prefixes at the first delimiter after the prefix.
    pub delimiter: Option<&'a str>,
    /// Start after this key (`start-after`, `marker`, or a continuation token).
    pub after: Option<&'a str>,
    /// At most this many keys and common prefixes together.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects, in key order.
    pub objects: Vec<ObjectInfo>,
    /// The common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more remain.
    pub truncated: bool,
    /// Where the next page starts after, when truncated.
    pub next_after: Option<String>,
}

/// Storage of buckets, objects and bucket policies.
pub trait ObjectStore: Send + Sync + 'static {
    /// Which new objects are encrypted at rest (SSE-S3).
    fn sealing(&self) -> Sealing {
        Sealing::Off
    }

    /// Creates a bucket.
    fn create_bucket(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<BucketInfo, StoreError>> + Send;
    /// Deletes an empty bucket.
    fn delete_bucket(&self, bucket: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A bucket's information.
    fn head_bucket(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<BucketInfo, StoreError>> + Send;
    /// Every bucket, by name.
    fn list_buckets(&self) -> impl Future<Output = Result<Vec<BucketInfo>, StoreError>> + Send;
    /// Stores an object whole, or nothing (on a digest or length mismatch, or a failed body).
    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;
    /// An object's metadata and data (or a range of it): the latest version, or `version`.
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<(ObjectInfo, ByteStream), StoreError>> + Send;
    /// An object's metadata: the latest version, or `version`.
    fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;
    /// [`Self::head_object`] with the object's tags, for those who read them
    /// (GetObjectTagging, `s3:ExistingObjectTag/*`): a store that keeps tags apart from the
    /// object (gateway mode) fetches them here only, not on every HEAD.
    fn tagged_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send {
        self.head_object(bucket, key, version)
    }
    /// [`Self::head_object`] with the object's parts ([`ObjectInfo::parts`]), for those who
    /// read them (`partNumber`, GetObjectAttributes): a store that does not keep them with the
    /// object (gateway mode) asks for them here only.
    fn parted_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send {
        self.head_object(bucket, key, version)
    }
    /// Changes an object's latest version, or `version`, keeping its data, ETag and time:
    /// its tags, or (in a bucket with Object Lock) its retention or legal hold, as the lock
    /// allows. Answers the version changed.
    fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        update: ObjectUpdate,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;
    /// Deletes an object as S3 does: without `version`, the object (no versioning), or a new
    /// delete marker on top of its versions (versioning enabled or suspended); with it, that
    /// version for good, unless Object Lock protects it (`governance`: whether governance
    /// retention gives way). Deleting an absent key or version succeeds.
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        governance: Governance,
    ) -> impl Future<Output = Result<Deleted, StoreError>> + Send;
    /// One page of the bucket's keys.
    fn list_objects(
        &self,
        bucket: &str,
        query: ListQuery<'_>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;
    /// One page of the bucket's versions and delete markers: by key, newest first.
    fn list_versions(
        &self,
        bucket: &str,
        query: VersionQuery<'_>,
    ) -> impl Future<Output = Result<VersionPage, StoreError>> + Send;
    /// The bucket's versioning state.
    fn versioning(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Versioning, StoreError>> + Send;
    /// Enables or suspends versioning. A bucket never goes back to unversioned.
    fn set_versioning(
        &self,
        bucket: &str,
        state: Versioning,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets (`Some`) or removes (`None`) the bucket's policy document.
    fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The bucket's policy document, if any.
    fn bucket_policy(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Sets (`Some`) or removes (`None`) one of the bucket's configurations (its JSON).
    fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One of the bucket's configurations, if set.
    fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Starts a multipart upload of `key`; the options apply to the final object.
    fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> impl Future<Output = Result<UploadInfo, StoreError>> + Send;
    /// Stores one part (replacing an earlier upload of the same number), whole or not at all.
    fn upload_part(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        body: ByteStream,
        options: PutOptions,
    ) -> impl Future<Output = Result<PartInfo, StoreError>> + Send;
    /// The parts uploaded so far, by number.
    fn list_parts(
        &self,
        upload: UploadRef<'_>,
    ) -> impl Future<Output = Result<Vec<PartInfo>, StoreError>> + Send;
    /// The bucket's uploads in progress whose keys start with `prefix`, by key.
    fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<UploadInfo>, StoreError>> + Send;
    /// Assembles the listed parts (number and ETag, ascending) into the object, if
    /// `condition` holds when it commits. A completion repeated with the same parts after it
    /// succeeded answers the same object again (for [`COMPLETED_UPLOAD_MEMORY_MS`]).
    fn complete_upload(
        &self,
        upload: UploadRef<'_>,
        parts: Vec<(u32, String)>,
        condition: Option<WriteCondition>,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;
    /// Discards an upload and its parts.
    fn abort_upload(
        &self,
        upload: UploadRef<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Opens a copy's source (CopyObject, UploadPartCopy): its information, tags included, for
    /// the copy's conditions and directives, and its data (of `range`), which
    /// [`Self::put_copy`] or [`Self::upload_part_copy`] then writes. A store that copies
    /// within itself (gateway mode) reads no byte here and answers [`CopyData::InPlace`].
    fn copy_source(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<(ObjectInfo, CopyData), StoreError>> + Send {
        async move {
            let (info, stream) = self.get_object(bucket, key, version, range).await?;
            Ok((info, CopyData::Bytes(stream)))
        }
    }
    /// Writes a copy opened by [`Self::copy_source`] as [`Self::put_object`] writes a body.
    fn put_copy(
        &self,
        bucket: &str,
        key: &str,
        data: CopyData,
        options: PutOptions,
    ) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send {
        async move {
            let body = data.into_bytes()?;
            self.put_object(bucket, key, body, options).await
        }
    }
    /// Writes a part copied from a source opened by [`Self::copy_source`], as
    /// [`Self::upload_part`] writes a body.
    fn upload_part_copy(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        data: CopyData,
        options: PutOptions,
    ) -> impl Future<Output = Result<PartInfo, StoreError>> + Send {
        async move {
            let body = data.into_bytes()?;
            self.upload_part(upload, part_number, body, options).await
        }
    }
}

/// A copy's data, as [`ObjectStore::copy_source`] opened it.
pub enum CopyData {
    /// Its bytes, to be written as a PUT's body is.
    Bytes(ByteStream),
    /// Left where it is: the store copies it within itself.
    InPlace(CopiedFrom),
}

impl CopyData {
    /// The bytes to write, for a store that does not copy within itself.
    fn into_bytes(self) -> Result<ByteStream, StoreError> {
        match self {
            Self::Bytes(stream) => Ok(stream),
            // Only a store that copies within itself answers `InPlace`, and it writes its
            // copies itself.
            Self::InPlace(from) => Err(StoreError::Io(io::Error::other(format!(
                "a copy of `{}/{}` left in another store",
                from.bucket, from.key
            )))),
        }
    }
}

/// The source of a copy made within the store: the version read, and the ETag its conditions
/// were checked against (the copy is refused if it no longer has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFrom {
    /// The source's bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The version named, if any.
    pub version: Option<String>,
    /// Its ETag when opened.
    pub etag: String,
    /// Its size.
    pub size: u64,
    /// The bytes copied (`x-amz-copy-source-range`), as `(offset, length)`; `None`: all.
    pub range: Option<(u64, u64)>,
}

impl CopiedFrom {
    /// How many bytes the copy writes.
    pub fn length(&self) -> u64 {
        self.range.map_or(self.size, |(_, length)| length)
    }
}

/// A configuration a bucket keeps besides its policy, as JSON in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketConfig {
    /// [`crate::lifecycle::Lifecycle`].
    Lifecycle,
    /// [`crate::cors::Cors`].
    Cors,
    /// The bucket's tags, as `[key, value]` pairs.
    Tagging,
    /// [`crate::object_lock::LockConfig`]: set once Object Lock is enabled, never removed.
    ObjectLock,
    /// A default encryption (SSE-S3) put on the bucket, where that is not every object's
    /// already ([`Sealing::Requested`]); `"AES256"`.
    Encryption,
}

impl BucketConfig {
    /// Its name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lifecycle => "lifecycle",
            Self::Cors => "cors",
            Self::Tagging => "tagging",
            Self::ObjectLock => "object-lock",
            Self::Encryption => "encryption",
        }
    }
}

/// Names a multipart upload: its bucket, key and id must all agree.
#[derive(Debug, Clone, Copy)]
pub struct UploadRef<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The key.
    pub key: &'a str,
    /// The upload id.
    pub upload_id: &'a str,
}

/// Builds a listing page from keys in order, all in the bucket and after `query.after`.
pub(crate) fn paginate<I>(objects: I, query: ListQuery<'_>) -> ListPage
where
    I: IntoIterator<Item = ObjectInfo>,
{
    let mut page = ListPage::default();
    if query.max_keys == 0 {
        // S3 answers `max-keys=0` with an empty page that is not truncated.
        return page;
    }
    let mut last: Option<String> = None;
    for info in objects {
        let Some(rest) = info.key.strip_prefix(query.prefix) else {
            continue;
        };
        let rolled = query.delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| format!("{}{}", query.prefix, &rest[..i + d.len()]))
        });
        let seen = |cp: &String| {
            page.common_prefixes.last() == Some(cp) || query.after.is_some_and(|a| a >= cp.as_str())
        };
        if rolled.as_ref().is_some_and(seen) {
            continue;
        }
        if page.objects.len() + page.common_prefixes.len() == query.max_keys {
            page.truncated = true;
            page.next_after = last;
            return page;
        }
        match rolled {
            Some(cp) => {
                last = Some(cp.clone());
                page.common_prefixes.push(cp);
            }
            None => {
                last = Some(info.key.clone());
                page.objects.push(info);
            }
        }
    }
    page
}

/// An object held in memory as a stream, or the part of it `range` selects.
pub(crate) fn bytes_stream(
    data: Bytes,
    range: Option<ByteRange>,
) -> Result<ByteStream, StoreError> {
    let data = match range {
        Some(r) => {
            let (offset, len) = r.resolve(data.len() as u64)?;
            data.slice(offset as usize..(offset + len) as usize)
        }
        None => data,
    };
    Ok(Box::pin(futures_util::stream::iter([Ok(data)])))
}

/// A random 128-bit id in hex, for blobs and upload ids.
pub(crate) fn random_id() -> Result<String, StoreError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| StoreError::Io(io::Error::other(e.to_string())))?;
    Ok(hex::encode(&id))
}

/// Hashes and counts a body as it streams, and checks it against what the client declared.
pub(crate) struct BodyCheck {
    md5: Md5,
    len: u64,
    verifier: Option<Verifier>,
}

impl BodyCheck {
    /// Checks a body against `options`, taking their verifier.
    pub(crate) fn new(options: &mut PutOptions) -> Self {
        Self {
            md5: Md5::new(),
            len: 0,
            verifier: options.verifier.take(),
        }
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.len += chunk.len() as u64;
        if let Some(v) = &mut self.verifier {
            v.0.update(chunk);
        }
    }

    /// The ETag, if the body is what the options declared.
    pub(crate) fn finish(self, options: &PutOptions) -> Result<(String, u64), StoreError> {
        if let Some(v) = self.verifier {
            v.0.verify()?;
        }
        let digest: [u8; 16] = self.md5.finalize().into();
        if let Some(expected) = options.content_length.filter(|e| *e != self.len) {
            return Err(StoreError::IncompleteBody {
                expected,
                got: self.len,
            });
        }
        if options.content_md5.is_some_and(|m| m != digest) {
            return Err(StoreError::BadDigest);
        }
        Ok((hex::encode(&digest), self.len))
    }
}

#[cfg(test)]
mod tests;
