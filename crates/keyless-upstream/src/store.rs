//! [`UpstreamStore`]: the `ObjectStore` of gateway mode. Objects, versions and multipart uploads
//! live in the upstream store; bucket policies and the other bucket configurations stay in
//! Keyless (`meta`, a store of bucket records only), so the upstream is never asked to enforce
//! anything.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use keyless_s3::object_lock::Governance;
use keyless_s3::store::{
    BucketConfig, BucketInfo, ByteRange, ByteStream, ContentHeaders, CopiedFrom, CopyData, Deleted,
    ListPage, ListQuery, ObjectInfo, ObjectPart, ObjectStore, ObjectUpdate, PartInfo, PutOptions,
    StoreError, UploadInfo, UploadRef, VersionEntry, VersionPage, VersionQuery, Versioning,
    WriteCondition, multipart_etag_of,
};
use keyless_types::Clock;
use keyless_types::encoding::{form_decode, uri_encode};
use keyless_types::time::{parse_http_date, parse_iso8601};
use keyless_types::xml::Xml;

use crate::body::{Checked, Download};
use crate::client::{Call, ConfigError, Payload, Upstream, UpstreamConfig};
use crate::meta::BucketMeta;
use crate::xml::Element;

/// The most pages of parts or uploads one listing reads (1,000 each).
const MAX_PAGES: usize = 100;
/// S3's most parts of an object.
const MAX_PARTS: u32 = 10_000;
/// S3's namespace of its documents.
const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Objects in an upstream S3 store; bucket policies and configurations in `meta`.
pub struct UpstreamStore<M> {
    upstream: Upstream,
    meta: M,
    clock: Arc<dyn Clock>,
    /// Whether each bucket has versioning, as last read from the upstream (unix seconds): some
    /// upstreams (Garage 2.5) name an `x-amz-version-id` on every write of any bucket, which
    /// clients then ask for (needing `s3:GetObjectVersion`); those of unversioned buckets are
    /// dropped.
    versioned: std::sync::Mutex<std::collections::HashMap<String, (bool, i64)>>,
}

/// A part copied from fewer bytes than this is read and written by Keyless rather than copied
/// upstream: S3's smallest part, under which Garage 2.5 refuses UploadPartCopy.
const SMALL_PART_COPY: u64 = 5 * 1024 * 1024;

/// How long a bucket's versioning status is trusted (another replica may change it).
const VERSIONING_TTL: i64 = 10;

impl<M: BucketMeta> UpstreamStore<M> {
    /// A store in front of the upstream `config` names, keeping bucket records in `meta`.
    pub fn new(
        config: &UpstreamConfig,
        meta: M,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            upstream: Upstream::new(config, Arc::clone(&clock))?,
            meta,
            clock,
            versioned: std::sync::Mutex::default(),
        })
    }

    /// The store, telling `observer` of every request it sends the upstream.
    pub fn with_observer(mut self, observer: Arc<dyn crate::UpstreamObserver>) -> Self {
        self.upstream.observer = Some(observer);
        self
    }

    /// Whether the upstream answers with Keyless's keys (ListBuckets): for `/readyz` and for
    /// start-up, so that a wrong endpoint or key is reported at once.
    pub async fn probe(&self) -> Result<usize, StoreError> {
        Ok(self.list_buckets().await?.len())
    }

    fn now_ms(&self) -> i64 {
        self.clock.unix_seconds().saturating_mul(1000)
    }

    /// A write's version id as the upstream named it, kept only if `bucket` has versioning.
    async fn written_version(
        &self,
        bucket: &str,
        named: (Option<String>, bool),
    ) -> Result<(Option<String>, bool), StoreError> {
        if !named.1 {
            return Ok(named);
        }
        let now = self.clock.unix_seconds();
        let cached = self
            .versioned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            .copied()
            .filter(|(_, at)| now - at < VERSIONING_TTL);
        let versioned = match cached {
            Some((versioned, _)) => versioned,
            None => {
                let versioned = self.versioning(bucket).await? != Versioning::Unversioned;
                self.remember_versioning(bucket, versioned);
                versioned
            }
        };
        Ok(if versioned { named } else { (None, false) })
    }

    fn remember_versioning(&self, bucket: &str, versioned: bool) {
        let now = self.clock.unix_seconds();
        self.versioned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bucket.to_owned(), (versioned, now));
    }

    /// Makes sure `meta` has a record of `bucket`, which the upstream has.
    async fn known(&self, bucket: &str) -> Result<(), StoreError> {
        match self.meta.head_bucket(bucket).await {
            Ok(_) => Ok(()),
            Err(StoreError::NoSuchBucket(_)) => {
                self.head_upstream(bucket).await?;
                match self.meta.create_bucket(bucket).await {
                    Ok(_) | Err(StoreError::BucketAlreadyExists(_)) => Ok(()),
                    // No record means what an empty one means: reads go on while the records'
                    // store (PostgreSQL, for replicas) is away; writes to it fail on their own.
                    Err(StoreError::Unavailable(why)) => {
                        tracing::debug!(%bucket, %why, "no record made for the bucket");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn head_upstream(&self, bucket: &str) -> Result<(), StoreError> {
        self.upstream
            .send(Call::new(Method::HEAD, Some(bucket), None))
            .await
            .map(drop)
    }

    /// A writing call with the object's headers, metadata and tags.
    fn with_object_headers<'a>(mut call: Call<'a>, options: &PutOptions) -> Call<'a> {
        if let Some(content_type) = &options.content_type {
            call = call.header("content-type", content_type.clone());
        }
        let ContentHeaders {
            cache_control,
            content_disposition,
            content_encoding,
            content_language,
            expires,
        } = &options.headers;
        for (name, value) in [
            ("cache-control", cache_control),
            ("content-disposition", content_disposition),
            ("content-encoding", content_encoding),
            ("content-language", content_language),
            ("expires", expires),
        ] {
            if let Some(value) = value {
                call = call.header(name, value.clone());
            }
        }
        for (name, value) in &options.metadata {
            call.headers
                .push((Cow::Owned(format!("x-amz-meta-{name}")), value.clone()));
        }
        if !options.tags.is_empty() {
            call = call.header("x-amz-tagging", tagging_header(&options.tags));
        }
        call
    }

    /// Refuses what the gateway does not do upstream: Object Lock.
    fn refuse_lock(options: &PutOptions) -> Result<(), StoreError> {
        match options.lock.is_empty() {
            true => Ok(()),
            false => Err(not_implemented()),
        }
    }

    /// Sends a checked body; a body that failed its checks answers why.
    async fn send_checked(
        &self,
        call: Call<'_>,
        body: ByteStream,
        options: &mut PutOptions,
    ) -> Result<(http::Response<hyper::body::Incoming>, u64), StoreError> {
        let verifier = options.verifier.take().map(|v| v.0);
        let (mut checked, failure) =
            Checked::new(body, options.content_length, options.content_md5, verifier);
        let stream: ByteStream = if options.content_length == Some(0) {
            // An empty body is never read by the HTTP client (its Content-Length says there is
            // nothing): it is checked here, before anything is sent.
            while let Some(item) = futures_util::StreamExt::next(&mut checked).await {
                if item.is_err() {
                    break;
                }
            }
            Box::pin(futures_util::stream::empty())
        } else {
            Box::pin(checked)
        };
        if let Some(why) = failure.failure() {
            return Err(why);
        }
        let mut call = call.payload(Payload::Stream(stream, options.content_length));
        call.body_sent = Some(Arc::clone(&failure.sent));
        if let Some(md5) = options.content_md5 {
            call = call.header(
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(md5),
            );
        }
        let sent = self.upstream.send(call).await;
        if let Some(why) = failure.failure() {
            return Err(why);
        }
        let response = sent?;
        Ok((response, failure.length()))
    }

    /// A copy's call: its source as the upstream names it, guarded by the ETag its conditions
    /// and directives were read from (a source changed since is refused, 412, rather than
    /// copied with another's metadata).
    fn copy_call<'a>(&self, call: Call<'a>, from: &CopiedFrom) -> Call<'a> {
        let mut source = format!(
            "/{}/{}",
            uri_encode(&self.upstream.bucket_name(&from.bucket), false),
            uri_encode(&from.key, true)
        );
        if let Some(version) = &from.version {
            source.push_str("?versionId=");
            source.push_str(&uri_encode(version, false));
        }
        let call = call
            .header("x-amz-copy-source", source)
            .header("x-amz-copy-source-if-match", format!("\"{}\"", from.etag));
        match from.range {
            Some((offset, length)) if length > 0 => call.header(
                "x-amz-copy-source-range",
                format!("bytes={offset}-{}", offset + length - 1),
            ),
            _ => call,
        }
    }

    /// Sets an object's tags (none: DeleteObjectTagging, which every store with tagging has);
    /// answers the version tagged.
    async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(Option<String>, bool), StoreError> {
        let mut call = match tags.is_empty() {
            true => Call::new(Method::DELETE, Some(bucket), Some(key)).query("tagging", ""),
            false => Call::new(Method::PUT, Some(bucket), Some(key))
                .query("tagging", "")
                .payload(Payload::Document(tagging_document(tags).into())),
        };
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        let response = self.upstream.send(call).await?;
        Ok(version_of(response.headers()))
    }

    /// The headers of a HEAD of part `number`.
    async fn head_part(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        number: u32,
    ) -> Result<HeaderMap, StoreError> {
        let mut call = Call::new(Method::HEAD, Some(bucket), Some(key))
            .query("partNumber", number.to_string());
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        Ok(self.upstream.send(call).await?.headers().clone())
    }

    /// When a copy was made, as its result says.
    fn copied_at(&self, result: &Element) -> i64 {
        match millis_of(result.text_of("LastModified")) {
            0 => self.now_ms(),
            ms => ms,
        }
    }

    async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut call = Call::new(Method::GET, Some(bucket), Some(key)).query("tagging", "");
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        let root = self.upstream.document(call).await?;
        Ok(root
            .child("TagSet")
            .map(|set| {
                set.all("Tag")
                    .map(|t| {
                        (
                            t.text_of("Key").unwrap_or_default().to_owned(),
                            t.text_of("Value").unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// `NotImplemented`, with AWS's text.
fn not_implemented() -> StoreError {
    StoreError::Upstream {
        status: 501,
        code: "NotImplemented".into(),
        message: String::new(),
    }
}

/// `x-amz-tagging`: the tags as a form-encoded query.
fn tagging_header(tags: &[(String, String)]) -> String {
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                keyless_types::encoding::uri_encode(k, false),
                keyless_types::encoding::uri_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The object a write made, as its options describe it.
fn written(
    key: &str,
    size: u64,
    etag: String,
    last_modified_ms: i64,
    options: PutOptions,
    (version_id, versioned): (Option<String>, bool),
) -> ObjectInfo {
    ObjectInfo {
        key: key.to_owned(),
        size,
        etag,
        last_modified_ms,
        content_type: options.content_type,
        metadata: options.metadata,
        sealed: false,
        tags: options.tags,
        headers: options.headers,
        parts: Vec::new(),
        version_id,
        versioned,
        lock: Default::default(),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A stored header as text: UTF-8 (a `Content-Disposition` with an accented file name) passes
/// as HTTP's opaque bytes.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// The version id an answer names: `None` for the null version or none at all; and whether
/// the bucket has versioning (it names one).
fn version_of(headers: &HeaderMap) -> (Option<String>, bool) {
    match header(headers, "x-amz-version-id") {
        Some("null") => (None, true),
        Some(id) => (Some(id.to_owned()), true),
        None => (None, false),
    }
}

/// An object's metadata from a GET's or HEAD's headers (`size`: the whole object's).
fn info_from(key: &str, headers: &HeaderMap, size: u64) -> ObjectInfo {
    let text = |name: &str| header_text(headers, name);
    let metadata = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((
                name.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ))
        })
        .collect();
    let (version_id, versioned) = version_of(headers);
    ObjectInfo {
        key: key.to_owned(),
        size,
        etag: header(headers, "etag").map(unquote).unwrap_or_default(),
        last_modified_ms: header(headers, "last-modified")
            .and_then(parse_http_date)
            .map_or(0, |s| s.saturating_mul(1000)),
        content_type: text("content-type"),
        metadata,
        sealed: false,
        tags: Vec::new(),
        headers: ContentHeaders {
            cache_control: text("cache-control"),
            content_disposition: text("content-disposition"),
            content_encoding: text("content-encoding"),
            content_language: text("content-language"),
            expires: text("expires"),
        },
        parts: Vec::new(),
        version_id,
        versioned,
        lock: Default::default(),
    }
}

fn content_length(headers: &HeaderMap) -> u64 {
    header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// The whole object's size from a 206's `Content-Range: bytes a-b/size`.
fn range_total(headers: &HeaderMap) -> Option<u64> {
    header(headers, "content-range")?
        .rsplit_once('/')?
        .1
        .parse()
        .ok()
}

fn range_header(range: ByteRange) -> String {
    match range {
        ByteRange::From {
            first,
            last: Some(last),
        } => format!("bytes={first}-{last}"),
        ByteRange::From { first, last: None } => format!("bytes={first}-"),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// How a listing's keys and prefixes read: URL-encoded when the upstream says it encoded them
/// (`<EncodingType>url</EncodingType>`, as asked), as they are when it ignored the request.
#[derive(Clone, Copy)]
struct Keys {
    encoded: bool,
}

impl Keys {
    fn of(root: &Element) -> Self {
        Self {
            encoded: root.text_of("EncodingType") == Some("url"),
        }
    }

    fn read(self, text: Option<&str>) -> String {
        let text = text.unwrap_or_default();
        match self.encoded {
            // S3 writes a space as `+` there, and a `+` as `%2B`.
            true => form_decode(text).into_owned(),
            false => text.to_owned(),
        }
    }
}

fn millis_of(text: Option<&str>) -> i64 {
    text.and_then(parse_iso8601)
        .map_or(0, |s| s.saturating_mul(1000))
}

fn listed(entry: &Element, key: String) -> ObjectInfo {
    ObjectInfo {
        key,
        size: entry
            .text_of("Size")
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        etag: entry.text_of("ETag").map(unquote).unwrap_or_default(),
        last_modified_ms: millis_of(entry.text_of("LastModified")),
        content_type: None,
        metadata: Default::default(),
        sealed: false,
        tags: Vec::new(),
        headers: ContentHeaders::default(),
        parts: Vec::new(),
        version_id: None,
        versioned: false,
        lock: Default::default(),
    }
}

fn prefixes(root: &Element, keys: Keys) -> Vec<String> {
    root.all("CommonPrefixes")
        .map(|p| keys.read(p.text_of("Prefix")))
        .collect()
}

fn truncated(root: &Element) -> bool {
    root.text_of("IsTruncated") == Some("true")
}

/// Where an upstream listing starts so that it continues after `after`: past every key under
/// it when it is a common prefix the last page rolled up (S3's `start-after` would roll the
/// same prefix up again).
fn start_after(after: &str, prefix: &str, delimiter: Option<&str>) -> String {
    let rolled_up = delimiter.is_some_and(|d| {
        !d.is_empty()
            && after.ends_with(d)
            && after.strip_prefix(prefix).is_some_and(|rest| {
                rest.len()
                    .checked_sub(d.len())
                    .is_some_and(|end| rest.find(d) == Some(end))
            })
    });
    match rolled_up {
        true => format!("{after}\u{10FFFF}"),
        false => after.to_owned(),
    }
}

/// A listing's common parameters: keys URL-encoded (odd keys survive XML), at most
/// `max_keys` (and S3's 1,000), under `prefix`, rolled up at `delimiter`.
fn listing<'a>(call: Call<'a>, prefix: &str, delimiter: Option<&str>, max_keys: usize) -> Call<'a> {
    let mut call = call
        .query("encoding-type", "url")
        .query("max-keys", max_keys.min(1000).to_string());
    if !prefix.is_empty() {
        call = call.query("prefix", prefix);
    }
    if let Some(delimiter) = delimiter {
        call = call.query("delimiter", delimiter);
    }
    call
}

fn tagging_document(tags: &[(String, String)]) -> String {
    let mut xml = Xml::new();
    xml.open("TagSet");
    for (key, value) in tags {
        xml.open("Tag")
            .text("Key", key)
            .text("Value", value)
            .close("Tag");
    }
    xml.close("TagSet");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Tagging xmlns=\"{S3_XMLNS}\">{}</Tagging>",
        xml.finish()
    )
}

fn condition_header<'a>(call: Call<'a>, condition: Option<&WriteCondition>) -> Call<'a> {
    match condition {
        None => call,
        Some(WriteCondition::Absent) => call.header("if-none-match", "*"),
        Some(WriteCondition::Exists) => call.header("if-match", "*"),
        Some(WriteCondition::ETag(etag)) => call.header("if-match", format!("\"{etag}\"")),
    }
}

impl<M: BucketMeta> UpstreamStore<M> {
    /// A PUT's condition. `If-None-Match: *` goes upstream, where it holds atomically (AWS,
    /// Ceph, MinIO and moto check it when the object commits), and is checked here first too,
    /// for upstreams that ignore it (Garage 2.5): there, a race between the check and the write
    /// remains. `If-Match` is checked here only, against the object's ETag (Ceph 16.2 refuses
    /// every `If-Match` on a PUT), with the same race, which the embedded store does not have.
    async fn put_condition<'a>(
        &self,
        call: Call<'a>,
        bucket: &str,
        key: &str,
        condition: Option<&WriteCondition>,
    ) -> Result<Call<'a>, StoreError> {
        let Some(condition) = condition else {
            return Ok(call);
        };
        let current = match self.head_object(bucket, key, None).await {
            Ok(info) => Some(info),
            Err(StoreError::NoSuchKey { .. } | StoreError::DeleteMarker { .. }) => None,
            Err(e) => return Err(e),
        };
        condition.check(bucket, key, current.as_ref())?;
        Ok(match condition {
            WriteCondition::Absent => condition_header(call, Some(condition)),
            WriteCondition::Exists | WriteCondition::ETag(_) => call,
        })
    }
}

impl<M: BucketMeta> ObjectStore for UpstreamStore<M> {
    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        // AWS's us-east-1 (and stores that copy it) answer 200 to a second CreateBucket of
        // one's own bucket; Keyless answers BucketAlreadyOwnedByYou whatever the upstream.
        match self.head_upstream(bucket).await {
            Ok(()) => return Err(StoreError::BucketAlreadyExists(bucket.to_owned())),
            Err(StoreError::NoSuchBucket(_)) => {}
            Err(e) => return Err(e),
        }
        let mut call = Call::new(Method::PUT, Some(bucket), None);
        if self.upstream_region() != "us-east-1" {
            call = call.payload(Payload::Document(
                format!(
                    "<CreateBucketConfiguration xmlns=\"{S3_XMLNS}\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                    keyless_types::xml::escape(self.upstream_region())
                )
                .into(),
            ));
        }
        self.upstream.send(call).await?;
        // A record left by a bucket of the same name deleted behind Keyless's back goes. The
        // bucket exists now: a records' store that is away leaves it without a record, which
        // means an empty one, rather than failing a creation that happened.
        match self.meta.delete_bucket(bucket).await {
            Ok(()) | Err(StoreError::NoSuchBucket(_)) => {}
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(%bucket, %why, "created the bucket without its record");
                return Ok(BucketInfo {
                    name: bucket.to_owned(),
                    created_ms: self.now_ms(),
                });
            }
            Err(e) => return Err(e),
        }
        match self.meta.create_bucket(bucket).await {
            Ok(()) | Err(StoreError::BucketAlreadyExists(_)) => {}
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(%bucket, %why, "created the bucket without its record");
            }
            Err(e) => return Err(e),
        }
        Ok(BucketInfo {
            name: bucket.to_owned(),
            created_ms: self.now_ms(),
        })
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        self.upstream
            .send(Call::new(Method::DELETE, Some(bucket), None))
            .await?;
        match self.meta.delete_bucket(bucket).await {
            Ok(()) | Err(StoreError::NoSuchBucket(_)) => Ok(()),
            // Deleted upstream: a stale record is dropped when the name is created again.
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(%bucket, %why, "deleted the bucket; its record stays for now");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        self.head_upstream(bucket).await?;
        // HeadBucket carries no creation date; ListBuckets has it.
        let created_ms = self.meta.head_bucket(bucket).await.unwrap_or(0);
        Ok(BucketInfo {
            name: bucket.to_owned(),
            created_ms,
        })
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StoreError> {
        let root = self
            .upstream
            .document(Call::new(Method::GET, None, None))
            .await?;
        let prefix = &self.upstream.bucket_prefix;
        let mut buckets: Vec<BucketInfo> = root
            .child("Buckets")
            .map(|list| {
                list.all("Bucket")
                    .filter_map(|b| {
                        let name = b.text_of("Name")?.strip_prefix(prefix.as_str())?;
                        Some(BucketInfo {
                            name: name.to_owned(),
                            created_ms: millis_of(b.text_of("CreationDate")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(buckets)
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        mut options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        Self::refuse_lock(&options)?;
        let call =
            Self::with_object_headers(Call::new(Method::PUT, Some(bucket), Some(key)), &options);
        let call = self
            .put_condition(call, bucket, key, options.condition.as_ref())
            .await?;
        let (response, size) = self.send_checked(call, body, &mut options).await?;
        let (version_id, versioned) = self
            .written_version(bucket, version_of(response.headers()))
            .await?;
        let etag = header(response.headers(), "etag")
            .map(unquote)
            .unwrap_or_default();
        let at = self.now_ms();
        Ok(written(
            key,
            size,
            etag,
            at,
            options,
            (version_id, versioned),
        ))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream), StoreError> {
        let mut call = Call::new(Method::GET, Some(bucket), Some(key));
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        if let Some(range) = range {
            call = call.header("range", range_header(range));
        }
        let response = match self.upstream.send(call).await {
            Ok(response) => response,
            // Not every upstream marks a GET of a deleted key as a delete marker; its HEAD does.
            Err(StoreError::NoSuchKey { .. }) if version.is_none() => {
                return Err(self.head_object(bucket, key, None).await.err().unwrap_or(
                    StoreError::NoSuchKey {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    },
                ));
            }
            Err(StoreError::Upstream { status: 416, .. }) => {
                let size = self.head_object(bucket, key, version).await?.size;
                return Err(StoreError::InvalidRange { size });
            }
            Err(e) => return Err(e),
        };
        let headers = response.headers();
        let size = match response.status() {
            StatusCode::PARTIAL_CONTENT => range_total(headers)
                .ok_or_else(|| StoreError::Unavailable("a 206 without its Content-Range".into()))?,
            _ => {
                let size = content_length(headers);
                // An upstream that ignored the range sent the whole object, which the
                // client's Content-Range would misdescribe.
                if let Some(range) = range
                    && range.resolve(size)? != (0, size)
                {
                    return Err(StoreError::Unavailable(
                        "the upstream answered a range with the whole object".into(),
                    ));
                }
                size
            }
        };
        let mut info = info_from(key, headers, size);
        let tag_count: usize = header(headers, "x-amz-tagging-count")
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        let stream = Download::stream(response.into_body());
        if tag_count > 0 {
            info.tags = self.tags(bucket, key, version).await.unwrap_or_default();
        }
        Ok((info, stream))
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        let mut call = Call::new(Method::HEAD, Some(bucket), Some(key));
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        let response = match (self.upstream.send(call).await, version) {
            // A HEAD's 404 has no body to name its code: of a version asked for, S3's is
            // NoSuchVersion (as the embedded store answers).
            (Err(StoreError::NoSuchKey { bucket, key }), Some(version)) => {
                return Err(StoreError::NoSuchVersion {
                    bucket,
                    key,
                    version_id: version.to_owned(),
                });
            }
            (answer, _) => answer?,
        };
        let headers = response.headers();
        Ok(info_from(key, headers, content_length(headers)))
    }

    async fn tagged_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        let (head, tags) = tokio::join!(
            self.head_object(bucket, key, version),
            self.tags(bucket, key, version)
        );
        let mut info = head?;
        // A store without object tagging has none to tell.
        info.tags = tags.unwrap_or_default();
        Ok(info)
    }

    /// The parts of a multipart object (its ETag ends `-N`), as the upstream tells them: a HEAD
    /// of each part gives its size (16 at once). An upstream that does not tell them (Ceph 16.2
    /// ignores `partNumber`, naming no `x-amz-mp-parts-count`) leaves the object one part, as it
    /// answers itself.
    async fn parted_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        use futures_util::{StreamExt as _, TryStreamExt as _};

        let mut info = self.head_object(bucket, key, version).await?;
        let multipart = info
            .etag
            .rsplit_once('-')
            .is_some_and(|(_, n)| n.parse::<u32>().is_ok());
        if !multipart {
            return Ok(info);
        }
        let first = self.head_part(bucket, key, version, 1).await?;
        let Some(count) =
            header(&first, "x-amz-mp-parts-count").and_then(|n| n.parse::<u32>().ok())
        else {
            return Ok(info);
        };
        if count == 0 || count > MAX_PARTS {
            return Err(StoreError::Unavailable(format!(
                "the upstream names {count} parts of `{key}`"
            )));
        }
        let rest: Vec<u64> = futures_util::stream::iter(2..=count)
            .map(|number| async move {
                let headers = self.head_part(bucket, key, version, number).await?;
                Ok::<_, StoreError>(content_length(&headers))
            })
            .buffered(16)
            .try_collect()
            .await?;
        info.parts = std::iter::once(content_length(&first))
            .chain(rest)
            .zip(1..)
            .map(|(size, number)| ObjectPart { number, size })
            .collect();
        // The parts of another version, should one have come between the HEADs, do not fit.
        let total: u64 = info.parts.iter().map(|p| p.size).sum();
        if total != info.size {
            return Err(StoreError::Unavailable(format!(
                "the upstream's parts of `{key}` make {total} bytes of {}",
                info.size
            )));
        }
        Ok(info)
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, StoreError> {
        let ObjectUpdate::Tags(tags) = update else {
            return Err(not_implemented());
        };
        let (tagged, _) = self.set_tags(bucket, key, version, &tags).await?;
        let mut info = self
            .head_object(bucket, key, tagged.as_deref().or(version))
            .await?;
        info.tags = tags;
        Ok(info)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        governance: Governance,
    ) -> Result<Deleted, StoreError> {
        let mut call = Call::new(Method::DELETE, Some(bucket), Some(key));
        if let Some(version) = version {
            call = call.query("versionId", version);
        }
        if governance == Governance::Bypassed {
            call = call.header("x-amz-bypass-governance-retention", "true");
        }
        let response = self.upstream.send(call).await?;
        let headers = response.headers();
        let delete_marker = header(headers, "x-amz-delete-marker") == Some("true");
        let (version_id, _) = match version {
            // The version asked for is the one deleted.
            Some(_) => version_of(headers),
            None => self.written_version(bucket, version_of(headers)).await?,
        };
        Ok(Deleted {
            version_id,
            delete_marker,
        })
    }

    async fn list_objects(
        &self,
        bucket: &str,
        query: ListQuery<'_>,
    ) -> Result<ListPage, StoreError> {
        // S3 answers an empty, untruncated page to `max-keys=0`; Garage says truncated.
        if query.max_keys == 0 {
            self.head_upstream(bucket).await?;
            return Ok(ListPage {
                objects: Vec::new(),
                common_prefixes: Vec::new(),
                truncated: false,
                next_after: None,
            });
        }
        let mut call = listing(
            Call::new(Method::GET, Some(bucket), None).query("list-type", "2"),
            query.prefix,
            query.delimiter,
            query.max_keys,
        );
        if let Some(after) = query.after {
            call = call.query(
                "start-after",
                start_after(after, query.prefix, query.delimiter),
            );
        }
        let root = self.upstream.document(call).await?;
        let keys = Keys::of(&root);
        let objects: Vec<ObjectInfo> = root
            .all("Contents")
            .map(|c| listed(c, keys.read(c.text_of("Key"))))
            .collect();
        let common_prefixes = prefixes(&root, keys);
        let truncated = truncated(&root);
        let last = objects
            .last()
            .map(|o| o.key.clone())
            .into_iter()
            .chain(common_prefixes.last().cloned())
            .max();
        Ok(ListPage {
            objects,
            common_prefixes,
            truncated,
            next_after: last.filter(|_| truncated),
        })
    }

    async fn list_versions(
        &self,
        bucket: &str,
        query: VersionQuery<'_>,
    ) -> Result<VersionPage, StoreError> {
        let mut call = listing(
            Call::new(Method::GET, Some(bucket), None).query("versions", ""),
            query.prefix,
            query.delimiter,
            query.max_keys,
        );
        if let Some(marker) = query.key_marker {
            match query.version_id_marker {
                Some(version) => {
                    call = call
                        .query("key-marker", marker)
                        .query("version-id-marker", version);
                }
                None => {
                    call = call.query(
                        "key-marker",
                        start_after(marker, query.prefix, query.delimiter),
                    );
                }
            }
        }
        let root = self.upstream.document(call).await?;
        let keys = Keys::of(&root);
        let versions: Vec<VersionEntry> = root
            .children
            .iter()
            .filter(|e| e.name == "Version" || e.name == "DeleteMarker")
            .map(|e| {
                let mut info = listed(e, keys.read(e.text_of("Key")));
                info.version_id = e
                    .text_of("VersionId")
                    .filter(|v| *v != "null")
                    .map(str::to_owned);
                info.versioned = true;
                VersionEntry {
                    info,
                    delete_marker: e.name == "DeleteMarker",
                    is_latest: e.text_of("IsLatest") == Some("true"),
                }
            })
            .collect();
        // By key, newest first within one: not every upstream interleaves its versions and
        // delete markers (moto writes the versions first).
        let mut versions = versions;
        versions.sort_by(|a, b| {
            a.info
                .key
                .cmp(&b.info.key)
                .then(b.is_latest.cmp(&a.is_latest))
                .then(b.info.last_modified_ms.cmp(&a.info.last_modified_ms))
        });
        let truncated = truncated(&root);
        let common_prefixes = prefixes(&root, keys);
        // The next page starts after the last entry, as S3's own markers say; taken from the
        // entries, not from the upstream's markers, which not every store encodes as it
        // encodes keys (Ceph 16.2 leaves them raw).
        let (next_key_marker, next_version_id_marker) =
            match (versions.last(), common_prefixes.last()) {
                _ if !truncated => (None, None),
                (Some(v), Some(p)) if p.as_str() > v.info.key.as_str() => (Some(p.clone()), None),
                (Some(v), _) => (
                    Some(v.info.key.clone()),
                    Some(
                        v.info
                            .version_id
                            .clone()
                            .unwrap_or_else(|| "null".to_owned()),
                    ),
                ),
                (None, Some(p)) => (Some(p.clone()), None),
                (None, None) => (None, None),
            };
        Ok(VersionPage {
            versions,
            common_prefixes,
            truncated,
            next_key_marker,
            next_version_id_marker,
        })
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        let root = self
            .upstream
            .document(Call::new(Method::GET, Some(bucket), None).query("versioning", ""))
            .await?;
        Ok(match root.text_of("Status") {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Unversioned,
        })
    }

    async fn set_versioning(&self, bucket: &str, state: Versioning) -> Result<(), StoreError> {
        let status = match state {
            Versioning::Enabled => "Enabled",
            Versioning::Suspended => "Suspended",
            Versioning::Unversioned => return Err(not_implemented()),
        };
        let document = format!(
            "<VersioningConfiguration xmlns=\"{S3_XMLNS}\"><Status>{status}</Status></VersioningConfiguration>"
        );
        self.upstream
            .send(
                Call::new(Method::PUT, Some(bucket), None)
                    .query("versioning", "")
                    .payload(Payload::Document(document.into())),
            )
            .await?;
        self.remember_versioning(bucket, true);
        Ok(())
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        self.known(bucket).await?;
        self.meta.set_bucket_policy(bucket, policy).await
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        match self.meta.bucket_policy(bucket).await {
            Err(StoreError::NoSuchBucket(_)) => {
                self.known(bucket).await?;
                Ok(None)
            }
            other => other,
        }
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        if kind == BucketConfig::ObjectLock {
            return Err(not_implemented());
        }
        self.known(bucket).await?;
        self.meta.set_bucket_config(bucket, kind, config).await
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        match self.meta.bucket_config(bucket, kind).await {
            Err(StoreError::NoSuchBucket(_)) => {
                self.known(bucket).await?;
                Ok(None)
            }
            other => other,
        }
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> Result<UploadInfo, StoreError> {
        Self::refuse_lock(&options)?;
        let call = Call::new(Method::POST, Some(bucket), Some(key)).query("uploads", "");
        let root = self
            .upstream
            .document(Self::with_object_headers(call, &options))
            .await?;
        let upload_id = root
            .text_of("UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StoreError::Unavailable("an upload without its UploadId".into()))?;
        Ok(UploadInfo {
            upload_id: upload_id.to_owned(),
            key: key.to_owned(),
            initiated_ms: self.now_ms(),
        })
    }

    async fn upload_part(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        body: ByteStream,
        mut options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        let call = Call::new(Method::PUT, Some(upload.bucket), Some(upload.key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload.upload_id);
        let (response, size) = match self.send_checked(call, body, &mut options).await {
            Err(StoreError::NoSuchUpload(_) | StoreError::NoSuchKey { .. }) => {
                return Err(StoreError::NoSuchUpload(upload.upload_id.to_owned()));
            }
            other => other?,
        };
        Ok(PartInfo {
            part_number,
            etag: header(response.headers(), "etag")
                .map(unquote)
                .unwrap_or_default(),
            size,
            last_modified_ms: self.now_ms(),
            sealed: false,
        })
    }

    async fn list_parts(&self, upload: UploadRef<'_>) -> Result<Vec<PartInfo>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = Call::new(Method::GET, Some(upload.bucket), Some(upload.key))
                .query("uploadId", upload.upload_id);
            if let Some(marker) = &marker {
                call = call.query("part-number-marker", marker.clone());
            }
            let root = match self.upstream.document(call).await {
                Err(StoreError::NoSuchUpload(_) | StoreError::NoSuchKey { .. }) => {
                    return Err(StoreError::NoSuchUpload(upload.upload_id.to_owned()));
                }
                other => other?,
            };
            parts.extend(root.all("Part").map(|p| {
                PartInfo {
                    part_number: p
                        .text_of("PartNumber")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_default(),
                    etag: p.text_of("ETag").map(unquote).unwrap_or_default(),
                    size: p
                        .text_of("Size")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_default(),
                    last_modified_ms: millis_of(p.text_of("LastModified")),
                    sealed: false,
                }
            }));
            marker = root.text_of("NextPartNumberMarker").map(str::to_owned);
            if !truncated(&root) || marker.is_none() {
                break;
            }
        }
        Ok(parts)
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<UploadInfo>, StoreError> {
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let mut call = Call::new(Method::GET, Some(bucket), None)
                .query("uploads", "")
                .query("encoding-type", "url");
            if !prefix.is_empty() {
                call = call.query("prefix", prefix);
            }
            if let Some((key, id)) = &markers {
                call = call
                    .query("key-marker", key.clone())
                    .query("upload-id-marker", id.clone());
            }
            let root = self.upstream.document(call).await?;
            let keys = Keys::of(&root);
            uploads.extend(root.all("Upload").map(|u| UploadInfo {
                upload_id: u.text_of("UploadId").unwrap_or_default().to_owned(),
                key: keys.read(u.text_of("Key")),
                initiated_ms: millis_of(u.text_of("Initiated")),
            }));
            // The next page after the last upload, whose key is read as the keys are.
            markers = match uploads.last() {
                Some(last) if truncated(&root) => Some((last.key.clone(), last.upload_id.clone())),
                _ => break,
            };
        }
        Ok(uploads)
    }

    async fn complete_upload(
        &self,
        upload: UploadRef<'_>,
        parts: Vec<(u32, String)>,
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo, StoreError> {
        // S3 checks the order before anything else; not every upstream does.
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StoreError::InvalidPartOrder);
        }
        let mut document = format!("<CompleteMultipartUpload xmlns=\"{S3_XMLNS}\">");
        for (number, etag) in &parts {
            document.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>\"{}\"</ETag></Part>",
                keyless_types::xml::escape(etag.trim_matches('"'))
            ));
        }
        document.push_str("</CompleteMultipartUpload>");
        // The condition is checked here, then sent along for the upstreams that check it
        // where it commits (AWS, Ceph): others would complete regardless.
        if let Some(condition) = &condition {
            let current = match self.head_object(upload.bucket, upload.key, None).await {
                Ok(info) => Some(info),
                Err(StoreError::NoSuchKey { .. } | StoreError::DeleteMarker { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Err(unmet) = condition.check(upload.bucket, upload.key, current.as_ref()) {
                // A completion repeated after it succeeded answers alike, met or not.
                let expected = multipart_etag_of(parts.iter().map(|(_, e)| e.as_str()));
                match current {
                    Some(info) if info.etag == expected => return Ok(info),
                    _ => return Err(unmet),
                }
            }
        }
        let call = Call::new(Method::POST, Some(upload.bucket), Some(upload.key))
            .query("uploadId", upload.upload_id)
            .payload(Payload::Document(document.into()));
        // Only `If-None-Match: *` goes along (checked again where it commits); an `If-Match`
        // was checked above.
        let absent = condition
            .as_ref()
            .filter(|c| matches!(c, WriteCondition::Absent));
        let call = condition_header(call, absent);
        match self.upstream.document_head(call).await {
            // The object this completion made: its version, not whatever is latest by now.
            Ok((_, headers)) => {
                let (version, _) = self
                    .written_version(upload.bucket, version_of(&headers))
                    .await?;
                self.head_object(upload.bucket, upload.key, version.as_deref())
                    .await
            }
            // A completion repeated after it succeeded (its answer was lost): the object the
            // same parts made is the answer again.
            Err(StoreError::NoSuchUpload(_) | StoreError::NoSuchKey { .. }) => {
                let expected = multipart_etag_of(parts.iter().map(|(_, e)| e.as_str()));
                match self.head_object(upload.bucket, upload.key, None).await {
                    Ok(info) if info.etag == expected => Ok(info),
                    _ => Err(StoreError::NoSuchUpload(upload.upload_id.to_owned())),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The source stays upstream: only its information is read (with its tags, for a copy's
    /// `COPY` tagging directive); the copy is the upstream's own.
    async fn copy_source(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, CopyData), StoreError> {
        let info = match self.tagged_object(bucket, key, version).await {
            Ok(info) => info,
            // A HEAD's 404 has no body to tell a missing key from a missing bucket.
            Err(e @ (StoreError::NoSuchKey { .. } | StoreError::NoSuchVersion { .. })) => {
                self.head_upstream(bucket).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let from = CopiedFrom {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            // The version read, where the bucket has versions: the copy is of that one.
            version: version
                .map(str::to_owned)
                .or_else(|| info.version_id.clone()),
            etag: info.etag.clone(),
            size: info.size,
            range: range.map(|r| r.resolve(info.size)).transpose()?,
        };
        Ok((info, CopyData::InPlace(from)))
    }

    /// CopyObject upstream, with every header the copy is to have (the `REPLACE` directives:
    /// what the client's directives chose was read from the source already).
    async fn put_copy(
        &self,
        bucket: &str,
        key: &str,
        data: CopyData,
        options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        let from = match data {
            CopyData::InPlace(from) => from,
            CopyData::Bytes(body) => return self.put_object(bucket, key, body, options).await,
        };
        Self::refuse_lock(&options)?;
        let call =
            Self::with_object_headers(Call::new(Method::PUT, Some(bucket), Some(key)), &options)
                .header("x-amz-metadata-directive", "REPLACE")
                .header("x-amz-tagging-directive", "REPLACE");
        let call = self.copy_call(call, &from);
        let call = self
            .put_condition(call, bucket, key, options.condition.as_ref())
            .await?;
        let (root, headers) = self.upstream.document_head(call).await?;
        let (version_id, versioned) = self.written_version(bucket, version_of(&headers)).await?;
        if !options.tags.is_empty() {
            // Ceph 16.2 ignores a copy's `x-amz-tagging` (it keeps the source's tags, or none
            // with new metadata): where the copy lacks its tags, they are put again, on the
            // version it made. An upstream without tags (Garage 2.5) keeps none, as its
            // PutObject does. The copy is made by then: a failure here is logged, not answered.
            let version = version_id.as_deref();
            let kept = self.tags(bucket, key, version).await.unwrap_or_default();
            if kept != options.tags {
                match self.set_tags(bucket, key, version, &options.tags).await {
                    Ok(_) | Err(StoreError::Upstream { status: 501, .. }) => {}
                    Err(e) => {
                        tracing::warn!(%bucket, %key, error = %e, "a copy was made without its tags");
                    }
                }
            }
        }
        let etag = root.text_of("ETag").map(unquote).unwrap_or_default();
        let at = self.copied_at(&root);
        Ok(written(
            key,
            from.length(),
            etag,
            at,
            options,
            (version_id, versioned),
        ))
    }

    /// UploadPartCopy upstream.
    async fn upload_part_copy(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        data: CopyData,
        options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        let from = match data {
            CopyData::InPlace(from) if from.length() >= SMALL_PART_COPY => from,
            // Garage 2.5 refuses to copy less than 5 MiB into a part, which S3 allows (a last
            // part): so few bytes pass through Keyless instead, from the version read.
            CopyData::InPlace(from) => {
                let range = from.range.and_then(|(first, length)| {
                    let last = (first + length).checked_sub(1)?;
                    Some(ByteRange::From {
                        first,
                        last: Some(last),
                    })
                });
                let (read, body) = self
                    .get_object(&from.bucket, &from.key, from.version.as_deref(), range)
                    .await?;
                if read.etag != from.etag {
                    return Err(StoreError::PreconditionFailed);
                }
                return self.upload_part(upload, part_number, body, options).await;
            }
            CopyData::Bytes(body) => {
                return self.upload_part(upload, part_number, body, options).await;
            }
        };
        let call = Call::new(Method::PUT, Some(upload.bucket), Some(upload.key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload.upload_id);
        // A NoSuchKey here is the source's (gone since it was read), not the upload's.
        let root = match self.upstream.document(self.copy_call(call, &from)).await {
            Err(StoreError::NoSuchUpload(_)) => {
                return Err(StoreError::NoSuchUpload(upload.upload_id.to_owned()));
            }
            other => other?,
        };
        Ok(PartInfo {
            part_number,
            etag: root.text_of("ETag").map(unquote).unwrap_or_default(),
            size: from.length(),
            last_modified_ms: self.copied_at(&root),
            sealed: false,
        })
    }

    async fn abort_upload(&self, upload: UploadRef<'_>) -> Result<(), StoreError> {
        let call = Call::new(Method::DELETE, Some(upload.bucket), Some(upload.key))
            .query("uploadId", upload.upload_id);
        match self.upstream.send(call).await {
            Ok(_) => Ok(()),
            Err(StoreError::NoSuchUpload(_) | StoreError::NoSuchKey { .. }) => {
                Err(StoreError::NoSuchUpload(upload.upload_id.to_owned()))
            }
            Err(e) => Err(e),
        }
    }
}

impl<M> UpstreamStore<M> {
    fn upstream_region(&self) -> &str {
        self.upstream.region()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolled_up_prefix_is_skipped_whole() {
        assert_eq!(start_after("dir/", "", Some("/")), "dir/\u{10FFFF}");
        assert_eq!(start_after("a/dir/", "a/", Some("/")), "a/dir/\u{10FFFF}");
        // A key that merely ends with the delimiter, under a deeper level: not a roll-up.
        assert_eq!(start_after("a/b/c/", "a/", Some("/")), "a/b/c/");
        assert_eq!(start_after("key", "", Some("/")), "key");
        assert_eq!(start_after("dir/", "", None), "dir/");
    }

    #[test]
    fn tags_are_form_encoded_and_documents_escaped() {
        let tags = vec![("a b".to_owned(), "x&y".to_owned())];
        assert_eq!(tagging_header(&tags), "a%20b=x%26y");
        assert!(tagging_document(&tags).contains("<Value>x&amp;y</Value>"));
    }
}
