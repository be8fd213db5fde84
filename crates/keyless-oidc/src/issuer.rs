//! `Issuer`: Keyless's own OpenID Connect issuer. It publishes a discovery document and a key
//! set as Kubernetes' API server does, and mints tokens shaped like projected service-account
//! tokens.
//!
//! <https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#service-account-issuer-discovery>,
//! <https://kubernetes.io/docs/concepts/security/service-accounts/#authenticating-credentials>,
//! <https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata>.

use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::json;

use crate::OidcError;
use crate::jwks::KeySet;
use crate::jwt;
use crate::keys::IssuerKeys;
use crate::url::{check_own_issuer_url, jwks_url};

/// The shortest token lifetime, in seconds (`kubectl create token` refuses under 10 minutes).
pub const MIN_TOKEN_SECONDS: i64 = 600;
/// The longest token lifetime, in seconds (48 hours).
pub const MAX_TOKEN_SECONDS: i64 = 48 * 3600;
/// The most audiences a minted token may carry.
const MAX_AUDIENCES: usize = 16;
/// The longest audience or uid, in bytes.
const MAX_FIELD_LEN: usize = 256;

/// What a service-account token says: whose it is, for whom, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountClaims {
    /// The namespace, a DNS label (`gitlab`).
    pub namespace: String,
    /// The service account's name, a DNS subdomain (`registry`).
    pub service_account: String,
    /// The audiences (`aud`), at least one (`sts.amazonaws.com`).
    pub audiences: Vec<String>,
    /// The lifetime, from [`MIN_TOKEN_SECONDS`] to [`MAX_TOKEN_SECONDS`].
    pub duration_seconds: i64,
    /// The service account's uid, if known.
    pub service_account_uid: Option<String>,
    /// The pod the token is bound to, if any.
    pub pod: Option<Pod>,
}

/// The pod a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The pod's name, a DNS subdomain.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
}

/// Keyless's issuer: its URL (the `iss` of its tokens) and its key ring.
#[derive(Debug, Clone)]
pub struct Issuer {
    url: String,
    keys: IssuerKeys,
}

impl Issuer {
    /// An issuer at `url`, checked by [`check_own_issuer_url`]: a provider URL, where `http://`
    /// may name any host (Keyless checks its own tokens with these keys, never over HTTP).
    ///
    /// [`check_own_issuer_url`]: crate::check_own_issuer_url
    pub fn new(url: impl Into<String>, keys: IssuerKeys) -> Result<Issuer, OidcError> {
        let url = url.into();
        check_own_issuer_url(&url)?;
        Ok(Issuer { url, keys })
    }

    /// The issuer URL, the `iss` of its tokens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key ring.
    pub fn keys(&self) -> &IssuerKeys {
        &self.keys
    }

    /// The key ring, to rotate or prune.
    pub fn keys_mut(&mut self) -> &mut IssuerKeys {
        &mut self.keys
    }

    /// The discovery document, served at `{url}/.well-known/openid-configuration`.
    pub fn discovery_json(&self) -> String {
        let algs: Vec<&str> = self.keys.algs().into_iter().map(|a| a.name()).collect();
        json!({
            "issuer": self.url,
            "jwks_uri": jwks_url(&self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        })
        .to_string()
    }

    /// The key set document, served at `{url}/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> String {
        self.keys.jwks_json()
    }

    /// The issuer's keys as a [`KeySet`], to verify its own tokens without HTTP.
    pub fn key_set(&self) -> KeySet {
        self.keys.key_set()
    }

    /// Mints a token for `claims`, valid from `now` (unix seconds) for
    /// `claims.duration_seconds`, signed by the active key. Its `sub` is
    /// `system:serviceaccount:<namespace>:<name>` and its `kubernetes.io` claim is that of a
    /// projected service-account token.
    pub fn mint(&self, claims: &ServiceAccountClaims, now: i64) -> Result<String, OidcError> {
        check_claims(claims)?;
        let key = self.keys.active();
        let mut serviceaccount = json!({ "name": claims.service_account });
        if let Some(uid) = &claims.service_account_uid {
            serviceaccount["uid"] = uid.as_str().into();
        }
        let mut kubernetes = json!({
            "namespace": claims.namespace,
            "serviceaccount": serviceaccount,
        });
        if let Some(pod) = &claims.pod {
            kubernetes["pod"] = json!({ "name": pod.name, "uid": pod.uid });
        }
        let body = json!({
            "iss": self.url,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.service_account),
            "aud": claims.audiences,
            "exp": now.saturating_add(claims.duration_seconds),
            "iat": now,
            "nbf": now,
            "jti": jti()?,
            "kubernetes.io": kubernetes,
        });
        let header = json!({ "alg": key.alg().name(), "kid": key.kid(), "typ": "JWT" });
        let input = format!(
            "{}.{}",
            jwt::encode(header.to_string().as_bytes()),
            jwt::encode(body.to_string().as_bytes())
        );
        let signature = key.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", jwt::encode(&signature)))
    }
}

fn check_claims(claims: &ServiceAccountClaims) -> Result<(), OidcError> {
    let invalid = |field, value: &str, reason| OidcError::InvalidClaim {
        field,
        value: value.to_owned(),
        reason,
    };
    if !is_dns_label(&claims.namespace) {
        return Err(invalid("namespace", &claims.namespace, DNS_LABEL));
    }
    if !is_dns_subdomain(&claims.service_account) {
        return Err(invalid(
            "service account name",
            &claims.service_account,
            DNS_SUBDOMAIN,
        ));
    }
    if claims.audiences.is_empty() || claims.audiences.len() > MAX_AUDIENCES {
        let count = claims.audiences.len().to_string();
        return Err(invalid("audience count", &count, "must be 1 to 16"));
    }
    for aud in &claims.audiences {
        if !is_plain_text(aud) {
            return Err(invalid("audience", aud, PLAIN_TEXT));
        }
    }
    if let Some(uid) = &claims.service_account_uid
        && !is_plain_text(uid)
    {
        return Err(invalid("service account uid", uid, PLAIN_TEXT));
    }
    if let Some(pod) = &claims.pod {
        if !is_dns_subdomain(&pod.name) {
            return Err(invalid("pod name", &pod.name, DNS_SUBDOMAIN));
        }
        if !is_plain_text(&pod.uid) {
            return Err(invalid("pod uid", &pod.uid, PLAIN_TEXT));
        }
    }
    if !(MIN_TOKEN_SECONDS..=MAX_TOKEN_SECONDS).contains(&claims.duration_seconds) {
        return Err(OidcError::Duration {
            seconds: claims.duration_seconds,
            min: MIN_TOKEN_SECONDS,
            max: MAX_TOKEN_SECONDS,
        });
    }
    Ok(())
}

const DNS_LABEL: &str = "must be a DNS label: at most 63 lowercase letters, digits and `-`, starting and ending alphanumeric";
const DNS_SUBDOMAIN: &str =
    "must be a DNS subdomain: at most 253 characters, DNS labels joined by `.`";
const PLAIN_TEXT: &str = "must be 1 to 256 characters without control characters";

/// RFC 1123 label, as Kubernetes checks namespace names.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// RFC 1123 subdomain, as Kubernetes checks service account and pod names.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_plain_text(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_FIELD_LEN && !value.chars().any(char::is_control)
}

/// A random version-4 UUID, as Kubernetes gives each token.
fn jti() -> Result<String, OidcError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| OidcError::SigningKey {
            reason: "the system's random source failed".to_owned(),
        })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = keyless_types::hex::encode(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::testkit;
    use crate::{Expectations, verify};
    use serde_json::Value;

    const NOW: i64 = 1_700_000_000;

    fn claims() -> ServiceAccountClaims {
        ServiceAccountClaims {
            namespace: "gitlab".into(),
            service_account: "registry".into(),
            audiences: vec!["sts.amazonaws.com".into()],
            duration_seconds: 3600,
            service_account_uid: Some("0d7d6a4a-1f2e-4b5c-9a8b-7c6d5e4f3a2b".into()),
            pod: Some(Pod {
                name: "registry-7d9f8-abcde".into(),
                uid: "pod-uid-1".into(),
            }),
        }
    }

    fn issuer(key: SigningKey) -> Issuer {
        Issuer::new(
            "https://keyless.example/oidc",
            IssuerKeys::new(key, NOW - 10),
        )
        .unwrap()
    }

    #[test]
    fn minted_tokens_verify_with_their_own_keys() {
        for key in [
            SigningKey::generate_es256().unwrap(),
            SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap(),
        ] {
            let issuer = issuer(key.clone());
            let token = issuer.mint(&claims(), NOW).unwrap();
            let audiences = vec!["sts.amazonaws.com".to_owned()];
            let expect = Expectations::new(issuer.url(), &audiences);
            let verified = verify(&token, &issuer.key_set(), &expect, NOW + 5).unwrap();
            assert_eq!(verified.alg, key.alg());
            assert_eq!(verified.kid.as_deref(), Some(key.kid()));
            assert_eq!(verified.subject, "system:serviceaccount:gitlab:registry");
            assert_eq!(
                (verified.iat, verified.nbf, verified.exp),
                (Some(NOW), Some(NOW), NOW + 3600)
            );
            let k8s = &verified.claims["kubernetes.io"];
            assert_eq!(
                k8s["serviceaccount"]["uid"],
                "0d7d6a4a-1f2e-4b5c-9a8b-7c6d5e4f3a2b"
            );
            assert_eq!(k8s["pod"]["name"], "registry-7d9f8-abcde");
            let jti = verified.claims["jti"].as_str().unwrap();
            assert_eq!((jti.len(), &jti[14..15]), (36, "4"));
            // Through the published JWKS document too.
            let set = KeySet::from_jwks_json(issuer.jwks_json().as_bytes()).unwrap();
            assert!(verify(&token, &set, &expect, NOW + 5).is_ok());
            assert!(matches!(
                verify(&token, &set, &expect, NOW + 3600 + 60),
                Err(OidcError::Expired { .. })
            ));
        }
    }

    #[test]
    fn header_and_optional_claims() {
        let issuer = issuer(SigningKey::generate_es256().unwrap());
        let bare = ServiceAccountClaims {
            service_account_uid: None,
            pod: None,
            ..claims()
        };
        let token = issuer.mint(&bare, NOW).unwrap();
        let mut parts = token.split('.');
        let header: Value =
            serde_json::from_slice(&jwt::decode(parts.next().unwrap(), "h").unwrap()).unwrap();
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "ES256");
        let body: Value =
            serde_json::from_slice(&jwt::decode(parts.next().unwrap(), "c").unwrap()).unwrap();
        assert_eq!(body["aud"], json!(["sts.amazonaws.com"]));
        assert_eq!(
            body["kubernetes.io"],
            json!({"namespace": "gitlab", "serviceaccount": {"name": "registry"}})
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let mut issuer = issuer(SigningKey::generate_es256().unwrap());
        let old = issuer.mint(&claims(), NOW).unwrap();
        issuer
            .keys_mut()
            .rotate(SigningKey::from_pkcs8(testkit::RSA_PEM).unwrap(), NOW + 10)
            .unwrap();
        let new = issuer.mint(&claims(), NOW + 10).unwrap();
        let audiences = vec!["sts.amazonaws.com".to_owned()];
        let url = issuer.url().to_owned();
        let expect = Expectations::new(&url, &audiences);
        for token in [&old, &new] {
            assert!(verify(token, &issuer.key_set(), &expect, NOW + 20).is_ok());
        }
        assert_eq!(
            issuer
                .keys_mut()
                .prune(NOW + 10 + MAX_TOKEN_SECONDS + 1, MAX_TOKEN_SECONDS),
            1
        );
        assert!(matches!(
            verify(&old, &issuer.key_set(), &expect, NOW + 20),
            Err(OidcError::UnknownKey { .. })
        ));
        let discovery: Value = serde_json::from_str(&issuer.discovery_json()).unwrap();
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
    }

    #[test]
    fn discovery_document() {
        let issuer = Issuer::new(
            "https://keyless.example/oidc/",
            IssuerKeys::new(SigningKey::generate_es256().unwrap(), 0),
        )
        .unwrap();
        let doc: Value = serde_json::from_str(&issuer.discovery_json()).unwrap();
        assert_eq!(
            doc,
            json!({
                "issuer": "https://keyless.example/oidc/",
                "jwks_uri": "https://keyless.example/oidc/.well-known/jwks.json",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
        );
        // A node address without TLS is Keyless's own business (issue 13); a URL IAM could
        // never hold is not.
        let keys = IssuerKeys::new(SigningKey::generate_es256().unwrap(), 0);
        assert!(Issuer::new("http://10.0.0.5:9000", keys.clone()).is_ok());
        for bad in ["ftp://keyless.example", "http://keyless.example/?a=b"] {
            assert!(
                matches!(
                    Issuer::new(bad, keys.clone()),
                    Err(OidcError::ProviderUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_bad_claims() {
        let issuer = issuer(SigningKey::generate_es256().unwrap());
        let long = "a".repeat(64);
        let cases: Vec<(ServiceAccountClaims, &str)> = vec![
            (
                ServiceAccountClaims {
                    namespace: "Gitlab".into(),
                    ..claims()
                },
                "invalid namespace `Gitlab`",
            ),
            (
                ServiceAccountClaims {
                    namespace: "-x".into(),
                    ..claims()
                },
                "namespace",
            ),
            (
                ServiceAccountClaims {
                    namespace: "a.b".into(),
                    ..claims()
                },
                "namespace",
            ),
            (
                ServiceAccountClaims {
                    namespace: long.clone(),
                    ..claims()
                },
                "namespace",
            ),
            (
                ServiceAccountClaims {
                    namespace: String::new(),
                    ..claims()
                },
                "namespace",
            ),
            (
                ServiceAccountClaims {
                    service_account: "reg_istry".into(),
                    ..claims()
                },
                "service account name",
            ),
            (
                ServiceAccountClaims {
                    service_account: "a..b".into(),
                    ..claims()
                },
                "service account name",
            ),
            (
                ServiceAccountClaims {
                    service_account: "x:y".into(),
                    ..claims()
                },
                "service account name",
            ),
            (
                ServiceAccountClaims {
                    audiences: vec![],
                    ..claims()
                },
                "audience count",
            ),
            (
                ServiceAccountClaims {
                    audiences: vec![String::new()],
                    ..claims()
                },
                "invalid audience",
            ),
            (
                ServiceAccountClaims {
                    audiences: vec!["a\nb".into()],
                    ..claims()
                },
                "invalid audience",
            ),
            (
                ServiceAccountClaims {
                    service_account_uid: Some("u\u{0}".into()),
                    ..claims()
                },
                "uid",
            ),
            (
                ServiceAccountClaims {
                    pod: Some(Pod {
                        name: "Pod".into(),
                        uid: "u".into(),
                    }),
                    ..claims()
                },
                "pod name",
            ),
            (
                ServiceAccountClaims {
                    duration_seconds: 599,
                    ..claims()
                },
                "599 seconds is outside 600..=172800",
            ),
            (
                ServiceAccountClaims {
                    duration_seconds: MAX_TOKEN_SECONDS + 1,
                    ..claims()
                },
                "outside",
            ),
        ];
        for (bad, expected) in cases {
            let err = issuer.mint(&bad, NOW).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} / {expected}");
        }
        let ok = ServiceAccountClaims {
            service_account: format!("{}.b", "a".repeat(63)),
            duration_seconds: MIN_TOKEN_SECONDS,
            ..claims()
        };
        assert!(issuer.mint(&ok, NOW).is_ok());
    }
}
