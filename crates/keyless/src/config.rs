//! The `keyless serve` configuration file (TOML): IAM users, customer managed policies and
//! buckets to create at start. Read once and validated into the running state; any mistake
//! refuses to start, naming the field.
//!
//! ```toml
//! [[policies]]
//! name = "registry-rw"
//! file = "policies/registry-rw.json"
//!
//! [[users]]
//! name = "gitlab-registry"
//! access_key_id = "AKIAREGISTRY00000001"
//! secret_access_key_file = "secrets/registry"   # mode 0600; or secret_access_key = "..."
//! policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]
//!
//! [[buckets]]
//! name = "gitlab-registry"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use keyless_iam::{PolicySpec, UserSpec};
use keyless_types::Secret;
use serde::Deserialize;

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Customer managed policies, attachable as `arn:aws:iam::ACCOUNT:policy/NAME`.
    #[serde(default)]
    pub(crate) policies: Vec<PolicyConfig>,
    /// IAM users with their keys and policies.
    #[serde(default)]
    pub(crate) users: Vec<UserConfig>,
    /// Buckets created at start when absent.
    #[serde(default)]
    pub(crate) buckets: Vec<BucketConfig>,
}

/// A policy document, inline or in a file (relative to the configuration file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    /// The JSON text.
    pub(crate) document: Option<String>,
    /// A file holding the JSON text.
    pub(crate) file: Option<PathBuf>,
}

/// A customer managed policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyConfig {
    /// The policy's name.
    pub(crate) name: String,
    /// Its document.
    #[serde(flatten)]
    pub(crate) document: Document,
}

/// An inline policy of a user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InlinePolicy {
    /// The policy's name.
    pub(crate) name: String,
    /// Its document.
    #[serde(flatten)]
    pub(crate) document: Document,
}

/// An IAM user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserConfig {
    /// The user's name.
    pub(crate) name: String,
    /// The user's path, `/` by default.
    pub(crate) path: Option<String>,
    /// The access key id of the user's key pair, if it has one.
    pub(crate) access_key_id: Option<String>,
    /// The secret access key (prefer `secret_access_key_file`).
    pub(crate) secret_access_key: Option<String>,
    /// A file (mode 0600) holding the secret access key.
    pub(crate) secret_access_key_file: Option<PathBuf>,
    /// Managed policies attached to the user, by ARN (AWS managed ones included).
    #[serde(default)]
    pub(crate) policy_arns: Vec<String>,
    /// Inline policies.
    #[serde(default)]
    pub(crate) policies: Vec<InlinePolicy>,
}

/// A bucket to create at start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketConfig {
    /// The bucket's name.
    pub(crate) name: String,
    /// Its bucket policy, set at start when given.
    pub(crate) policy: Option<Document>,
}

/// The configuration, validated: what the server is built from.
pub(crate) struct Loaded {
    pub(crate) policies: Vec<PolicySpec>,
    pub(crate) users: Vec<UserSpec>,
    pub(crate) buckets: Vec<(String, Option<String>)>,
}

impl Config {
    /// Reads and parses the file.
    pub(crate) fn read(path: &Path) -> anyhow::Result<(Self, PathBuf)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("`{}` is not a valid configuration", path.display()))?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok((config, base))
    }

    /// Resolves files and secrets, relative to `base`.
    pub(crate) fn load(self, base: &Path) -> anyhow::Result<Loaded> {
        let mut policies = Vec::new();
        for (i, p) in self.policies.into_iter().enumerate() {
            let document = p.document.text(base, &format!("policies[{i}]"))?;
            policies.push(PolicySpec {
                name: p.name,
                document,
            });
        }
        let mut users = Vec::new();
        for (i, u) in self.users.into_iter().enumerate() {
            let at = format!("users[{i}]");
            let secret = match (u.secret_access_key, u.secret_access_key_file) {
                (Some(_), Some(_)) => {
                    bail!("{at}: give `secret_access_key` or `secret_access_key_file`, not both")
                }
                (Some(s), None) => Some(Secret::new(s)),
                (None, Some(file)) => Some(read_secret(&base.join(file), &at)?),
                (None, None) => None,
            };
            let access_keys = match (u.access_key_id, secret) {
                (Some(id), Some(secret)) => vec![(id, secret)],
                (None, None) => Vec::new(),
                _ => bail!("{at}: `access_key_id` and a secret go together"),
            };
            let mut inline = Vec::new();
            for (j, p) in u.policies.into_iter().enumerate() {
                inline.push((
                    p.name,
                    p.document.text(base, &format!("{at}.policies[{j}]"))?,
                ));
            }
            users.push(UserSpec {
                name: u.name,
                path: u.path,
                access_keys,
                inline_policies: inline,
                policy_arns: u.policy_arns,
            });
        }
        let mut buckets = Vec::new();
        for (i, b) in self.buckets.into_iter().enumerate() {
            if !valid_bucket_name(&b.name) {
                bail!(
                    "buckets[{i}].name: `{}` is not a valid bucket name (3 to 63 of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit)",
                    b.name
                );
            }
            let policy = b
                .policy
                .map(|d| d.text(base, &format!("buckets[{i}].policy")))
                .transpose()?;
            buckets.push((b.name, policy));
        }
        Ok(Loaded {
            policies,
            users,
            buckets,
        })
    }
}

impl Document {
    fn text(self, base: &Path, at: &str) -> anyhow::Result<String> {
        match (self.document, self.file) {
            (Some(text), None) => Ok(text),
            (None, Some(file)) => {
                let path = base.join(file);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("{at}.file: cannot read `{}`", path.display()))
            }
            _ => bail!("{at}: give exactly one of `document` and `file`"),
        }
    }
}

/// S3's bucket naming rules for new buckets.
fn valid_bucket_name(name: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.bytes().all(ok_char)
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
        && !name.contains("..")
}

/// Reads a secret from a file that only its owner may read.
fn read_secret(path: &Path, at: &str) -> anyhow::Result<Secret> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| {
            format!(
                "{at}.secret_access_key_file: cannot read `{}`",
                path.display()
            )
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{at}.secret_access_key_file: `{}` is readable by other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path)?;
    Ok(Secret::new(text.trim()))
}
