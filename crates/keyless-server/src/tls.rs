//! TLS for `keyless serve`: rustls with a certificate chain and key from PEM files, reloaded
//! when the files change (certificates rotated by cert-manager or certbot need no restart).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The current certificate, replaced when its files change.
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// Modification times of the two files.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("--tls-cert: cannot read `{}`", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "--tls-cert: `{}` is not a PEM certificate chain",
                cert_path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert: `{}` holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
        format!(
            "--tls-key: `{}` is not a PEM private key",
            key_path.display()
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("--tls-key: unsupported key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

impl ReloadingCert {
    fn reload_if_changed(&self) {
        let now = stamp(&self.cert_path, &self.key_path);
        let unchanged = self.current.read().map(|c| c.1 == now).unwrap_or(true);
        if unchanged {
            return;
        }
        match load(&self.cert_path, &self.key_path) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (key, now);
                }
                tracing::info!(cert = %self.cert_path.display(), "reloaded the TLS certificate");
            }
            // Half-written files during a rotation: keep serving the old certificate.
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot reload the TLS certificate; keeping the current one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c.0))
    }
}

/// A TLS acceptor for the files, and the task that reloads them when they change.
pub(crate) fn acceptor(cert_path: &Path, key_path: &Path) -> anyhow::Result<TlsAcceptor> {
    let first = load(cert_path, key_path)?;
    let resolver = Arc::new(ReloadingCert {
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        current: RwLock::new((first, stamp(cert_path, key_path))),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let resolver = Arc::clone(&resolver);
            let _ = tokio::task::spawn_blocking(move || resolver.reload_if_changed()).await;
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}
