//! The three storage secrets of the GitLab chart, told apart by content and read the way their
//! consumers read them:
//!
//! - `registry-storage.yaml`: docker distribution's storage config, an `s3:` block with
//!   `accesskey`, `secretkey`, `region`, `regionendpoint`
//!   (<https://distribution.github.io/distribution/storage-drivers/s3/>);
//! - `object-storage.yaml`: the Fog connection of GitLab Rails, `provider: AWS` with
//!   `use_iam_profile`, `aws_access_key_id`, `aws_secret_access_key`, `region`, `endpoint`
//!   (<https://docs.gitlab.com/ee/administration/object_storage.html>);
//! - `s3cmd.config`: s3cmd's INI file, `[default]` with `access_key`, `secret_key`,
//!   `bucket_location`, `host_base` (<https://s3tools.org/kb/item14.htm>).

use crate::GitlabError;
use crate::yaml::{self, Node};

/// A storage secret as given: a name for messages and its text.
#[derive(Debug, Clone, Copy)]
pub struct SecretFile<'a> {
    /// The file's name, used only in messages.
    pub name: &'a str,
    /// The file's contents.
    pub text: &'a str,
}

/// The registry's `s3:` storage block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegistryStorage {
    pub(crate) file: String,
    /// The key fields given a value (`accesskey`, `secretkey`).
    pub(crate) keys: Vec<&'static str>,
    pub(crate) region: Option<String>,
}

/// Fog's `use_iam_profile`, with Ruby's truthiness: anything but nil and false is true.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IamProfile {
    /// Not given.
    Absent,
    /// `false` (or a YAML 1.1 spelling of it).
    False,
    /// `true` (or a YAML 1.1 spelling of it).
    True,
    /// Something Ruby treats as true although it is no boolean (`"false"` is true).
    Truthy(String),
}

/// The Fog connection of GitLab Rails.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FogConnection {
    pub(crate) file: String,
    pub(crate) provider: String,
    pub(crate) use_iam_profile: IamProfile,
    /// The key fields given a value (`aws_access_key_id`, `aws_secret_access_key`).
    pub(crate) keys: Vec<&'static str>,
    pub(crate) region: Option<String>,
}

/// s3cmd's configuration, its `[default]` section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct S3cmdConfig {
    pub(crate) file: String,
    /// The key fields given a value (`access_key`, `secret_key`).
    pub(crate) keys: Vec<&'static str>,
    /// `bucket_location` as written (`US`, `EU` or a region).
    pub(crate) bucket_location: Option<String>,
}

/// The secrets given, at most one of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Secrets {
    pub(crate) registry: Option<RegistryStorage>,
    pub(crate) fog: Option<FogConnection>,
    pub(crate) s3cmd: Option<S3cmdConfig>,
}

impl Secrets {
    /// Whether no secret was given at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.registry.is_none() && self.fog.is_none() && self.s3cmd.is_none()
    }
}

/// Sorts the files by what they hold; two of a kind, or a file of no known kind, is an error.
pub(crate) fn classify(files: &[SecretFile<'_>]) -> Result<Secrets, GitlabError> {
    let mut secrets = Secrets::default();
    for file in files {
        let name = file.name;
        if is_ini(file.text) {
            let config = s3cmd(name, file.text);
            put(&mut secrets.s3cmd, config, "s3cmd config", |c| &c.file)?;
            continue;
        }
        let node = yaml::parse(name, file.text)?;
        if let Some(s3) = node.get("s3") {
            put(
                &mut secrets.registry,
                registry(name, s3),
                "registry storage",
                |r| &r.file,
            )?;
        } else if node.get("provider").is_some() {
            put(&mut secrets.fog, fog(name, &node), "Fog connection", |c| {
                &c.file
            })?;
        } else {
            return Err(GitlabError::UnknownSecret {
                file: name.to_owned(),
            });
        }
    }
    Ok(secrets)
}

fn put<T>(
    slot: &mut Option<T>,
    value: T,
    kind: &'static str,
    file: impl Fn(&T) -> &String,
) -> Result<(), GitlabError> {
    if let Some(first) = slot {
        return Err(GitlabError::DuplicateSecret {
            kind,
            first: file(first).clone(),
            second: file(&value).clone(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// s3cmd's INI: a `[default]` section header on a line of its own.
fn is_ini(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[default]")
}

/// The fields of `names` that hold a non-empty value.
fn given(node: &Node, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|n| text(node.get(n)).is_some())
        .collect()
}

/// A scalar's text, `None` when absent, null or blank.
fn text(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::scalar_text)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn registry(file: &str, s3: &Node) -> RegistryStorage {
    RegistryStorage {
        file: file.to_owned(),
        keys: given(s3, &["accesskey", "secretkey"]),
        region: text(s3.get("region")),
    }
}

fn fog(file: &str, node: &Node) -> FogConnection {
    let use_iam_profile = match node.get("use_iam_profile") {
        None | Some(Node::Null) => IamProfile::Absent,
        Some(Node::Bool(false)) => IamProfile::False,
        Some(Node::Bool(true)) => IamProfile::True,
        Some(other) => IamProfile::Truthy(other.describe()),
    };
    FogConnection {
        file: file.to_owned(),
        provider: text(node.get("provider")).unwrap_or_default(),
        use_iam_profile,
        keys: given(node, &["aws_access_key_id", "aws_secret_access_key"]),
        region: text(node.get("region")),
    }
}

fn s3cmd(file: &str, text: &str) -> S3cmdConfig {
    let mut section = String::new();
    let mut keys = Vec::new();
    let mut bucket_location = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.trim().clone_into(&mut section);
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if section != "default" || value.is_empty() {
            continue;
        }
        match key {
            "access_key" => keys.push("access_key"),
            "secret_key" => keys.push("secret_key"),
            "bucket_location" => bucket_location = Some(value.to_owned()),
            _ => {}
        }
    }
    S3cmdConfig {
        file: file.to_owned(),
        keys,
        bucket_location,
    }
}

/// s3cmd's `bucket_location` as a region: `US` is us-east-1 and `EU` is eu-west-1, its two
/// legacy names.
pub(crate) fn s3cmd_region(bucket_location: &str) -> String {
    match bucket_location {
        "US" | "us" => "us-east-1".to_owned(),
        "EU" | "eu" => "eu-west-1".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&'static str, &'static str)]) -> Result<Secrets, GitlabError> {
        let files: Vec<SecretFile<'_>> = list
            .iter()
            .map(|(name, text)| SecretFile { name, text })
            .collect();
        classify(&files)
    }

    #[test]
    fn tells_the_secrets_apart_by_content_not_by_name() {
        let s = files(&[
            (
                "a",
                "provider: AWS\nuse_iam_profile: true\nregion: us-east-1\n",
            ),
            ("b", "[default]\naccess_key =\nbucket_location = EU\n"),
            (
                "c",
                "s3:\n  bucket: r\n  region: eu-west-1\n  accesskey: AKIA\n",
            ),
        ])
        .unwrap();
        let registry = s.registry.unwrap();
        assert_eq!(registry.file, "c");
        assert_eq!(registry.keys, vec!["accesskey"]);
        assert_eq!(registry.region.as_deref(), Some("eu-west-1"));
        let fog = s.fog.unwrap();
        assert_eq!(fog.use_iam_profile, IamProfile::True);
        assert!(fog.keys.is_empty());
        let s3cmd = s.s3cmd.unwrap();
        assert!(s3cmd.keys.is_empty(), "an empty access_key is no key");
        assert_eq!(s3cmd.bucket_location.as_deref(), Some("EU"));
        assert_eq!(s3cmd_region("EU"), "eu-west-1");
    }

    #[test]
    fn fog_truthiness_is_ruby_s() {
        let s = files(&[("o", "provider: AWS\nuse_iam_profile: \"false\"\n")]).unwrap();
        assert!(matches!(
            s.fog.unwrap().use_iam_profile,
            IamProfile::Truthy(_)
        ));
        let s = files(&[("o", "provider: AWS\nuse_iam_profile: no\n")]).unwrap();
        assert_eq!(s.fog.unwrap().use_iam_profile, IamProfile::False);
    }

    #[test]
    fn refuses_unknown_and_duplicate_secrets() {
        let e = files(&[("x", "gcs:\n  bucket: b\n")]).unwrap_err();
        assert!(matches!(e, GitlabError::UnknownSecret { .. }));
        let e = files(&[("x", "[default]\n"), ("y", "[default]\n")]).unwrap_err();
        assert!(matches!(e, GitlabError::DuplicateSecret { .. }));
    }

    #[test]
    fn s3cmd_keys_outside_default_do_not_count() {
        let s = files(&[(
            "s",
            "[default]\nbucket_location = US\n[other]\naccess_key = AKIA\n",
        )])
        .unwrap();
        assert!(s.s3cmd.unwrap().keys.is_empty());
    }
}
