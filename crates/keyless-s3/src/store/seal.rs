//! Encryption at rest (SSE-S3): every object's bytes are sealed with AES-256-GCM under a data
//! key of its own, and each data key is wrapped (AES-256-GCM again) by a master key kept in the
//! data folder. Rotating the master key re-wraps the data keys, a few bytes each; the data is
//! never re-encrypted.
//!
//! The data is sealed in segments of [`SEGMENT`] bytes, each with its own tag and a nonce made
//! of its index, so that a range is served by opening only the segments it touches, and no
//! segment can be moved or swapped without its tag failing. The number and sizes of the
//! segments follow from the plaintext size the object's record holds, so a truncated file fails
//! too. A multipart object is its parts' sealed bytes back to back, each part under its own key.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingServerSideEncryption.html>
//!
//! No file IO and no clock here: the store keeps the sealed bytes and the key file; keys come
//! from the system's random source (ring's `SystemRandom`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

use keyless_types::{Secret, hex};

/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 64 * 1024;
/// The tag each segment carries.
pub const TAG: usize = 16;
const KEY_LEN: usize = 32;

/// Why sealed data or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A tag did not verify: the bytes on disk are not what was written.
    #[error("sealed data does not verify (damaged or altered on disk)")]
    Tampered,
    /// A data key is wrapped by a master key this server does not have.
    #[error("data key wrapped by unknown master key `{0}`")]
    UnknownMasterKey(String),
    /// The master key file cannot be read as one.
    #[error("invalid master key file: {0}")]
    KeyFile(String),
    /// The system's random source failed.
    #[error("no random bytes for a key")]
    Random,
}

/// A data key wrapped by a master key: what an object's record keeps.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the master key that wraps it.
    pub master: String,
    /// Nonce, then the sealed key and its tag, in hex.
    pub sealed: String,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// One object's (or part's) data key.
pub struct DataKey(LessSafeKey);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn segment_nonce(index: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

impl DataKey {
    /// Seals `segment` (at most [`SEGMENT`] bytes), the `index`-th of its object, in place:
    /// the tag is appended.
    pub fn seal(&self, index: u64, segment: &mut Vec<u8>) {
        // Sealing in place only fails for inputs over GCM's 64 GiB limit.
        let _ = self
            .0
            .seal_in_place_append_tag(segment_nonce(index), Aad::empty(), segment);
    }

    /// Opens the `index`-th sealed segment in place, leaving its plaintext.
    pub fn open(&self, index: u64, sealed: &mut Vec<u8>) -> Result<(), SealError> {
        let len = self
            .0
            .open_in_place(segment_nonce(index), Aad::empty(), sealed)
            .map_err(|_| SealError::Tampered)?
            .len();
        sealed.truncate(len);
        Ok(())
    }

    /// Opens the `index`-th sealed segment in place in a slice; returns its plaintext length
    /// (the plaintext is at the start of the slice).
    pub fn open_slice(&self, index: u64, sealed: &mut [u8]) -> Result<usize, SealError> {
        self.0
            .open_in_place(segment_nonce(index), Aad::empty(), sealed)
            .map(|plain| plain.len())
            .map_err(|_| SealError::Tampered)
    }

    /// Seals a whole small body, segment by segment.
    pub fn seal_all(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
        for (i, chunk) in plain.chunks(SEGMENT).enumerate() {
            let mut segment = chunk.to_vec();
            self.seal(i as u64, &mut segment);
            out.extend_from_slice(&segment);
        }
        out
    }

    /// Opens what [`DataKey::seal_all`] sealed.
    pub fn open_all(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(sealed.len());
        for (i, chunk) in sealed.chunks(SEGMENT + TAG).enumerate() {
            let mut segment = chunk.to_vec();
            self.open(i as u64, &mut segment)?;
            out.extend_from_slice(&segment);
        }
        Ok(out)
    }
}

/// The sealed size of `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    plain + TAG as u64 * plain.div_ceil(SEGMENT as u64)
}

/// The server's master keys: the active one wraps new data keys; older ones still unwrap the
/// keys they wrapped until those are re-wrapped.
pub struct MasterKeys {
    active: String,
    keys: BTreeMap<String, (Secret, Arc<LessSafeKey>)>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("active", &self.active)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SealError::Random)?;
    Ok(bytes)
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::KeyFile("a key is not 32 bytes".into()))
}

impl MasterKeys {
    /// One new master key.
    pub fn generate() -> Result<Self, SealError> {
        let mut keys = Self {
            active: String::new(),
            keys: BTreeMap::new(),
        };
        keys.rotate()?;
        Ok(keys)
    }

    /// Reads the JSON of [`MasterKeys::to_json`].
    pub fn from_json(text: &[u8]) -> Result<Self, SealError> {
        let file: KeyFile =
            serde_json::from_slice(text).map_err(|e| SealError::KeyFile(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, key_hex) in file.keys {
            let bytes = hex::decode(&key_hex)
                .filter(|b| b.len() == KEY_LEN)
                .ok_or_else(|| SealError::KeyFile(format!("key `{id}` is not 64 hex digits")))?;
            let key = aead_key(&bytes)?;
            keys.insert(id, (Secret::new(key_hex), Arc::new(key)));
        }
        if !keys.contains_key(&file.active) {
            return Err(SealError::KeyFile(format!(
                "the active key `{}` is not in the file",
                file.active
            )));
        }
        Ok(Self {
            active: file.active,
            keys,
        })
    }

    /// The keys as JSON, for the key file (mode 0600).
    pub fn to_json(&self) -> Secret {
        let file = KeyFile {
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|(id, (hex, _))| (id.clone(), hex.expose().to_owned()))
                .collect(),
        };
        Secret::new(serde_json::to_string_pretty(&file).unwrap_or_default())
    }

    /// Adds a new active key; the others stay for unwrapping. Returns its id.
    pub fn rotate(&mut self) -> Result<String, SealError> {
        let bytes: [u8; KEY_LEN] = random()?;
        let id = format!("mk-{}", hex::encode(&random::<6>()?));
        let key = aead_key(&bytes)?;
        self.keys.insert(
            id.clone(),
            (Secret::new(hex::encode(&bytes)), Arc::new(key)),
        );
        self.active = id.clone();
        Ok(id)
    }

    /// The id of the key that wraps new data keys.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// Whether keys other than the active one are kept (after a rotation), whose data keys
    /// are to be re-wrapped.
    pub fn has_older(&self) -> bool {
        self.keys.len() > 1
    }

    /// A fresh data key, and its wrapping by the active master key.
    pub fn new_data_key(&self) -> Result<(DataKey, WrappedKey), SealError> {
        let bytes: [u8; KEY_LEN] = random()?;
        let wrapped = self.wrap(&bytes)?;
        Ok((DataKey(aead_key(&bytes)?), wrapped))
    }

    fn wrap(&self, data_key: &[u8; KEY_LEN]) -> Result<WrappedKey, SealError> {
        let (_, master) = &self.keys[&self.active];
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut sealed = data_key.to_vec();
        master
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.active.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(WrappedKey {
            master: self.active.clone(),
            sealed: hex::encode(&out),
        })
    }

    fn unwrap_bytes(&self, wrapped: &WrappedKey) -> Result<[u8; KEY_LEN], SealError> {
        let (_, master) = self
            .keys
            .get(&wrapped.master)
            .ok_or_else(|| SealError::UnknownMasterKey(wrapped.master.clone()))?;
        let bytes = hex::decode(&wrapped.sealed).ok_or(SealError::Tampered)?;
        if bytes.len() != NONCE_LEN + KEY_LEN + TAG {
            return Err(SealError::Tampered);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Tampered)?;
        let mut sealed = sealed.to_vec();
        let plain = master
            .open_in_place(nonce, Aad::from(wrapped.master.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Tampered)?;
        <[u8; KEY_LEN]>::try_from(&plain[..]).map_err(|_| SealError::Tampered)
    }

    /// The data key `wrapped` holds.
    pub fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        aead_key(&self.unwrap_bytes(wrapped)?).map(DataKey)
    }

    /// `wrapped` wrapped by the active key instead, or `None` when it already is.
    pub fn rewrap(&self, wrapped: &WrappedKey) -> Result<Option<WrappedKey>, SealError> {
        if wrapped.master == self.active {
            return Ok(None);
        }
        self.wrap(&self.unwrap_bytes(wrapped)?).map(Some)
    }
}

/// Where one part of a sealed object lies: its plaintext size, and its key (`None` for bytes
/// written before encryption at rest, kept as they were).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPart {
    /// Plaintext bytes.
    pub size: u64,
    /// Its data key, wrapped.
    pub key: Option<WrappedKey>,
}

impl SealedPart {
    /// Its bytes on disk.
    pub fn stored_len(&self) -> u64 {
        match self.key {
            Some(_) => sealed_len(self.size),
            None => self.size,
        }
    }
}

/// One stretch of stored bytes a range needs, and which of its plaintext bytes to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The part it belongs to.
    pub part: usize,
    /// The segment's index within its part (for its nonce); 0 for a plaintext part.
    pub segment: u64,
    /// Where its stored bytes start in the file, and how many.
    pub stored: (u64, u64),
    /// The plaintext bytes of it to keep: `from..to`.
    pub keep: (usize, usize),
}

/// The pieces to read for plaintext bytes `offset..offset + len` of an object of `parts`, in
/// order: only the segments the range touches.
pub fn pieces(parts: &[SealedPart], offset: u64, len: u64) -> Vec<Piece> {
    let (mut out, end) = (Vec::new(), offset + len);
    let (mut plain_at, mut stored_at) = (0u64, 0u64);
    for (i, part) in parts.iter().enumerate() {
        let (start, stop) = (plain_at, plain_at + part.size);
        if stop > offset && start < end {
            let (from, to) = (offset.max(start) - start, end.min(stop) - start);
            match part.key {
                None => out.push(Piece {
                    part: i,
                    segment: 0,
                    stored: (stored_at + from, to - from),
                    keep: (0, (to - from) as usize),
                }),
                Some(_) => {
                    let seg = SEGMENT as u64;
                    for s in from / seg..to.div_ceil(seg) {
                        let seg_start = s * seg;
                        let seg_len = seg.min(part.size - seg_start);
                        out.push(Piece {
                            part: i,
                            segment: s,
                            stored: (stored_at + s * (seg + TAG as u64), seg_len + TAG as u64),
                            keep: (
                                (from.max(seg_start) - seg_start) as usize,
                                (to.min(seg_start + seg_len) - seg_start) as usize,
                            ),
                        });
                    }
                }
            }
        }
        plain_at = stop;
        stored_at += part.stored_len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_open_only_at_their_place_and_only_unaltered() {
        let keys = MasterKeys::generate().unwrap();
        let (key, wrapped) = keys.new_data_key().unwrap();
        let plain: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let sealed = key.seal_all(&plain);
        assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64));
        assert_ne!(&sealed[..100], &plain[..100]);
        let again = keys.unwrap(&wrapped).unwrap();
        assert_eq!(again.open_all(&sealed).unwrap(), plain);
        // A flipped bit, or a segment opened at another index, fails.
        let mut bad = sealed.clone();
        bad[70_000] ^= 1;
        assert_eq!(again.open_all(&bad), Err(SealError::Tampered));
        let mut first = sealed[..SEGMENT + TAG].to_vec();
        assert_eq!(again.open(1, &mut first), Err(SealError::Tampered));
        // Another object's key does not open it.
        let (other, _) = keys.new_data_key().unwrap();
        assert_eq!(other.open_all(&sealed), Err(SealError::Tampered));
    }

    #[test]
    fn rotation_rewraps_data_keys_and_keeps_old_ones_readable() {
        let mut keys = MasterKeys::generate().unwrap();
        let (key, wrapped) = keys.new_data_key().unwrap();
        let sealed = key.seal_all(b"backup");
        let old = keys.active().to_owned();
        let new = keys.rotate().unwrap();
        assert_ne!(old, new);
        let reread = MasterKeys::from_json(keys.to_json().expose().as_bytes()).unwrap();
        assert_eq!(reread.active(), new);
        let rewrapped = reread.rewrap(&wrapped).unwrap().unwrap();
        assert_eq!(rewrapped.master, new);
        assert_eq!(reread.rewrap(&rewrapped).unwrap(), None);
        for w in [&wrapped, &rewrapped] {
            assert_eq!(
                reread.unwrap(w).unwrap().open_all(&sealed).unwrap(),
                b"backup"
            );
        }
        // Without the old key, its wrappings are refused by name; altered ones fail.
        let fresh = MasterKeys::generate().unwrap();
        assert!(matches!(
            fresh.unwrap(&wrapped),
            Err(SealError::UnknownMasterKey(_))
        ));
        let mut altered = rewrapped.clone();
        let flipped = if altered.sealed.as_bytes()[40] == b'0' {
            "1"
        } else {
            "0"
        };
        altered.sealed.replace_range(40..41, flipped);
        assert!(matches!(reread.unwrap(&altered), Err(SealError::Tampered)));
        // Debug shows ids, never key material.
        let shown = format!("{reread:?} {wrapped:?}");
        assert!(!shown.contains(&wrapped.sealed), "{shown}");
        assert!(!shown.contains(&keys.to_json().expose()[40..60]), "{shown}");
    }

    #[test]
    fn key_files_are_checked() {
        for bad in [
            &b"{}"[..],
            br#"{"active":"a","keys":{}}"#,
            br#"{"active":"a","keys":{"a":"00"}}"#,
        ] {
            assert!(MasterKeys::from_json(bad).is_err());
        }
    }

    #[test]
    fn a_range_touches_only_its_segments_across_parts() {
        let key = || {
            Some(WrappedKey {
                master: "m".into(),
                sealed: String::new(),
            })
        };
        let seg = SEGMENT as u64;
        let parts = [
            SealedPart {
                size: 2 * seg + 10,
                key: key(),
            },
            SealedPart {
                size: 100,
                key: None,
            },
            SealedPart {
                size: seg,
                key: key(),
            },
        ];
        // The last 5 bytes of part 0's third segment, all of part 1, the first byte of part 2.
        let p = pieces(&parts, 2 * seg + 5, 5 + 100 + 1);
        let t = TAG as u64;
        assert_eq!(
            p,
            [
                Piece {
                    part: 0,
                    segment: 2,
                    stored: (2 * (seg + t), 10 + t),
                    keep: (5, 10),
                },
                Piece {
                    part: 1,
                    segment: 0,
                    stored: (sealed_len(2 * seg + 10), 100),
                    keep: (0, 100),
                },
                Piece {
                    part: 2,
                    segment: 0,
                    stored: (sealed_len(2 * seg + 10) + 100, seg + t),
                    keep: (0, 1),
                },
            ]
        );
        assert!(pieces(&parts, 0, 0).is_empty());
        // Everything: every segment once.
        assert_eq!(pieces(&parts, 0, 3 * seg + 110).len(), 3 + 1 + 1);
    }
}
