//! The hostile-token corpus: tokens an attacker would try, each of which [`crate::verify`] must
//! refuse with the expected error, and the well-formed tokens it must accept.
//!
//! <https://www.rfc-editor.org/rfc/rfc8725#section-2> (the attacks on JWTs this guards against),
//! <https://auth0.com/blog/critical-vulnerabilities-in-json-web-token-libraries/> (`none`,
//! HMAC keyed with the RSA public key).

use ring::hmac;
use serde_json::{Value, json};

use crate::jwks::{Jwk, KeySet, PublicKey};
use crate::jwt::{self, Alg, MAX_TOKEN_BYTES};
use crate::testkit::{self, AUD, ISS, NOW, TestKey};
use crate::{Expectations, OidcError, verify};

/// The `exp` of the expired case.
const EXPIRED_AT: i64 = NOW - 3600;

struct Case {
    name: &'static str,
    token: String,
    keys: KeySet,
    expected: fn(&OidcError) -> bool,
}

fn b64(text: &str) -> String {
    jwt::encode(text.as_bytes())
}

/// A token of `header` and the default claims, signed with HMAC keyed by `secret`.
fn hmac_token(alg: &str, algorithm: hmac::Algorithm, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(&json!({ "alg": alg }).to_string()),
        b64(&testkit::claims().to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", jwt::encode(tag.as_ref()))
}

/// An unsigned token of this header.
fn unsigned(header: &str) -> String {
    format!("{}.{}.", b64(header), b64(&testkit::claims().to_string()))
}

/// A key set holding the 1024-bit key of `testdata/rsa1024.jwks.json`, built past the size
/// check of `KeySet::from_jwks_json` so that ring's own refusal is what is tested.
fn weak_key_set() -> KeySet {
    let document: Value =
        serde_json::from_slice(include_bytes!("../testdata/rsa1024.jwks.json")).unwrap();
    let key = &document["keys"][0];
    let member = |name: &str| jwt::decode(key[name].as_str().unwrap(), name).unwrap();
    KeySet::from_keys(vec![Jwk {
        kid: Some("weak".into()),
        alg: None,
        key: PublicKey::Rsa {
            n: member("n"),
            e: member("e"),
        },
    }])
}

fn corpus(rsa: &TestKey, ec: &TestKey) -> Vec<Case> {
    let other = testkit::rsa_other_key();
    let rsa_set = testkit::key_set(rsa);
    let both = testkit::key_set_of(&[rsa, ec], true);
    let rsa_pair = testkit::key_set_of(&[rsa, &other], true);
    let claims = testkit::claims();
    let good = testkit::rs256(rsa, &claims);
    let (n, e) = rsa.rsa_n_e();
    let jwks_text = testkit::jwks_json(&[rsa]);
    let rs256_with =
        |changes: &[(&str, Value)]| testkit::rs256(rsa, &testkit::claims_with(changes));
    let header_rs = testkit::header("RS256", rsa.kid());
    let signed_rs = |header: &str| testkit::sign(rsa, Alg::Rs256, header, &claims.to_string());
    let (input, _) = good.rsplit_once('.').unwrap();
    let pinned = KeySet::from_keys(vec![Jwk {
        kid: Some(rsa.kid().to_owned()),
        alg: Some(Alg::Rs256),
        key: rsa.public(),
    }]);

    macro_rules! case {
        ($name:expr, $token:expr, $keys:expr, $pattern:pat) => {
            Case {
                name: $name,
                token: $token,
                keys: $keys.clone(),
                expected: |e| matches!(e, $pattern),
            }
        };
    }
    use OidcError as E;
    vec![
        case!("alg none", unsigned(r#"{"alg":"none"}"#), rsa_set, E::UnsupportedAlg { .. }),
        case!("alg None", unsigned(r#"{"alg":"None"}"#), rsa_set, E::UnsupportedAlg { .. }),
        case!("alg NONE", unsigned(r#"{"alg":"NONE"}"#), rsa_set, E::UnsupportedAlg { .. }),
        case!(
            "alg nOnE with a signature",
            format!("{}{}", unsigned(r#"{"alg":"nOnE"}"#), jwt::encode(b"x")),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "HS256 keyed with the RSA key's n||e",
            hmac_token("HS256", hmac::HMAC_SHA256, &[n.clone(), e.clone()].concat()),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "HS256 keyed with the JWKS text",
            hmac_token("HS256", hmac::HMAC_SHA256, jwks_text.as_bytes()),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "HS384 keyed with the modulus",
            hmac_token("HS384", hmac::HMAC_SHA384, &n),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "HS512 keyed with the JWKS text",
            hmac_token("HS512", hmac::HMAC_SHA512, jwks_text.as_bytes()),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!("EdDSA", signed_rs(r#"{"alg":"EdDSA"}"#), rsa_set, E::UnsupportedAlg { .. }),
        case!("alg in lower case", signed_rs(r#"{"alg":"rs256"}"#), rsa_set, E::UnsupportedAlg { .. }),
        case!(
            "alg with fullwidth letters",
            signed_rs(r#"{"alg":"ＲＳ256"}"#),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "alg with a trailing NUL",
            signed_rs(r#"{"alg":"RS256\u0000"}"#),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "alg with a zero-width space",
            signed_rs("{\"alg\":\"RS256\u{200b}\"}"),
            rsa_set,
            E::UnsupportedAlg { .. }
        ),
        case!(
            "kid with a Cyrillic lookalike",
            signed_rs(&testkit::header("RS256", &rsa.kid().replacen(|c: char| c.is_ascii_alphabetic(), "а", 1))),
            rsa_set,
            E::UnknownKey { kid: Some(_) }
        ),
        case!("byte order mark before the header", signed_rs(&format!("\u{feff}{header_rs}")), rsa_set, E::Malformed { .. }),
        case!("duplicate alg member", signed_rs(r#"{"alg":"RS256","alg":"none"}"#), rsa_set, E::Malformed { .. }),
        case!("empty signature", format!("{input}."), rsa_set, E::Malformed { .. }),
        case!(
            "signature from another key",
            testkit::sign(&other, Alg::Rs256, &header_rs, &claims.to_string()),
            rsa_set,
            E::BadSignature
        ),
        case!(
            "kid swapped to another RSA key",
            testkit::sign(&other, Alg::Rs256, &header_rs, &claims.to_string()),
            rsa_pair,
            E::BadSignature
        ),
        case!(
            "kid swapped to the EC key",
            signed_rs(&testkit::header("RS256", ec.kid())),
            both,
            E::KeyMismatch { .. }
        ),
        case!("unknown kid", signed_rs(&testkit::header("RS256", "nope")), rsa_set, E::UnknownKey { kid: Some(_) }),
        case!(
            "ES256 token verified against the RSA key",
            testkit::sign(ec, Alg::Es256, &testkit::header("ES256", rsa.kid()), &claims.to_string()),
            both,
            E::KeyMismatch { alg: Alg::Es256, .. }
        ),
        case!(
            "ES256 token without kid against an RSA-only set",
            testkit::sign(ec, Alg::Es256, r#"{"alg":"ES256"}"#, &claims.to_string()),
            rsa_set,
            E::UnknownKey { kid: None }
        ),
        case!(
            "ES384 header on a P-256 key",
            testkit::sign(ec, Alg::Es256, &testkit::header("ES384", ec.kid()), &claims.to_string()),
            both,
            E::KeyMismatch { alg: Alg::Es384, .. }
        ),
        case!(
            "PS256 with a key pinned to RS256",
            testkit::sign(rsa, Alg::Ps256, &testkit::header("PS256", rsa.kid()), &claims.to_string()),
            pinned,
            E::KeyMismatch { alg: Alg::Ps256, .. }
        ),
        case!(
            "RS256 signature relabelled PS256",
            format!("{}.{}", b64(&testkit::header("PS256", rsa.kid())), good.split_once('.').unwrap().1),
            rsa_set,
            E::BadSignature
        ),
        case!(
            "RS256 with a 1024-bit key",
            include_str!("../testdata/rsa1024.token").trim().to_owned(),
            weak_key_set(),
            E::BadSignature
        ),
        case!(
            "DER ECDSA signature",
            {
                let input = format!("{}.{}", b64(&testkit::header("ES256", ec.kid())), b64(&claims.to_string()));
                format!("{input}.{}", jwt::encode(&testkit::sign_der(ec, input.as_bytes())))
            },
            both,
            E::BadSignature
        ),
        case!(
            "modified claims with the original signature",
            format!(
                "{}.{}.{}",
                good.split('.').next().unwrap(),
                b64(&testkit::claims_with(&[("sub", "system:serviceaccount:kube-system:admin".into())]).to_string()),
                good.rsplit('.').next().unwrap()
            ),
            rsa_set,
            E::BadSignature
        ),
        case!(
            "jwk and jku of the attacker's key in the header",
            testkit::sign(
                &other,
                Alg::Rs256,
                &json!({"alg": "RS256", "kid": rsa.kid(), "jku": "https://evil.test/jwks",
                        "x5u": "https://evil.test/cert",
                        "jwk": serde_json::from_str::<Value>(&testkit::jwks_json(&[&other])).unwrap()["keys"][0]})
                    .to_string(),
                &claims.to_string()
            ),
            rsa_set,
            E::BadSignature
        ),
        case!("truncated signature", good[..good.len() - 4].to_owned(), rsa_set, E::BadSignature),
        case!("truncated in the claims", good[..good.find('.').unwrap() + 10].to_owned(), rsa_set, E::Malformed { .. }),
        case!("2 parts", input.to_owned(), rsa_set, E::Malformed { .. }),
        case!("4 parts", format!("{good}.{}", jwt::encode(b"x")), rsa_set, E::Malformed { .. }),
        case!("padding characters", format!("{good}=="), rsa_set, E::Malformed { .. }),
        case!("standard base64 alphabet", good.replace('-', "+").replace('_', "/"), rsa_set, E::Malformed { .. }),
        case!("whitespace inside", good.replacen('.', ". ", 1), rsa_set, E::Malformed { .. }),
        case!("trailing newline", format!("{good}\n"), rsa_set, E::Malformed { .. }),
        case!(
            "huge token",
            rs256_with(&[("pad", "a".repeat(MAX_TOKEN_BYTES).into())]),
            rsa_set,
            E::Malformed { .. }
        ),
        case!("header not JSON", signed_rs("{alg: RS256}"), rsa_set, E::Malformed { .. }),
        case!(
            "claims a JSON array",
            testkit::sign(rsa, Alg::Rs256, &header_rs, r#"["iss","sub"]"#),
            rsa_set,
            E::Malformed { .. }
        ),
        case!("crit header", signed_rs(&json!({"alg": "RS256", "kid": rsa.kid(), "crit": ["exp"], "exp": 1}).to_string()), rsa_set, E::Malformed { .. }),
        case!(
            "expired",
            rs256_with(&[("exp", EXPIRED_AT.into()), ("iat", (NOW - 7200).into()), ("nbf", Value::Null)]),
            rsa_set,
            E::Expired { exp: EXPIRED_AT, now: NOW }
        ),
        case!("nbf in the future", rs256_with(&[("nbf", (NOW + 600).into())]), rsa_set, E::NotYetValid { .. }),
        case!("iat in the future", rs256_with(&[("iat", (NOW + 600).into())]), rsa_set, E::IssuedInFuture { .. }),
        case!(
            "issuer differs by a trailing slash",
            rs256_with(&[("iss", format!("{ISS}/").into())]),
            rsa_set,
            E::IssuerMismatch { .. }
        ),
        case!("issuer in upper case", rs256_with(&[("iss", ISS.to_uppercase().into())]), rsa_set, E::IssuerMismatch { .. }),
        case!("wrong aud", rs256_with(&[("aud", "someone-else".into())]), rsa_set, E::AudienceMismatch { .. }),
        case!(
            "aud array without a match",
            rs256_with(&[("aud", json!(["a", "b", "sts.amazonaws.com "]))]),
            rsa_set,
            E::AudienceMismatch { .. }
        ),
        case!("aud empty array", rs256_with(&[("aud", json!([]))]), rsa_set, E::AudienceMismatch { .. }),
        case!("aud array with a number", rs256_with(&[("aud", json!([AUD, 5]))]), rsa_set, E::Claim { name: "aud", .. }),
        case!("exp as a string", rs256_with(&[("exp", (NOW + 60).to_string().into())]), rsa_set, E::Claim { name: "exp", .. }),
        case!("exp missing", rs256_with(&[("exp", Value::Null)]), rsa_set, E::Claim { name: "exp", .. }),
        case!("nbf as a string", rs256_with(&[("nbf", "0".into())]), rsa_set, E::Claim { name: "nbf", .. }),
        case!("iat as a boolean", rs256_with(&[("iat", true.into())]), rsa_set, E::Claim { name: "iat", .. }),
        case!("sub missing", rs256_with(&[("sub", Value::Null)]), rsa_set, E::Claim { name: "sub", .. }),
        case!("sub a number", rs256_with(&[("sub", 5.into())]), rsa_set, E::Claim { name: "sub", .. }),
        case!("sub empty", rs256_with(&[("sub", "".into())]), rsa_set, E::Claim { name: "sub", .. }),
    ]
}

#[test]
fn hostile_tokens_are_refused() {
    let rsa = testkit::rsa_key();
    let ec = testkit::es256_key();
    let audiences = vec![AUD.to_owned()];
    let expect = Expectations::new(ISS, &audiences);
    let cases = corpus(&rsa, &ec);
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in &cases {
        match verify(&case.token, &case.keys, &expect, NOW) {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(e) if (case.expected)(&e) => {}
            Err(e) => failures.push(format!(
                "{}: refused with the wrong error: {e:?}",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn well_formed_tokens_are_accepted() {
    let rsa = testkit::rsa_key();
    let p256 = testkit::es256_key();
    let p384 = testkit::es384_key();
    let set = KeySet::from_jwks_json(testkit::jwks_json(&[&rsa, &p256, &p384]).as_bytes()).unwrap();
    let audiences = vec!["other".to_owned(), AUD.to_owned()];
    let expect = Expectations::new(ISS, &audiences);
    let claims = testkit::claims().to_string();
    let cases = [
        (Alg::Rs256, &rsa),
        (Alg::Rs384, &rsa),
        (Alg::Rs512, &rsa),
        (Alg::Ps256, &rsa),
        (Alg::Es256, &p256),
        (Alg::Es384, &p384),
    ];
    for (alg, key) in cases {
        let token = testkit::sign(key, alg, &testkit::header(alg.name(), key.kid()), &claims);
        let verified = verify(&token, &set, &expect, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.kid.as_deref(), Some(key.kid()));
        assert_eq!(verified.issuer, ISS);
        assert_eq!(verified.subject, "system:serviceaccount:default:app");
        assert_eq!(verified.audience, AUD);
        assert_eq!(verified.exp, NOW + 3500);
        assert_eq!(verified.iat, Some(NOW - 100));
        assert_eq!(verified.nbf, Some(NOW - 100));
    }
}

#[test]
fn audience_may_be_a_string_or_any_element_of_an_array() {
    let key = testkit::es256_key();
    let set = testkit::key_set(&key);
    let audiences = vec!["b".to_owned(), "c".to_owned()];
    let expect = Expectations::new(ISS, &audiences);
    let token = testkit::es256(
        &key,
        &testkit::claims_with(&[("aud", json!(["a", "c", "b"]))]),
    );
    let verified = verify(&token, &set, &expect, NOW).unwrap();
    assert_eq!(verified.audience, "c");
    assert_eq!(verified.audiences, ["a", "c", "b"]);
    let token = testkit::es256(&key, &testkit::claims_with(&[("aud", "b".into())]));
    assert_eq!(verify(&token, &set, &expect, NOW).unwrap().audiences, ["b"]);
}

#[test]
fn the_1024_bit_key_set_is_refused_when_parsed() {
    let err = KeySet::from_jwks_json(include_bytes!("../testdata/rsa1024.jwks.json")).unwrap_err();
    assert!(err.to_string().contains("1024 bits"), "{err}");
}
