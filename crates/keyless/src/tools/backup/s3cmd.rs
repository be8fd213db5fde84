//! s3cmd's configuration file (`~/.s3cfg`, GitLab's `s3cmd.config` secret): the settings a
//! backup needs, so that `keyless backup` can stand in for s3cmd in GitLab's backup job.
//! <https://s3tools.org/kb/item14.htm>

use std::collections::BTreeMap;

use crate::tools::client::ExplicitKeys;

/// The `[default]` section of an s3cmd configuration.
#[derive(Debug, Default)]
pub(crate) struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    /// Parses the INI text; only `[default]` counts, as for s3cmd without `--profile`.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut section: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_owned());
                continue;
            }
            let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                anyhow::bail!(
                    "line {}: `{line}` is neither `[section]` nor `key = value`",
                    n + 1
                );
            };
            anyhow::ensure!(
                section.is_some(),
                "line {}: `{}` comes before any `[default]` section",
                n + 1,
                key.trim()
            );
            if section.as_deref() == Some("default") {
                values.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        anyhow::ensure!(
            section.is_some(),
            "there is no `[default]` section, so s3cmd would read nothing from it"
        );
        Ok(Self { values })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `use_https` and `host_base`, unless `host_base` is AWS's own.
    pub(crate) fn endpoint(&self) -> Option<String> {
        let host = self.get("host_base")?;
        if host == "s3.amazonaws.com" {
            return None;
        }
        if host.starts_with("http://") || host.starts_with("https://") {
            return Some(host.to_owned());
        }
        let https = self
            .get("use_https")
            .is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on"));
        Some(format!("{}://{host}", if https { "https" } else { "http" }))
    }

    /// `bucket_location`, with s3cmd's legacy `US` and `EU` mapped to their regions.
    pub(crate) fn region(&self) -> Option<String> {
        match self.get("bucket_location")? {
            "US" => Some("us-east-1".to_owned()),
            "EU" => Some("eu-west-1".to_owned()),
            region => Some(region.to_owned()),
        }
    }

    /// `access_key` and `secret_key` (and `access_token`), when both keys are set.
    pub(crate) fn keys(&self, origin: &str) -> Option<ExplicitKeys> {
        Some(ExplicitKeys {
            access_key_id: self.get("access_key")?.to_owned(),
            secret_access_key: keyless_types::Secret::new(self.get("secret_key")?),
            session_token: self.get("access_token").map(str::to_owned),
            origin: origin.to_owned(),
        })
    }
}

/// Reads an s3cmd configuration into `args` (its endpoint and region where `args` has none) and
/// returns its keys, which win over every other credential source, as in s3cmd.
pub(crate) fn apply(
    path: &std::path::Path,
    args: &mut crate::tools::client::ClientArgs,
) -> anyhow::Result<Option<ExplicitKeys>> {
    use anyhow::Context as _;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the s3cmd configuration {shown}"))?;
    let config =
        Config::parse(&text).with_context(|| format!("in the s3cmd configuration {shown}"))?;
    if args.endpoint.is_none() {
        args.endpoint = config.endpoint();
    }
    if args.region.is_none() {
        args.region = config.region();
    }
    Ok(config.keys(&shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_backup_config_without_keys_gives_region_only() {
        let config = Config::parse("[default]\nbucket_location = us-east-1\n").unwrap();
        assert_eq!(config.region().as_deref(), Some("us-east-1"));
        assert_eq!(config.endpoint(), None);
        assert!(config.keys("s3cmd.config").is_none());
    }

    #[test]
    fn endpoint_keys_and_legacy_locations() {
        let text = "# GitLab's example\n[default]\naccess_key = AKIAEXAMPLE\nsecret_key = s3cr3t\n\
                    host_base = minio.example.com:9000\nhost_bucket = minio.example.com:9000\n\
                    use_https = False\nbucket_location = US\n[other]\naccess_key = ignored\n";
        let config = Config::parse(text).unwrap();
        assert_eq!(
            config.endpoint().as_deref(),
            Some("http://minio.example.com:9000")
        );
        assert_eq!(config.region().as_deref(), Some("us-east-1"));
        let keys = config.keys("s3cmd.config").unwrap();
        assert_eq!(keys.access_key_id, "AKIAEXAMPLE");
        assert_eq!(keys.secret_access_key.expose(), "s3cr3t");
        let https = Config::parse("[default]\nhost_base = s3.example.com\n").unwrap();
        assert_eq!(https.endpoint().as_deref(), Some("https://s3.example.com"));
        let aws = Config::parse("[default]\nhost_base = s3.amazonaws.com\n").unwrap();
        assert_eq!(aws.endpoint(), None);
    }

    #[test]
    fn malformed_files_say_where() {
        let err = Config::parse("[default]\nthis is not a setting\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(Config::parse("access_key = x\n").is_err());
        assert!(Config::parse("").is_err());
    }
}
