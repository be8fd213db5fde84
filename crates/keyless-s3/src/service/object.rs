//! Object operations: put, get (with ranges), head, delete, delete many, copy.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>

use std::collections::BTreeMap;

use base64::Engine as _;
use futures_util::StreamExt as _;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::acl::{AclOf, refuse_acl_headers};
use super::bucket::timestamp;
use super::encryption::{Carries, refuse_unimplemented};
use super::headers::{HeadersIn, Overrides};
use super::object_lock::{governance, lock_headers, lock_out};
use super::parts::{part_of, refuse_range_with_part};
use crate::conditions::{Conditions, Unmet, seconds};
use crate::extensions::{DeniedKeys, MayList};
use crate::store::StoreError;
use crate::store::{ByteRange, ByteStream, ObjectInfo, ObjectStore, PutOptions, WriteCondition};
use crate::wire::{aws_error, store_error};

/// A missing key, as a caller who may not list the bucket must see it: `AccessDenied`.
pub(super) fn missing_key(e: StoreError, may_list: Option<MayList>) -> s3s::S3Error {
    match (e, may_list) {
        (
            StoreError::NoSuchKey { .. }
            | StoreError::DeleteMarker {
                requested: false, ..
            },
            Some(MayList(false)),
        ) => {
            s3_error!(AccessDenied, "Access Denied")
        }
        (e, _) => store_error(e),
    }
}

/// A copy source that cannot be read, as S3 answers it: a delete marker named by its version
/// is `InvalidRequest`; a key whose latest version is a delete marker is `NoSuchKey`.
pub(super) fn copy_source_error(e: StoreError) -> s3s::S3Error {
    match e {
        StoreError::DeleteMarker {
            requested: true, ..
        } => s3_error!(
            InvalidRequest,
            "The source of a copy request may not specifically refer to a delete marker by version id."
        ),
        StoreError::DeleteMarker { .. } => aws_error(S3ErrorCode::NoSuchKey),
        e => store_error(e),
    }
}

/// The bucket, key and version (if named) of `x-amz-copy-source`.
pub(super) fn copy_source(source: &CopySource) -> S3Result<(&str, &str, Option<&str>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((bucket, key, version_id.as_deref())),
        _ => Err(s3_error!(
            NotImplemented,
            "Only bucket copy sources are supported."
        )),
    }
}

/// S3's largest single PUT and largest part: 5 GiB.
pub(super) const MAX_PUT_BYTES: i64 = 5 * 1024 * 1024 * 1024;

/// `EntityTooLarge` for a body over [`MAX_PUT_BYTES`], before a byte of it is read.
pub(super) fn refuse_too_large(content_length: Option<i64>) -> S3Result<()> {
    match content_length {
        Some(n) if n > MAX_PUT_BYTES => Err(aws_error(S3ErrorCode::EntityTooLarge)),
        _ => Ok(()),
    }
}

/// `x-amz-server-side-encryption: AES256` for an object encrypted at rest.
pub(super) fn sse(sealed: bool) -> Option<ServerSideEncryption> {
    sealed.then(|| ServerSideEncryption::from_static(ServerSideEncryption::AES256))
}

fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

/// The answer to an unmet condition: 304 with the object's ETag and Last-Modified (and no
/// body), or 412 `PreconditionFailed`.
pub(super) fn unmet(why: Unmet, info: &ObjectInfo) -> s3s::S3Error {
    match why {
        Unmet::PreconditionFailed => aws_error(S3ErrorCode::PreconditionFailed),
        Unmet::NotModified => {
            let mut e = aws_error(S3ErrorCode::NotModified);
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
                headers.insert(http::header::ETAG, v);
            }
            let mut date = Vec::new();
            if timestamp(info.last_modified_ms)
                .format(TimestampFormat::HttpDate, &mut date)
                .is_ok()
                && let Ok(v) = http::HeaderValue::from_bytes(&date)
            {
                headers.insert(http::header::LAST_MODIFIED, v);
            }
            e.set_headers(headers);
            e
        }
    }
}

/// The write condition of `If-Match` and `If-None-Match`, or S3's `NotImplemented` for what it
/// does not take.
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    crate::conditions::write_condition(if_match, if_none_match)
        .map_err(|_| aws_error(S3ErrorCode::NotImplemented))
}

/// S3's limit on user metadata: the bytes of every `x-amz-meta-*` name (without the prefix)
/// and value, summed, as the S3 User Guide counts them
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html>).
pub(super) const MAX_METADATA_BYTES: usize = 2 * 1024;

/// The user metadata of a request, lowercased; `MetadataTooLarge` over S3's 2 KB.
pub(super) fn metadata_in(metadata: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let metadata: BTreeMap<String, String> = metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(metadata)
}

fn metadata_out(info: &ObjectInfo) -> Option<Metadata> {
    (!info.metadata.is_empty()).then(|| info.metadata.clone().into_iter().collect())
}

pub(super) fn content_md5(value: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    value
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| <[u8; 16]>::try_from(d).ok())
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")
                })
        })
        .transpose()
}

/// A request body as the store reads it: chunks, with s3s's errors (bad chunk signatures,
/// payload hash mismatches, broken connections) as IO errors, and a `TimedOut` error when no
/// chunk arrives within `idle`.
pub(super) fn body_stream(body: Option<StreamingBlob>, idle: std::time::Duration) -> ByteStream {
    let Some(blob) = body else {
        return Box::pin(futures_util::stream::empty());
    };
    Box::pin(futures_util::stream::unfold(
        Some(blob),
        move |blob| async move {
            let mut blob = blob?;
            match tokio::time::timeout(idle, blob.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), Some(blob))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no body bytes for {} s", idle.as_secs_f32()),
                    )),
                    None,
                )),
            }
        },
    ))
}

/// Whether a request carries a digest of its body (`Content-MD5` or a checksum, in a header
/// or announced for the trailer), which S3 requires of a PUT with Object Lock parameters.
fn carries_integrity(headers: &http::HeaderMap) -> bool {
    headers.contains_key("content-md5")
        || headers.contains_key("x-amz-sdk-checksum-algorithm")
        || headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().contains("x-amz-checksum-"))
        || headers
            .keys()
            .any(|name| name.as_str().starts_with("x-amz-checksum-"))
}

/// The length of a request's body as the client declared it: `Content-Length`, or for an
/// `aws-chunked` upload its `x-amz-decoded-content-length` (s3s's decoded stream knows it). A
/// store that forwards the body (gateway mode) sends it on.
pub(super) fn body_length(body: Option<&s3s::dto::StreamingBlob>) -> Option<u64> {
    use s3s::stream::ByteStream as _;
    match body {
        Some(body) => body
            .remaining_length()
            .exact()
            .and_then(|n| u64::try_from(n).ok()),
        None => Some(0),
    }
}

fn byte_range(range: Option<Range>) -> Option<ByteRange> {
    range.map(|r| match r {
        Range::Int { first, last } => ByteRange::From { first, last },
        Range::Suffix { length } => ByteRange::Suffix(length),
    })
}

impl<S: ObjectStore> KeylessS3<S> {
    pub(super) async fn put_object_(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        refuse_acl_headers(&req.headers, AclOf::Object, &self.owner_id)?;
        refuse_unimplemented(&req.headers, Carries::Method)?;
        let seal = self
            .asks_to_seal(req.input.server_side_encryption.as_ref(), &req.input.bucket)
            .await?;
        let input = req.input;
        refuse_too_large(input.content_length)?;
        let lock = lock_headers(
            input.object_lock_mode.as_ref(),
            input.object_lock_retain_until_date.as_ref(),
            input.object_lock_legal_hold_status.as_ref(),
            self.clock.unix_millis(),
        )?;
        // A browser form carries no digest of its file (S3's POST takes none); a PUT must.
        let form = crate::wire::form::is_form(&req.method, &req.headers);
        if !lock.is_empty() && !form && !carries_integrity(&req.headers) {
            return Err(s3_error!(
                InvalidRequest,
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
            ));
        }
        let options = PutOptions {
            condition: write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
            tags: crate::tags::header_tags(input.tagging.as_deref())?,
            content_type: input.content_type,
            metadata: metadata_in(input.metadata)?,
            headers: HeadersIn {
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                expires: input.expires,
            }
            .stored(),
            content_md5: content_md5(input.content_md5.as_deref())?,
            content_length: body_length(input.body.as_ref()),
            verifier: super::checksum::verifier(&req.headers, req.trailing_headers)?,
            lock,
            seal,
        };
        let info = self
            .store
            .put_object(
                &input.bucket,
                &input.key,
                body_stream(input.body, self.body_idle_timeout),
                options,
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutObjectOutput {
            server_side_encryption: sse(info.sealed),
            e_tag: Some(etag(&info)),
            version_id: info.version_header(),
            ..Default::default()
        }))
    }

    pub(super) async fn get_object_(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        refuse_unimplemented(&req.headers, Carries::CustomerKey)?;
        let may_list = req.extensions.get::<MayList>().copied();
        let input = req.input;
        let overrides = Overrides {
            cache_control: input.response_cache_control,
            content_disposition: input.response_content_disposition,
            content_encoding: input.response_content_encoding,
            content_language: input.response_content_language,
            content_type: input.response_content_type,
            expires: input.response_expires,
        };
        overrides.check(req.credentials.is_none())?;
        let version = input.version_id.as_deref();
        let part = refuse_range_with_part(input.range.is_some(), input.part_number)?;
        let (info, stream, range, parts_count) = match part {
            Some(number) => {
                let (info, stream, part) = self
                    .read_part(&input.bucket, &input.key, version, number, may_list)
                    .await?;
                (info, stream, part.range, part.parts_count)
            }
            None => {
                let range = byte_range(input.range);
                let (info, stream) = self
                    .store
                    .get_object(&input.bucket, &input.key, version, range)
                    .await
                    .map_err(|e| missing_key(e, may_list))?;
                (info, stream, range, None)
            }
        };
        let conditions = Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref().map(seconds),
            if_unmodified_since: input.if_unmodified_since.as_ref().map(seconds),
        };
        conditions
            .check_read(&info)
            .map_err(|why| unmet(why, &info))?;
        let (content_length, content_range) = match range {
            Some(r) => {
                let (offset, len) = r.resolve(info.size).map_err(store_error)?;
                let last = offset + len - 1;
                (len, Some(format!("bytes {offset}-{last}/{}", info.size)))
            }
            None => (info.size, None),
        };
        let headers = overrides.apply(info.content_type.as_deref(), &info.headers);
        let lock = lock_out(&info);
        Ok(S3Response::new(GetObjectOutput {
            object_lock_mode: lock.mode,
            object_lock_retain_until_date: lock.until,
            object_lock_legal_hold_status: lock.legal_hold,
            tag_count: (!info.tags.is_empty())
                .then(|| i32::try_from(info.tags.len()).unwrap_or(i32::MAX)),
            server_side_encryption: sse(info.sealed),
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(i64::try_from(content_length).unwrap_or(i64::MAX)),
            content_range,
            parts_count,
            accept_ranges: Some("bytes".to_owned()),
            content_type: headers.content_type,
            cache_control: headers.cache_control,
            content_disposition: headers.content_disposition,
            content_encoding: headers.content_encoding,
            content_language: headers.content_language,
            expires: headers.expires,
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(info.last_modified_ms)),
            metadata: metadata_out(&info),
            version_id: info.version_header(),
            ..Default::default()
        }))
    }

    pub(super) async fn head_object_(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        refuse_unimplemented(&req.headers, Carries::CustomerKey)?;
        let may_list = req.extensions.get::<MayList>().copied();
        let input = req.input;
        let overrides = Overrides {
            cache_control: input.response_cache_control,
            content_disposition: input.response_content_disposition,
            content_encoding: input.response_content_encoding,
            content_language: input.response_content_language,
            content_type: input.response_content_type,
            expires: input.response_expires,
        };
        overrides.check(req.credentials.is_none())?;
        let part = refuse_range_with_part(input.range.is_some(), input.part_number)?;
        let (bucket, key, version) = (&input.bucket, &input.key, input.version_id.as_deref());
        let info = match part {
            Some(_) => self.store.parted_object(bucket, key, version).await,
            None => self.store.head_object(bucket, key, version).await,
        }
        .map_err(|e| missing_key(e, may_list))?;
        let conditions = Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref().map(seconds),
            if_unmodified_since: input.if_unmodified_since.as_ref().map(seconds),
        };
        conditions
            .check_read(&info)
            .map_err(|why| unmet(why, &info))?;
        let headers = overrides.apply(info.content_type.as_deref(), &info.headers);
        // With `partNumber`: the part's length and range, and 206 as for a GET.
        let (content_length, content_range, parts_count) = match part {
            Some(number) => {
                let part = part_of(&info, number)?;
                match part.range.map(|r| r.resolve(info.size)) {
                    Some(Ok((offset, len))) => (
                        len,
                        Some(format!("bytes {offset}-{}/{}", offset + len - 1, info.size)),
                        part.parts_count,
                    ),
                    _ => (0, None, part.parts_count),
                }
            }
            None => (info.size, None, None),
        };
        let lock = lock_out(&info);
        // 206 when there is a Content-Range: set by the front (`wire`), as s3s answers 200.
        Ok(S3Response::new(HeadObjectOutput {
            object_lock_mode: lock.mode,
            object_lock_retain_until_date: lock.until,
            object_lock_legal_hold_status: lock.legal_hold,
            server_side_encryption: sse(info.sealed),
            content_length: Some(i64::try_from(content_length).unwrap_or(i64::MAX)),
            content_range,
            parts_count,
            accept_ranges: Some("bytes".to_owned()),
            content_type: headers.content_type,
            cache_control: headers.cache_control,
            content_disposition: headers.content_disposition,
            content_encoding: headers.content_encoding,
            content_language: headers.content_language,
            expires: headers.expires,
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(info.last_modified_ms)),
            metadata: metadata_out(&info),
            version_id: info.version_header(),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_object_(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let governance = governance(req.input.bypass_governance_retention, &req.extensions);
        let input = req.input;
        let deleted = self
            .store
            .delete_object(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                governance,
            )
            .await
            .map_err(store_error)?;
        // A null delete marker (versioning suspended) and the null version answer `null`.
        let version_id = match (deleted.version_id, deleted.delete_marker) {
            (Some(id), _) => Some(id),
            (None, true) => Some("null".to_owned()),
            (None, false) => input.version_id,
        };
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker.then_some(true),
            version_id,
            ..Default::default()
        }))
    }

    pub(super) async fn delete_objects_(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let governance = governance(req.input.bypass_governance_retention, &req.extensions);
        let input = req.input;
        self.store
            .head_bucket(&input.bucket)
            .await
            .map_err(store_error)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        if let Some(DeniedKeys(keys)) = req.extensions.get::<DeniedKeys>() {
            errors.extend(keys.iter().map(|(key, version)| Error {
                code: Some("AccessDenied".to_owned()),
                key: Some(key.clone()),
                message: Some("Access Denied".to_owned()),
                version_id: version.clone(),
            }));
        }
        for object in input.delete.objects {
            let named = object.version_id.as_deref();
            match self
                .store
                .delete_object(&input.bucket, &object.key, named, governance)
                .await
            {
                Ok(_) if quiet => {}
                // As S3 reports it: a marker made has its id in DeleteMarkerVersionId; a
                // version deleted keeps the VersionId asked for.
                Ok(done) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    delete_marker: done.delete_marker.then_some(true),
                    delete_marker_version_id: match named {
                        None if done.delete_marker => {
                            Some(done.version_id.clone().unwrap_or_else(|| "null".into()))
                        }
                        Some(v) if done.delete_marker => Some(v.to_owned()),
                        _ => None,
                    },
                    version_id: object.version_id,
                }),
                Err(e) => {
                    let e = store_error(e);
                    errors.push(Error {
                        code: Some(e.code().as_str().to_owned()),
                        key: Some(object.key),
                        message: e.message().map(str::to_owned),
                        version_id: object.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn copy_object_(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        refuse_acl_headers(&req.headers, AclOf::Object, &self.owner_id)?;
        refuse_unimplemented(&req.headers, Carries::Method)?;
        // CopyObject's conditional write on the destination: s3s 0.14 does not parse these
        // two headers for copies, so they are read here rather than ignored.
        let header = |name: http::HeaderName| {
            req.headers
                .get(name)
                .map(|v| {
                    ETagCondition::parse_http_header(v.as_bytes())
                        .map_err(|_| s3_error!(InvalidArgument, "The ETag condition is not valid."))
                })
                .transpose()
        };
        let if_match = header(http::header::IF_MATCH)?;
        let if_none_match = header(http::header::IF_NONE_MATCH)?;
        let condition = write_condition(if_match.as_ref(), if_none_match.as_ref())?;
        let seal = self
            .asks_to_seal(req.input.server_side_encryption.as_ref(), &req.input.bucket)
            .await?;
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        // The copy's own lock (the source's is not copied; the bucket's default applies).
        let lock = lock_headers(
            input.object_lock_mode.as_ref(),
            input.object_lock_retain_until_date.as_ref(),
            input.object_lock_legal_hold_status.as_ref(),
            self.clock.unix_millis(),
        )?;

        let (source, data) = self
            .store
            .copy_source(src_bucket, src_key, src_version, None)
            .await
            .map_err(copy_source_error)?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref().map(seconds),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref().map(seconds),
        };
        conditions
            .check_copy_source(&source)
            .map_err(|why| unmet(why, &source))?;
        // x-amz-tagging-directive: COPY (the default) keeps the source's tags.
        let tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            Some(TaggingDirective::REPLACE) => crate::tags::header_tags(input.tagging.as_deref())?,
            None | Some(TaggingDirective::COPY) => source.tags.clone(),
            Some(_) => {
                return Err(s3_error!(InvalidArgument, "Unknown tagging directive."));
            }
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == input.bucket && src_key == input.key && src_version.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let options = if replace {
            PutOptions {
                content_type: input.content_type,
                metadata: metadata_in(input.metadata)?,
                headers: HeadersIn {
                    cache_control: input.cache_control,
                    content_disposition: input.content_disposition,
                    content_encoding: input.content_encoding,
                    content_language: input.content_language,
                    expires: input.expires,
                }
                .stored(),
                condition,
                tags,
                lock,
                seal,
                content_length: Some(source.size),
                ..Default::default()
            }
        } else {
            PutOptions {
                content_type: source.content_type.clone(),
                metadata: source.metadata.clone(),
                headers: source.headers.clone(),
                condition,
                tags,
                lock,
                seal,
                content_length: Some(source.size),
                ..Default::default()
            }
        };
        let info = self
            .store
            .put_copy(&input.bucket, &input.key, data, options)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CopyObjectOutput {
            server_side_encryption: sse(info.sealed),
            copy_source_version_id: source.version_header(),
            version_id: info.version_header(),
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(timestamp(info.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_over_2_kb_is_too_large() {
        let meta = |pairs: &[(&str, usize)]| -> Option<Metadata> {
            Some(
                pairs
                    .iter()
                    .map(|(k, n)| ((*k).to_owned(), "v".repeat(*n)))
                    .collect(),
            )
        };
        // Names count without `x-amz-meta-`, values in bytes: 2048 in all passes.
        assert!(metadata_in(meta(&[("ab", 1000), ("cd", 1044)])).is_ok());
        let e = metadata_in(meta(&[("ab", 1000), ("cd", 1045)])).unwrap_err();
        assert_eq!(e.code().as_str(), "MetadataTooLarge");
        assert_eq!(
            metadata_in(meta(&[("Mixed-Case", 1)])).unwrap()["mixed-case"],
            "v"
        );
        assert!(metadata_in(None).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_after_what_arrived() {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(b"abc"),
        )])
        .chain(futures_util::stream::pending());
        let blob = StreamingBlob::wrap(chunks);
        let mut body = body_stream(Some(blob), std::time::Duration::from_millis(50));
        assert_eq!(body.next().await.unwrap().unwrap(), "abc");
        let err = body.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(body.next().await.is_none());
        let s3 = store_error(crate::store::StoreError::Body(err));
        assert_eq!(s3.code().as_str(), "RequestTimeout");
    }
}
