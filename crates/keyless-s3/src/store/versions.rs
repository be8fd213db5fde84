//! S3 versioning's rules, shared by both stores: the bucket states, version ids, and the
//! pagination of ListObjectVersions.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/Versioning.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html>
//!
//! A version id is 32 hex digits: the store's write sequence number (16) and 64 random bits
//! (16). The sequence orders a key's versions newest first and finds a version without an
//! index; the random half keeps ids from being guessed across keys. The null version (objects
//! written without versioning, or while it was suspended) has no id and answers as `null`.

use serde::{Deserialize, Serialize};

use super::{ObjectInfo, StoreError, random_id};

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: one version per key, the null version.
    #[default]
    Unversioned,
    /// Every write adds a version; a delete adds a delete marker.
    Enabled,
    /// Writes replace the null version; earlier versions stay.
    Suspended,
}

impl Versioning {
    /// Whether the bucket keeps versions (now or from before it was suspended).
    pub fn keeps_versions(self) -> bool {
        self != Self::Unversioned
    }
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The version deleted, or the delete marker made (`None`: the null version, or nothing).
    pub version_id: Option<String>,
    /// Whether it made (or deleted) a delete marker.
    pub delete_marker: bool,
}

/// A ListObjectVersions request.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionQuery<'a> {
    /// Only keys that start with this.
    pub prefix: &'a str,
    /// Roll keys up into common prefixes at the first delimiter after the prefix.
    pub delimiter: Option<&'a str>,
    /// Start at this key: after all its versions, or after `version_id_marker` among them.
    pub key_marker: Option<&'a str>,
    /// With `key_marker`, the version to start after (`null` for the null version).
    pub version_id_marker: Option<&'a str>,
    /// At most this many versions, delete markers and common prefixes together.
    pub max_keys: usize,
}

/// One version or delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version (for a delete marker: its key, version id and time; size 0, no ETag).
    pub info: ObjectInfo,
    /// Whether it is a delete marker.
    pub delete_marker: bool,
    /// Whether it is its key's latest version.
    pub is_latest: bool,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions and delete markers, by key, newest first.
    pub versions: Vec<VersionEntry>,
    /// The common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more remain.
    pub truncated: bool,
    /// Where the next page starts, when truncated.
    pub next_key_marker: Option<String>,
    /// With `next_key_marker`, the version the next page starts after.
    pub next_version_id_marker: Option<String>,
}

/// A new version id for the write numbered `seq`.
pub(crate) fn new_version_id(seq: u64) -> Result<String, StoreError> {
    let random = random_id()?;
    Ok(format!("{seq:016x}{}", &random[..16]))
}

/// The write sequence number in a version id Keyless made.
pub(crate) fn version_seq(version_id: &str) -> Option<u64> {
    if version_id.len() != 32 || !version_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&version_id[..16], 16).ok()
}

/// The version a request names: `None` for the null version, the id otherwise. An id of the
/// shape S3's have (up to 1,024 URL-safe characters, as Keyless's and AWS's are) is looked up, and one
/// Keyless did not make is simply not found (`NoSuchVersion`, as S3 answers for an id it
/// never gave); anything else is refused as S3 refuses it.
pub(crate) fn check_version_id(version_id: &str) -> Result<Option<&str>, StoreError> {
    let well_formed = |id: &str| {
        (1..=1024).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    match version_id {
        "null" => Ok(None),
        id if well_formed(id) => Ok(Some(id)),
        id => Err(StoreError::InvalidVersionId(id.to_owned())),
    }
}

/// Builds a page from the bucket's versions in order (by key, newest first, each with
/// `is_latest` set), starting at the query's markers. Entries before the markers or outside
/// the prefix are skipped, so callers may start the iteration anywhere at or before them.
pub(crate) fn paginate_versions<I>(entries: I, query: VersionQuery<'_>) -> VersionPage
where
    I: IntoIterator<Item = VersionEntry>,
{
    let mut page = VersionPage::default();
    if query.max_keys == 0 {
        return page;
    }
    // Within the marker's key, skip until the marker version has gone by.
    let mut passed_marker = false;
    let mut last: Option<(String, Option<String>)> = None;
    for entry in entries {
        let key = entry.info.key.as_str();
        let Some(rest) = key.strip_prefix(query.prefix) else {
            continue;
        };
        if let Some(marker) = query.key_marker {
            if key < marker {
                continue;
            }
            if key == marker && !passed_marker {
                // Without a version marker, every version of the marker's key has been seen.
                let id = entry.info.version_id.as_deref().unwrap_or("null");
                passed_marker = query.version_id_marker == Some(id);
                continue;
            }
        }
        let rolled = query.delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| format!("{}{}", query.prefix, &rest[..i + d.len()]))
        });
        let seen = |cp: &String| {
            page.common_prefixes.last() == Some(cp)
                || query.key_marker.is_some_and(|m| m >= cp.as_str())
        };
        if rolled.as_ref().is_some_and(seen) {
            continue;
        }
        if page.versions.len() + page.common_prefixes.len() == query.max_keys {
            page.truncated = true;
            if let Some((key, version)) = last {
                page.next_key_marker = Some(key);
                page.next_version_id_marker = version;
            }
            return page;
        }
        match rolled {
            Some(cp) => {
                last = Some((cp.clone(), None));
                page.common_prefixes.push(cp);
            }
            None => {
                let id = entry
                    .info
                    .version_id
                    .clone()
                    .unwrap_or_else(|| "null".into());
                last = Some((entry.info.key.clone(), Some(id)));
                page.versions.push(entry);
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, id: Option<&str>, is_latest: bool) -> VersionEntry {
        VersionEntry {
            info: ObjectInfo {
                key: key.into(),
                size: 0,
                etag: String::new(),
                last_modified_ms: 0,
                content_type: None,
                metadata: Default::default(),
                sealed: false,
                tags: Vec::new(),
                headers: Default::default(),
                parts: Vec::new(),
                version_id: id.map(str::to_owned),
                versioned: false,
                lock: Default::default(),
            },
            delete_marker: false,
            is_latest,
        }
    }

    fn all() -> Vec<VersionEntry> {
        vec![
            entry("a", Some(&"1".repeat(32)), true),
            entry("a", Some(&"0".repeat(32)), false),
            entry("a", None, false),
            entry("b/1", None, true),
            entry("b/2", None, true),
            entry("c", Some(&"2".repeat(32)), true),
        ]
    }

    fn ids(page: &VersionPage) -> Vec<String> {
        page.versions
            .iter()
            .map(|e| {
                format!(
                    "{}@{}",
                    e.info.key,
                    e.info.version_id.as_deref().map_or("null", |v| &v[..1])
                )
            })
            .collect()
    }

    #[test]
    fn pages_resume_inside_a_key_and_after_it() {
        let mut query = VersionQuery {
            max_keys: 2,
            ..Default::default()
        };
        let first = paginate_versions(all(), query);
        assert_eq!(ids(&first), ["a@1", "a@0"]);
        assert!(first.truncated);
        let (key, version) = (
            first.next_key_marker.clone().unwrap(),
            first.next_version_id_marker.clone().unwrap(),
        );
        query.key_marker = Some(&key);
        query.version_id_marker = Some(&version);
        let second = paginate_versions(all(), query);
        assert_eq!(ids(&second), ["a@null", "b/1@null"]);
        let (key, version) = (
            second.next_key_marker.clone().unwrap(),
            second.next_version_id_marker.clone().unwrap(),
        );
        assert_eq!(version, "null");
        query.key_marker = Some(&key);
        query.version_id_marker = Some(&version);
        let third = paginate_versions(all(), query);
        assert_eq!(ids(&third), ["b/2@null", "c@2"]);
        assert!(!third.truncated);
        // A key marker alone starts after every version of that key.
        let after_a = paginate_versions(
            all(),
            VersionQuery {
                key_marker: Some("a"),
                max_keys: 10,
                ..Default::default()
            },
        );
        assert_eq!(ids(&after_a), ["b/1@null", "b/2@null", "c@2"]);
    }

    #[test]
    fn delimiters_roll_keys_up_once() {
        let page = paginate_versions(
            all(),
            VersionQuery {
                delimiter: Some("/"),
                max_keys: 10,
                ..Default::default()
            },
        );
        assert_eq!(ids(&page), ["a@1", "a@0", "a@null", "c@2"]);
        assert_eq!(page.common_prefixes, ["b/"]);
        let zero = paginate_versions(all(), VersionQuery::default());
        assert_eq!(zero, VersionPage::default());
    }

    #[test]
    fn version_ids_carry_their_sequence_and_nothing_else_passes() {
        let id = new_version_id(42).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(version_seq(&id), Some(42));
        assert_eq!(check_version_id("null").unwrap(), None);
        assert_eq!(check_version_id(&id).unwrap(), Some(id.as_str()));
        // AWS's shape passes (and is then not found); other shapes do not.
        let aws = "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd";
        assert_eq!(check_version_id(aws).unwrap(), Some(aws));
        assert_eq!(version_seq(aws), None);
        for bad in [
            "",
            "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
            &"g".repeat(1025),
            "a/b",
            "a b",
        ] {
            assert!(matches!(
                check_version_id(bad),
                Err(StoreError::InvalidVersionId(_))
            ));
        }
    }
}
