//! The account root user's key pair: from the environment, or from the data folder's AWS
//! shared credentials file, created on first start readable by its owner alone.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use keyless_iam::{RootKey, ids};
use keyless_types::Secret;
use keyless_types::shared_credentials::{SharedFile, profile_keys};

pub(crate) const CREDENTIALS_FILE: &str = "root-credentials";

/// Whether the environment gives the root key pair (then no file holds it).
pub(crate) fn in_environment() -> bool {
    #[allow(clippy::disallowed_methods)] // the binary reads its configuration
    std::env::var_os("KEYLESS_ROOT_ACCESS_KEY_ID").is_some()
}

/// The text of the credentials file of a new root key pair.
pub(crate) fn new_credentials() -> anyhow::Result<Secret> {
    let (id, secret) = (ids::access_key_id()?, ids::secret_access_key()?);
    Ok(Secret::new(shared_credentials(
        "Keyless root user of this server",
        &id,
        &secret,
    )))
}

/// The root key pair: from `KEYLESS_ROOT_ACCESS_KEY_ID` and `KEYLESS_ROOT_SECRET_ACCESS_KEY`,
/// else from the data folder's credentials file, created on first start with mode 0600.
/// Returns the file it lives in, if any.
pub fn root_key(data_dir: &Path) -> anyhow::Result<(RootKey, Option<PathBuf>)> {
    #[allow(clippy::disallowed_methods)] // the binary reads its configuration
    let (id, secret) = (
        std::env::var("KEYLESS_ROOT_ACCESS_KEY_ID").ok(),
        std::env::var("KEYLESS_ROOT_SECRET_ACCESS_KEY").ok(),
    );
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok((
                RootKey {
                    access_key_id,
                    secret: Secret::new(secret_access_key),
                },
                None,
            ));
        }
        (None, None) => {}
        _ => bail!(
            "set both KEYLESS_ROOT_ACCESS_KEY_ID and KEYLESS_ROOT_SECRET_ACCESS_KEY, or neither"
        ),
    }
    let file = data_dir.join(CREDENTIALS_FILE);
    if file.exists() {
        return Ok((read_credentials(&file)?, Some(file)));
    }
    let key = RootKey {
        access_key_id: ids::access_key_id()?,
        secret: ids::secret_access_key()?,
    };
    write_credentials(&file, &key)?;
    Ok((key, Some(file)))
}

/// Writes an AWS shared credentials file that awscli, boto3 and the SDKs read as is.
fn write_credentials(file: &Path, key: &RootKey) -> anyhow::Result<()> {
    write_shared_credentials(
        file,
        "Keyless root user of this server",
        &key.access_key_id,
        &key.secret,
    )
}

fn read_credentials(file: &Path) -> anyhow::Result<RootKey> {
    let (access_key_id, secret) = read_shared_credentials(file, "default")?;
    Ok(RootKey {
        access_key_id,
        secret,
    })
}

/// Creates (mode 0600) an AWS shared credentials file holding one key pair as `[default]`.
pub fn write_shared_credentials(
    file: &Path,
    whose: &str,
    access_key_id: &str,
    secret: &Secret,
) -> anyhow::Result<()> {
    crate::private::create(
        file,
        shared_credentials(whose, access_key_id, secret).as_bytes(),
    )
}

/// The text of an AWS shared credentials file holding one key pair as `[default]`.
pub fn shared_credentials(whose: &str, access_key_id: &str, secret: &Secret) -> String {
    format!(
        "# {whose}. Keep it secret.\n[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {}\n",
        secret.expose()
    )
}

/// The key pair of `profile` in an AWS shared credentials file (which must be readable by its
/// owner alone).
pub fn read_shared_credentials(file: &Path, profile: &str) -> anyhow::Result<(String, Secret)> {
    let text = String::from_utf8(crate::private::read(file)?)
        .with_context(|| format!("`{}` is not UTF-8", file.display()))?;
    let keys = profile_keys(&text, profile, SharedFile::Credentials);
    let missing = |name: &str| format!("`{}` has no `{name}` in `[{profile}]`", file.display());
    Ok((
        keys.access_key_id
            .with_context(|| missing("aws_access_key_id"))?,
        keys.secret_access_key
            .with_context(|| missing("aws_secret_access_key"))?,
    ))
}
