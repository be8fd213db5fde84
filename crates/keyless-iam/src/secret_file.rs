//! Files that hold secrets (the embedded IAM store here; the root key, the session key and the
//! OIDC signing keys in the binary) are refused when their group or others may read them
//! (Garage's `secrets.rs`). The rule itself is [`keyless_types::check_secret_file_mode`]; this
//! is the one place that reads a file's mode for it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use keyless_types::{SecretFileError, SecretFilePlace, check_secret_file_mode};

/// Checks that `file` is readable by its owner alone (or, in a kubelet's Secret volume, by the
/// pod's group), before a secret is read from it.
pub fn check_secret_file(file: &Path) -> Result<(), SecretFileError> {
    let shown = || file.display().to_string();
    let metadata = std::fs::metadata(file).map_err(|source| SecretFileError::Unreadable {
        file: shown(),
        source,
    })?;
    check_secret_file_mode(&shown(), metadata.permissions().mode(), place(file))
}

/// A kubelet writes a Secret, ConfigMap or projected volume atomically: each file is a symlink
/// `NAME -> ..data/NAME`, and `..data` a symlink to the folder of the current version.
fn place(file: &Path) -> SecretFilePlace {
    let through_data = std::fs::read_link(file).is_ok_and(|target| target.starts_with("..data"));
    let data_is_link = file
        .parent()
        .and_then(|dir| std::fs::symlink_metadata(dir.join("..data")).ok())
        .is_some_and(|m| m.file_type().is_symlink());
    if through_data && data_is_link {
        SecretFilePlace::KubeletVolume
    } else {
        SecretFilePlace::Plain
    }
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

    /// As a kubelet lays out a Secret volume with `defaultMode: 0400` and an `fsGroup`.
    #[test]
    fn a_kubelet_secret_volume_may_give_the_pod_group_read() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let version = dir.path().join("..2026_12_07_01_00_00.1");
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("session-key"), "s").unwrap();
        std::fs::set_permissions(
            version.join("session-key"),
            std::fs::Permissions::from_mode(0o440),
        )
        .unwrap();
        symlink("..2026_12_07_01_00_00.1", dir.path().join("..data")).unwrap();
        let file = dir.path().join("session-key");
        symlink("..data/session-key", &file).unwrap();
        check_secret_file(&file).unwrap();
        // Others still may not read it, even there.
        std::fs::set_permissions(
            version.join("session-key"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        assert!(check_secret_file(&file).is_err());
        // The same mode outside such a volume is refused.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "s").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(check_secret_file(&plain).is_err());
    }
}
