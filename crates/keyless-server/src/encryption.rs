//! The master keys of encryption at rest: `encryption-keys.json` in the data folder (or
//! `--encryption-key-file`), mode 0600, created with one key on first start. `keyless
//! encryption rotate` adds a new active key and keeps the old ones, so that data keys they
//! wrapped still open; the next `keyless serve` re-wraps those with the new key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use keyless_s3::store::seal::MasterKeys;

/// The key file's name in the data folder.
pub const KEYS_FILE: &str = "encryption-keys.json";

fn path(data_dir: &Path, file: Option<&Path>) -> PathBuf {
    file.map_or_else(|| data_dir.join(KEYS_FILE), Path::to_path_buf)
}

/// The master keys, from `file` or the data folder's, created there on first use.
pub(crate) fn load(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<Arc<MasterKeys>> {
    let path = path(data_dir, file);
    if file.is_none() && !path.exists() {
        let keys = MasterKeys::generate()?;
        crate::private::create(&path, keys.to_json().expose().as_bytes())?;
        tracing::info!(file = %path.display(), key = keys.active(), "created the master key of encryption at rest");
        return Ok(Arc::new(keys));
    }
    let bytes = crate::private::read(&path)?;
    let keys = MasterKeys::from_json(&bytes).with_context(|| format!("`{}`", path.display()))?;
    Ok(Arc::new(keys))
}

/// `keyless encryption rotate`: a new active master key in the key file; the old ones stay.
/// Returns the new key's id.
pub fn rotate(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<String> {
    let path = path(data_dir, file);
    let bytes = crate::private::read(&path).with_context(|| {
        format!(
            "`{}`: start `keyless serve` once first, or name the key file",
            path.display()
        )
    })?;
    let mut keys =
        MasterKeys::from_json(&bytes).with_context(|| format!("`{}`", path.display()))?;
    let id = keys.rotate()?;
    crate::private::replace(&path, keys.to_json().expose().as_bytes())?;
    Ok(id)
}
