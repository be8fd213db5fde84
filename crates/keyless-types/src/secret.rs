//! `Secret`: text that must never reach a log (`Debug` and `Display` redact it) nor leak
//! through the time a comparison takes; and the rule for files that hold secrets: readable by
//! their owner alone (Garage's `secrets.rs`), or by the pod's own group in a kubelet's Secret
//! volume. The file system itself is read by the crates that open such files.

use subtle::ConstantTimeEq as _;

/// Whether `a` and `b` are equal, in a time that depends on their lengths alone, not on where
/// they first differ (for signatures, keys and tokens a caller supplies).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A secret (a secret access key, a server key). Read it with [`Secret::expose`]; two secrets
/// are compared in constant time.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing and verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The permission bits that let the file's group or others at it.
pub const SHARED_MODE_BITS: u32 = 0o077;

/// A file that holds a secret but that others may read, or that cannot be looked at.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Its permissions could not be read.
    #[error("cannot read `{file}`")]
    Unreadable {
        /// The file, as displayed.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its group or others have permissions on it.
    #[error("`{file}` is readable by other users (mode {mode:o}); run `chmod 600` on it")]
    OpenToOthers {
        /// The file, as displayed.
        file: String,
        /// Its permission bits (`0o644`).
        mode: u32,
    },
}

/// Where a secret file lives, for the rule on its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFilePlace {
    /// Any file system: only its owner may have permissions on it.
    Plain,
    /// A kubelet's Secret (or projected) volume, seen by the one pod it is mounted in: the
    /// kubelet gives the files to the pod's `fsGroup` and makes them group-readable (`0440`), so
    /// that a non-root container can read what root owns. Group read is allowed there; group
    /// write and anything for others are not.
    KubeletVolume,
}

/// Checks the mode of `file` (`st_mode`, as `PermissionsExt::mode` gives it) before a secret
/// is read from it: refused when the group or others have any permission, but for the group's
/// read in a kubelet's volume.
pub fn check_secret_file_mode(
    file: &str,
    mode: u32,
    place: SecretFilePlace,
) -> Result<(), SecretFileError> {
    let allowed = match place {
        SecretFilePlace::Plain => 0,
        SecretFilePlace::KubeletVolume => 0o040,
    };
    if mode & SHARED_MODE_BITS & !allowed == 0 {
        return Ok(());
    }
    Err(SecretFileError::OpenToOthers {
        file: file.to_owned(),
        mode: mode & 0o777,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_in_constant_time_but_equal_as_text() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
        assert_eq!(Secret::new("s"), Secret::new("s"));
        assert_ne!(Secret::new("s"), Secret::new("t"));
    }

    #[test]
    fn secret_files_are_for_their_owner_alone() {
        use SecretFilePlace::{KubeletVolume, Plain};
        for ok in [0o100600, 0o400, 0o700, 0o600] {
            assert!(check_secret_file_mode("f", ok, Plain).is_ok(), "{ok:o}");
            assert!(
                check_secret_file_mode("f", ok, KubeletVolume).is_ok(),
                "{ok:o}"
            );
        }
        for open in [0o100644, 0o640, 0o604, 0o610, 0o601, 0o777] {
            assert!(
                check_secret_file_mode("f", open, Plain).is_err(),
                "{open:o}"
            );
        }
        // The kubelet's fsGroup read (0440, or 0640 for a 0600 defaultMode) and nothing more.
        for ok in [0o440, 0o640, 0o100440] {
            assert!(
                check_secret_file_mode("f", ok, KubeletVolume).is_ok(),
                "{ok:o}"
            );
        }
        for open in [0o444, 0o644, 0o660, 0o604, 0o650] {
            assert!(
                check_secret_file_mode("f", open, KubeletVolume).is_err(),
                "{open:o}"
            );
        }
        assert_eq!(
            check_secret_file_mode("/d/key", 0o100644, Plain)
                .unwrap_err()
                .to_string(),
            "`/d/key` is readable by other users (mode 644); run `chmod 600` on it"
        );
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("wJalrXUtnFEMI/K7MDENG");
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
        assert_eq!(s.expose(), "wJalrXUtnFEMI/K7MDENG");
    }
}
