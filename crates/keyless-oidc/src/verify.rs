//! `verify`: a token's signature against an issuer's key set, then its claims against what the
//! caller expects (issuer, audience, validity window). The result is a `VerifiedToken`.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html>,
//! <https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation>,
//! <https://www.rfc-editor.org/rfc/rfc7519#section-4.1> (registered claims).

use serde_json::{Map, Value};

use crate::OidcError;
use crate::jwks::KeySet;
use crate::jwt::{self, Alg};

/// The clock skew tolerated by default, in seconds, on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 60;

/// How many keys a token without `kid` may be tried against.
const MAX_CANDIDATES: usize = 4;

/// What a token must say to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The issuer, compared with `iss` as exact strings (a trailing slash matters).
    pub issuer: &'a str,
    /// The accepted audiences (the provider's client ids); one of the token's must be here.
    pub audiences: &'a [String],
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: i64,
}

impl<'a> Expectations<'a> {
    /// Expectations with the [`DEFAULT_LEEWAY_SECONDS`].
    pub fn new(issuer: &'a str, audiences: &'a [String]) -> Self {
        Expectations {
            issuer,
            audiences,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        }
    }
}

/// A token whose signature and claims were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The algorithm of the signature.
    pub alg: Alg,
    /// The `kid` of the header.
    pub kid: Option<String>,
    /// The `iss` claim (equal to the expected issuer).
    pub issuer: String,
    /// The `sub` claim.
    pub subject: String,
    /// The first of the token's audiences the caller accepts.
    pub audience: String,
    /// All of the token's audiences.
    pub audiences: Vec<String>,
    /// The `exp` claim, unix seconds.
    pub exp: i64,
    /// The `iat` claim, unix seconds.
    pub iat: Option<i64>,
    /// The `nbf` claim, unix seconds.
    pub nbf: Option<i64>,
    /// Every claim of the token, registered or not.
    pub claims: Map<String, Value>,
}

/// What a Kubernetes service-account token's `kubernetes.io` claim says of its subject: its
/// namespace and service account, and the pod a bound token names. Empty strings read as
/// absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubernetesClaims<'a> {
    /// `kubernetes.io.namespace`.
    pub namespace: Option<&'a str>,
    /// `kubernetes.io.serviceaccount.name`.
    pub service_account: Option<&'a str>,
    /// `kubernetes.io.pod.name`.
    pub pod_name: Option<&'a str>,
    /// `kubernetes.io.pod.uid`.
    pub pod_uid: Option<&'a str>,
}

impl<'a> KubernetesClaims<'a> {
    /// The `kubernetes.io` claim of `claims`, if there is one.
    pub fn of(claims: &'a Map<String, Value>) -> Option<Self> {
        let k8s = claims.get("kubernetes.io")?;
        let text = |v: Option<&'a Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty());
        let pod = k8s.get("pod");
        Some(Self {
            namespace: text(k8s.get("namespace")),
            service_account: text(k8s.get("serviceaccount").and_then(|s| s.get("name"))),
            pod_name: text(pod.and_then(|p| p.get("name"))),
            pod_uid: text(pod.and_then(|p| p.get("uid"))),
        })
    }
}

impl VerifiedToken {
    /// The top-level claims with string values, as `(name, value)`, one pair per string of a
    /// claim that is an array of strings; for IAM condition keys (`<provider>:sub`, ...).
    /// Numbers, booleans, objects and mixed arrays are left out.
    pub fn string_claims(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.claims.iter().flat_map(|(name, value)| {
            let strings: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    items.iter().filter_map(Value::as_str).collect()
                }
                _ => Vec::new(),
            };
            strings.into_iter().map(move |s| (name.as_str(), s))
        })
    }
}

/// Verifies `token` against the issuer's `keys` and the caller's expectations at time `now`
/// (unix seconds). The signature is checked first and the claims only then, so that no claim
/// of a forged token influences the answer. See [`OidcError`] for what each refusal means.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<VerifiedToken, OidcError> {
    let parts = jwt::parse(token)?;
    let candidates = keys.candidates(parts.alg, parts.kid.as_deref())?;
    if candidates.len() > MAX_CANDIDATES {
        return Err(OidcError::AmbiguousKey {
            candidates: candidates.len(),
        });
    }
    if !candidates
        .iter()
        .any(|key| key.verify(parts.alg, parts.signing_input, &parts.signature))
    {
        return Err(OidcError::BadSignature);
    }
    let claims = parts.claims;

    let issuer = string_claim(&claims, "iss")?;
    if issuer != expect.issuer {
        return Err(OidcError::IssuerMismatch {
            expected: expect.issuer.to_owned(),
            found: issuer.to_owned(),
        });
    }
    let audiences = audiences(&claims)?;
    let Some(audience) = audiences
        .iter()
        .find(|aud| expect.audiences.contains(aud))
        .cloned()
    else {
        return Err(OidcError::AudienceMismatch { found: audiences });
    };

    let leeway = expect.leeway_seconds.max(0);
    let exp = numeric_date(&claims, "exp")?.ok_or(OidcError::Claim {
        name: "exp",
        reason: "is missing",
    })?;
    if exp.saturating_add(leeway) <= now {
        return Err(OidcError::Expired { exp, now });
    }
    let nbf = numeric_date(&claims, "nbf")?;
    if let Some(nbf) = nbf.filter(|nbf| nbf.saturating_sub(leeway) > now) {
        return Err(OidcError::NotYetValid { nbf, now });
    }
    let iat = numeric_date(&claims, "iat")?;
    if let Some(iat) = iat.filter(|iat| iat.saturating_sub(leeway) > now) {
        return Err(OidcError::IssuedInFuture { iat, now });
    }

    let subject = string_claim(&claims, "sub")?;
    if subject.is_empty() {
        return Err(OidcError::Claim {
            name: "sub",
            reason: "is empty",
        });
    }
    Ok(VerifiedToken {
        alg: parts.alg,
        kid: parts.kid,
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        audience,
        audiences,
        exp,
        iat,
        nbf,
        claims,
    })
}

/// The `iss` claim of a token whose signature is NOT checked: only for finding which provider
/// and key set to verify it with. Applies the same structural checks as [`verify`].
pub fn unverified_issuer(token: &str) -> Result<String, OidcError> {
    let parts = jwt::parse(token)?;
    string_claim(&parts.claims, "iss").map(str::to_owned)
}

fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, OidcError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(OidcError::Claim {
            name,
            reason: "is not a string",
        }),
        None => Err(OidcError::Claim {
            name,
            reason: "is missing",
        }),
    }
}

/// `aud`, a string or an array of strings (RFC 7519 §4.1.3).
fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, OidcError> {
    const NOT_STRINGS: OidcError = OidcError::Claim {
        name: "aud",
        reason: "is not a string or an array of strings",
    };
    match claims.get("aud") {
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(NOT_STRINGS))
            .collect(),
        Some(_) => Err(NOT_STRINGS),
        None => Err(OidcError::Claim {
            name: "aud",
            reason: "is missing",
        }),
    }
}

/// A NumericDate claim: a JSON number of seconds, fractions rounded down (RFC 7519 §2).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, OidcError> {
    let not_a_number = OidcError::Claim {
        name,
        reason: "is not a number of seconds",
    };
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(seconds) = n.as_i64() {
                return Ok(Some(seconds));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(not_a_number),
            }
        }
        Some(_) => Err(not_a_number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, NOW};

    #[test]
    fn string_claims_flattens_string_arrays() {
        let claims = serde_json::json!({
            "sub": "system:serviceaccount:ns:sa",
            "aud": ["a", "b"],
            "amr": ["x", 1],
            "exp": 5,
            "kubernetes.io": {"namespace": "ns"},
            "email_verified": true,
        });
        let token = VerifiedToken {
            alg: Alg::Rs256,
            kid: None,
            issuer: "https://i".into(),
            subject: "system:serviceaccount:ns:sa".into(),
            audience: "a".into(),
            audiences: vec!["a".into(), "b".into()],
            exp: 5,
            iat: None,
            nbf: None,
            claims: claims.as_object().unwrap().clone(),
        };
        let pairs: Vec<(&str, &str)> = token.string_claims().collect();
        assert_eq!(
            pairs,
            [
                ("aud", "a"),
                ("aud", "b"),
                ("sub", "system:serviceaccount:ns:sa")
            ]
        );
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions_only() {
        let claims = serde_json::json!({
            "a": 10, "b": 10.9, "c": "10", "d": null, "e": 1e300, "f": -5, "g": true
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(numeric_date(claims, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "f"), Ok(Some(-5)));
        assert_eq!(numeric_date(claims, "missing"), Ok(None));
        for name in ["c", "d", "e", "g"] {
            assert!(numeric_date(claims, name).is_err(), "{name}");
        }
    }

    #[test]
    fn leeway_bounds_are_exact() {
        let keys = testkit::es256_key();
        let set = testkit::key_set(&keys);
        let audiences = vec![testkit::AUD.to_owned()];
        let expect = Expectations::new(testkit::ISS, &audiences);
        let token = |exp: i64, nbf: i64| {
            testkit::es256(
                &keys,
                &testkit::claims_with(&[("exp", exp.into()), ("nbf", nbf.into())]),
            )
        };
        // exp + leeway <= now is expired; one second later it is not.
        let at_limit = token(NOW - 60, NOW - 100);
        assert_eq!(
            verify(&at_limit, &set, &expect, NOW),
            Err(OidcError::Expired {
                exp: NOW - 60,
                now: NOW
            })
        );
        assert!(verify(&token(NOW - 59, NOW - 100), &set, &expect, NOW).is_ok());
        // nbf - leeway > now is not yet valid.
        assert!(verify(&token(NOW + 600, NOW + 60), &set, &expect, NOW).is_ok());
        assert_eq!(
            verify(&token(NOW + 600, NOW + 61), &set, &expect, NOW),
            Err(OidcError::NotYetValid {
                nbf: NOW + 61,
                now: NOW
            })
        );
        // A negative leeway counts as none.
        let strict = Expectations {
            leeway_seconds: -100,
            ..expect
        };
        assert!(verify(&token(NOW + 1, NOW), &set, &strict, NOW).is_ok());
    }

    #[test]
    fn extreme_dates_do_not_overflow() {
        let keys = testkit::es256_key();
        let set = testkit::key_set(&keys);
        let audiences = vec![testkit::AUD.to_owned()];
        let expect = Expectations::new(testkit::ISS, &audiences);
        let token = testkit::es256(&keys, &testkit::claims_with(&[("exp", i64::MAX.into())]));
        assert!(verify(&token, &set, &expect, NOW).is_ok());
        let token = testkit::es256(&keys, &testkit::claims_with(&[("exp", i64::MIN.into())]));
        assert!(matches!(
            verify(&token, &set, &expect, NOW),
            Err(OidcError::Expired { .. })
        ));
    }

    #[test]
    fn unverified_issuer_reads_iss() {
        let keys = testkit::es256_key();
        let token = testkit::es256(&keys, &testkit::claims());
        assert_eq!(unverified_issuer(&token).unwrap(), testkit::ISS);
        let token = testkit::es256(&keys, &testkit::claims_with(&[("iss", 5.into())]));
        assert!(matches!(
            unverified_issuer(&token),
            Err(OidcError::Claim { name: "iss", .. })
        ));
        assert!(matches!(
            unverified_issuer("a.b"),
            Err(OidcError::Malformed { .. })
        ));
    }

    #[test]
    fn a_token_without_kid_tries_a_few_keys() {
        let signer = testkit::es256_key();
        let others: Vec<_> = (0..3).map(|_| testkit::es256_key()).collect();
        let mut all: Vec<&testkit::TestKey> = others.iter().collect();
        all.push(&signer);
        let set = testkit::key_set_of(&all, false);
        let audiences = vec![testkit::AUD.to_owned()];
        let expect = Expectations::new(testkit::ISS, &audiences);
        let token = testkit::sign_raw(&signer, r#"{"alg":"ES256"}"#, &testkit::claims());
        assert!(verify(&token, &set, &expect, NOW).is_ok());
        let fifth = testkit::es256_key();
        all.push(&fifth);
        let set = testkit::key_set_of(&all, false);
        assert_eq!(
            verify(&token, &set, &expect, NOW),
            Err(OidcError::AmbiguousKey { candidates: 5 })
        );
    }
}
