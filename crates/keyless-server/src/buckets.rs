//! The gateway's bucket records (policies and configurations) when replicas share IAM state in
//! PostgreSQL: one document for the account, kept beside the IAM state and watched the same
//! way, so that a bucket policy set through one replica is enforced by all within a second, and
//! every replica goes on enforcing the last one it saw while the database is away.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use keyless_postgres::{PgError, PgIam, SharedValue};
use keyless_s3::store::{BucketConfig, DiskStore, StoreError};
use keyless_types::{Clock, Secret};
use keyless_upstream::BucketMeta;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The shared value that holds the records.
const NAME: &str = "buckets";

/// One bucket's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Record {
    created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    /// By [`BucketConfig::as_str`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<String, String>,
}

type Records = BTreeMap<String, Record>;

/// The records of every bucket, shared through PostgreSQL.
pub(crate) struct SharedBuckets {
    pg: Arc<PgIam>,
    watch: watch::Receiver<Option<SharedValue>>,
    /// The last document read, parsed, with its epoch.
    parsed: RwLock<(i64, Arc<Records>)>,
    /// This replica's changes go one at a time.
    writes: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
}

fn unavailable(e: &PgError) -> StoreError {
    StoreError::Unavailable(format!("the bucket records in PostgreSQL: {e}"))
}

impl SharedBuckets {
    pub(crate) async fn open(pg: Arc<PgIam>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let watch = pg
            .shared(NAME, || Ok(Secret::new("{}")))
            .await
            .context("cannot read the bucket records from PostgreSQL")?;
        let buckets = Self {
            pg,
            watch,
            parsed: RwLock::new((-1, Arc::default())),
            writes: tokio::sync::Mutex::new(()),
            clock,
        };
        anyhow::ensure!(
            buckets.current().0 >= 0,
            "the bucket records in PostgreSQL are not valid JSON"
        );
        Ok(buckets)
    }

    /// The current records and their epoch.
    fn current(&self) -> (i64, Arc<Records>) {
        let Some(held) = self.watch.borrow().clone() else {
            return self
                .parsed
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
        };
        {
            let parsed = self.parsed.read().unwrap_or_else(|e| e.into_inner());
            if parsed.0 == held.epoch {
                return parsed.clone();
            }
        }
        match serde_json::from_str::<Records>(held.value.expose()) {
            Ok(records) => {
                let fresh = (held.epoch, Arc::new(records));
                *self.parsed.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::error!(error = %e, epoch = held.epoch, "the bucket records in PostgreSQL are not valid; keeping the last ones");
                self.parsed
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }
        }
    }

    fn record(&self, bucket: &str) -> Result<Record, StoreError> {
        self.current()
            .1
            .get(bucket)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))
    }

    /// Applies `change` to the newest records and stores them, again on another replica's
    /// newer records if one was first.
    async fn change(
        &self,
        mut change: impl FnMut(&mut Records) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _one_at_a_time = self.writes.lock().await;
        for _ in 0..16 {
            let (epoch, records) = self.current();
            let held = self.watch.borrow().as_ref().map(|v| v.epoch);
            if held.is_some_and(|held| held != epoch) {
                return Err(StoreError::Database(
                    "the bucket records in PostgreSQL are not valid JSON; not changing them".into(),
                ));
            }
            let mut next = (*records).clone();
            change(&mut next)?;
            if next == *records {
                return Ok(());
            }
            let json = serde_json::to_string(&next)
                .map_err(|e| StoreError::Database(format!("bucket records: {e}")))?;
            match self
                .pg
                .replace_shared(NAME, epoch, &Secret::new(json))
                .await
            {
                Ok(_) => return Ok(()),
                Err(PgError::Conflict(_)) => continue,
                Err(e) => return Err(unavailable(&e)),
            }
        }
        Err(StoreError::Unavailable(
            "too many replicas changed bucket records at once".into(),
        ))
    }

    async fn set(&self, bucket: &str, set: impl Fn(&mut Record) + Send) -> Result<(), StoreError> {
        self.change(|records| {
            let record = records
                .get_mut(bucket)
                .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))?;
            set(record);
            Ok(())
        })
        .await
    }
}

impl BucketMeta for SharedBuckets {
    async fn head_bucket(&self, bucket: &str) -> Result<i64, StoreError> {
        self.record(bucket).map(|r| r.created_ms)
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let created_ms = self.clock.unix_seconds().saturating_mul(1000);
        self.change(|records| {
            if records.contains_key(bucket) {
                return Err(StoreError::BucketAlreadyExists(bucket.to_owned()));
            }
            records.insert(
                bucket.to_owned(),
                Record {
                    created_ms,
                    ..Record::default()
                },
            );
            Ok(())
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        self.change(|records| {
            records
                .remove(bucket)
                .map(drop)
                .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))
        })
        .await
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        self.set(bucket, |r| r.policy.clone_from(&policy)).await
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        self.record(bucket).map(|r| r.policy)
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        self.set(bucket, |r| match &config {
            Some(config) => {
                r.configs.insert(kind.as_str().to_owned(), config.clone());
            }
            None => {
                r.configs.remove(kind.as_str());
            }
        })
        .await
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        self.record(bucket)
            .map(|mut r| r.configs.remove(kind.as_str()))
    }
}

/// The gateway's bucket records: the data folder's, or the replicas' in PostgreSQL.
pub(crate) enum GatewayRecords {
    /// In the data folder (`DATA/buckets`).
    Disk(DiskStore),
    /// Shared by replicas.
    Shared(SharedBuckets),
}

macro_rules! each {
    ($self:ident, $records:ident => $call:expr) => {
        match $self {
            GatewayRecords::Disk($records) => $call,
            GatewayRecords::Shared($records) => $call,
        }
    };
}

impl BucketMeta for GatewayRecords {
    async fn head_bucket(&self, bucket: &str) -> Result<i64, StoreError> {
        each!(self, r => r.head_bucket(bucket).await)
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        each!(self, r => BucketMeta::create_bucket(r, bucket).await)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        each!(self, r => BucketMeta::delete_bucket(r, bucket).await)
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        each!(self, r => BucketMeta::set_bucket_policy(r, bucket, policy).await)
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        each!(self, r => BucketMeta::bucket_policy(r, bucket).await)
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        each!(self, r => BucketMeta::set_bucket_config(r, bucket, kind, config).await)
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        each!(self, r => BucketMeta::bucket_config(r, bucket, kind).await)
    }
}
