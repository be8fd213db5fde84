//! Where `keyless serve` keeps objects: its own disk (the embedded default) or, in gateway mode,
//! an upstream S3 store, with bucket policies and configurations still on its disk (or, for
//! replicas, in PostgreSQL). One type
//! for the S3 front, the authorizer and the lifecycle pass, whichever it is.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keyless_s3::object_lock::Governance;
use keyless_s3::store::{
    BucketConfig, BucketInfo, ByteRange, ByteStream, CopyData, Deleted, DiskStore, ListPage,
    ListQuery, ObjectInfo, ObjectStore, ObjectUpdate, PartInfo, PutOptions, Sealing, StoreError,
    UploadInfo, UploadRef, VersionPage, VersionQuery, Versioning, WriteCondition,
};
use keyless_types::Clock;
use keyless_upstream::{UpstreamConfig, UpstreamStore};

use crate::buckets::{GatewayRecords, SharedBuckets};
use crate::lifecycle::{Readiness, Shutdown};
use crate::options::UpstreamOptions;

/// The object store of `keyless serve`.
pub(crate) enum Objects {
    /// Objects on Keyless's own disk.
    Disk(DiskStore),
    /// Objects in an upstream store (gateway mode); boxed, as it is the larger.
    Gateway(Box<UpstreamStore<GatewayRecords>>),
}

/// The readiness check of the upstream.
const UPSTREAM: &str = "upstream";
/// How often the upstream is probed for `/readyz`.
const PROBE_EVERY: Duration = Duration::from_secs(10);

impl Objects {
    /// Gateway mode's store for `options` (whose `upstream` is set), with its bucket records in
    /// `meta_dir`, or shared by the replicas on `pg`; its credentials from the file given or the
    /// environment's `KEYLESS_UPSTREAM_*`.
    pub(crate) async fn gateway(
        options: &UpstreamOptions,
        url: &str,
        meta_dir: &Path,
        pg: Option<&Arc<keyless_postgres::PgIam>>,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn keyless_upstream::UpstreamObserver>,
    ) -> anyhow::Result<Self> {
        let (access_key_id, secret_access_key) = options.credentials()?;
        let ca_bundle = match &options.upstream_ca_bundle {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("cannot read the upstream CA bundle `{}`", path.display())
            })?),
            None => None,
        };
        let config = UpstreamConfig {
            endpoint: url.to_owned(),
            region: options.upstream_region.clone(),
            access_key_id,
            secret_access_key,
            ca_bundle,
            bucket_prefix: options.upstream_bucket_prefix.clone(),
            timeout: options.upstream_timeout,
        };
        let meta = match pg {
            Some(pg) => GatewayRecords::Shared(
                SharedBuckets::open(Arc::clone(pg), Arc::clone(&clock)).await?,
            ),
            None => {
                GatewayRecords::Disk(DiskStore::open(meta_dir, Arc::clone(&clock)).with_context(
                    || format!("cannot open the bucket records in `{}`", meta_dir.display()),
                )?)
            }
        };
        let store = UpstreamStore::new(&config, meta, clock)
            .context("--upstream")?
            .with_observer(observer);
        Ok(Self::Gateway(Box::new(store)))
    }

    /// In gateway mode, keeps `/readyz` pending until the upstream answers (now, and every
    /// [`PROBE_EVERY`] until `shutdown`): a replica whose upstream is down, or refuses its
    /// keys, starts but gets no traffic, and says why. Elsewhere, nothing.
    pub(crate) fn watch_upstream(
        self: Arc<Self>,
        readiness: Readiness,
        shutdown: Shutdown,
    ) -> impl std::future::Future<Output = ()> + Send {
        if matches!(*self, Self::Gateway(_)) {
            readiness.pending(UPSTREAM, "upstream store: not probed yet");
        }
        async move {
            let Self::Gateway(store) = self.as_ref() else {
                return;
            };
            let mut answered = None;
            loop {
                match store.probe().await {
                    Ok(buckets) => {
                        if answered != Some(true) {
                            tracing::info!(buckets, "the upstream store answers");
                        }
                        answered = Some(true);
                        readiness.done(UPSTREAM);
                    }
                    Err(e) => {
                        if answered != Some(false) {
                            tracing::warn!(error = %e, "the upstream store does not answer");
                        }
                        answered = Some(false);
                        readiness.pending(UPSTREAM, format!("upstream store: {e}"));
                    }
                }
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
            }
        }
    }
}

/// Both stores' futures, one match.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Objects::Disk($store) => $call.await,
            Objects::Gateway($store) => $call.await,
        }
    };
}

impl ObjectStore for Objects {
    fn sealing(&self) -> Sealing {
        match self {
            Self::Disk(store) => store.sealing(),
            Self::Gateway(store) => store.sealing(),
        }
    }

    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        each!(self, s => s.create_bucket(bucket))
    }
    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        each!(self, s => s.delete_bucket(bucket))
    }
    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        each!(self, s => s.head_bucket(bucket))
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StoreError> {
        each!(self, s => s.list_buckets())
    }
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.put_object(bucket, key, body, options))
    }
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream), StoreError> {
        each!(self, s => s.get_object(bucket, key, version, range))
    }
    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.head_object(bucket, key, version))
    }
    async fn tagged_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.tagged_object(bucket, key, version))
    }
    async fn parted_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.parted_object(bucket, key, version))
    }
    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.update_object(bucket, key, version, update))
    }
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        governance: Governance,
    ) -> Result<Deleted, StoreError> {
        each!(self, s => s.delete_object(bucket, key, version, governance))
    }
    async fn list_objects(
        &self,
        bucket: &str,
        query: ListQuery<'_>,
    ) -> Result<ListPage, StoreError> {
        each!(self, s => s.list_objects(bucket, query))
    }
    async fn list_versions(
        &self,
        bucket: &str,
        query: VersionQuery<'_>,
    ) -> Result<VersionPage, StoreError> {
        each!(self, s => s.list_versions(bucket, query))
    }
    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        each!(self, s => s.versioning(bucket))
    }
    async fn set_versioning(&self, bucket: &str, state: Versioning) -> Result<(), StoreError> {
        each!(self, s => s.set_versioning(bucket, state))
    }
    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_bucket_policy(bucket, policy))
    }
    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.bucket_policy(bucket))
    }
    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_bucket_config(bucket, kind, config))
    }
    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        each!(self, s => s.bucket_config(bucket, kind))
    }
    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> Result<UploadInfo, StoreError> {
        each!(self, s => s.create_upload(bucket, key, options))
    }
    async fn upload_part(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        each!(self, s => s.upload_part(upload, part_number, body, options))
    }
    async fn list_parts(&self, upload: UploadRef<'_>) -> Result<Vec<PartInfo>, StoreError> {
        each!(self, s => s.list_parts(upload))
    }
    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<UploadInfo>, StoreError> {
        each!(self, s => s.list_uploads(bucket, prefix))
    }
    async fn complete_upload(
        &self,
        upload: UploadRef<'_>,
        parts: Vec<(u32, String)>,
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.complete_upload(upload, parts, condition))
    }
    async fn abort_upload(&self, upload: UploadRef<'_>) -> Result<(), StoreError> {
        each!(self, s => s.abort_upload(upload))
    }
    async fn copy_source(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, CopyData), StoreError> {
        each!(self, s => s.copy_source(bucket, key, version, range))
    }
    async fn put_copy(
        &self,
        bucket: &str,
        key: &str,
        data: CopyData,
        options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        each!(self, s => s.put_copy(bucket, key, data, options))
    }
    async fn upload_part_copy(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        data: CopyData,
        options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        each!(self, s => s.upload_part_copy(upload, part_number, data, options))
    }
}
