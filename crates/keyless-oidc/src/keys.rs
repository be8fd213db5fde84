//! The issuer's signing keys: `SigningKey` (ES256 generated here, or RS256/ES256 from an
//! admin's PKCS#8 file) and `IssuerKeys`, the persisted ring of the active key and the retired
//! ones still published while tokens they signed may be alive.
//!
//! <https://www.rfc-editor.org/rfc/rfc7638> (`kid` as the JWK thumbprint),
//! <https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#service-account-issuer-discovery>.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyless_types::Secret;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::OidcError;
use crate::jwks::{Jwk, KeySet, PublicKey};
use crate::jwt::Alg;

/// A private key the issuer signs tokens with. Its `kid` is its RFC 7638 thumbprint. `Debug`
/// shows the algorithm and `kid` only.
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<Inner>,
}

struct Inner {
    alg: Alg,
    kid: String,
    /// The PKCS#8 document, base64.
    pkcs8: Secret,
    pair: Pair,
    public: PublicKey,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl SigningKey {
    /// A new P-256 key for ES256, from the system's random source.
    pub fn generate_es256() -> Result<SigningKey, OidcError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| key_error("the system's random source failed".to_owned()))?;
        SigningKey::from_der(Alg::Es256, pkcs8.as_ref())
    }

    /// A key from an unencrypted PKCS#8 document, PEM (`-----BEGIN PRIVATE KEY-----`) or DER:
    /// RSA (2048 to 4096 bits) signs RS256, P-256 signs ES256.
    pub fn from_pkcs8(document: &[u8]) -> Result<SigningKey, OidcError> {
        let trimmed = document.trim_ascii_start();
        let der: Vec<u8> = if trimmed.starts_with(b"-----BEGIN") {
            if trimmed.starts_with(b"-----BEGIN PRIVATE KEY-----") {
                PrivatePkcs8KeyDer::from_pem_slice(trimmed)
                    .map_err(|e| key_error(format!("bad PEM: {e}")))?
                    .secret_pkcs8_der()
                    .to_vec()
            } else {
                return Err(key_error(
                    "not a PKCS#8 `PRIVATE KEY`; convert it with `openssl pkcs8 -topk8 -nocrypt`"
                        .to_owned(),
                ));
            }
        } else {
            document.to_vec()
        };
        SigningKey::from_der(Alg::Rs256, &der)
            .or_else(|_| SigningKey::from_der(Alg::Es256, &der))
            .map_err(|_| {
                key_error(
                    "not an unencrypted PKCS#8 RSA key of 2048 to 4096 bits or P-256 key"
                        .to_owned(),
                )
            })
    }

    fn from_der(alg: Alg, der: &[u8]) -> Result<SigningKey, OidcError> {
        let (pair, public) = match alg {
            Alg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(|e| key_error(format!("not a P-256 PKCS#8 key: {e}")))?;
                let public = PublicKey::P256(pair.public_key().as_ref().to_vec());
                (Pair::Ec(pair), public)
            }
            Alg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| {
                    key_error(format!("not an RSA PKCS#8 key of 2048 to 4096 bits: {e}"))
                })?;
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                (Pair::Rsa(pair), PublicKey::Rsa { n: c.n, e: c.e })
            }
            other => {
                return Err(key_error(format!(
                    "`{other}` keys are not supported for signing"
                )));
            }
        };
        let kid = public.thumbprint();
        let pkcs8 = Secret::new(STANDARD.encode(der));
        Ok(SigningKey {
            inner: Arc::new(Inner {
                alg,
                kid,
                pkcs8,
                pair,
                public,
            }),
        })
    }

    /// The algorithm the key signs with (`ES256` or `RS256`).
    pub fn alg(&self) -> Alg {
        self.inner.alg
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.inner.public
    }

    /// The JWS signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, OidcError> {
        let rng = SystemRandom::new();
        let failed = |_| key_error("signing failed".to_owned());
        match &self.inner.pair {
            Pair::Ec(pair) => Ok(pair.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }

    /// The public JWK: `kty`, `use`, `alg`, `kid` and the key's members.
    pub(crate) fn public_jwk(&self) -> Value {
        let mut jwk = serde_json::Map::new();
        for (name, value) in self.inner.public.members() {
            jwk.insert(name.to_owned(), value.into());
        }
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.alg().name().into());
        jwk.insert("kid".into(), self.kid().into());
        Value::Object(jwk)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid())
            .field("pkcs8", &self.inner.pkcs8)
            .finish()
    }
}

/// The issuer's key ring: one active key, which signs, and the retired keys still published
/// so that the tokens they signed keep verifying until they expire. Persisted as JSON with
/// [`IssuerKeys::to_json`] (private keys inside: the binary writes it to a 0600 file).
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    /// Oldest first; the last is the active key, every other one is retired.
    keys: Vec<RingKey>,
}

#[derive(Debug, Clone)]
struct RingKey {
    key: SigningKey,
    created: i64,
    retired_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: String,
    pkcs8: String,
    created: i64,
    retired_at: Option<i64>,
}

impl IssuerKeys {
    /// A ring of one key, active from `now`.
    pub fn new(first: SigningKey, now: i64) -> IssuerKeys {
        IssuerKeys {
            keys: vec![RingKey {
                key: first,
                created: now,
                retired_at: None,
            }],
        }
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        // `keys` is never empty: `new` and `from_json` make sure of it.
        &self.keys[self.keys.len() - 1].key
    }

    /// How many keys the ring has, the active one included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring has an active key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Makes `new` the active key and retires the current one at `now`. Refused if `new` is
    /// already in the ring.
    pub fn rotate(&mut self, new: SigningKey, now: i64) -> Result<(), OidcError> {
        if self.keys.iter().any(|k| k.key.kid() == new.kid()) {
            return Err(OidcError::KeyRing {
                reason: format!("key `{}` is already in the ring", new.kid()),
            });
        }
        if let Some(active) = self.keys.last_mut() {
            active.retired_at = Some(now);
        }
        self.keys.push(RingKey {
            key: new,
            created: now,
            retired_at: None,
        });
        Ok(())
    }

    /// Drops the retired keys no live token can have been signed with
    /// (`retired_at + max_token_lifetime < now`); returns how many.
    pub fn prune(&mut self, now: i64, max_token_lifetime: i64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|k| {
            k.retired_at
                .is_none_or(|retired| retired.saturating_add(max_token_lifetime) >= now)
        });
        before - self.keys.len()
    }

    /// The public JWKS document of the active and retained retired keys, active first.
    pub fn jwks_json(&self) -> String {
        let keys: Vec<Value> = self.keys.iter().rev().map(|k| k.key.public_jwk()).collect();
        json!({ "keys": keys }).to_string()
    }

    /// The keys as a [`KeySet`], to verify the issuer's own tokens without HTTP.
    pub fn key_set(&self) -> KeySet {
        KeySet::from_keys(
            self.keys
                .iter()
                .rev()
                .map(|k| Jwk {
                    kid: Some(k.key.kid().to_owned()),
                    alg: Some(k.key.alg()),
                    key: k.key.public().clone(),
                })
                .collect(),
        )
    }

    /// The algorithms of the published keys, each once, for discovery documents.
    pub(crate) fn algs(&self) -> Vec<Alg> {
        let mut algs: Vec<Alg> = Vec::new();
        for k in self.keys.iter().rev() {
            if !algs.contains(&k.key.alg()) {
                algs.push(k.key.alg());
            }
        }
        algs
    }

    /// The ring as JSON, private keys included.
    pub fn to_json(&self) -> Secret {
        let stored = Stored {
            keys: self
                .keys
                .iter()
                .map(|k| StoredKey {
                    kid: k.key.kid().to_owned(),
                    alg: k.key.alg().name().to_owned(),
                    pkcs8: k.key.inner.pkcs8.expose().to_owned(),
                    created: k.created,
                    retired_at: k.retired_at,
                })
                .collect(),
        };
        Secret::new(format!("{:#}", json!(stored)))
    }

    /// A ring written by [`IssuerKeys::to_json`]. Refused: unknown fields, keys that do not
    /// load or whose `kid` is not their thumbprint, duplicate keys, and anything but exactly
    /// one active (unretired) key, which must be the last.
    pub fn from_json(document: &[u8]) -> Result<IssuerKeys, OidcError> {
        let refuse = |reason: String| OidcError::KeyRing { reason };
        let stored: Stored = serde_json::from_slice(document).map_err(|e| refuse(e.to_string()))?;
        let mut keys: Vec<RingKey> = Vec::with_capacity(stored.keys.len());
        for entry in stored.keys {
            let alg = Alg::from_name(&entry.alg)
                .filter(|alg| matches!(alg, Alg::Es256 | Alg::Rs256))
                .ok_or_else(|| {
                    refuse(format!(
                        "key `{}` has unsupported alg `{}`",
                        entry.kid, entry.alg
                    ))
                })?;
            let der = STANDARD
                .decode(entry.pkcs8.as_bytes())
                .map_err(|_| refuse(format!("key `{}` is not base64", entry.kid)))?;
            let key = SigningKey::from_der(alg, &der)
                .map_err(|e| refuse(format!("key `{}`: {e}", entry.kid)))?;
            if key.kid() != entry.kid {
                return Err(refuse(format!(
                    "key `{}` has kid `{}`",
                    key.kid(),
                    entry.kid
                )));
            }
            if keys.iter().any(|k| k.key.kid() == key.kid()) {
                return Err(refuse(format!("key `{}` appears twice", key.kid())));
            }
            keys.push(RingKey {
                key,
                created: entry.created,
                retired_at: entry.retired_at,
            });
        }
        let active = keys.iter().filter(|k| k.retired_at.is_none()).count();
        if active != 1 || keys.last().is_some_and(|k| k.retired_at.is_some()) {
            return Err(refuse(format!(
                "{active} active keys; exactly one, the last, must have no `retired_at`"
            )));
        }
        Ok(IssuerKeys { keys })
    }
}

fn key_error(reason: String) -> OidcError {
    OidcError::SigningKey { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn loads_rsa_pem_and_der_alike() {
        let pem = SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap();
        let der = SigningKey::from_pkcs8(testkit::RSA_DER).unwrap();
        assert_eq!(pem.alg(), Alg::Rs256);
        assert_eq!(pem.kid(), der.kid());
        assert_eq!(pem.kid(), testkit::rsa_key().kid());
    }

    #[test]
    fn loads_ec_pkcs8() {
        let key = SigningKey::generate_es256().unwrap();
        let again =
            SigningKey::from_pkcs8(&STANDARD.decode(key.inner.pkcs8.expose()).unwrap()).unwrap();
        assert_eq!(again.alg(), Alg::Es256);
        assert_eq!(again.kid(), key.kid());
        assert_eq!(key.kid().len(), 43);
    }

    #[test]
    fn refuses_bad_keys() {
        let weak = SigningKey::from_pkcs8(testkit::RSA_1024_PEM).unwrap_err();
        assert!(
            weak.to_string()
                .contains("RSA key of 2048 to 4096 bits or P-256"),
            "{weak}"
        );
        let pkcs1 = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = SigningKey::from_pkcs8(pkcs1).unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        assert!(SigningKey::from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn debug_hides_the_private_key() {
        let key = SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap();
        let text = format!("{:?}", IssuerKeys::new(key.clone(), 1));
        assert!(
            text.contains(key.kid()) && text.contains("redacted"),
            "{text}"
        );
        assert!(!text.contains(&key.inner.pkcs8.expose()[..40]), "{text}");
        assert_eq!(
            format!("{:?}", IssuerKeys::new(key, 1).to_json()),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn rotate_retire_prune() {
        let first = SigningKey::generate_es256().unwrap();
        let second = SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap();
        let mut ring = IssuerKeys::new(first.clone(), 100);
        ring.rotate(second.clone(), 1_000).unwrap();
        assert_eq!(ring.active().kid(), second.kid());
        assert!(ring.rotate(second.clone(), 1_001).is_err());
        assert_eq!(ring.len(), 2);
        let published: Value = serde_json::from_str(&ring.jwks_json()).unwrap();
        let kids: Vec<&str> = published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [second.kid(), first.kid()]);
        assert_eq!(ring.algs(), [Alg::Rs256, Alg::Es256]);
        assert_eq!(ring.prune(1_000 + 3_600, 3_600), 0);
        assert_eq!(ring.key_set().len(), 2);
        assert_eq!(ring.prune(1_000 + 3_601, 3_600), 1);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.active().kid(), second.kid());
        assert_eq!(
            ring.prune(i64::MAX, 3_600),
            0,
            "the active key is never pruned"
        );
    }

    #[test]
    fn jwks_publishes_public_members_only() {
        let mut ring = IssuerKeys::new(SigningKey::generate_es256().unwrap(), 0);
        ring.rotate(SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap(), 10)
            .unwrap();
        let jwks: Value = serde_json::from_str(&ring.jwks_json()).unwrap();
        let rsa = &jwks["keys"][0];
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["e"], "AQAB");
        let ec = &jwks["keys"][1];
        assert_eq!(
            (&ec["kty"], &ec["crv"], &ec["alg"]),
            (&json!("EC"), &json!("P-256"), &json!("ES256"))
        );
        for key in jwks["keys"].as_array().unwrap() {
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(key.get(private).is_none(), "{private} published");
            }
        }
        let parsed = KeySet::from_jwks_json(ring.jwks_json().as_bytes()).unwrap();
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn json_round_trip() {
        let mut ring = IssuerKeys::new(SigningKey::generate_es256().unwrap(), 5);
        ring.rotate(SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap(), 50)
            .unwrap();
        let text = ring.to_json();
        let back = IssuerKeys::from_json(text.expose().as_bytes()).unwrap();
        assert_eq!(back.to_json().expose(), text.expose());
        assert_eq!(back.active().kid(), ring.active().kid());
        let stored: Value = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(stored["keys"][0]["retired_at"], 50);
        assert_eq!(stored["keys"][1]["created"], 50);
        assert!(stored["keys"][1]["retired_at"].is_null());
    }

    #[test]
    fn from_json_refuses_inconsistent_rings() {
        let ring = IssuerKeys::new(SigningKey::generate_es256().unwrap(), 5);
        let good: Value = serde_json::from_str(ring.to_json().expose()).unwrap();
        let key = good["keys"][0].clone();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = key.clone();
            f(&mut v);
            v
        };
        let cases = [
            (json!({"keys": []}), "0 active keys"),
            (json!({"keys": [key, key]}), "appears twice"),
            (
                json!({"keys": [with(&|v| v["retired_at"] = json!(9))]}),
                "0 active keys",
            ),
            (
                json!({"keys": [with(&|v| v["kid"] = json!("other"))]}),
                "has kid `other`",
            ),
            (
                json!({"keys": [with(&|v| v["alg"] = json!("RS256"))]}),
                "not an RSA PKCS#8 key",
            ),
            (
                json!({"keys": [with(&|v| v["alg"] = json!("HS256"))]}),
                "unsupported alg",
            ),
            (
                json!({"keys": [with(&|v| v["pkcs8"] = json!("!!"))]}),
                "not base64",
            ),
            (
                json!({"keys": [with(&|v| v["extra"] = json!(1))]}),
                "unknown field",
            ),
            (json!({"keys": [key], "more": 1}), "unknown field"),
        ];
        for (document, expected) in cases {
            let err = IssuerKeys::from_json(document.to_string().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} / {expected}");
        }
    }
}
