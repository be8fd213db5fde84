//! `keyless webhook --self-signed`: the webhook's own CA and serving certificate, shared by
//! its replicas through a Secret, and the CA put in its `MutatingWebhookConfiguration`'s
//! `caBundle` (Azure Workload Identity's approach: no cert-manager needed).
//!
//! The first replica to start makes a CA (10 years) and a serving certificate (1 year) for
//! the Service's DNS names and creates the Secret; a replica that loses that race (409) reads
//! the winner's. Every replica checks every 5 minutes: a serving certificate within 90 days of
//! its end, or made for other names, is issued again from the same CA (so `caBundle` stays
//! valid) and the Secret replaced; the others pick the new one up from the Secret at their
//! next check, and the old one stays valid meanwhile; a `caBundle` that is not the CA (a
//! re-applied configuration) is set again. The webhook reports ready only once it holds
//! a certificate and the `caBundle` is in place.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use keyless_k8s::{Client, SecretData};
use keyless_types::Clock;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::lifecycle::Readiness;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// A serving certificate this close to its end is issued again.
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 86_400);
/// How often each replica checks the Secret and the configuration's caBundle.
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// How soon a failed step (the API unreachable, RBAC missing) is tried again.
const RETRY: Duration = Duration::from_secs(10);
const CA_NAME: &str = "keyless webhook CA";
const NOT_AFTER: &str = "keyless.dev/not-after";
const DNS_NAMES: &str = "keyless.dev/dns-names";
pub(crate) const READINESS: &str = "certificate";

/// Where the certificate lives and whom it is for.
#[derive(Debug, Clone)]
pub(crate) struct SelfSigned {
    pub(crate) service: String,
    pub(crate) namespace: String,
    pub(crate) webhook_configuration: String,
}

impl SelfSigned {
    /// The Secret that holds the CA and the serving certificate.
    pub(crate) fn secret_name(&self) -> String {
        format!("{}-self-signed-tls", self.service)
    }

    /// The names the API server may call the Service by.
    pub(crate) fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        vec![
            s.clone(),
            format!("{s}.{ns}"),
            format!("{s}.{ns}.svc"),
            format!("{s}.{ns}.svc.cluster.local"),
        ]
    }
}

/// The certificate served, empty until the first one is in place (handshakes fail meanwhile,
/// and `/readyz` says why).
#[derive(Debug, Default)]
pub(crate) struct HeldCert(RwLock<Option<Arc<CertifiedKey>>>);

impl HeldCert {
    fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut held) = self.0.write() {
            *held = Some(key);
        }
    }
}

impl ResolvesServerCert for HeldCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().and_then(|held| held.clone())
    }
}

/// A TLS acceptor serving whatever `held` holds.
pub(crate) fn acceptor(held: Arc<HeldCert>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_cert_resolver(held as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The CA and serving certificate with their keys, PEM.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bundle {
    ca_cert: String,
    ca_key: String,
    cert: String,
    key: String,
    not_after: u64,
    dns_names: Vec<String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("not_after", &self.not_after)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ca_params(now: SystemTime) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (now - Duration::from_secs(300)).into();
    params.not_after = (now + CA_LIFETIME).into();
    Ok(params)
}

/// A serving certificate for `names` from the CA key `ca_key`.
fn issue_leaf(
    ca_key: &KeyPair,
    names: &[String],
    now: SystemTime,
) -> anyhow::Result<(String, String, u64)> {
    // The issuer needs only the CA's name, key usages and key: the same as when it was made.
    let issuer = Issuer::new(ca_params(now)?, ca_key);
    let key = KeyPair::generate().context("a serving key")?;
    let mut params = CertificateParams::new(names.to_vec()).context("the Service's DNS names")?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.last().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = (now - Duration::from_secs(300)).into();
    let not_after = now + LEAF_LIFETIME;
    params.not_after = not_after.into();
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;
    Ok((cert.pem(), key.serialize_pem(), unix(not_after)))
}

/// A new CA and a serving certificate for `names`.
pub(crate) fn new_bundle(names: &[String], now: SystemTime) -> anyhow::Result<Bundle> {
    let ca_key = KeyPair::generate().context("a CA key")?;
    let ca_cert = ca_params(now)?
        .self_signed(&ca_key)
        .context("the CA certificate")?;
    let (cert, key, not_after) = issue_leaf(&ca_key, names, now)?;
    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert,
        key,
        not_after,
        dns_names: names.to_vec(),
    })
}

impl Bundle {
    /// The bundle kept in `secret`, if it is a whole one.
    fn from_secret(secret: &SecretData) -> Option<Self> {
        let text = |k: &str| {
            secret
                .data
                .get(k)
                .and_then(|v| String::from_utf8(v.clone()).ok())
        };
        Some(Self {
            ca_cert: text("ca.crt")?,
            ca_key: text("ca.key")?,
            cert: text("tls.crt")?,
            key: text("tls.key")?,
            not_after: secret.annotations.get(NOT_AFTER)?.parse().ok()?,
            dns_names: secret
                .annotations
                .get(DNS_NAMES)?
                .split(',')
                .map(str::to_owned)
                .collect(),
        })
    }

    fn to_secret(&self) -> SecretData {
        let data = [
            ("ca.crt", &self.ca_cert),
            ("ca.key", &self.ca_key),
            ("tls.crt", &self.cert),
            ("tls.key", &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        let annotations = BTreeMap::from([
            (NOT_AFTER.to_owned(), self.not_after.to_string()),
            (DNS_NAMES.to_owned(), self.dns_names.join(",")),
        ]);
        SecretData { data, annotations }
    }

    /// Whether the serving certificate is for `names` and good for more than 90 days.
    pub(crate) fn is_fresh(&self, names: &[String], now: SystemTime) -> bool {
        self.dns_names == names && self.not_after > unix(now + RENEW_BEFORE)
    }

    /// The same CA, a new serving certificate for `names`.
    pub(crate) fn renewed(&self, names: &[String], now: SystemTime) -> anyhow::Result<Self> {
        let ca_key = KeyPair::from_pem(&self.ca_key).context("the Secret's CA key")?;
        let (cert, key, not_after) = issue_leaf(&ca_key, names, now)?;
        Ok(Self {
            cert,
            key,
            not_after,
            dns_names: names.to_vec(),
            ..self.clone()
        })
    }

    /// The serving chain and key, for rustls.
    pub(crate) fn certified_key(&self) -> anyhow::Result<Arc<CertifiedKey>> {
        let certs =
            CertificateDer::pem_slice_iter(self.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes())?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)?;
        Ok(Arc::new(CertifiedKey::new(certs, signing)))
    }

    /// The CA certificate, PEM: what goes in `caBundle`.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_cert
    }
}

/// Reads or makes the bundle in the Secret: one step of the loop.
async fn obtain(client: &Client, site: &SelfSigned, clock: &dyn Clock) -> anyhow::Result<Bundle> {
    let (namespace, name, names) = (&site.namespace, site.secret_name(), site.dns_names());
    let now = clock.now();
    match keyless_k8s::get_secret(client, namespace, &name).await? {
        Some(secret) => match Bundle::from_secret(&secret) {
            Some(bundle) if bundle.is_fresh(&names, now) => Ok(bundle),
            Some(bundle) => {
                let renewed = bundle.renewed(&names, now)?;
                keyless_k8s::replace_secret(client, namespace, &name, &renewed.to_secret()).await?;
                tracing::info!(secret = %format!("{namespace}/{name}"), not_after = renewed.not_after, "webhook: issued a new serving certificate from the same CA");
                Ok(renewed)
            }
            None => anyhow::bail!(
                "the Secret {namespace}/{name} is not one --self-signed made (it lacks ca.crt, ca.key, tls.crt, tls.key or the keyless.dev annotations); delete it and the webhook makes a new one"
            ),
        },
        None => {
            let bundle = new_bundle(&names, now)?;
            if keyless_k8s::create_secret(client, namespace, &name, &bundle.to_secret()).await? {
                tracing::info!(secret = %format!("{namespace}/{name}"), names = %names.join(","), "webhook: made a CA and a serving certificate");
                Ok(bundle)
            } else {
                // Another replica made it first: use that one.
                let secret = keyless_k8s::get_secret(client, namespace, &name)
                    .await?
                    .context("the Secret was made by another replica, then deleted")?;
                Bundle::from_secret(&secret).context("the Secret another replica made is not whole")
            }
        }
    }
}

/// Keeps `held` serving a valid certificate and the webhook configuration trusting its CA;
/// `readiness` is pending until both are first in place.
pub(crate) async fn maintain(
    client: Client,
    site: SelfSigned,
    held: Arc<HeldCert>,
    readiness: Readiness,
    clock: Arc<dyn Clock>,
) {
    let mut served: Option<Bundle> = None;
    // Whether the caBundle has been in place once: readiness is lost only before that.
    let mut placed = false;
    loop {
        let step = async {
            let bundle = obtain(&client, &site, clock.as_ref()).await?;
            if served.as_ref() != Some(&bundle) {
                held.set(bundle.certified_key().context("the Secret's serving certificate")?);
                served = Some(bundle.clone());
            }
            // Every check: a `kubectl apply` or Helm upgrade of the configuration may have
            // dropped the caBundle (an answer the API server cannot trust is a silent miss).
            {
                let patched = keyless_k8s::patch_ca_bundle(&client, &site.webhook_configuration, bundle.ca_pem().as_bytes())
                    .await
                    .with_context(|| {
                        format!(
                            "cannot set the caBundle of the MutatingWebhookConfiguration {} (create it with `keyless webhook config`)",
                            site.webhook_configuration
                        )
                    })?;
                if patched.webhooks == 0 {
                    anyhow::bail!(
                        "the MutatingWebhookConfiguration {} has no webhooks; create it (`keyless webhook config`) and the webhook sets its caBundle",
                        site.webhook_configuration
                    );
                }
                if patched.changed > 0 {
                    tracing::info!(configuration = %site.webhook_configuration, webhooks = patched.changed, "webhook: caBundle set to the self-signed CA");
                }
            }
            anyhow::Ok(())
        }
        .await;
        match step {
            Ok(()) => {
                placed = true;
                readiness.done(READINESS);
                tokio::time::sleep(CHECK_EVERY).await;
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!(error = %why, "webhook: --self-signed: cannot put the certificate in place; retrying in 10 s");
                if served.is_none() || !placed {
                    readiness.pending(READINESS, why);
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn site() -> SelfSigned {
        SelfSigned {
            service: "keyless-webhook".into(),
            namespace: "keyless".into(),
            webhook_configuration: "keyless-webhook".into(),
        }
    }

    #[test]
    fn the_bundle_round_trips_through_a_secret_and_renews_from_the_same_ca() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let names = site().dns_names();
        assert_eq!(names[3], "keyless-webhook.keyless.svc.cluster.local");
        let bundle = new_bundle(&names, now).unwrap();
        let back = Bundle::from_secret(&bundle.to_secret()).unwrap();
        assert_eq!(back, bundle);
        assert!(bundle.is_fresh(&names, now));
        assert!(!bundle.is_fresh(&names, now + LEAF_LIFETIME - RENEW_BEFORE));
        assert!(
            !bundle.is_fresh(&names[..2], now),
            "other names need a new certificate"
        );
        let later = now + Duration::from_secs(300 * 86_400);
        let renewed = bundle.renewed(&names, later).unwrap();
        assert_eq!(renewed.ca_pem(), bundle.ca_pem());
        assert_ne!(renewed.cert, bundle.cert);
        assert!(renewed.is_fresh(&names, later));
        renewed.certified_key().unwrap();
        assert!(
            !format!("{bundle:?}").contains("PRIVATE KEY"),
            "Debug shows no key"
        );
    }
}
