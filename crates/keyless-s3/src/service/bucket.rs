//! Bucket operations: create, delete, head, list, location and bucket policies.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketPolicy.html>

use std::time::{Duration, UNIX_EPOCH};

use keyless_policy::{Policy, PolicyKind};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::KeylessS3;
use super::acl::{AclOf, refuse_acl_headers};
use crate::object_lock::LockConfig;
use crate::store::{ObjectStore, Versioning};
use crate::wire::store_error;

/// The largest page of ListBuckets.
const MAX_BUCKETS: i32 = 10_000;

/// Milliseconds since the epoch as an S3 timestamp.
pub(super) fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

impl<S: ObjectStore> KeylessS3<S> {
    pub(super) async fn create_bucket_(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        refuse_acl_headers(&req.headers, AclOf::Bucket, &self.owner_id)?;
        let with_lock = req.input.object_lock_enabled_for_bucket == Some(true);
        let bucket = req.input.bucket;
        self.store
            .create_bucket(&bucket)
            .await
            .map_err(store_error)?;
        if with_lock {
            // `x-amz-bucket-object-lock-enabled: true`: versioning on, then Object Lock, or no
            // bucket at all.
            let locked = match self
                .store
                .set_versioning(&bucket, Versioning::Enabled)
                .await
            {
                Ok(()) => {
                    self.enable_object_lock(&bucket, LockConfig::default())
                        .await
                }
                Err(e) => Err(store_error(e)),
            };
            if let Err(e) = locked {
                if let Err(undo) = self.store.delete_bucket(&bucket).await {
                    tracing::error!(bucket, error = %undo, "a bucket whose Object Lock failed could not be removed");
                }
                return Err(e);
            }
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    pub(super) async fn delete_bucket_(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.store
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn head_bucket_(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn list_buckets_(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let input = req.input;
        let max = match input.max_buckets {
            None => None,
            Some(n) if (1..=MAX_BUCKETS).contains(&n) => usize::try_from(n).ok(),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-buckets must be an integer between 1 and 10000"
                ));
            }
        };
        let after = input
            .continuation_token
            .as_deref()
            .map(super::list::after_token)
            .transpose()?;
        let prefix = input.prefix.clone().unwrap_or_default();
        // Every bucket is in the one region; another region has none.
        let elsewhere = input
            .bucket_region
            .as_deref()
            .is_some_and(|r| r != self.region);
        let mut buckets: Vec<_> = self
            .store
            .list_buckets()
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|b| !elsewhere && b.name.starts_with(&prefix))
            .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
            .collect();
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let next = match max {
            Some(max) if buckets.len() > max => {
                buckets.truncate(max);
                buckets.last().map(|b| super::list::token_for(&b.name))
            }
            _ => None,
        };
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|b| Bucket {
                        name: Some(b.name),
                        creation_date: Some(timestamp(b.created_ms)),
                        bucket_region: Some(self.region.clone()),
                    })
                    .collect(),
            ),
            owner: Some(self.owner()),
            continuation_token: next,
            prefix: input.prefix,
        }))
    }

    pub(super) async fn get_bucket_location_(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        // S3 answers an empty LocationConstraint for us-east-1.
        let location = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    pub(super) async fn put_bucket_policy_(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        if let Err(e) = Policy::parse_as(&input.policy, PolicyKind::Resource) {
            return Err(s3_error!(MalformedPolicy, "{e}"));
        }
        self.store
            .set_bucket_policy(&input.bucket, Some(input.policy))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    pub(super) async fn get_bucket_policy_(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        match self
            .store
            .bucket_policy(&req.input.bucket)
            .await
            .map_err(store_error)?
        {
            Some(policy) => Ok(S3Response::new(GetBucketPolicyOutput {
                policy: Some(policy),
            })),
            None => Err(s3_error!(
                NoSuchBucketPolicy,
                "The bucket policy does not exist"
            )),
        }
    }

    pub(super) async fn delete_bucket_policy_(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.store
            .set_bucket_policy(&req.input.bucket, None)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }
}
