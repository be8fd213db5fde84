//! Object and bucket tags: Put/Get/DeleteObjectTagging, `x-amz-tagging` on PutObject,
//! CreateMultipartUpload and CopyObject (with `x-amz-tagging-directive`), Put/Get/DeleteBucket-
//! Tagging, with S3's limits and texts. Tags a request sets feed the policy engine's
//! `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` (`auth/authorize.rs`).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-and-policies.html>

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use crate::store::{BucketConfig, ObjectStore, ObjectUpdate};
use crate::tags::{MAX_BUCKET_TAGS, MAX_OBJECT_TAGS, body_tags, check_tags};
use crate::wire::store_error;

fn tag_set(tags: &[(String, String)]) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

impl<S: ObjectStore> KeylessS3<S> {
    pub(super) async fn put_object_tagging_(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = body_tags(&input.tagging.tag_set)?;
        check_tags(&tags, MAX_OBJECT_TAGS)?;
        let version = input.version_id.as_deref();
        let tagged = self
            .store
            .update_object(&input.bucket, &input.key, version, ObjectUpdate::Tags(tags))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: tagged.version_header(),
        }))
    }

    pub(super) async fn get_object_tagging_(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let info = self
            .store
            .tagged_object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set(&info.tags),
            version_id: info.version_header(),
        }))
    }

    pub(super) async fn delete_object_tagging_(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let version = input.version_id.as_deref();
        let tagged = self
            .store
            .update_object(
                &input.bucket,
                &input.key,
                version,
                ObjectUpdate::Tags(Vec::new()),
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: tagged.version_header(),
        }))
    }

    pub(super) async fn put_bucket_tagging_(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        let tags = body_tags(&input.tagging.tag_set)?;
        check_tags(&tags, MAX_BUCKET_TAGS)?;
        let text = serde_json::to_string(&tags)
            .map_err(|e| s3_error!(InternalError, "cannot encode the tags: {e}"))?;
        self.store
            .set_bucket_config(&input.bucket, BucketConfig::Tagging, Some(text))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn get_bucket_tagging_(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let text = self
            .store
            .bucket_config(&req.input.bucket, BucketConfig::Tagging)
            .await
            .map_err(store_error)?;
        let Some(tags) = text.and_then(|t| serde_json::from_str::<Vec<(String, String)>>(&t).ok())
        else {
            return Err(super::probes::not_configured("NoSuchTagSet"));
        };
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(&tags),
        }))
    }

    pub(super) async fn delete_bucket_tagging_(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.store
            .set_bucket_config(&req.input.bucket, BucketConfig::Tagging, None)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }
}
