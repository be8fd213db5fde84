//! The versions of keys in buckets with versioning, in redb.
//!
//! Every version of such a bucket, delete markers included, is a record in [`VERSIONS`] under
//! `(bucket, key, !seq)`, so that a key's versions read newest first; inline data of a version
//! is in [`VERSION_DATA`] under the same key. [`super::OBJECTS`] keeps a copy of each key's
//! latest version when that is an object (not a delete marker), so that GET, HEAD and listings
//! read one row as they do without versioning. Both change in the same transaction.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{ObjectRecord, StoreError, db_err, decode, encode};
use crate::store::{ObjectInfo, Versioning, new_version_id, version_seq};

/// Versions by `(bucket, key, u64::MAX - seq)`.
pub(super) const VERSIONS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("versions");
/// Inline data of versions, by the same key.
pub(super) const VERSION_DATA: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("version_data");
/// Counters: `seq`, the last write sequence number given to a version.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The table key part that orders versions newest first.
pub(super) fn order(seq: u64) -> u64 {
    u64::MAX - seq
}

/// The next write sequence number.
pub(super) fn next_seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let seq = meta.get("seq").map_err(db_err)?.map_or(0, |v| v.value()) + 1;
    meta.insert("seq", seq).map_err(db_err)?;
    Ok(seq)
}

/// A key's versions, newest first.
pub(super) fn versions_of(
    table: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    bucket: &str,
    key: &str,
) -> Result<Vec<ObjectRecord>, StoreError> {
    let mut out = Vec::new();
    for entry in table
        .range((bucket, key, 0)..=(bucket, key, u64::MAX))
        .map_err(db_err)?
    {
        let (_, v) = entry.map_err(db_err)?;
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// The version `version` of a key (`None`: the null version), if there is one.
pub(super) fn find(
    table: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Option<ObjectRecord>, StoreError> {
    match version {
        Some(id) => {
            let Some(seq) = version_seq(id) else {
                return Ok(None);
            };
            let Some(v) = table.get((bucket, key, order(seq))).map_err(db_err)? else {
                return Ok(None);
            };
            let record: ObjectRecord = decode(v.value())?;
            Ok((record.info.version_id.as_deref() == Some(id)).then_some(record))
        }
        None => Ok(versions_of(table, bucket, key)?
            .into_iter()
            .find(|r| r.info.version_id.is_none())),
    }
}

/// The key's latest version, if any.
pub(super) fn latest(
    table: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectRecord>, StoreError> {
    match table
        .range((bucket, key, 0)..=(bucket, key, u64::MAX))
        .map_err(db_err)?
        .next()
    {
        Some(entry) => Ok(Some(decode(entry.map_err(db_err)?.1.value())?)),
        None => Ok(None),
    }
}

/// The tables a versioned write changes.
pub(super) struct Tables<'txn> {
    pub(super) objects: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) versions: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    pub(super) data: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            objects: txn.open_table(super::OBJECTS).map_err(db_err)?,
            versions: txn.open_table(VERSIONS).map_err(db_err)?,
            data: txn.open_table(VERSION_DATA).map_err(db_err)?,
        })
    }

    /// Adds `record` (numbered `seq`, its id already set) as the key's newest version, with its
    /// inline `data`; in a suspended bucket, the null version it replaces goes. Returns the
    /// blobs no version holds any more.
    pub(super) fn add(
        &mut self,
        bucket: &str,
        mut record: ObjectRecord,
        data: Option<&[u8]>,
    ) -> Result<Vec<String>, StoreError> {
        let key = record.info.key.clone();
        let mut stale = Vec::new();
        // A null version (suspended versioning) replaces the earlier null version.
        if record.info.version_id.is_none()
            && let Some(null) = find(&self.versions, bucket, &key, None)?
        {
            stale.extend(self.remove(bucket, &null)?);
        }
        record.info.versioned = true;
        let encoded = encode(&record)?;
        let at = (bucket, key.as_str(), order(record.seq));
        self.versions
            .insert(at, encoded.as_slice())
            .map_err(db_err)?;
        if let Some(data) = data {
            self.data.insert(at, data).map_err(db_err)?;
        }
        if record.delete_marker {
            self.objects
                .remove((bucket, key.as_str()))
                .map_err(db_err)?;
        } else {
            self.objects
                .insert((bucket, key.as_str()), encoded.as_slice())
                .map_err(db_err)?;
        }
        Ok(stale)
    }

    /// Removes one version (and its data); the blob it held, if any, is returned. The key's
    /// latest object in `objects` is then whatever is newest.
    pub(super) fn remove(
        &mut self,
        bucket: &str,
        record: &ObjectRecord,
    ) -> Result<Option<String>, StoreError> {
        let key = record.info.key.as_str();
        let at = (bucket, key, order(record.seq));
        self.versions.remove(at).map_err(db_err)?;
        self.data.remove(at).map_err(db_err)?;
        match latest(&self.versions, bucket, key)? {
            Some(newest) if !newest.delete_marker => {
                let encoded = encode(&newest)?;
                self.objects
                    .insert((bucket, key), encoded.as_slice())
                    .map_err(db_err)?;
            }
            _ => {
                self.objects.remove((bucket, key)).map_err(db_err)?;
            }
        }
        Ok(record.blob_file())
    }

    /// Writes a changed version back (its tags), and the latest copy if it is the latest.
    pub(super) fn update(&mut self, bucket: &str, record: &ObjectRecord) -> Result<(), StoreError> {
        let key = record.info.key.as_str();
        let encoded = encode(record)?;
        self.versions
            .insert((bucket, key, order(record.seq)), encoded.as_slice())
            .map_err(db_err)?;
        let is_latest = match self.objects.get((bucket, key)).map_err(db_err)? {
            Some(v) => decode::<ObjectRecord>(v.value())?.seq == record.seq,
            None => false,
        };
        if is_latest {
            self.objects
                .insert((bucket, key), encoded.as_slice())
                .map_err(db_err)?;
        }
        Ok(())
    }
}

/// A delete marker for `key`, numbered `seq`, made at `now_ms`.
pub(super) fn delete_marker(
    key: &str,
    seq: u64,
    state: Versioning,
    now_ms: i64,
) -> Result<ObjectRecord, StoreError> {
    let version_id = match state {
        Versioning::Enabled => Some(new_version_id(seq)?),
        _ => None,
    };
    Ok(ObjectRecord {
        info: ObjectInfo::delete_marker(key, version_id, now_ms),
        blob: String::new(),
        sealed: Vec::new(),
        inline: false,
        seq,
        delete_marker: true,
    })
}

/// Turns a bucket's objects into its null versions, when versioning is first enabled (or
/// suspended) on it: each record into `versions`, its inline data along.
pub(super) fn migrate(txn: &WriteTransaction, bucket: &str) -> Result<usize, StoreError> {
    let mut tables = Tables::open(txn)?;
    let mut inline = txn.open_table(super::INLINE).map_err(db_err)?;
    let mut records = Vec::new();
    for entry in tables.objects.range((bucket, "")..).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        if k.value().0 != bucket {
            break;
        }
        records.push(decode::<ObjectRecord>(v.value())?);
    }
    for mut record in records.iter().cloned() {
        let key = record.info.key.clone();
        let data = match record.inline {
            true => inline
                .remove((bucket, key.as_str()))
                .map_err(db_err)?
                .map(|v| v.value().to_vec()),
            false => None,
        };
        record.info.version_id = None;
        record.info.versioned = true;
        let encoded = encode(&record)?;
        let at = (bucket, key.as_str(), order(record.seq));
        tables
            .versions
            .insert(at, encoded.as_slice())
            .map_err(db_err)?;
        if let Some(data) = data {
            tables.data.insert(at, data.as_slice()).map_err(db_err)?;
        }
        tables
            .objects
            .insert((bucket, key.as_str()), encoded.as_slice())
            .map_err(db_err)?;
    }
    Ok(records.len())
}
