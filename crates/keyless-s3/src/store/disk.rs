//! `DiskStore`: the embedded default. Object data lives in files, metadata in redb.
//!
//! A PUT writes a temporary file, fsyncs it, renames it to its blob name (and fsyncs the
//! folder), then commits the key → blob mapping in one redb transaction. A crash at any point
//! leaves the key absent or whole: never partial. Blob names are random, so no key (however it
//! is spelled: `../`, `//`, unicode) ever becomes a path. Blobs that a crash left unreferenced
//! are removed when the store opens.
//!
//! The store is readable by its owner alone, as `iam.redb` is: folders 0700, blobs, parts and
//! `meta.redb` 0600, each created so before a byte is written; a store left open by an older
//! version is tightened when it opens (its folders, whose 0700 keeps the files in them from
//! any other account, and `meta.redb`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::SeekFrom;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockWriteGuard, Weak};

use bytes::Bytes;
use futures_util::StreamExt as _;
use keyless_types::Clock;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

mod versioned;

use versioned::{Tables, VERSION_DATA, VERSIONS, order};

use super::check_lock_versioning;
use super::seal::{DataKey, MasterKeys, Piece, SEGMENT, SealedPart, TAG, WrappedKey, pieces};
use crate::object_lock::{Governance, LockConfig, ObjectLock};

use super::{
    BodyCheck, BucketConfig, BucketInfo, ByteRange, ByteStream, COMPLETED_UPLOAD_MEMORY_MS,
    CompletedUpload, ContentHeaders, Deleted, ListPage, ListQuery, ObjectInfo, ObjectStore,
    ObjectUpdate, PartInfo, PutOptions, Sealing, StoreError, UploadInfo, UploadRef, VersionEntry,
    VersionPage, VersionQuery, Versioning, WriteCondition, bytes_stream, check_version_id,
    completed_parts, lock_config, multipart_etag, new_version_id, new_version_lock, object_parts,
    paginate, paginate_versions, random_id,
};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const INLINE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("inline");
/// Completed multipart uploads by id ([`CompletedUpload`]), for a repeated completion.
const COMPLETED: TableDefinition<&str, &[u8]> = TableDefinition::new("completed");

/// Completed uploads remembered before the old ones are swept (at open, and on a completion
/// when there are more).
const COMPLETED_SWEEP_AT: u64 = 10_000;

/// Chunk size for reading objects back.
const READ_CHUNK: usize = 256 * 1024;

/// Size of the writes a blob is written in.
const WRITE_CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BucketRecord {
    info: BucketInfo,
    policy: Option<String>,
    /// Its other configurations' JSON, by [`BucketConfig::as_str`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<String, String>,
    #[serde(default)]
    versioning: Versioning,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ObjectRecord {
    info: ObjectInfo,
    /// The blob file holding the data; empty when the data is inline.
    blob: String,
    /// How the stored bytes are sealed (encryption at rest), part by part; empty for bytes
    /// written before encryption at rest, which are kept as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sealed: Vec<SealedPart>,
    /// Whether the data is in the `inline` table (small objects: one commit makes them
    /// durable, no file needed), or in `version_data` when `info.versioned`. Kept apart so that
    /// listings never read data.
    #[serde(default)]
    inline: bool,
    /// Its write sequence number, in a bucket with versioning (0: written before it).
    #[serde(default, skip_serializing_if = "is_zero")]
    seq: u64,
    /// Whether it is a delete marker (in `versions` only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete_marker: bool,
}

impl BucketRecord {
    fn lock_config(&self) -> Result<Option<LockConfig>, StoreError> {
        lock_config(
            self.configs
                .get(BucketConfig::ObjectLock.as_str())
                .map(String::as_str),
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ObjectRecord {
    /// The blob file this record owns, if any.
    fn blob_file(&self) -> Option<String> {
        (!self.blob.is_empty()).then(|| self.blob.clone())
    }
}

/// Objects up to this size are stored inline in their record.
const INLINE_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    bucket: String,
    info: UploadInfo,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    /// The completed object's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<(String, String)>,
    #[serde(default)]
    headers: ContentHeaders,
    parts: BTreeMap<u32, (PartInfo, String)>,
    /// The sealed parts' data keys, wrapped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    part_keys: BTreeMap<u32, WrappedKey>,
    /// The lock the completed object asks for.
    #[serde(default, skip_serializing_if = "ObjectLock::is_empty")]
    lock: ObjectLock,
    /// Whether the upload asked for SSE-S3 (its parts are sealed as it says).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    seal: bool,
}

impl UploadRecord {
    fn blobs(&self) -> impl Iterator<Item = String> + '_ {
        self.parts.values().map(|(_, blob)| blob.clone())
    }
}

/// The upload `id`, if it belongs to `bucket` and `key`.
fn read_upload(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
    key: &str,
    id: &str,
) -> Result<UploadRecord, StoreError> {
    let record: Option<UploadRecord> = table
        .get(id)
        .map_err(db_err)?
        .map(|v| decode(v.value()))
        .transpose()?;
    record
        .filter(|r| r.bucket == bucket && r.info.key == key)
        .ok_or_else(|| StoreError::NoSuchUpload(id.to_owned()))
}

struct Inner {
    db: Database,
    root: PathBuf,
    clock: Arc<dyn Clock>,
    /// Every bucket and its policy, read on every authorization. Changed only under this lock,
    /// held across the redb commit, so it never disagrees with the database for long nor out
    /// of order.
    policies: RwLock<HashMap<String, Option<String>>>,
    /// Where object commits go to be grouped (see [`committer`]).
    committer: std::sync::mpsc::Sender<Job>,
    /// The master keys that wrap each object's data key; `None` stores plaintext (tests and
    /// benchmarks compare with it).
    keys: Option<Arc<MasterKeys>>,
    /// Which new objects are sealed (never any without keys).
    sealing: Sealing,
}

impl Inner {
    fn policies_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Option<String>>> {
        self.policies.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Objects on local disk with metadata in redb.
#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(db_err)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(db_err)
}

impl DiskStore {
    /// Opens (creating if needed) a store in `root` that keeps objects in plaintext.
    pub fn open(root: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_with(root.into(), clock, None, Sealing::Off)
    }

    /// Opens (creating if needed) a store in `root` that seals every new object under a data key
    /// of its own, wrapped by `keys` (encryption at rest, SSE-S3). Data keys wrapped by an older
    /// master key are re-wrapped by the active one here, once.
    pub fn open_sealed(
        root: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
        keys: Arc<MasterKeys>,
    ) -> Result<Self, StoreError> {
        Self::open_sealing(root, clock, keys, Sealing::All)
    }

    /// As [`DiskStore::open_sealed`], sealing the new objects `sealing` says (all, those whose
    /// writes ask for it, or none); objects sealed before stay readable whatever it says.
    pub fn open_sealing(
        root: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
        keys: Arc<MasterKeys>,
        sealing: Sealing,
    ) -> Result<Self, StoreError> {
        Self::open_with(root.into(), clock, Some(keys), sealing)
    }

    /// Opens (creating if needed) a store in `root`: `meta.redb`, `blobs/` and `tmp/`.
    fn open_with(
        root: PathBuf,
        clock: Arc<dyn Clock>,
        keys: Option<Arc<MasterKeys>>,
        sealing: Sealing,
    ) -> Result<Self, StoreError> {
        private_dir(&root)?;
        private_dir(&root.join("blobs"))?;
        let meta = root.join("meta.redb");
        private_file(&meta)?;
        // Opening the database locks it: a second server on the same folder stops here, before
        // it could touch the first one's files.
        let db = Database::create(&meta).map_err(db_err)?;
        // Temporary files of writes that never finished.
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        private_dir(&root.join("tmp"))?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(BUCKETS).map_err(db_err)?;
        txn.open_table(OBJECTS).map_err(db_err)?;
        txn.open_table(UPLOADS).map_err(db_err)?;
        txn.open_table(INLINE).map_err(db_err)?;
        txn.open_table(VERSIONS).map_err(db_err)?;
        txn.open_table(VERSION_DATA).map_err(db_err)?;
        txn.open_table(versioned::META).map_err(db_err)?;
        sweep_completed(
            &mut txn.open_table(COMPLETED).map_err(db_err)?,
            clock.unix_millis(),
        )?;
        txn.commit().map_err(db_err)?;
        let mut policies = HashMap::new();
        {
            let read = db.begin_read().map_err(db_err)?;
            for entry in read
                .open_table(BUCKETS)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (_, v) = entry.map_err(db_err)?;
                let record: BucketRecord = decode(v.value())?;
                policies.insert(record.info.name, record.policy);
            }
        }
        let (committer_tx, jobs) = std::sync::mpsc::channel();
        let store = Self {
            inner: Arc::new(Inner {
                db,
                root,
                clock,
                policies: RwLock::new(policies),
                committer: committer_tx,
                sealing: if keys.is_some() {
                    sealing
                } else {
                    Sealing::Off
                },
                keys,
            }),
        };
        store.rewrap_keys()?;
        let weak = Arc::downgrade(&store.inner);
        std::thread::Builder::new()
            .name("keyless-committer".into())
            .spawn(move || committer(weak, jobs))?;
        store.remove_orphans()?;
        Ok(store)
    }

    /// Re-wraps, in one transaction, every data key an older master key wraps (after a
    /// rotation): a few bytes per object, the data untouched.
    fn rewrap_keys(&self) -> Result<(), StoreError> {
        // Only after a rotation: otherwise every data key is the active key's (or one of a key
        // this server does not have, which re-wrapping could not help), and the start need not
        // read every record.
        let Some(keys) = self.inner.keys.as_ref().filter(|k| k.has_older()) else {
            return Ok(());
        };
        let rewrap = |key: &mut WrappedKey| -> Result<bool, StoreError> {
            match keys.rewrap(key).map_err(seal_err)? {
                Some(new) => {
                    *key = new;
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        // Each part's data key, re-wrapped; whether any changed.
        let rewrap_record = |record: &mut ObjectRecord| -> Result<bool, StoreError> {
            let mut any = false;
            for part in &mut record.sealed {
                if let Some(key) = &mut part.key {
                    any |= rewrap(key)?;
                }
            }
            Ok(any)
        };
        let txn = self.inner.db.begin_write().map_err(db_err)?;
        let mut count = 0usize;
        {
            let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
            let mut changed = Vec::new();
            for entry in objects.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let mut record: ObjectRecord = decode(v.value())?;
                if rewrap_record(&mut record)? {
                    let (bucket, key) = k.value();
                    changed.push(((bucket.to_owned(), key.to_owned()), encode(&record)?));
                }
            }
            count += changed.len();
            for ((bucket, key), value) in changed {
                objects
                    .insert((bucket.as_str(), key.as_str()), value.as_slice())
                    .map_err(db_err)?;
            }
            let mut versions = txn.open_table(VERSIONS).map_err(db_err)?;
            let mut changed = Vec::new();
            for entry in versions.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let mut record: ObjectRecord = decode(v.value())?;
                if rewrap_record(&mut record)? {
                    let (bucket, key, at) = k.value();
                    changed.push(((bucket.to_owned(), key.to_owned(), at), encode(&record)?));
                }
            }
            count += changed.len();
            for ((bucket, key, at), value) in changed {
                versions
                    .insert((bucket.as_str(), key.as_str(), at), value.as_slice())
                    .map_err(db_err)?;
            }
            let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
            let mut changed = Vec::new();
            for entry in uploads.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let mut record: UploadRecord = decode(v.value())?;
                let mut any = false;
                for key in record.part_keys.values_mut() {
                    any |= rewrap(key)?;
                }
                if any {
                    changed.push((k.value().to_owned(), encode(&record)?));
                }
            }
            count += changed.len();
            for (id, value) in changed {
                uploads
                    .insert(id.as_str(), value.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        if count > 0 {
            tracing::info!(
                records = count,
                master_key = keys.active(),
                "re-wrapped data keys under the active master key"
            );
        }
        Ok(())
    }

    /// A new data key, when the new object is sealed (`asked`: its write asked for SSE-S3).
    fn new_data_key(&self, asked: bool) -> Result<Option<(DataKey, WrappedKey)>, StoreError> {
        if !self.inner.sealing.seals(asked) {
            return Ok(None);
        }
        self.inner
            .keys
            .as_ref()
            .map(|keys| keys.new_data_key().map_err(seal_err))
            .transpose()
    }

    /// The data keys of `parts` (`None` for plaintext parts).
    fn data_keys(&self, parts: &[SealedPart]) -> Result<Vec<Option<DataKey>>, StoreError> {
        parts
            .iter()
            .map(|part| match (&part.key, &self.inner.keys) {
                (None, _) => Ok(None),
                (Some(wrapped), Some(keys)) => keys.unwrap(wrapped).map(Some).map_err(seal_err),
                (Some(wrapped), None) => Err(StoreError::Sealed(format!(
                    "the object is sealed under master key `{}`, and this store has no master keys",
                    wrapped.master
                ))),
            })
            .collect()
    }

    /// Removes blobs that no key refers to (left by a crash between rename and commit).
    fn remove_orphans(&self) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(OBJECTS).map_err(db_err)?;
        let mut live = HashSet::new();
        for entry in table.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            live.insert(decode::<ObjectRecord>(value.value())?.blob);
        }
        for entry in txn
            .open_table(VERSIONS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (_, value) = entry.map_err(db_err)?;
            live.insert(decode::<ObjectRecord>(value.value())?.blob);
        }
        for entry in txn
            .open_table(UPLOADS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (_, value) = entry.map_err(db_err)?;
            live.extend(decode::<UploadRecord>(value.value())?.blobs());
        }
        for dir in std::fs::read_dir(self.inner.root.join("blobs"))? {
            let dir = dir?.path();
            private_dir(&dir)?;
            for blob in std::fs::read_dir(&dir)? {
                let blob = blob?;
                if !live.contains(&*blob.file_name().to_string_lossy()) {
                    std::fs::remove_file(blob.path())?;
                }
            }
        }
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.unix_millis()
    }

    fn blob_path(&self, blob: &str) -> PathBuf {
        self.inner.root.join("blobs").join(&blob[..2]).join(blob)
    }

    /// Runs blocking database work off the async threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
    }

    /// Writes a body to a new blob: a temporary file, fsynced, checked against the options, then
    /// renamed into place. Returns the blob id, ETag and size; on any failure no blob remains.
    async fn write_blob(
        &self,
        mut body: ByteStream,
        options: &mut PutOptions,
    ) -> Result<(String, String, u64, Option<WrappedKey>), StoreError> {
        let sealing = self.new_data_key(options.seal)?;
        let blob = random_id()?;
        let tmp = self.inner.root.join("tmp").join(&blob);
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE)
                .open(&tmp)
                .await?;
            let mut check = BodyCheck::new(options);
            // Request bodies arrive in chunks of a few KiB, and each write of a tokio file is a
            // hand-off to a blocking thread: gathered into 1 MiB writes, a GiB costs a thousand
            // hand-offs instead of tens of thousands.
            let mut pending = bytes::BytesMut::new();
            let mut sealer = sealing.as_ref().map(|(key, _)| Sealer::new(key));
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                check.update(&chunk);
                if let Some(sealer) = &mut sealer {
                    sealer.push(&chunk, &mut pending);
                } else if pending.is_empty() && chunk.len() >= WRITE_CHUNK {
                    file.write_all(&chunk).await?;
                    continue;
                } else {
                    pending.extend_from_slice(&chunk);
                }
                if pending.len() >= WRITE_CHUNK {
                    file.write_all(&pending).await?;
                    pending.clear();
                }
            }
            if let Some(sealer) = sealer {
                sealer.finish(&mut pending);
            }
            file.write_all(&pending).await?;
            file.sync_all().await?;
            check.finish(options)
        }
        .await;
        let (etag, size) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        self.place_blob(&blob, &tmp).await?;
        Ok((blob, etag, size, sealing.map(|(_, wrapped)| wrapped)))
    }

    /// Moves a written and fsynced temporary file to its blob name, durably.
    async fn place_blob(&self, blob: &str, tmp: &Path) -> Result<(), StoreError> {
        let path = self.blob_path(blob);
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let placed = async {
            if !tokio::fs::try_exists(&dir).await? {
                tokio::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(PRIVATE_DIR)
                    .create(&dir)
                    .await?;
                // The new folder's own entry must be durable too.
                fsync_dir(&self.inner.root.join("blobs")).await?;
            }
            tokio::fs::rename(tmp, &path).await?;
            fsync_dir(&dir).await
        }
        .await;
        if placed.is_err() {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        placed
    }

    /// Concatenates part files into a new blob. The parts were hashed as they arrived (the
    /// multipart ETag is made of their MD5s), so the data is only copied, in the kernel
    /// (`copy_file_range`: no pass through user space, and a reflink where the filesystem can).
    async fn concat_blob(&self, parts: Vec<tokio::fs::File>) -> Result<(String, u64), StoreError> {
        let blob = random_id()?;
        let tmp = self.inner.root.join("tmp").join(&blob);
        let mut sources = Vec::with_capacity(parts.len());
        for part in parts {
            sources.push(part.into_std().await);
        }
        let target = tmp.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE)
                .open(&target)?;
            let mut size = 0;
            for mut source in sources {
                size += std::io::copy(&mut source, &mut out)?;
            }
            out.sync_all()?;
            Ok(size)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
        .and_then(|r| r.map_err(StoreError::Io));
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        self.place_blob(&blob, &tmp).await?;
        Ok((blob, size))
    }

    /// Makes `record` the object of its key in one transaction (finishing `upload`, if given),
    /// then removes the blobs this replaced. If the commit fails, the new blob is removed.
    async fn commit_object(
        &self,
        bucket: &str,
        record: ObjectRecord,
        data: Option<Vec<u8>>,
        completion: Option<Completion>,
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo, StoreError> {
        let new_blob = record.blob_file();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            bucket: bucket.to_owned(),
            record,
            data,
            completion,
            condition,
            reply,
        };
        let stopped = || StoreError::Database("the committer has stopped".into());
        let committed = match self.inner.committer.send(job) {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(stopped()),
        };
        match committed {
            Ok((stale, info)) => {
                self.remove_blobs(stale).await;
                Ok(info)
            }
            Err(e) => {
                self.remove_blobs(new_blob).await;
                Err(e)
            }
        }
    }

    /// Removes blobs, ignoring failures (an orphan is collected at the next start).
    async fn remove_blobs(&self, blobs: impl IntoIterator<Item = String>) {
        for blob in blobs {
            let _ = tokio::fs::remove_file(self.blob_path(&blob)).await;
        }
    }

    async fn upload_record(&self, upload: UploadRef<'_>) -> Result<UploadRecord, StoreError> {
        let (bucket, key, id) = (
            upload.bucket.to_owned(),
            upload.key.to_owned(),
            upload.upload_id.to_owned(),
        );
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            bucket_record(&txn, &bucket)?;
            read_upload(
                &txn.open_table(UPLOADS).map_err(db_err)?,
                &bucket,
                &key,
                &id,
            )
        })
        .await
    }

    /// A version's record (the latest, or `version`), with its data when it is inline and
    /// `with_data`, read in one transaction so that the two always belong together.
    async fn record_and_data(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        with_data: bool,
    ) -> Result<(ObjectRecord, Option<Vec<u8>>), StoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version = version.map(str::to_owned);
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let record = read_version(&txn, &bucket, &key, version.as_deref())?;
            if !record.inline || !with_data {
                return Ok((record, None));
            }
            let missing = || StoreError::Database(format!("the inline data of `{key}` is missing"));
            let data = if record.info.versioned {
                txn.open_table(VERSION_DATA)
                    .map_err(db_err)?
                    .get((bucket.as_str(), key.as_str(), order(record.seq)))
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec())
            } else {
                txn.open_table(INLINE)
                    .map_err(db_err)?
                    .get((bucket.as_str(), key.as_str()))
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec())
            };
            Ok((record, Some(data.ok_or_else(missing)?)))
        })
        .await
    }

    /// The completed upload `id`, if it is remembered.
    async fn completed(&self, id: &str) -> Result<Option<CompletedUpload>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(COMPLETED).map_err(db_err)?;
            match table.get(id.as_str()).map_err(db_err)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn record(&self, bucket: &str, key: &str) -> Result<ObjectRecord, StoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            read_record(&txn, &bucket, &key)
        })
        .await
    }
}

/// The multipart upload a commit finishes.
struct Completion {
    upload_id: String,
    /// The parts listed, as the completion's record keeps them.
    parts: Vec<(u32, String)>,
}

/// An object commit waiting for the committer.
struct Job {
    bucket: String,
    record: ObjectRecord,
    data: Option<Vec<u8>>,
    completion: Option<Completion>,
    condition: Option<WriteCondition>,
    reply: tokio::sync::oneshot::Sender<Result<Committed, StoreError>>,
}

/// What a commit did: the blobs it replaced (to remove), and the object as committed.
type Committed = (Vec<String>, ObjectInfo);

/// The most commits applied in one transaction.
const MAX_BATCH: usize = 256;

/// Group commit: takes every object commit waiting, applies them in one redb transaction (one
/// fsync for all), and answers each. Ends when the store is dropped.
fn committer(inner: Weak<Inner>, jobs: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The store is released before anyone is answered, so that whoever drops it next can
        // reopen the database at once.
        let outcome = match inner.upgrade() {
            Some(store) => commit_batch(&store.db, &batch),
            None => return,
        };
        match outcome {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Database(message.clone())));
                }
            }
        }
    }
}

/// Applies a batch in one transaction. A job that does not hold (its bucket or upload is
/// gone) writes nothing and gets its error; a database failure fails the whole batch.
fn commit_batch(
    db: &Database,
    batch: &[Job],
) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(apply_job(&txn, job)?);
    }
    txn.commit().map_err(db_err)?;
    Ok(results)
}

/// One job's writes. The outer error is fatal for the batch; the inner one is the job's own.
fn apply_job(
    txn: &redb::WriteTransaction,
    job: &Job,
) -> Result<Result<Committed, StoreError>, StoreError> {
    let (bucket, key) = (job.bucket.as_str(), job.record.info.key.as_str());
    let bucket_record = match txn
        .open_table(BUCKETS)
        .map_err(db_err)?
        .get(bucket)
        .map_err(db_err)?
    {
        Some(v) => decode::<BucketRecord>(v.value())?,
        None => return Ok(Err(StoreError::NoSuchBucket(bucket.to_owned()))),
    };
    let state = bucket_record.versioning;
    let info = &job.record.info;
    let lock = match new_version_lock(
        bucket,
        bucket_record.lock_config()?,
        info.lock,
        info.last_modified_ms,
    ) {
        Ok(lock) => lock,
        Err(e) => return Ok(Err(e)),
    };
    let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
    if let Some(condition) = &job.condition {
        let current = match objects.get((bucket, key)).map_err(db_err)? {
            Some(v) => Some(decode::<ObjectRecord>(v.value())?.info),
            None => None,
        };
        if let Err(e) = condition.check(bucket, key, current.as_ref()) {
            return Ok(Err(e));
        }
    }
    let mut stale = Vec::new();
    if let Some(completion) = &job.completion {
        let id = completion.upload_id.as_str();
        let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
        let finished = match read_upload(&uploads, bucket, key, id) {
            Ok(finished) => finished,
            Err(e) => return Ok(Err(e)),
        };
        uploads.remove(id).map_err(db_err)?;
        stale.extend(finished.blobs());
        let mut completed = txn.open_table(COMPLETED).map_err(db_err)?;
        let done = CompletedUpload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            parts: completion.parts.clone(),
            info: job.record.info.clone(),
        };
        completed
            .insert(id, encode(&done)?.as_slice())
            .map_err(db_err)?;
        if completed.len().map_err(db_err)? > COMPLETED_SWEEP_AT {
            sweep_completed(&mut completed, job.record.info.last_modified_ms)?;
        }
    }
    if state.keeps_versions() {
        drop(objects);
        let mut record = job.record.clone();
        record.info.versioned = true;
        record.info.lock = lock;
        record.seq = versioned::next_seq(txn)?;
        record.info.version_id = match state {
            Versioning::Enabled => Some(new_version_id(record.seq)?),
            _ => None,
        };
        let info = record.info.clone();
        if let Some(completion) = &job.completion {
            // The remembered completion answers with the version it made.
            let mut completed = txn.open_table(COMPLETED).map_err(db_err)?;
            let done = CompletedUpload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                parts: completion.parts.clone(),
                info: info.clone(),
            };
            completed
                .insert(completion.upload_id.as_str(), encode(&done)?.as_slice())
                .map_err(db_err)?;
        }
        stale.extend(Tables::open(txn)?.add(bucket, record, job.data.as_deref())?);
        return Ok(Ok((stale, info)));
    }
    // Without versioning there is no Object Lock, so `lock` is what the request asked: none.
    debug_assert_eq!(lock, job.record.info.lock);
    let encoded = encode(&job.record)?;
    if let Some(old) = objects
        .insert((bucket, key), encoded.as_slice())
        .map_err(db_err)?
    {
        stale.extend(decode::<ObjectRecord>(old.value())?.blob_file());
    }
    let mut inline = txn.open_table(INLINE).map_err(db_err)?;
    match &job.data {
        Some(bytes) => {
            inline
                .insert((bucket, key), bytes.as_slice())
                .map_err(db_err)?;
        }
        None => {
            inline.remove((bucket, key)).map_err(db_err)?;
        }
    }
    Ok(Ok((stale, job.record.info.clone())))
}

/// Forgets completed uploads older than [`COMPLETED_UPLOAD_MEMORY_MS`] at `now_ms`.
fn sweep_completed(
    table: &mut redb::Table<'_, &str, &[u8]>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let cutoff = now_ms.saturating_sub(COMPLETED_UPLOAD_MEMORY_MS);
    table
        .retain(|_, v| {
            decode::<CompletedUpload>(v).is_ok_and(|done| done.info.last_modified_ms > cutoff)
        })
        .map_err(db_err)
}

/// An object's record, or why there is none.
fn read_record(
    txn: &redb::ReadTransaction,
    bucket: &str,
    key: &str,
) -> Result<ObjectRecord, StoreError> {
    let objects = txn.open_table(OBJECTS).map_err(db_err)?;
    if let Some(v) = objects.get((bucket, key)).map_err(db_err)? {
        return decode(v.value());
    }
    let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
    if buckets.get(bucket).map_err(db_err)?.is_none() {
        return Err(StoreError::NoSuchBucket(bucket.to_owned()));
    }
    Err(StoreError::NoSuchKey {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// The record of a key's latest version (`None`) or of the version named, or why there is none:
/// a delete marker answers as S3 answers it.
fn read_version(
    txn: &redb::ReadTransaction,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<ObjectRecord, StoreError> {
    let Some(version) = version else {
        return match read_record(txn, bucket, key) {
            Err(StoreError::NoSuchKey { bucket, key }) => {
                let versions = txn.open_table(VERSIONS).map_err(db_err)?;
                match versioned::latest(&versions, &bucket, &key)? {
                    Some(marker) if marker.delete_marker => Err(StoreError::DeleteMarker {
                        version_id: marker.info.version_id,
                        requested: false,
                    }),
                    _ => Err(StoreError::NoSuchKey { bucket, key }),
                }
            }
            other => other,
        };
    };
    let id = check_version_id(version)?;
    let found = if bucket_record(txn, bucket)?.versioning.keeps_versions() {
        versioned::find(&txn.open_table(VERSIONS).map_err(db_err)?, bucket, key, id)?
    } else if id.is_none() {
        match read_record(txn, bucket, key) {
            Ok(record) => Some(record),
            Err(StoreError::NoSuchKey { .. }) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    match found {
        Some(marker) if marker.delete_marker => Err(StoreError::DeleteMarker {
            version_id: marker.info.version_id,
            requested: true,
        }),
        Some(record) => Ok(record),
        None => Err(StoreError::NoSuchVersion {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version.to_owned(),
        }),
    }
}

/// Changes a bucket's record in one transaction.
fn update_bucket(
    db: &Database,
    bucket: &str,
    change: impl FnOnce(&mut BucketRecord) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(BUCKETS).map_err(db_err)?;
        let found: Option<BucketRecord> = table
            .get(bucket)
            .map_err(db_err)?
            .map(|v| decode(v.value()))
            .transpose()?;
        let mut record = found.ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))?;
        change(&mut record)?;
        let encoded = encode(&record)?;
        table.insert(bucket, encoded.as_slice()).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

/// A bucket's record, read in a write transaction.
fn bucket_write_record(
    txn: &redb::WriteTransaction,
    bucket: &str,
) -> Result<BucketRecord, StoreError> {
    let table = txn.open_table(BUCKETS).map_err(db_err)?;
    let value = table
        .get(bucket)
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))?;
    decode(value.value())
}

fn bucket_record(txn: &redb::ReadTransaction, bucket: &str) -> Result<BucketRecord, StoreError> {
    let table = txn.open_table(BUCKETS).map_err(db_err)?;
    let value = table
        .get(bucket)
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))?;
    decode(value.value())
}

/// The mode of the store's folders: its owner's alone.
const PRIVATE_DIR: u32 = 0o700;

/// The mode of the store's files.
const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and its parents) 0700, or tightens it to 0700 if it exists.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Creates `file` empty and 0600 if absent, or tightens it to 0600.
fn private_file(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(PRIVATE_FILE))
}

fn seal_err(e: super::seal::SealError) -> StoreError {
    StoreError::Sealed(e.to_string())
}

/// Seals a body as it streams: plaintext gathered into segments, each sealed and appended to
/// the bytes to write.
struct Sealer<'a> {
    key: &'a DataKey,
    index: u64,
    segment: Vec<u8>,
}

impl<'a> Sealer<'a> {
    fn new(key: &'a DataKey) -> Self {
        Self {
            key,
            index: 0,
            segment: Vec::with_capacity(SEGMENT + TAG),
        }
    }

    fn push(&mut self, mut plain: &[u8], out: &mut bytes::BytesMut) {
        while !plain.is_empty() {
            let take = (SEGMENT - self.segment.len()).min(plain.len());
            self.segment.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
            if self.segment.len() == SEGMENT {
                self.seal_segment(out);
            }
        }
    }

    fn seal_segment(&mut self, out: &mut bytes::BytesMut) {
        self.key.seal(self.index, &mut self.segment);
        out.extend_from_slice(&self.segment);
        self.segment.clear();
        self.index += 1;
    }

    fn finish(mut self, out: &mut bytes::BytesMut) {
        if !self.segment.is_empty() {
            self.seal_segment(out);
        }
    }
}

/// Pieces read per hand-off to a blocking thread: 16 segments, about 1 MiB.
const PIECES_PER_READ: usize = 16;

/// The plaintext of `plan`'s pieces of `file`, opened with `keys` (by part), read and opened
/// on blocking threads a batch at a time. The first batch is opened before the answer starts,
/// so that data altered on disk there (all of an object under 1 MiB) answers `InternalError`
/// rather than a body cut short; a later batch that fails to open ends the body, logged at
/// ERROR with the object's name and the offset.
async fn sealed_stream(
    file: std::fs::File,
    keys: Vec<Option<DataKey>>,
    plan: Vec<Piece>,
    object: String,
) -> Result<ByteStream, StoreError> {
    let shared = Arc::new((file, keys));
    let mut batches = plan
        .chunks(PIECES_PER_READ)
        .map(<[Piece]>::to_vec)
        .collect::<Vec<_>>()
        .into_iter();
    let open = move |batch: Vec<Piece>| {
        let shared = Arc::clone(&shared);
        async move {
            tokio::task::spawn_blocking(move || open_pieces(&shared.0, &shared.1, &batch))
                .await
                .map_err(std::io::Error::other)?
        }
    };
    let first = match batches.next() {
        Some(batch) => open(batch).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                StoreError::Sealed(format!("{object}, its first bytes: {e}"))
            }
            _ => StoreError::Io(e),
        })?,
        None => Bytes::new(),
    };
    let mut sent = first.len() as u64;
    // Two batches in flight: one opens while the one before it is sent, or on the other core.
    let rest = futures_util::stream::iter(batches)
        .map(open)
        .buffered(2)
        .inspect(move |r| match r {
            Ok(bytes) => sent += bytes.len() as u64,
            Err(e) => tracing::error!(
                object = %object,
                after_bytes = sent,
                error = %e,
                "a stored object could not be read: the answer was cut short"
            ),
        });
    Ok(Box::pin(
        futures_util::stream::once(std::future::ready(Ok(first))).chain(rest),
    ))
}

fn open_pieces(
    file: &std::fs::File,
    keys: &[Option<DataKey>],
    batch: &[Piece],
) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt as _;
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(Bytes::new());
    };
    // The batch's pieces lie back to back: one read for all, each segment opened in place,
    // and the plaintext moved down over the tags, so the bytes are copied once.
    let start = first.stored.0;
    let len = last.stored.0 + last.stored.1 - start;
    let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut buf, start)?;
    let mut out = 0usize;
    for piece in batch {
        let at = usize::try_from(piece.stored.0 - start).map_err(std::io::Error::other)?;
        let stored = usize::try_from(piece.stored.1).map_err(std::io::Error::other)?;
        let plain = match keys.get(piece.part) {
            Some(Some(key)) => key
                .open_slice(piece.segment, &mut buf[at..at + stored])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            _ => stored,
        };
        let (from, to) = piece.keep;
        debug_assert!(to <= plain);
        buf.copy_within(at + from..at + to, out);
        out += to - from;
    }
    buf.truncate(out);
    Ok(Bytes::from(buf))
}

async fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
    Ok(())
}

impl ObjectStore for DiskStore {
    fn sealing(&self) -> Sealing {
        self.inner.sealing
    }

    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        let info = BucketInfo {
            name: bucket.to_owned(),
            created_ms: self.now_ms(),
        };
        self.blocking(move |inner| {
            let mut policies = inner.policies_mut();
            let txn = inner.db.begin_write().map_err(db_err)?;
            {
                let mut table = txn.open_table(BUCKETS).map_err(db_err)?;
                if table.get(info.name.as_str()).map_err(db_err)?.is_some() {
                    return Err(StoreError::BucketAlreadyExists(info.name));
                }
                let record = encode(&BucketRecord {
                    info: info.clone(),
                    policy: None,
                    configs: BTreeMap::new(),
                    versioning: Versioning::Unversioned,
                })?;
                table
                    .insert(info.name.as_str(), record.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            policies.insert(info.name.clone(), None);
            Ok(info)
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        let stale = self
            .blocking(move |inner| {
                let mut policies = inner.policies_mut();
                let mut stale = Vec::new();
                let txn = inner.db.begin_write().map_err(db_err)?;
                {
                    let objects = txn.open_table(OBJECTS).map_err(db_err)?;
                    let mut first = objects.range((bucket.as_str(), "")..).map_err(db_err)?;
                    if let Some(entry) = first.next() {
                        let (k, _) = entry.map_err(db_err)?;
                        if k.value().0 == bucket {
                            return Err(StoreError::BucketNotEmpty(bucket));
                        }
                    }
                    drop(first);
                    // Noncurrent versions and delete markers count too, as in S3.
                    let versions = txn.open_table(VERSIONS).map_err(db_err)?;
                    let mut first = versions.range((bucket.as_str(), "", 0)..).map_err(db_err)?;
                    if let Some(entry) = first.next() {
                        let (k, _) = entry.map_err(db_err)?;
                        if k.value().0 == bucket {
                            return Err(StoreError::BucketNotEmpty(bucket));
                        }
                    }
                    let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                    if buckets.remove(bucket.as_str()).map_err(db_err)?.is_none() {
                        return Err(StoreError::NoSuchBucket(bucket));
                    }
                    // Uploads in progress go with the bucket, so that a new bucket of the same
                    // name cannot inherit them.
                    let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                    let mut ids = Vec::new();
                    for entry in uploads.iter().map_err(db_err)? {
                        let (id, value) = entry.map_err(db_err)?;
                        let record: UploadRecord = decode(value.value())?;
                        if record.bucket == bucket {
                            ids.push(id.value().to_owned());
                            stale.extend(record.blobs());
                        }
                    }
                    for id in ids {
                        uploads.remove(id.as_str()).map_err(db_err)?;
                    }
                }
                txn.commit().map_err(db_err)?;
                policies.remove(&bucket);
                Ok(stale)
            })
            .await?;
        self.remove_blobs(stale).await;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            bucket_record(&txn, &bucket).map(|r| r.info)
        })
        .await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StoreError> {
        self.blocking(|inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(BUCKETS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(db_err)? {
                let (_, v) = entry.map_err(db_err)?;
                out.push(decode::<BucketRecord>(v.value())?.info);
            }
            Ok(out)
        })
        .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        mut options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        self.head_bucket(bucket).await?;
        if let Some(condition) = &options.condition {
            // Refused before the body is read when it already fails; checked again when the
            // object commits, where it decides.
            let current = match self.record(bucket, key).await {
                Ok(record) => Some(record.info),
                Err(StoreError::NoSuchKey { .. }) => None,
                Err(e) => return Err(e),
            };
            condition.check(bucket, key, current.as_ref())?;
        }
        let mut head = Vec::new();
        let small = loop {
            match body.next().await {
                None => break true,
                Some(chunk) => head.extend_from_slice(&chunk.map_err(StoreError::Body)?),
            }
            if head.len() > INLINE_MAX {
                break false;
            }
        };
        let (blob, inline, etag, size, data_key) = if small {
            let mut check = BodyCheck::new(&mut options);
            check.update(&head);
            let (etag, size) = check.finish(&options)?;
            match self.new_data_key(options.seal)? {
                Some((key, wrapped)) => {
                    let sealed = key.seal_all(&head);
                    (String::new(), Some(sealed), etag, size, Some(wrapped))
                }
                None => (String::new(), Some(head), etag, size, None),
            }
        } else {
            // Larger: to a blob file, the part already read first.
            let rest: ByteStream =
                Box::pin(futures_util::stream::iter([Ok(Bytes::from(head))]).chain(body));
            let (blob, etag, size, data_key) = self.write_blob(rest, &mut options).await?;
            (blob, None, etag, size, data_key)
        };
        let sealed = data_key
            .map(|wrapped| {
                vec![SealedPart {
                    size,
                    key: Some(wrapped),
                }]
            })
            .unwrap_or_default();
        let record = ObjectRecord {
            info: ObjectInfo {
                key: key.to_owned(),
                size,
                etag,
                last_modified_ms: self.now_ms(),
                content_type: options.content_type,
                metadata: options.metadata,
                sealed: !sealed.is_empty(),
                tags: options.tags,
                headers: options.headers,
                parts: Vec::new(),
                version_id: None,
                versioned: false,
                // What the request asked for; the bucket's default applies when it commits.
                lock: options.lock,
            },
            blob,
            sealed,
            inline: inline.is_some(),
            seq: 0,
            delete_marker: false,
        };
        let condition = options.condition.take();
        self.commit_object(bucket, record, inline, None, condition)
            .await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream), StoreError> {
        // An overwrite may remove the blob between reading the record and opening the file:
        // read the record again then.
        for _ in 0..3 {
            let (record, data) = self.record_and_data(bucket, key, version, true).await?;
            if let Some(data) = data {
                let data = match &record.sealed[..] {
                    [] => data,
                    [part] => match self.data_keys(std::slice::from_ref(part))?.pop().flatten() {
                        Some(data_key) => data_key
                            .open_all(&data)
                            .map_err(|e| StoreError::Sealed(format!("s3://{bucket}/{key}: {e}")))?,
                        None => data,
                    },
                    _ => {
                        return Err(StoreError::Sealed(
                            "inline data has more than one part".into(),
                        ));
                    }
                };
                return Ok((record.info, bytes_stream(Bytes::from(data), range)?));
            }
            if !record.sealed.is_empty() {
                let file = match std::fs::File::open(self.blob_path(&record.blob)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let (offset, len) = match range {
                    Some(r) => r.resolve(record.info.size)?,
                    None => (0, record.info.size),
                };
                let keys = self.data_keys(&record.sealed)?;
                let plan = pieces(&record.sealed, offset, len);
                let object = format!("s3://{bucket}/{key}");
                let stream = sealed_stream(file, keys, plan, object).await?;
                return Ok((record.info, stream));
            }
            let mut file = match tokio::fs::File::open(self.blob_path(&record.blob)).await {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let (offset, len) = match range {
                Some(r) => r.resolve(record.info.size)?,
                None => (0, record.info.size),
            };
            if offset > 0 {
                file.seek(SeekFrom::Start(offset)).await?;
            }
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
            return Ok((record.info, Box::pin(stream)));
        }
        if let Some(version_id) = version {
            return Err(StoreError::NoSuchVersion {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: version_id.to_owned(),
            });
        }
        Err(StoreError::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, StoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version = version.map(str::to_owned);
        let now_ms = self.now_ms();
        self.blocking(move |inner| {
            let txn = inner.db.begin_write().map_err(db_err)?;
            let info = {
                let bucket_record = bucket_write_record(&txn, &bucket)?;
                if update.needs_object_lock() && bucket_record.lock_config()?.is_none() {
                    return Err(StoreError::NoObjectLock(bucket));
                }
                let state = bucket_record.versioning;
                let mut tables = Tables::open(&txn)?;
                let found: Option<ObjectRecord> = match (&version, state.keeps_versions()) {
                    (Some(v), true) => {
                        versioned::find(&tables.versions, &bucket, &key, check_version_id(v)?)?
                    }
                    (Some(v), false) if check_version_id(v)?.is_some() => None,
                    _ => tables
                        .objects
                        .get((bucket.as_str(), key.as_str()))
                        .map_err(db_err)?
                        .map(|v| decode(v.value()))
                        .transpose()?,
                };
                let mut record = match found {
                    Some(record) if record.delete_marker => {
                        return Err(StoreError::DeleteMarker {
                            version_id: record.info.version_id,
                            requested: true,
                        });
                    }
                    Some(record) => record,
                    None => {
                        return Err(match version {
                            Some(version_id) => StoreError::NoSuchVersion {
                                bucket,
                                key,
                                version_id,
                            },
                            // As a GET answers it: a delete marker on top.
                            None => match versioned::latest(&tables.versions, &bucket, &key)? {
                                Some(marker) if marker.delete_marker => StoreError::DeleteMarker {
                                    version_id: marker.info.version_id,
                                    requested: false,
                                },
                                _ => StoreError::NoSuchKey { bucket, key },
                            },
                        });
                    }
                };
                update.apply(&mut record.info, now_ms)?;
                if record.info.versioned {
                    tables.update(&bucket, &record)?;
                } else {
                    let encoded = encode(&record)?;
                    tables
                        .objects
                        .insert((bucket.as_str(), key.as_str()), encoded.as_slice())
                        .map_err(db_err)?;
                }
                record.info
            };
            txn.commit().map_err(db_err)?;
            Ok(info)
        })
        .await
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        let (record, _) = self.record_and_data(bucket, key, version, false).await?;
        Ok(record.info)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        governance: Governance,
    ) -> Result<Deleted, StoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version = version.map(str::to_owned);
        let now_ms = self.now_ms();
        let (deleted, stale) = self
            .blocking(move |inner| {
                let txn = inner.db.begin_write().map_err(db_err)?;
                let state = bucket_write_record(&txn, &bucket)?.versioning;
                let named = version.as_deref().map(check_version_id).transpose()?;
                let mut stale = Vec::new();
                let deleted = match (state.keeps_versions(), named) {
                    // No versioning: the object goes (`versionId=null` names it too).
                    (false, None | Some(None)) => {
                        let old = txn
                            .open_table(OBJECTS)
                            .map_err(db_err)?
                            .remove((bucket.as_str(), key.as_str()))
                            .map_err(db_err)?
                            .map(|v| decode::<ObjectRecord>(v.value()))
                            .transpose()?;
                        txn.open_table(INLINE)
                            .map_err(db_err)?
                            .remove((bucket.as_str(), key.as_str()))
                            .map_err(db_err)?;
                        stale.extend(old.and_then(|old| old.blob_file()));
                        Deleted::default()
                    }
                    (false, Some(Some(id))) => Deleted {
                        version_id: Some(id.to_owned()),
                        delete_marker: false,
                    },
                    // A delete marker on top.
                    (true, None) => {
                        let seq = versioned::next_seq(&txn)?;
                        let marker = versioned::delete_marker(&key, seq, state, now_ms)?;
                        let version_id = marker.info.version_id.clone();
                        stale.extend(Tables::open(&txn)?.add(&bucket, marker, None)?);
                        Deleted {
                            version_id,
                            delete_marker: true,
                        }
                    }
                    // That version, for good.
                    (true, Some(id)) => {
                        let mut tables = Tables::open(&txn)?;
                        match versioned::find(&tables.versions, &bucket, &key, id)? {
                            Some(record) => {
                                record.info.lock.may_delete(now_ms, governance)?;
                                stale.extend(tables.remove(&bucket, &record)?);
                                Deleted {
                                    version_id: record.info.version_id,
                                    delete_marker: record.delete_marker,
                                }
                            }
                            None => Deleted {
                                version_id: id.map(str::to_owned),
                                delete_marker: false,
                            },
                        }
                    }
                };
                txn.commit().map_err(db_err)?;
                Ok((deleted, stale))
            })
            .await?;
        self.remove_blobs(stale).await;
        Ok(deleted)
    }

    async fn list_versions(
        &self,
        bucket: &str,
        query: VersionQuery<'_>,
    ) -> Result<VersionPage, StoreError> {
        let bucket = bucket.to_owned();
        let prefix = query.prefix.to_owned();
        let delimiter = query.delimiter.map(str::to_owned);
        let key_marker = query.key_marker.map(str::to_owned);
        let version_marker = query.version_id_marker.map(str::to_owned);
        let max_keys = query.max_keys;
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let state = bucket_record(&txn, &bucket)?.versioning;
            let start = key_marker
                .as_deref()
                .map_or(prefix.as_str(), |m| m.max(prefix.as_str()))
                .to_owned();
            let query = VersionQuery {
                prefix: &prefix,
                delimiter: delimiter.as_deref(),
                key_marker: key_marker.as_deref(),
                version_id_marker: version_marker.as_deref(),
                max_keys,
            };
            let mut failure = None;
            let page = if state.keeps_versions() {
                let table = txn.open_table(VERSIONS).map_err(db_err)?;
                let mut range = table
                    .range((bucket.as_str(), start.as_str(), 0)..)
                    .map_err(db_err)?;
                let mut previous: Option<String> = None;
                let entries = std::iter::from_fn(|| {
                    let (k, v) = match range.next()? {
                        Ok(entry) => entry,
                        Err(e) => {
                            failure = Some(db_err(e));
                            return None;
                        }
                    };
                    let (b, key, _) = k.value();
                    if b != bucket || !key.starts_with(prefix.as_str()) {
                        return None;
                    }
                    match decode::<ObjectRecord>(v.value()) {
                        Ok(record) => {
                            let is_latest = previous.as_deref() != Some(key);
                            previous = Some(key.to_owned());
                            Some(VersionEntry {
                                info: record.info,
                                delete_marker: record.delete_marker,
                                is_latest,
                            })
                        }
                        Err(e) => {
                            failure = Some(e);
                            None
                        }
                    }
                });
                paginate_versions(entries, query)
            } else {
                let table = txn.open_table(OBJECTS).map_err(db_err)?;
                let mut range = table
                    .range((bucket.as_str(), start.as_str())..)
                    .map_err(db_err)?;
                let entries = std::iter::from_fn(|| {
                    let (k, v) = match range.next()? {
                        Ok(entry) => entry,
                        Err(e) => {
                            failure = Some(db_err(e));
                            return None;
                        }
                    };
                    let (b, key) = k.value();
                    if b != bucket || !key.starts_with(prefix.as_str()) {
                        return None;
                    }
                    match decode::<ObjectRecord>(v.value()) {
                        Ok(record) => Some(VersionEntry {
                            info: record.info,
                            delete_marker: false,
                            is_latest: true,
                        }),
                        Err(e) => {
                            failure = Some(e);
                            None
                        }
                    }
                });
                paginate_versions(entries, query)
            };
            match failure {
                Some(e) => Err(e),
                None => Ok(page),
            }
        })
        .await
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            Ok(bucket_record(&txn, &bucket)?.versioning)
        })
        .await
    }

    async fn set_versioning(&self, bucket: &str, state: Versioning) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_write().map_err(db_err)?;
            let mut record = bucket_write_record(&txn, &bucket)?;
            if state == Versioning::Unversioned || record.versioning == state {
                return Ok(());
            }
            check_lock_versioning(state, record.lock_config()?.is_some()).map_err(|_| {
                StoreError::InvalidBucketState(
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
                )
            })?;
            if record.versioning == Versioning::Unversioned {
                let count = versioned::migrate(&txn, &bucket)?;
                tracing::info!(bucket = %bucket, objects = count, "versioning turned on");
            }
            record.versioning = state;
            let encoded = encode(&record)?;
            txn.open_table(BUCKETS)
                .map_err(db_err)?
                .insert(bucket.as_str(), encoded.as_slice())
                .map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        query: ListQuery<'_>,
    ) -> Result<ListPage, StoreError> {
        let bucket = bucket.to_owned();
        let prefix = query.prefix.to_owned();
        let delimiter = query.delimiter.map(str::to_owned);
        let after = query.after.map(str::to_owned);
        let max_keys = query.max_keys;
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            bucket_record(&txn, &bucket)?;
            let table = txn.open_table(OBJECTS).map_err(db_err)?;
            let start = after
                .as_deref()
                .map_or(prefix.as_str(), |a| a.max(prefix.as_str()));
            let mut range = table.range((bucket.as_str(), start)..).map_err(db_err)?;
            let mut failure = None;
            let keys = std::iter::from_fn(|| {
                loop {
                    let (k, v) = match range.next()? {
                        Ok(entry) => entry,
                        Err(e) => {
                            failure = Some(db_err(e));
                            return None;
                        }
                    };
                    let (b, key) = k.value();
                    if b != bucket || !key.starts_with(prefix.as_str()) {
                        return None;
                    }
                    if after.as_deref() == Some(key) {
                        continue;
                    }
                    return match decode::<ObjectRecord>(v.value()) {
                        Ok(record) => Some(record.info),
                        Err(e) => {
                            failure = Some(e);
                            None
                        }
                    };
                }
            });
            let page = paginate(
                keys,
                ListQuery {
                    prefix: &prefix,
                    delimiter: delimiter.as_deref(),
                    after: after.as_deref(),
                    max_keys,
                },
            );
            match failure {
                Some(e) => Err(e),
                None => Ok(page),
            }
        })
        .await
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let mut policies = inner.policies_mut();
            update_bucket(&inner.db, &bucket, |record| {
                record.policy.clone_from(&policy);
                Ok(())
            })?;
            policies.insert(bucket, policy);
            Ok(())
        })
        .await
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            update_bucket(&inner.db, &bucket, |record| {
                if kind == BucketConfig::ObjectLock && config.is_some() {
                    check_lock_versioning(record.versioning, true)?;
                }
                match config {
                    Some(text) => record.configs.insert(kind.as_str().to_owned(), text),
                    None => record.configs.remove(kind.as_str()),
                };
                Ok(())
            })
        })
        .await
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            Ok(bucket_record(&txn, &bucket)?.configs.remove(kind.as_str()))
        })
        .await
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        // From memory: this is on every authorization's path.
        let policies = self
            .inner
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner());
        policies
            .get(bucket)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> Result<UploadInfo, StoreError> {
        let record = UploadRecord {
            bucket: bucket.to_owned(),
            info: UploadInfo {
                upload_id: random_id()?,
                key: key.to_owned(),
                initiated_ms: self.now_ms(),
            },
            content_type: options.content_type,
            metadata: options.metadata,
            tags: options.tags,
            headers: options.headers,
            parts: BTreeMap::new(),
            part_keys: BTreeMap::new(),
            lock: options.lock,
            seal: options.seal,
        };
        self.blocking(move |inner| {
            let txn = inner.db.begin_write().map_err(db_err)?;
            {
                // Refused now if the bucket cannot lock it; the default applies at completion.
                let config = bucket_write_record(&txn, &record.bucket)?.lock_config()?;
                new_version_lock(&record.bucket, config, record.lock, 0)?;
                let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                let encoded = encode(&record)?;
                uploads
                    .insert(record.info.upload_id.as_str(), encoded.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(record.info)
        })
        .await
    }

    async fn upload_part(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        body: ByteStream,
        mut options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        options.seal = self.upload_record(upload).await?.seal;
        let (blob, etag, size, part_key) = self.write_blob(body, &mut options).await?;
        let part = PartInfo {
            part_number,
            etag,
            size,
            last_modified_ms: self.now_ms(),
            sealed: part_key.is_some(),
        };
        let (bucket, key, id) = (
            upload.bucket.to_owned(),
            upload.key.to_owned(),
            upload.upload_id.to_owned(),
        );
        let (entry, new_blob) = ((part.clone(), blob.clone()), blob);
        let committed = self
            .blocking(move |inner| {
                let txn = inner.db.begin_write().map_err(db_err)?;
                let replaced = {
                    let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                    let mut record = read_upload(&uploads, &bucket, &key, &id)?;
                    let replaced = record
                        .parts
                        .insert(part_number, entry)
                        .map(|(_, blob)| blob);
                    match part_key {
                        Some(wrapped) => record.part_keys.insert(part_number, wrapped),
                        None => record.part_keys.remove(&part_number),
                    };
                    let encoded = encode(&record)?;
                    uploads
                        .insert(id.as_str(), encoded.as_slice())
                        .map_err(db_err)?;
                    replaced
                };
                txn.commit().map_err(db_err)?;
                Ok(replaced)
            })
            .await;
        match committed {
            Ok(replaced) => {
                self.remove_blobs(replaced).await;
                Ok(part)
            }
            Err(e) => {
                self.remove_blobs([new_blob]).await;
                Err(e)
            }
        }
    }

    async fn list_parts(&self, upload: UploadRef<'_>) -> Result<Vec<PartInfo>, StoreError> {
        let record = self.upload_record(upload).await?;
        Ok(record.parts.into_values().map(|(p, _)| p).collect())
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<UploadInfo>, StoreError> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db_err)?;
            bucket_record(&txn, &bucket)?;
            let mut out = Vec::new();
            for entry in txn
                .open_table(UPLOADS)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (_, value) = entry.map_err(db_err)?;
                let record: UploadRecord = decode(value.value())?;
                if record.bucket == bucket && record.info.key.starts_with(&prefix) {
                    out.push(record.info);
                }
            }
            out.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
            Ok(out)
        })
        .await
    }

    async fn complete_upload(
        &self,
        upload: UploadRef<'_>,
        parts: Vec<(u32, String)>,
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo, StoreError> {
        let record = match self.upload_record(upload).await {
            Err(StoreError::NoSuchUpload(id)) => {
                return match self.completed(&id).await? {
                    Some(done) if done.repeats(upload, &parts) => Ok(done.info),
                    _ => Err(StoreError::NoSuchUpload(id)),
                };
            }
            other => other?,
        };
        let uploaded: BTreeMap<u32, PartInfo> = record
            .parts
            .iter()
            .map(|(n, (p, _))| (*n, p.clone()))
            .collect();
        let chosen = completed_parts(&uploaded, &parts)?;
        // The parts, in order, become one new blob; the upload's blobs go when it commits.
        // Every part file is opened before any is read: a part uploaded again meanwhile
        // replaces (and removes) its file, but an open file stays readable.
        let mut files = Vec::with_capacity(chosen.len());
        for part in &chosen {
            let path = self.blob_path(&record.parts[&part.part_number].1);
            match tokio::fs::File::open(path).await {
                Ok(file) => files.push(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::InvalidPart(part.part_number));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (blob, stored) = self.concat_blob(files).await?;
        let sealed: Vec<SealedPart> = if record.part_keys.is_empty() {
            Vec::new()
        } else {
            chosen
                .iter()
                .map(|p| SealedPart {
                    size: p.size,
                    key: record.part_keys.get(&p.part_number).cloned(),
                })
                .collect()
        };
        // The object's size is its plaintext's; sealed parts take a tag per segment more.
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        let expected: u64 = match sealed.is_empty() {
            true => size,
            false => sealed.iter().map(SealedPart::stored_len).sum(),
        };
        if stored != expected {
            self.remove_blobs([blob]).await;
            return Err(StoreError::Sealed(format!(
                "the parts hold {stored} bytes where {expected} were recorded"
            )));
        }
        let object = ObjectRecord {
            info: ObjectInfo {
                key: upload.key.to_owned(),
                size,
                etag: multipart_etag(&chosen),
                last_modified_ms: self.now_ms(),
                content_type: record.content_type,
                metadata: record.metadata,
                // Sealed only if every part is: an upload may span a change of the server's mode.
                sealed: !sealed.is_empty() && sealed.iter().all(|p| p.key.is_some()),
                tags: record.tags,
                headers: record.headers,
                parts: object_parts(&chosen),
                version_id: None,
                versioned: false,
                lock: record.lock,
            },
            blob,
            sealed,
            inline: false,
            seq: 0,
            delete_marker: false,
        };
        let completion = Completion {
            upload_id: upload.upload_id.to_owned(),
            parts: chosen
                .iter()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect(),
        };
        self.commit_object(upload.bucket, object, None, Some(completion), condition)
            .await
    }

    async fn abort_upload(&self, upload: UploadRef<'_>) -> Result<(), StoreError> {
        let (bucket, key, id) = (
            upload.bucket.to_owned(),
            upload.key.to_owned(),
            upload.upload_id.to_owned(),
        );
        let record = self
            .blocking(move |inner| {
                let txn = inner.db.begin_write().map_err(db_err)?;
                let record = {
                    let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                    let record = read_upload(&uploads, &bucket, &key, &id)?;
                    uploads.remove(id.as_str()).map_err(db_err)?;
                    record
                };
                txn.commit().map_err(db_err)?;
                Ok(record)
            })
            .await?;
        self.remove_blobs(record.blobs().collect::<Vec<_>>()).await;
        Ok(())
    }
}
