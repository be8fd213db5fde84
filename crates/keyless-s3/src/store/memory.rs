//! `MemoryStore`: the in-memory double of [`ObjectStore`], for tests and for the conformance
//! suite both backends pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::StreamExt as _;
use keyless_types::Clock;

use super::check_lock_versioning;
use crate::object_lock::{Governance, LockConfig, ObjectLock};

use super::{
    BodyCheck, BucketConfig, BucketInfo, ByteRange, ByteStream, COMPLETED_UPLOAD_MEMORY_MS,
    CompletedUpload, Deleted, ListPage, ListQuery, ObjectInfo, ObjectStore, ObjectUpdate, PartInfo,
    PutOptions, StoreError, UploadInfo, UploadRef, VersionEntry, VersionPage, VersionQuery,
    Versioning, WriteCondition, bytes_stream, check_version_id, completed_parts, lock_config,
    multipart_etag, new_version_id, new_version_lock, object_parts, paginate, paginate_versions,
    random_id,
};

/// Reads a whole body, checking it against the options.
async fn read_body(
    mut body: ByteStream,
    options: &mut PutOptions,
) -> Result<(Bytes, String, u64), StoreError> {
    let mut check = BodyCheck::new(options);
    let mut data = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        check.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    let (etag, size) = check.finish(options)?;
    Ok((Bytes::from(data), etag, size))
}

#[derive(Default)]
struct Bucket {
    info: Option<BucketInfo>,
    policy: Option<String>,
    configs: BTreeMap<&'static str, String>,
    /// Each key's latest version when it is an object.
    objects: BTreeMap<String, (ObjectInfo, Bytes)>,
    uploads: BTreeMap<String, Upload>,
    /// Completed uploads by id, for a repeated completion.
    completed: BTreeMap<String, CompletedUpload>,
    versioning: Versioning,
    /// With versioning: every version of each key, newest first.
    versions: BTreeMap<String, Vec<Version>>,
    /// The last write sequence number given to a version.
    seq: u64,
}

#[derive(Clone)]
struct Version {
    info: ObjectInfo,
    data: Bytes,
    delete_marker: bool,
}

impl Bucket {
    fn lock_config(&self) -> Result<Option<LockConfig>, StoreError> {
        lock_config(
            self.configs
                .get(BucketConfig::ObjectLock.as_str())
                .map(String::as_str),
        )
    }

    /// The lock of a new version created at `created_ms` that asked for `asked`.
    fn new_lock(
        &self,
        bucket: &str,
        asked: ObjectLock,
        created_ms: i64,
    ) -> Result<ObjectLock, StoreError> {
        new_version_lock(bucket, self.lock_config()?, asked, created_ms)
    }

    /// Makes `info` the key's newest object, as the bucket's versioning state has it.
    fn commit(&mut self, mut info: ObjectInfo, data: Bytes) -> Result<ObjectInfo, StoreError> {
        if self.versioning.keeps_versions() {
            self.add_version(&mut info, data.clone(), false)?;
        }
        self.objects.insert(info.key.clone(), (info.clone(), data));
        Ok(info)
    }

    /// Numbers a new version (an id when enabled, the null version when suspended, which
    /// replaces the earlier null version) and puts it on top of its key's versions.
    fn add_version(
        &mut self,
        info: &mut ObjectInfo,
        data: Bytes,
        delete_marker: bool,
    ) -> Result<(), StoreError> {
        self.seq += 1;
        info.versioned = true;
        info.version_id = match self.versioning {
            Versioning::Enabled => Some(new_version_id(self.seq)?),
            _ => None,
        };
        let versions = self.versions.entry(info.key.clone()).or_default();
        if info.version_id.is_none() {
            versions.retain(|v| v.info.version_id.is_some());
        }
        versions.insert(
            0,
            Version {
                info: info.clone(),
                data,
                delete_marker,
            },
        );
        Ok(())
    }

    /// Makes `objects` hold the key's newest version if it is an object.
    fn sync_latest(&mut self, key: &str) {
        match self.versions.get(key).and_then(|v| v.first()) {
            Some(v) if !v.delete_marker => {
                self.objects
                    .insert(key.to_owned(), (v.info.clone(), v.data.clone()));
            }
            Some(_) => {
                self.objects.remove(key);
            }
            None => {
                self.versions.remove(key);
                self.objects.remove(key);
            }
        }
    }

    /// The version a request names (latest when `None`), as S3 answers for it.
    fn version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(ObjectInfo, Bytes), StoreError> {
        let Some(version) = version else {
            return match self.objects.get(key) {
                Some(found) => Ok(found.clone()),
                None => match self.versions.get(key).and_then(|v| v.first()) {
                    Some(marker) => Err(StoreError::DeleteMarker {
                        version_id: marker.info.version_id.clone(),
                        requested: false,
                    }),
                    None => Err(StoreError::NoSuchKey {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    }),
                },
            };
        };
        let id = check_version_id(version)?;
        let found = if self.versioning.keeps_versions() {
            self.versions
                .get(key)
                .and_then(|all| all.iter().find(|v| v.info.version_id.as_deref() == id))
                .cloned()
        } else {
            id.is_none()
                .then(|| self.objects.get(key))
                .flatten()
                .map(|(info, data)| Version {
                    info: info.clone(),
                    data: data.clone(),
                    delete_marker: false,
                })
        };
        match found {
            Some(v) if v.delete_marker => Err(StoreError::DeleteMarker {
                version_id: v.info.version_id,
                requested: true,
            }),
            Some(v) => Ok((v.info, v.data)),
            None => Err(StoreError::NoSuchVersion {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: version.to_owned(),
            }),
        }
    }
}

struct Upload {
    info: UploadInfo,
    options: PutOptions,
    parts: BTreeMap<u32, (PartInfo, Bytes)>,
}

/// Buckets and objects in memory.
pub struct MemoryStore {
    buckets: Mutex<BTreeMap<String, Bucket>>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            buckets: Mutex::new(BTreeMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.clock.unix_millis()
    }

    fn with_bucket<T>(
        &self,
        bucket: &str,
        f: impl FnOnce(&mut Bucket) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut buckets = self.lock();
        let b = buckets
            .get_mut(bucket)
            .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))?;
        f(b)
    }
}

impl MemoryStore {
    fn with_upload<T>(
        &self,
        upload: UploadRef<'_>,
        f: impl FnOnce(&mut Upload) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_bucket(upload.bucket, |b| {
            let up = b
                .uploads
                .get_mut(upload.upload_id)
                .filter(|u| u.info.key == upload.key)
                .ok_or_else(|| StoreError::NoSuchUpload(upload.upload_id.to_owned()))?;
            f(up)
        })
    }
}

impl ObjectStore for MemoryStore {
    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        let mut buckets = self.lock();
        if buckets.contains_key(bucket) {
            return Err(StoreError::BucketAlreadyExists(bucket.to_owned()));
        }
        let info = BucketInfo {
            name: bucket.to_owned(),
            created_ms: self.now_ms(),
        };
        buckets.insert(
            bucket.to_owned(),
            Bucket {
                info: Some(info.clone()),
                ..Default::default()
            },
        );
        Ok(info)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let mut buckets = self.lock();
        match buckets.get(bucket) {
            None => Err(StoreError::NoSuchBucket(bucket.to_owned())),
            Some(b) if !b.objects.is_empty() || !b.versions.is_empty() => {
                Err(StoreError::BucketNotEmpty(bucket.to_owned()))
            }
            Some(_) => {
                buckets.remove(bucket);
                Ok(())
            }
        }
    }

    async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, StoreError> {
        self.with_bucket(bucket, |b| {
            b.info
                .clone()
                .ok_or_else(|| StoreError::NoSuchBucket(bucket.to_owned()))
        })
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter_map(|b| b.info.clone())
            .collect())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        mut options: PutOptions,
    ) -> Result<ObjectInfo, StoreError> {
        self.head_bucket(bucket).await?;
        let (data, etag, size) = read_body(body, &mut options).await?;
        let info = ObjectInfo {
            key: key.to_owned(),
            size,
            etag,
            last_modified_ms: self.now_ms(),
            content_type: options.content_type,
            metadata: options.metadata,
            sealed: false,
            tags: options.tags,
            headers: options.headers,
            parts: Vec::new(),
            version_id: None,
            versioned: false,
            lock: ObjectLock::default(),
        };
        self.with_bucket(bucket, |b| {
            if let Some(condition) = &options.condition {
                condition.check(bucket, key, b.objects.get(key).map(|(info, _)| info))?;
            }
            let mut info = info;
            info.lock = b.new_lock(bucket, options.lock, info.last_modified_ms)?;
            b.commit(info, data)
        })
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ByteStream), StoreError> {
        let (info, data) = self.with_bucket(bucket, |b| b.version(bucket, key, version))?;
        let stream = bytes_stream(data, range)?;
        Ok((info, stream))
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        update: ObjectUpdate,
    ) -> Result<ObjectInfo, StoreError> {
        let now = self.now_ms();
        self.with_bucket(bucket, |b| {
            if update.needs_object_lock() && b.lock_config()?.is_none() {
                return Err(StoreError::NoObjectLock(bucket.to_owned()));
            }
            let (mut info, _) = b.version(bucket, key, version)?;
            update.apply(&mut info, now)?;
            if let Some(all) = b.versions.get_mut(key) {
                for v in all
                    .iter_mut()
                    .filter(|v| v.info.version_id == info.version_id)
                {
                    v.info.clone_from(&info);
                }
            }
            if let Some((latest, _)) = b.objects.get_mut(key)
                && latest.version_id == info.version_id
            {
                latest.clone_from(&info);
            }
            Ok(info)
        })
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo, StoreError> {
        self.with_bucket(bucket, |b| b.version(bucket, key, version))
            .map(|(info, _)| info)
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        governance: Governance,
    ) -> Result<Deleted, StoreError> {
        let now = self.now_ms();
        self.with_bucket(bucket, |b| {
            let named = version.map(check_version_id).transpose()?;
            match (b.versioning.keeps_versions(), named) {
                (false, None | Some(None)) => {
                    b.objects.remove(key);
                    Ok(Deleted::default())
                }
                (false, Some(Some(id))) => Ok(Deleted {
                    version_id: Some(id.to_owned()),
                    delete_marker: false,
                }),
                (true, None) => {
                    let mut marker = ObjectInfo::delete_marker(key, None, now);
                    b.add_version(&mut marker, Bytes::new(), true)?;
                    b.sync_latest(key);
                    Ok(Deleted {
                        version_id: marker.version_id,
                        delete_marker: true,
                    })
                }
                (true, Some(id)) => {
                    let mut deleted = Deleted {
                        version_id: id.map(str::to_owned),
                        delete_marker: false,
                    };
                    if let Some(all) = b.versions.get_mut(key) {
                        if let Some(at) =
                            all.iter().position(|v| v.info.version_id.as_deref() == id)
                        {
                            all[at].info.lock.may_delete(now, governance)?;
                            deleted.delete_marker = all.remove(at).delete_marker;
                        }
                        b.sync_latest(key);
                    }
                    Ok(deleted)
                }
            }
        })
    }

    async fn list_versions(
        &self,
        bucket: &str,
        query: VersionQuery<'_>,
    ) -> Result<VersionPage, StoreError> {
        self.with_bucket(bucket, |b| {
            let start = query
                .key_marker
                .map_or(query.prefix, |m| m.max(query.prefix));
            let bounds = (std::ops::Bound::Included(start), std::ops::Bound::Unbounded);
            let page = if b.versioning.keeps_versions() {
                let entries = b
                    .versions
                    .range::<str, _>(bounds)
                    .take_while(|(k, _)| k.starts_with(query.prefix))
                    .flat_map(|(_, all)| {
                        all.iter().enumerate().map(|(i, v)| VersionEntry {
                            info: v.info.clone(),
                            delete_marker: v.delete_marker,
                            is_latest: i == 0,
                        })
                    });
                paginate_versions(entries, query)
            } else {
                let entries = b
                    .objects
                    .range::<str, _>(bounds)
                    .take_while(|(k, _)| k.starts_with(query.prefix))
                    .map(|(_, (info, _))| VersionEntry {
                        info: info.clone(),
                        delete_marker: false,
                        is_latest: true,
                    });
                paginate_versions(entries, query)
            };
            Ok(page)
        })
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        self.with_bucket(bucket, |b| Ok(b.versioning))
    }

    async fn set_versioning(&self, bucket: &str, state: Versioning) -> Result<(), StoreError> {
        self.with_bucket(bucket, |b| {
            if state == Versioning::Unversioned {
                return Ok(());
            }
            if state != b.versioning {
                check_lock_versioning(state, b.lock_config()?.is_some()).map_err(|_| {
                    StoreError::InvalidBucketState(
                        "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
                    )
                })?;
            }
            if b.versioning == Versioning::Unversioned {
                for (key, (info, data)) in &mut b.objects {
                    info.versioned = true;
                    b.versions.insert(
                        key.clone(),
                        vec![Version {
                            info: info.clone(),
                            data: data.clone(),
                            delete_marker: false,
                        }],
                    );
                }
            }
            b.versioning = state;
            Ok(())
        })
    }

    async fn list_objects(
        &self,
        bucket: &str,
        query: ListQuery<'_>,
    ) -> Result<ListPage, StoreError> {
        self.with_bucket(bucket, |b| {
            let start = query.after.map_or(query.prefix, |a| a.max(query.prefix));
            let keys = b
                .objects
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .filter(|(k, _)| query.after != Some(k.as_str()))
                .take_while(|(k, _)| k.starts_with(query.prefix))
                .map(|(_, (info, _))| info.clone());
            Ok(paginate(keys, query))
        })
    }

    async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<(), StoreError> {
        self.with_bucket(bucket, |b| {
            b.policy = policy;
            Ok(())
        })
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        self.with_bucket(bucket, |b| Ok(b.policy.clone()))
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        config: Option<String>,
    ) -> Result<(), StoreError> {
        self.with_bucket(bucket, |b| {
            if kind == BucketConfig::ObjectLock && config.is_some() {
                check_lock_versioning(b.versioning, true)?;
            }
            match config {
                Some(text) => b.configs.insert(kind.as_str(), text),
                None => b.configs.remove(kind.as_str()),
            };
            Ok(())
        })
    }

    async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
    ) -> Result<Option<String>, StoreError> {
        self.with_bucket(bucket, |b| Ok(b.configs.get(kind.as_str()).cloned()))
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> Result<UploadInfo, StoreError> {
        let info = UploadInfo {
            upload_id: random_id()?,
            key: key.to_owned(),
            initiated_ms: self.now_ms(),
        };
        self.with_bucket(bucket, |b| {
            b.new_lock(bucket, options.lock, info.initiated_ms)?;
            b.uploads.insert(
                info.upload_id.clone(),
                Upload {
                    info: info.clone(),
                    options,
                    parts: BTreeMap::new(),
                },
            );
            Ok(info)
        })
    }

    async fn upload_part(
        &self,
        upload: UploadRef<'_>,
        part_number: u32,
        body: ByteStream,
        mut options: PutOptions,
    ) -> Result<PartInfo, StoreError> {
        self.with_upload(upload, |_| Ok(()))?;
        let (data, etag, size) = read_body(body, &mut options).await?;
        let part = PartInfo {
            part_number,
            etag,
            size,
            last_modified_ms: self.now_ms(),
            sealed: false,
        };
        self.with_upload(upload, |u| {
            u.parts.insert(part_number, (part.clone(), data));
            Ok(part)
        })
    }

    async fn list_parts(&self, upload: UploadRef<'_>) -> Result<Vec<PartInfo>, StoreError> {
        self.with_upload(upload, |u| {
            Ok(u.parts.values().map(|(p, _)| p.clone()).collect())
        })
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<UploadInfo>, StoreError> {
        self.with_bucket(bucket, |b| {
            let mut uploads: Vec<UploadInfo> = b
                .uploads
                .values()
                .filter(|u| u.info.key.starts_with(prefix))
                .map(|u| u.info.clone())
                .collect();
            uploads.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
            Ok(uploads)
        })
    }

    async fn complete_upload(
        &self,
        upload: UploadRef<'_>,
        parts: Vec<(u32, String)>,
        condition: Option<WriteCondition>,
    ) -> Result<ObjectInfo, StoreError> {
        let now = self.now_ms();
        self.with_bucket(upload.bucket, |b| {
            b.completed
                .retain(|_, done| done.info.last_modified_ms > now - COMPLETED_UPLOAD_MEMORY_MS);
            let Some(up) = b
                .uploads
                .get(upload.upload_id)
                .filter(|u| u.info.key == upload.key)
            else {
                return match b.completed.get(upload.upload_id) {
                    Some(done) if done.repeats(upload, &parts) => Ok(done.info.clone()),
                    _ => Err(StoreError::NoSuchUpload(upload.upload_id.to_owned())),
                };
            };
            let uploaded: BTreeMap<u32, PartInfo> =
                up.parts.iter().map(|(n, (p, _))| (*n, p.clone())).collect();
            let chosen = completed_parts(&uploaded, &parts)?;
            let data: Vec<u8> = chosen
                .iter()
                .flat_map(|p| up.parts[&p.part_number].1.iter().copied())
                .collect();
            let info = ObjectInfo {
                key: upload.key.to_owned(),
                size: data.len() as u64,
                etag: multipart_etag(&chosen),
                last_modified_ms: now,
                content_type: up.options.content_type.clone(),
                metadata: up.options.metadata.clone(),
                sealed: false,
                tags: up.options.tags.clone(),
                headers: up.options.headers.clone(),
                parts: object_parts(&chosen),
                version_id: None,
                versioned: false,
                lock: b.new_lock(upload.bucket, up.options.lock, now)?,
            };
            if let Some(condition) = &condition {
                condition.check(
                    upload.bucket,
                    upload.key,
                    b.objects.get(upload.key).map(|(info, _)| info),
                )?;
            }
            b.uploads.remove(upload.upload_id);
            let info = b.commit(info, Bytes::from(data))?;
            b.completed.insert(
                upload.upload_id.to_owned(),
                CompletedUpload {
                    bucket: upload.bucket.to_owned(),
                    key: upload.key.to_owned(),
                    parts: chosen
                        .iter()
                        .map(|p| (p.part_number, p.etag.clone()))
                        .collect(),
                    info: info.clone(),
                },
            );
            Ok(info)
        })
    }

    async fn abort_upload(&self, upload: UploadRef<'_>) -> Result<(), StoreError> {
        self.with_upload(upload, |_| Ok(()))?;
        self.with_bucket(upload.bucket, |b| {
            b.uploads.remove(upload.upload_id);
            Ok(())
        })
    }
}
