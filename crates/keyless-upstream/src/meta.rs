//! Where the gateway keeps what the upstream is never asked to hold: each bucket's policy and
//! configurations (CORS, lifecycle, tags, default encryption). A record may be missing for a
//! bucket the upstream has (created behind Keyless's back, or before it): the gateway then
//! creates an empty one, which means the same as none.

use std::future::Future;

use keyless_s3::store::{BucketConfig, DiskStore, StoreError};

/// The gateway's bucket records. `NoSuchBucket` means no record.
pub trait BucketMeta: Send + Sync + 'static {
    /// When `bucket`'s record was made (ms since the epoch; `NoSuchBucket` if there is none).
    fn head_bucket(&self, bucket: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Creates an empty record (`BucketAlreadyExists` if there is one).
    fn create_bucket(&self, bucket: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes the record.
    fn delete_bucket(&self, bucket: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets or removes the bucket's policy.
    fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The bucket's policy.
    fn bucket_policy(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Sets or removes one of the bucket's configurations.
    fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One of the bucket's configurations.
    fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// A data folder's bucket records (one machine, or replicas that share nothing else).
impl BucketMeta for DiskStore {
    async fn head_bucket(&self, bucket: &str) -> Result<i64, StoreError> {
        keyless_s3::store::ObjectStore::head_bucket(self, bucket)
            .await
            .map(|b| b.created_ms)
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        keyless_s3::store::ObjectStore::create_bucket(self, bucket)
            .await
            .map(drop)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        keyless_s3::store::ObjectStore::delete_bucket(self, bucket).await
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        keyless_s3::store::ObjectStore::set_bucket_policy(self, bucket, policy).await
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        keyless_s3::store::ObjectStore::bucket_policy(self, bucket).await
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        keyless_s3::store::ObjectStore::set_bucket_config(self, bucket, kind, config).await
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        keyless_s3::store::ObjectStore::bucket_config(self, bucket, kind).await
    }
}
