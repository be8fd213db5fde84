//! The `keyless serve` configuration file (TOML): IAM users, customer managed policies, roles,
//! OpenID Connect providers and buckets to create at start. Read once and validated into the
//! running state; any mistake refuses to start, naming the field.
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
//! # or: credentials_file = "secrets/registry-credentials" (an AWS shared credentials file)
//! policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]
//!
//! [[oidc_providers]]
//! url = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"   # client_ids = ["sts.amazonaws.com"]
//!
//! [[roles]]
//! name = "gitlab-registry"
//! assume_role_policy = { file = "policies/registry-trust.json" }
//! policy_arns = ["arn:aws:iam::000000000000:policy/registry-rw"]
//!
//! [[buckets]]
//! name = "gitlab-registry"
//!
//! [upstream]                      # gateway mode, as --upstream and the --upstream-* flags
//! url = "http://ceph-rgw:7480"
//! region = "us-east-1"
//! credentials_file = "secrets/upstream"
//!
//! [iam_store]                     # replicas, as --iam-store and the --iam-store-* flags
//! url = "postgres://keyless@db:5432/keyless"
//! password_file = "secrets/pg-password"
//! ```
//!
//! A flag given on the command line wins over its table's field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use keyless_iam::{OidcProviderSpec, PolicySpec, RoleSpec, UserSpec};
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
    /// IAM roles with their trust policies and policies.
    #[serde(default)]
    pub(crate) roles: Vec<RoleConfig>,
    /// OpenID Connect providers whose tokens may assume roles.
    #[serde(default)]
    pub(crate) oidc_providers: Vec<OidcProviderConfig>,
    /// Buckets created at start when absent.
    #[serde(default)]
    pub(crate) buckets: Vec<BucketConfig>,
    /// Gateway mode.
    pub(crate) upstream: Option<UpstreamTable>,
    /// IAM state in PostgreSQL.
    pub(crate) iam_store: Option<IamStoreTable>,
}

/// `[upstream]`: the `--upstream*` flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamTable {
    pub(crate) url: String,
    pub(crate) region: Option<String>,
    pub(crate) credentials_file: Option<PathBuf>,
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) bucket_prefix: Option<String>,
    /// As `--upstream-timeout`: `30s`, `2m`.
    pub(crate) timeout: Option<String>,
}

/// `[iam_store]`: the `--iam-store*` flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IamStoreTable {
    pub(crate) url: String,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) ca_bundle: Option<PathBuf>,
    /// As `--iam-store-check-interval`.
    pub(crate) check_interval: Option<String>,
}

impl UpstreamTable {
    /// Fills the flags left unset (or at their defaults) from the table; files are relative to
    /// the configuration file's folder `base`.
    pub(crate) fn apply(
        self,
        options: &mut crate::options::UpstreamOptions,
        base: &Path,
    ) -> anyhow::Result<()> {
        options.upstream.get_or_insert(self.url);
        if let Some(region) = self.region
            && options.upstream_region == crate::options::DEFAULT_UPSTREAM_REGION
        {
            options.upstream_region = region;
        }
        if options.upstream_credentials_file.is_none() {
            options.upstream_credentials_file = self.credentials_file.map(|f| base.join(f));
        }
        if options.upstream_ca_bundle.is_none() {
            options.upstream_ca_bundle = self.ca_bundle.map(|f| base.join(f));
        }
        if let Some(prefix) = self.bucket_prefix
            && options.upstream_bucket_prefix.is_empty()
        {
            options.upstream_bucket_prefix = prefix;
        }
        if let Some(timeout) = self.timeout
            && options.upstream_timeout == crate::options::DEFAULT_UPSTREAM_TIMEOUT
        {
            options.upstream_timeout = crate::options::parse_interval(&timeout)
                .map_err(|e| anyhow::anyhow!("upstream.timeout: {e}"))?;
        }
        Ok(())
    }
}

impl IamStoreTable {
    /// As [`UpstreamTable::apply`].
    pub(crate) fn apply(
        self,
        options: &mut crate::options::IamStoreOptions,
        base: &Path,
    ) -> anyhow::Result<()> {
        options.iam_store.get_or_insert(self.url);
        if options.iam_store_password_file.is_none() {
            options.iam_store_password_file = self.password_file.map(|f| base.join(f));
        }
        if options.iam_store_ca_bundle.is_none() {
            options.iam_store_ca_bundle = self.ca_bundle.map(|f| base.join(f));
        }
        if let Some(interval) = self.check_interval
            && options.iam_store_check_interval == crate::options::DEFAULT_CHECK_INTERVAL
        {
            options.iam_store_check_interval = crate::options::parse_check_interval(&interval)
                .map_err(|e| anyhow::anyhow!("iam_store.check_interval: {e}"))?;
        }
        Ok(())
    }
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
    /// An AWS shared credentials file (mode 0600) whose `[default]` profile holds the user's
    /// key pair, instead of `access_key_id` and a secret: the file the same user's client reads
    /// (`keyless agent --credentials-file`), from one Kubernetes Secret.
    pub(crate) credentials_file: Option<PathBuf>,
    /// Managed policies attached to the user, by ARN (AWS managed ones included).
    #[serde(default)]
    pub(crate) policy_arns: Vec<String>,
    /// Inline policies.
    #[serde(default)]
    pub(crate) policies: Vec<InlinePolicy>,
}

/// An IAM role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleConfig {
    /// The role's name.
    pub(crate) name: String,
    /// The role's path, `/` by default.
    pub(crate) path: Option<String>,
    /// The trust policy: who may assume the role (`{ document = "..." }` or `{ file = "..." }`).
    pub(crate) assume_role_policy: Document,
    /// Free text.
    pub(crate) description: Option<String>,
    /// The longest session, 3600 to 43200 seconds; 3600 for a new role when absent.
    pub(crate) max_session_duration: Option<u32>,
    /// Managed policies attached to the role, by ARN (AWS managed ones included).
    #[serde(default)]
    pub(crate) policy_arns: Vec<String>,
    /// Inline policies.
    #[serde(default)]
    pub(crate) policies: Vec<InlinePolicy>,
}

/// An OpenID Connect identity provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcProviderConfig {
    /// The issuer URL, as tokens name it in `iss`: `https://...`, or `http://` for a loopback
    /// host.
    pub(crate) url: String,
    /// The audiences its tokens may name; `["sts.amazonaws.com"]` by default.
    #[serde(default = "default_client_ids")]
    pub(crate) client_ids: Vec<String>,
    /// SHA-1 fingerprints of the issuer's certificates (optional, as on AWS).
    #[serde(default)]
    pub(crate) thumbprints: Vec<String>,
    /// A file holding the issuer's JSON Web Key Set, to verify tokens without fetching it
    /// (relative to the configuration file). Not IAM state: read by the token verifier.
    pub(crate) jwks_file: Option<PathBuf>,
    /// Certificate authorities (PEM) trusted, besides the platform's, when fetching the
    /// issuer's discovery document and keys: the cluster's CA for its own issuer.
    pub(crate) ca_bundle_file: Option<PathBuf>,
    /// A file holding a bearer token sent with those fetches (re-read each time): the pod's
    /// service-account token, which a Kubernetes API server asks of whoever reads its issuer.
    pub(crate) token_file: Option<PathBuf>,
}

fn default_client_ids() -> Vec<String> {
    vec!["sts.amazonaws.com".into()]
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
    pub(crate) roles: Vec<RoleSpec>,
    pub(crate) oidc_providers: Vec<OidcProviderSpec>,
    /// `(field, issuer URL, JWKS file)` of the providers that name one, the file resolved
    /// against the configuration file's folder; read by [`Loaded::jwks_files`].
    jwks_paths: Vec<(String, String, PathBuf)>,
    /// How the providers that name a CA bundle or a token file are fetched.
    pub(crate) provider_access: Vec<ProviderAccess>,
    pub(crate) buckets: Vec<(String, Option<String>)>,
    pub(crate) upstream: Option<UpstreamTable>,
    pub(crate) iam_store: Option<IamStoreTable>,
    /// The configuration file's folder, against which the tables' files resolve.
    pub(crate) base: PathBuf,
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
            let access_keys = match (u.access_key_id, secret, u.credentials_file) {
                (Some(id), Some(secret), None) => vec![(id, secret)],
                (None, None, Some(file)) => {
                    let (id, secret) =
                        crate::root::read_shared_credentials(&base.join(file), "default")
                            .with_context(|| format!("{at}.credentials_file"))?;
                    vec![(id, secret)]
                }
                (None, None, None) => Vec::new(),
                (_, _, Some(_)) => {
                    bail!("{at}: give `credentials_file` or `access_key_id` and a secret, not both")
                }
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
        let mut roles = Vec::new();
        for (i, r) in self.roles.into_iter().enumerate() {
            let at = format!("roles[{i}]");
            let assume_role_policy = r
                .assume_role_policy
                .text(base, &format!("{at}.assume_role_policy"))?;
            let mut inline = Vec::new();
            for (j, p) in r.policies.into_iter().enumerate() {
                inline.push((
                    p.name,
                    p.document.text(base, &format!("{at}.policies[{j}]"))?,
                ));
            }
            roles.push(RoleSpec {
                name: r.name,
                path: r.path,
                assume_role_policy,
                description: r.description,
                max_session_duration: r.max_session_duration,
                inline_policies: inline,
                policy_arns: r.policy_arns,
            });
        }
        let mut oidc_providers = Vec::new();
        let mut jwks_paths = Vec::new();
        let mut provider_access = Vec::new();
        for (i, p) in self.oidc_providers.into_iter().enumerate() {
            if p.jwks_file.is_some() && (p.ca_bundle_file.is_some() || p.token_file.is_some()) {
                bail!(
                    "oidc_providers[{i}]: a `jwks_file` is never fetched; give it, or `ca_bundle_file` and `token_file` to fetch the keys, not both"
                );
            }
            if let Some(file) = p.jwks_file {
                let at = format!("oidc_providers[{i}].jwks_file");
                jwks_paths.push((at, p.url.clone(), base.join(file)));
            }
            if p.ca_bundle_file.is_some() || p.token_file.is_some() {
                provider_access.push(ProviderAccess {
                    at: format!("oidc_providers[{i}]"),
                    url: p.url.clone(),
                    ca_bundle_file: p.ca_bundle_file.map(|f| base.join(f)),
                    token_file: p.token_file.map(|f| base.join(f)),
                });
            }
            oidc_providers.push(OidcProviderSpec {
                url: p.url,
                client_ids: p.client_ids,
                thumbprints: p.thumbprints,
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
            roles,
            oidc_providers,
            jwks_paths,
            provider_access,
            buckets,
            upstream: self.upstream,
            iam_store: self.iam_store,
            base: base.to_owned(),
        })
    }
}

/// How one provider's discovery document and keys are fetched, when not as any other's.
pub(crate) struct ProviderAccess {
    /// The field, for messages.
    pub(crate) at: String,
    pub(crate) url: String,
    pub(crate) ca_bundle_file: Option<PathBuf>,
    pub(crate) token_file: Option<PathBuf>,
}

impl ProviderAccess {
    /// The fetcher of this provider's documents.
    pub(crate) fn fetch(&self) -> anyhow::Result<keyless_oidc::HttpFetch> {
        issuer_fetch(
            &self.url,
            self.ca_bundle_file.as_deref(),
            self.token_file.as_deref(),
            &self.at,
        )
    }
}

/// How `issuer`'s discovery document and keys are fetched: trusting the platform's CAs and
/// those of `ca_bundle`, sending the token in `token_file` to the issuer's origin alone (`at`
/// names the setting in messages).
pub(crate) fn issuer_fetch(
    issuer: &str,
    ca_bundle: Option<&Path>,
    token_file: Option<&Path>,
    at: &str,
) -> anyhow::Result<keyless_oidc::HttpFetch> {
    let fetch = match ca_bundle {
        Some(file) => {
            let pem = std::fs::read(file)
                .with_context(|| format!("{at}: cannot read `{}`", file.display()))?;
            keyless_oidc::HttpFetch::with_extra_roots(&pem).with_context(|| at.to_owned())?
        }
        None => keyless_oidc::HttpFetch::new()?,
    };
    Ok(match token_file {
        Some(file) => fetch
            .with_bearer_token_file(file, issuer)
            .with_context(|| at.to_owned())?,
        None => fetch,
    })
}

impl Loaded {
    /// The JSON Web Key Sets of the providers that name a `jwks_file`, read and parsed, by
    /// provider key ([`keyless_types::ProviderUrl::key`], as IAM files the provider).
    pub(crate) fn jwks_files(&self) -> anyhow::Result<HashMap<String, keyless_oidc::KeySet>> {
        let mut sets = HashMap::new();
        for (at, url, path) in &self.jwks_paths {
            let text = std::fs::read(path)
                .with_context(|| format!("{at}: cannot read `{}`", path.display()))?;
            let keys = keyless_oidc::KeySet::from_jwks_json(&text)
                .with_context(|| format!("{at}: `{}`", path.display()))?;
            let url = keyless_types::ProviderUrl::parse(url)
                .with_context(|| format!("{at}: the provider's url `{url}`"))?;
            sets.insert(url.key().to_owned(), keys);
        }
        Ok(sets)
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
    let at = || format!("{at}.secret_access_key_file");
    let text = String::from_utf8(crate::private::read(path).with_context(at)?)
        .with_context(|| format!("{}: `{}` is not UTF-8", at(), path.display()))?;
    Ok(Secret::new(text.trim()))
}
