//! TLS for `keyless serve`: rustls with a certificate chain and key from PEM files, reloaded
//! when the files change (certificates rotated by cert-manager or certbot need no restart);
//! and the client side of the embedded metadata service, which calls STS on this server's own
//! socket and trusts exactly the certificate the server presents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The current certificate, replaced when its files change.
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
    /// The certificate served before the last reload: a handshake that began just before a
    /// rotation presents it.
    previous: RwLock<Option<Arc<CertifiedKey>>>,
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
                    let old = std::mem::replace(&mut *current, (key, now)).0;
                    if let Ok(mut previous) = self.previous.write() {
                        *previous = Some(old);
                    }
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

impl ReloadingCert {
    /// Whether `end_entity` is the leaf of the certificate served now (or just before).
    fn serves(&self, end_entity: &CertificateDer<'_>) -> bool {
        let leaf_is = |key: &CertifiedKey| key.cert.first().is_some_and(|c| c == end_entity);
        self.current.read().is_ok_and(|c| leaf_is(&c.0))
            || self
                .previous
                .read()
                .is_ok_and(|p| p.as_deref().is_some_and(leaf_is))
    }
}

/// A TLS acceptor for the files, and the task that reloads them when they change.
pub(crate) struct ServerTls {
    /// What the S3 listener accepts with.
    pub(crate) acceptor: TlsAcceptor,
    resolver: Arc<ReloadingCert>,
}

impl ServerTls {
    /// A client configuration that trusts exactly the certificate this server presents,
    /// whatever names it carries and whoever issued it: for the embedded metadata service,
    /// which dials the server's own socket (its address is not a name the certificate need
    /// carry). The certificate followed is the current one, so a rotation is followed too.
    pub(crate) fn own_client(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(OwnCertificate {
            resolver: Arc::clone(&self.resolver),
            provider: Arc::clone(&provider),
        });
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    }
}

/// Accepts the certificate this server serves, and no other; the handshake's signatures are
/// checked as usual, so only the holder of the server's key passes.
#[derive(Debug)]
struct OwnCertificate {
    resolver: Arc<ReloadingCert>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.resolver.serves(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate this server serves".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS acceptor for the files, and the task that reloads them when they change.
pub(crate) fn acceptor(cert_path: &Path, key_path: &Path) -> anyhow::Result<ServerTls> {
    let first = load(cert_path, key_path)?;
    let resolver = Arc::new(ReloadingCert {
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        current: RwLock::new((first, stamp(cert_path, key_path))),
        previous: RwLock::new(None),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let reloaded = Arc::clone(&resolver);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let resolver = Arc::clone(&reloaded);
            let _ = tokio::task::spawn_blocking(move || resolver.reload_if_changed()).await;
        }
    });
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        resolver,
    })
}
