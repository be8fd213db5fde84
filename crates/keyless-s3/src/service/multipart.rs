//! Multipart uploads: create, upload part (and part copy), list parts and uploads, complete,
//! abort.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html>

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::acl::{AclOf, refuse_acl_headers};
use super::bucket::timestamp;
use super::encryption::{Carries, refuse_unimplemented};
use super::object::{body_stream, content_md5, copy_source, metadata_in};
use super::parts::part_number;
use crate::conditions::{Conditions, seconds};
use crate::store::{ByteRange, ObjectStore, PutOptions, UploadRef};
use crate::wire::store_error;

/// `bytes=first-last` of `x-amz-copy-source-range`.
fn copy_range(range: Option<&str>) -> S3Result<Option<ByteRange>> {
    let Some(range) = range else { return Ok(None) };
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b);
    match parsed {
        Some((first, last)) => Ok(Some(ByteRange::From {
            first,
            last: Some(last),
        })),
        None => Err(s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )),
    }
}

impl<S: ObjectStore> KeylessS3<S> {
    pub(super) async fn create_multipart_upload_(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        refuse_acl_headers(&req.headers, AclOf::Object, &self.owner_id)?;
        refuse_unimplemented(&req.headers, Carries::Method)?;
        let seal = self
            .asks_to_seal(req.input.server_side_encryption.as_ref(), &req.input.bucket)
            .await?;
        let input = req.input;
        let options = PutOptions {
            seal,
            content_type: input.content_type,
            metadata: metadata_in(input.metadata)?,
            tags: crate::tags::header_tags(input.tagging.as_deref())?,
            headers: super::headers::HeadersIn {
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_encoding: input.content_encoding,
                content_language: input.content_language,
                expires: input.expires,
            }
            .stored(),
            lock: super::object_lock::lock_headers(
                input.object_lock_mode.as_ref(),
                input.object_lock_retain_until_date.as_ref(),
                input.object_lock_legal_hold_status.as_ref(),
                self.clock.unix_millis(),
            )?,
            ..Default::default()
        };
        let upload = self
            .store
            .create_upload(&input.bucket, &input.key, options)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            server_side_encryption: super::object::sse(self.store.sealing().seals(seal)),
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.upload_id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        refuse_unimplemented(&req.headers, Carries::CustomerKey)?;
        let input = req.input;
        super::object::refuse_too_large(input.content_length)?;
        let upload = UploadRef {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: &input.upload_id,
        };
        let options = PutOptions {
            content_md5: content_md5(input.content_md5.as_deref())?,
            content_length: super::object::body_length(input.body.as_ref()),
            verifier: super::checksum::verifier(&req.headers, req.trailing_headers)?,
            ..Default::default()
        };
        let part = self
            .store
            .upload_part(
                upload,
                part_number(input.part_number)?,
                body_stream(input.body, self.body_idle_timeout),
                options,
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(UploadPartOutput {
            server_side_encryption: super::object::sse(part.sealed),
            e_tag: Some(ETag::Strong(part.etag)),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        refuse_unimplemented(&req.headers, Carries::CustomerKey)?;
        let input = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        let range = copy_range(input.copy_source_range.as_deref())?;
        let (source, data) = self
            .store
            .copy_source(src_bucket, src_key, src_version, range)
            .await
            .map_err(super::object::copy_source_error)?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref().map(seconds),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref().map(seconds),
        };
        conditions
            .check_copy_source(&source)
            .map_err(|why| super::object::unmet(why, &source))?;
        let upload = UploadRef {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: &input.upload_id,
        };
        let length = match range {
            Some(range) => range.resolve(source.size).map_err(store_error)?.1,
            None => source.size,
        };
        let part = self
            .store
            .upload_part_copy(
                upload,
                part_number(input.part_number)?,
                data,
                PutOptions {
                    content_length: Some(length),
                    ..Default::default()
                },
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            server_side_encryption: super::object::sse(part.sealed),
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(timestamp(part.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn list_parts_(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = UploadRef {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: &input.upload_id,
        };
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let parts = self.store.list_parts(upload).await.map_err(store_error)?;
        let mut after: Vec<_> = parts
            .into_iter()
            .filter(|p| i64::from(p.part_number) > i64::from(marker))
            .collect();
        let truncated = after.len() > max;
        after.truncate(max);
        let next = after
            .last()
            .map(|p| i32::try_from(p.part_number).unwrap_or(i32::MAX));
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            part_number_marker: Some(marker),
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(
                after
                    .into_iter()
                    .map(|p| Part {
                        part_number: Some(i32::try_from(p.part_number).unwrap_or(i32::MAX)),
                        e_tag: Some(ETag::Strong(p.etag)),
                        size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                        last_modified: Some(timestamp(p.last_modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = self
            .store
            .list_uploads(&input.bucket, &prefix)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(prefix),
            max_uploads: Some(input.max_uploads.unwrap_or(1000)),
            is_truncated: Some(false),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = UploadRef {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: &input.upload_id,
        };
        let mut parts = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(etag)) = (part.part_number, part.e_tag) else {
                return Err(s3_error!(
                    MalformedXML,
                    "Each part needs a PartNumber and an ETag."
                ));
            };
            parts.push((part_number(number)?, etag.into_value()));
        }
        let condition =
            super::object::write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let info = self
            .store
            .complete_upload(upload, parts, condition)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            server_side_encryption: super::object::sse(info.sealed),
            version_id: info.version_header(),
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(info.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let upload = UploadRef {
            bucket: &input.bucket,
            key: &input.key,
            upload_id: &input.upload_id,
        };
        self.store.abort_upload(upload).await.map_err(store_error)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
