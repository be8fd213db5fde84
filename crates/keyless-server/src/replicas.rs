//! What replicas share when IAM state is in PostgreSQL (`--iam-store`): the store itself, and
//! the files of the data folder that must be the same on every replica (the root key pair, the
//! OIDC issuer's signing keys, the metadata service's key). Each such file is kept in the
//! database, sealed; the first replica's copy wins, every replica writes it to its own data
//! folder (where `keyless token`, `whoami` and the issuer read it), and a replacement made on
//! one (an issuer key rotation) is written on all.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use keyless_iam::{EmbeddedIam, IamStore};
use keyless_postgres::{Link, PgIam, PgOptions, SealKey, SharedValue};
use keyless_types::Secret;

use crate::lifecycle::{Readiness, Shutdown};
use crate::options::IamStoreOptions;

/// The IAM store `--iam-store` names: the data folder's `iam.redb` by default.
pub(crate) async fn open(
    options: &IamStoreOptions,
    data_dir: &Path,
    account_id: &str,
    master: &[u8],
) -> anyhow::Result<(Arc<dyn IamStore>, Option<Arc<PgIam>>)> {
    let embedded = data_dir.join("iam.redb");
    let Some(url) = &options.iam_store else {
        let iam = EmbeddedIam::open(&embedded, account_id).context("cannot open the IAM store")?;
        return Ok((Arc::new(iam), None));
    };
    let shown = keyless_postgres::redact_url(url);
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        anyhow::bail!("--iam-store `{shown}`: give a postgres:// URL");
    }
    let pg = connect(options, url, account_id, master).await?;
    tracing::info!(url = %shown, epoch = pg.epoch(), "IAM state in PostgreSQL");
    // The first start on an empty database takes the data folder's state, if it has one: the
    // way from one machine to replicas.
    if pg.was_empty() && embedded.exists() {
        let local = EmbeddedIam::open(&embedded, account_id)
            .context("cannot read the data folder's IAM state to import it")?;
        let state = local.snapshot().state.clone();
        if state != keyless_iam::IamState::default() {
            let imported = pg
                .import(&state)
                .context("cannot import the data folder's IAM state into PostgreSQL")?;
            anyhow::ensure!(
                imported,
                "another replica changed the IAM state in PostgreSQL while this one was importing `{}`: the two cannot be merged. Start this replica with an empty data folder, or import into an empty database",
                embedded.display()
            );
            tracing::info!(file = %embedded.display(), "imported the data folder's IAM state into PostgreSQL");
        }
    }
    let pg = Arc::new(pg);
    Ok((Arc::clone(&pg) as Arc<dyn IamStore>, Some(pg)))
}

/// The store at `url`.
async fn connect(
    options: &IamStoreOptions,
    url: &str,
    account_id: &str,
    master: &[u8],
) -> anyhow::Result<PgIam> {
    let password = match &options.iam_store_password_file {
        Some(file) => {
            let text = crate::private::read(file)?;
            let text = String::from_utf8(text)
                .with_context(|| format!("`{}` is not UTF-8", file.display()))?;
            Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
        }
        None => None,
    };
    PgIam::connect(PgOptions {
        url: url.to_owned(),
        password,
        ca_bundle: options.iam_store_ca_bundle.clone(),
        account_id: account_id.to_owned(),
        seal: SealKey::derive(master),
        check_interval: options.iam_store_check_interval,
    })
    .await
    .with_context(|| format!("--iam-store `{}`", keyless_postgres::redact_url(url)))
}

/// `keyless oidc rotate --iam-store`: a new signing key for the issuer every replica shares;
/// each replica starts signing with it within a second.
pub async fn rotate_issuer_keys(
    options: &IamStoreOptions,
    session_key_file: &Path,
    account_id: &str,
    now: i64,
) -> anyhow::Result<String> {
    let url = options
        .iam_store
        .as_deref()
        .context("--iam-store is required")?;
    let master = crate::private::read_key(session_key_file, 32)?;
    let pg = connect(options, url, account_id, &master).await?;
    let watch = pg.existing("oidc-keys").await?.context(
        "no replica has created the issuer's keys yet: start `keyless serve --iam-store` first",
    )?;
    let held = watch.borrow().clone().context("no key ring")?;
    let mut keys = keyless_oidc::IssuerKeys::from_json(held.value.expose().as_bytes())
        .context("the shared key ring is not valid")?;
    keys.prune(now, crate::issuer::MAX_TOKEN_LIFETIME);
    keys.rotate(keyless_oidc::SigningKey::generate_es256()?, now)?;
    pg.replace_shared("oidc-keys", held.epoch, &keys.to_json())
        .await
        .context("cannot store the new key ring")?;
    Ok(keys.active().kid().to_owned())
}

/// Makes `data_dir/file` hold the shared secret `name`: the one in the database, else (first
/// replica) the local file's, else `create()`'s. Later replacements are written to the file.
pub(crate) async fn share_file(
    pg: &Arc<PgIam>,
    data_dir: &Path,
    name: &'static str,
    file: &str,
    create: impl FnOnce() -> anyhow::Result<Secret>,
) -> anyhow::Result<SharedValue> {
    let path = data_dir.join(file);
    // Read once: the first replica's value, and what this data folder held before.
    let local = match path.exists() {
        true => Some(crate::private::read(&path)?),
        false => None,
    };
    let mut failure = None;
    let mut watch = pg
        .shared(name, || {
            let value = match &local {
                Some(bytes) => String::from_utf8(bytes.clone())
                    .with_context(|| format!("`{}` is not UTF-8", path.display()))
                    .map(Secret::new),
                None => create(),
            };
            value.map_err(|e| {
                let why = format!("{e:#}");
                failure = Some(e);
                keyless_postgres::PgError::State(why)
            })
        })
        .await
        .map_err(|e| failure.take().unwrap_or_else(|| e.into()))
        .with_context(|| format!("cannot share `{file}` through PostgreSQL"))?;
    let held = watch.borrow_and_update().clone().context("no value")?;
    if local.as_deref() != Some(held.value.expose().as_bytes()) {
        // Another replica's value won over this data folder's own: keep the old file beside.
        if local.is_some() {
            let kept = path.with_extension("replaced");
            std::fs::copy(&path, &kept).with_context(|| {
                format!("cannot keep `{}` as `{}`", path.display(), kept.display())
            })?;
            tracing::warn!(file = %path.display(), kept = %kept.display(), "the replicas share another value than this data folder's: using theirs, the old file kept");
        }
        crate::private::replace(&path, held.value.expose().as_bytes())?;
    }
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let Some(value) = watch.borrow_and_update().as_ref().map(|s| s.value.clone()) else {
                continue;
            };
            match write_if_changed(&path, &value) {
                Ok(true) => tracing::info!(file = %path.display(), "another replica replaced it"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot write a shared file"),
            }
        }
    });
    Ok(held)
}

fn write_if_changed(path: &Path, value: &Secret) -> anyhow::Result<bool> {
    let held = crate::private::read(path).ok();
    if held.as_deref() == Some(value.expose().as_bytes()) {
        return Ok(false);
    }
    crate::private::replace(path, value.expose().as_bytes())?;
    Ok(true)
}

/// Reports the database link in `/readyz`'s notes. Losing it leaves the replica ready: it
/// serves S3, STS and IMDS from the last state, and only IAM changes wait for the database.
pub(crate) async fn watch_link(pg: Arc<PgIam>, readiness: Readiness, shutdown: Shutdown) {
    let mut link = pg.link();
    loop {
        let note = match &*link.borrow_and_update() {
            Link::Up => None,
            Link::Down(why) => Some(format!(
                "iam-store: {why}; serving the last IAM state, IAM changes fail"
            )),
        };
        readiness.note("iam-store", note);
        tokio::select! {
            changed = link.changed() => if changed.is_err() { return },
            () = shutdown.requested() => return,
        }
    }
}

/// A key derived from the session key for `purpose`, so that replicas given the same session
/// key agree on it without another file.
pub(crate) fn derived_key(master: &[u8], purpose: &[u8]) -> [u8; 32] {
    use ring::hkdf;
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let mut key = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyless derived keys")
        .extract(master)
        .expand(&[purpose], Len)
        .and_then(|okm| okm.fill(&mut key))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}
