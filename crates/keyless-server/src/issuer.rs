//! The server's own OIDC issuer: its signing keys in the data folder (re-read after `keyless
//! oidc rotate`), the discovery and JWKS documents served on the S3 port, the tokens `keyless
//! token` mints, and the first [`KeySource`] of every chain that checks tokens, so that tokens
//! of this issuer are checked with the keys in memory and never fetched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use keyless_oidc::{
    Issuer, IssuerKeys, KeySet, KeySource, OidcError, ServiceAccountClaims, SigningKey,
};
use keyless_types::ProviderUrl;

/// The issuer's key ring in the data folder (mode 0600).
pub(crate) const KEYS_FILE: &str = "oidc-keys.json";
/// The issuer's URL, written by `keyless serve` for `keyless token`.
pub(crate) const ISSUER_FILE: &str = "oidc-issuer";
/// The longest token the issuer mints; a retired key stays published this long.
pub(crate) const MAX_TOKEN_LIFETIME: i64 = 48 * 3600;

/// The key ring of the data folder, created with one ES256 key on first use.
pub(crate) fn load_keys(data_dir: &Path, now: i64) -> anyhow::Result<IssuerKeys> {
    let file = data_dir.join(KEYS_FILE);
    if !file.exists() {
        let keys = IssuerKeys::new(SigningKey::generate_es256()?, now);
        crate::private::create(&file, keys.to_json().expose().as_bytes())?;
        tracing::info!(file = %file.display(), kid = keys.active().kid(), "created the OIDC issuer's signing key");
        return Ok(keys);
    }
    let bytes = crate::private::read(&file)?;
    IssuerKeys::from_json(&bytes)
        .with_context(|| format!("`{}` is not a valid key ring", file.display()))
}

/// A new key ring of one ES256 key, as the keys file holds it.
pub(crate) fn new_key_ring(now: i64) -> anyhow::Result<keyless_types::Secret> {
    Ok(IssuerKeys::new(SigningKey::generate_es256()?, now).to_json())
}

/// `keyless oidc rotate`: a new signing key; the old one stays published until the tokens it
/// signed have expired.
pub fn rotate(data_dir: &Path, now: i64) -> anyhow::Result<String> {
    let file = data_dir.join(KEYS_FILE);
    if !file.exists() {
        bail!(
            "`{}` does not exist: start `keyless serve` once first",
            file.display()
        );
    }
    let mut keys = load_keys(data_dir, now)?;
    keys.prune(now, MAX_TOKEN_LIFETIME);
    keys.rotate(SigningKey::generate_es256()?, now)?;
    crate::private::replace(&file, keys.to_json().expose().as_bytes())?;
    Ok(keys.active().kid().to_owned())
}

struct Loaded {
    modified: Option<SystemTime>,
    issuer: Issuer,
    key_set: Arc<KeySet>,
    jwks: String,
    discovery: String,
}

impl Loaded {
    fn new(url: &str, keys: IssuerKeys, modified: Option<SystemTime>) -> anyhow::Result<Self> {
        let issuer = Issuer::new(url, keys)?;
        Ok(Self {
            modified,
            key_set: Arc::new(issuer.key_set()),
            jwks: issuer.jwks_json(),
            discovery: issuer.discovery_json(),
            issuer,
        })
    }
}

/// This server's issuer. The key ring is re-read when its file changes (after `keyless oidc
/// rotate`), so a rotation needs no restart.
pub(crate) struct OwnIssuer {
    url: String,
    key: String,
    file: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// The key IAM files this server's own provider under, as [`keyless_types::ProviderUrl::key`]
/// (the own issuer may be plain `http://` on any host, which [`keyless_types::ProviderUrl::read`]
/// allows).
pub(crate) fn own_provider_key(url: &str) -> String {
    keyless_types::ProviderUrl::read(url).map_or_else(
        |_| url.trim_end_matches('/').to_owned(),
        |p| p.key().to_owned(),
    )
}

impl OwnIssuer {
    pub(crate) fn open(data_dir: &Path, url: &str, now: i64) -> anyhow::Result<Self> {
        keyless_oidc::check_own_issuer_url(url).with_context(|| format!("--issuer `{url}`"))?;
        let key = own_provider_key(url);
        let url = url.trim_end_matches('/');
        let mut keys = load_keys(data_dir, now)?;
        let file = data_dir.join(KEYS_FILE);
        if keys.prune(now, MAX_TOKEN_LIFETIME) > 0 {
            crate::private::replace(&file, keys.to_json().expose().as_bytes())?;
        }
        std::fs::write(data_dir.join(ISSUER_FILE), format!("{url}\n"))
            .context("cannot record the issuer's URL")?;
        Ok(Self {
            url: url.to_owned(),
            key,
            loaded: RwLock::new(Arc::new(Loaded::new(url, keys, modified(&file))?)),
            file,
        })
    }

    /// The issuer URL (`iss`).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether `url` names this issuer (as IAM names providers: without scheme and trailing
    /// slash), whose tokens are then checked with the keys in memory, never fetched.
    pub(crate) fn is(&self, url: &str) -> bool {
        own_provider_key(url) == self.key
    }

    fn current(&self) -> Arc<Loaded> {
        let loaded = Arc::clone(&self.loaded.read().unwrap_or_else(|e| e.into_inner()));
        let now_modified = modified(&self.file);
        if now_modified == loaded.modified {
            return loaded;
        }
        let reloaded = crate::private::read(&self.file).and_then(|bytes| {
            let keys = IssuerKeys::from_json(&bytes)?;
            Loaded::new(&self.url, keys, now_modified)
        });
        match reloaded {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                tracing::info!(
                    kid = fresh.issuer.keys().active().kid(),
                    "reloaded the OIDC issuer's keys"
                );
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&fresh);
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the OIDC issuer's keys; keeping the old ones");
                loaded
            }
        }
    }

    /// The path of a document this issuer serves, if `path` is one: discovery or JWKS.
    pub(crate) fn document(&self, path: &str) -> Option<String> {
        let base = self
            .url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let rest = path.strip_prefix(base.as_str())?;
        if rest == keyless_oidc::DISCOVERY_PATH {
            Some(self.current().discovery.clone())
        } else if rest == keyless_oidc::JWKS_PATH {
            Some(self.current().jwks.clone())
        } else {
            None
        }
    }
}

/// The own issuer's keys, first in every chain that checks tokens: never fetched, whatever the
/// issuer URL says.
#[async_trait::async_trait]
impl KeySource for OwnIssuer {
    fn name(&self) -> &'static str {
        "own issuer"
    }

    async fn keys(
        &self,
        issuer: &ProviderUrl,
        _now: i64,
    ) -> Option<Result<Arc<KeySet>, OidcError>> {
        (issuer.key() == self.key).then(|| Ok(Arc::clone(&self.current().key_set)))
    }
}

/// `keyless token`: a service-account token with `claims` from the issuer of the data folder
/// `data_dir`.
pub fn mint(data_dir: &Path, claims: &ServiceAccountClaims, now: i64) -> anyhow::Result<String> {
    let url_file = data_dir.join(ISSUER_FILE);
    let url = std::fs::read_to_string(&url_file).with_context(|| {
        format!(
            "cannot read `{}`: start `keyless serve --data-dir {}` once first",
            url_file.display(),
            data_dir.display()
        )
    })?;
    let keys_file = data_dir.join(KEYS_FILE);
    let keys = IssuerKeys::from_json(&crate::private::read(&keys_file)?)
        .with_context(|| format!("`{}` is not a valid key ring", keys_file.display()))?;
    let issuer = Issuer::new(url.trim(), keys)?;
    Ok(issuer.mint(claims, now)?)
}
