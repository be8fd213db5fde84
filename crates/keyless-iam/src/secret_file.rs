//! Files that hold secrets (the embedded IAM store here; the root key, the session key and the
//! OIDC signing keys in the binary) are refused when their group or others may read them
//! (Garage's `secrets.rs`). The rule itself is [`keyless_types::check_secret_file_mode`]; this
//! is the one place that reads a file's mode for it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use keyless_types::{SecretFileError, check_secret_file_mode};

/// Checks that `file` is readable by its owner alone, before a secret is read from it.
pub fn check_secret_file(file: &Path) -> Result<(), SecretFileError> {
    let shown = || file.display().to_string();
    let metadata = std::fs::metadata(file).map_err(|source| SecretFileError::Unreadable {
        file: shown(),
        source,
    })?;
    check_secret_file_mode(&shown(), metadata.permissions().mode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_only_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_file(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_secret_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("is readable by other users (mode 640); run `chmod 600` on it"),
            "{err}"
        );
        let missing = check_secret_file(&dir.path().join("absent")).unwrap_err();
        assert!(
            matches!(missing, SecretFileError::Unreadable { .. }),
            "{missing}"
        );
    }
}
