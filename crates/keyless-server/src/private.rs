//! Files that hold secrets (the root key pair, the session key, the OIDC signing keys): created
//! readable by their owner alone, replaced atomically, and refused when others can read them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;

/// The contents of a secret file, refused when group or others may read it.
pub(crate) fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    keyless_iam::check_secret_file(file)?;
    std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))
}

/// Creates a secret file with mode 0600; fails if it exists.
pub(crate) fn create(file: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create `{}`", file.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Replaces a secret file at once: readers see the old contents or the new, never a mix.
pub(crate) fn replace(file: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .with_context(|| format!("`{}` is not a file name", file.display()))?;
    let temporary = file.with_file_name(format!(".{}.new", name.to_string_lossy()));
    let _ = std::fs::remove_file(&temporary);
    create(&temporary, contents)?;
    std::fs::rename(&temporary, file)
        .with_context(|| format!("cannot replace `{}`", file.display()))?;
    Ok(())
}

/// A key in a private file: base64 of at least `min` bytes (what `head -c 32 /dev/urandom |
/// base64` writes).
pub(crate) fn read_key(file: &Path, min: usize) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use base64::Engine as _;
    let text = read(file)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&text).trim())
        .with_context(|| format!("`{}` is not base64", file.display()))?;
    anyhow::ensure!(
        key.len() >= min,
        "`{}` holds {} bytes; a key needs at least {min}",
        file.display(),
        key.len()
    );
    Ok(key)
}
