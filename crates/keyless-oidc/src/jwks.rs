//! `KeySet`: the public keys of one issuer, parsed from its JWKS document, and the checks that
//! pick which of them may verify a given token.
//!
//! <https://www.rfc-editor.org/rfc/rfc7517> (JWK), <https://www.rfc-editor.org/rfc/rfc7518#section-6>
//! (RSA and EC key parameters), <https://www.rfc-editor.org/rfc/rfc7638> (thumbprints).

use std::fmt;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::OidcError;
use crate::jwt::{self, Alg};

/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The most keys a JWKS document may list (usable or not).
pub const MAX_JWKS_KEYS: usize = 100;
/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (ring's limit for verification).
const MAX_RSA_BITS: usize = 8192;

/// The verification keys of one issuer. Cheap to clone; built from a JWKS document
/// ([`KeySet::from_jwks_json`]) or from the issuer's own keys
/// ([`crate::IssuerKeys::key_set`]).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// One usable key of a set.
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The `alg` the document pins the key to, if any.
    pub(crate) alg: Option<Alg>,
    pub(crate) key: PublicKey,
}

/// Public key material, checked for size and shape.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y` on P-256.
    P256(Vec<u8>),
    /// The uncompressed point `04 || x || y` on P-384.
    P384(Vec<u8>),
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). RSA and EC (P-256, P-384) keys are kept;
    /// keys of other types, keys for encryption (`use` other than `sig`) and keys pinned to an
    /// algorithm this crate does not verify are skipped. Refused: documents over
    /// [`MAX_JWKS_BYTES`] or with more than [`MAX_JWKS_KEYS`] keys, RSA moduli under 2048 or
    /// over 8192 bits, malformed members, and documents with no usable key.
    pub fn from_jwks_json(document: &[u8]) -> Result<KeySet, OidcError> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(jwks_error(format!(
                "{} bytes, more than the {MAX_JWKS_BYTES} allowed",
                document.len()
            )));
        }
        let mut top = jwt::object(document, "key set").map_err(jwks_error)?;
        let Some(Value::Array(entries)) = top.remove("keys") else {
            return Err(jwks_error("no `keys` array".to_owned()));
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(jwks_error(format!(
                "{} keys, more than the {MAX_JWKS_KEYS} allowed",
                entries.len()
            )));
        }
        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(jwks_error(format!("key {index} is not an object")));
            };
            if let Some(key) = parse_key(entry).map_err(|reason| {
                let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
                jwks_error(format!("key {index} (`{kid}`): {reason}"))
            })? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(jwks_error(format!(
                "no usable signing key among {} keys",
                entries.len()
            )));
        }
        Ok(KeySet { keys })
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn from_keys(keys: Vec<Jwk>) -> KeySet {
        KeySet { keys }
    }

    /// The keys that may verify a token of `alg` and `kid`: with a `kid`, the keys of that id
    /// ([`OidcError::UnknownKey`] if none, [`OidcError::KeyMismatch`] if none fits `alg`);
    /// without one, every key that fits `alg`.
    pub(crate) fn candidates(
        &self,
        alg: Alg,
        kid: Option<&str>,
    ) -> Result<Vec<&PublicKey>, OidcError> {
        let fits = |k: &&Jwk| k.key.fits(alg) && k.alg.is_none_or(|pinned| pinned == alg);
        let Some(kid) = kid else {
            let found: Vec<&PublicKey> = self.keys.iter().filter(fits).map(|k| &k.key).collect();
            if found.is_empty() {
                return Err(OidcError::UnknownKey { kid: None });
            }
            return Ok(found);
        };
        let named: Vec<&Jwk> = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect();
        if named.is_empty() {
            return Err(OidcError::UnknownKey {
                kid: Some(kid.to_owned()),
            });
        }
        let found: Vec<&PublicKey> = named.into_iter().filter(fits).map(|k| &k.key).collect();
        if found.is_empty() {
            return Err(OidcError::KeyMismatch {
                kid: kid.to_owned(),
                alg,
            });
        }
        Ok(found)
    }
}

impl PublicKey {
    /// Whether the key is of the type `alg` signs with.
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        match alg {
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 => matches!(self, Self::Rsa { .. }),
            Alg::Es256 => matches!(self, Self::P256(_)),
            Alg::Es384 => matches!(self, Self::P384(_)),
        }
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this key. ECDSA
    /// signatures must be the fixed-width `r || s` of JWS; DER is refused.
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        match (self, alg) {
            (Self::Rsa { n, e }, _) => {
                let params = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::Es256 | Alg::Es384 => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            (Self::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Self::P384(point), Alg::Es384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// The RFC 7638 required members, in the lexicographic order the thumbprint hashes them.
    pub(crate) fn members(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Rsa { n, e } => {
                vec![
                    ("e", jwt::encode(e)),
                    ("kty", "RSA".into()),
                    ("n", jwt::encode(n)),
                ]
            }
            Self::P256(point) | Self::P384(point) => {
                let crv = if matches!(self, Self::P256(_)) {
                    "P-256"
                } else {
                    "P-384"
                };
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                vec![
                    ("crv", crv.into()),
                    ("kty", "EC".into()),
                    ("x", jwt::encode(x)),
                    ("y", jwt::encode(y)),
                ]
            }
        }
    }

    /// The RFC 7638 thumbprint: base64url of the SHA-256 of the required members as compact
    /// JSON in lexicographic order. Written by hand: no JSON map guarantees that order.
    pub(crate) fn thumbprint(&self) -> String {
        let body: Vec<String> = self
            .members()
            .iter()
            .map(|(name, value)| format!(r#""{name}":"{value}""#))
            .collect();
        let canonical = format!("{{{}}}", body.join(","));
        jwt::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { n, .. } => write!(f, "Rsa({} bits)", rsa_bits(n)),
            Self::P256(_) => f.write_str("P256"),
            Self::P384(_) => f.write_str("P384"),
        }
    }
}

/// One key of a JWKS document: `Ok(None)` when it is to be skipped, `Err` when it is broken.
fn parse_key(entry: &Map<String, Value>) -> Result<Option<Jwk>, String> {
    let kty = string_member(entry, "kty")?.ok_or("no `kty`")?;
    if string_member(entry, "use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    let alg = match string_member(entry, "alg")? {
        None => None,
        Some(name) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let kid = string_member(entry, "kid")?.map(str::to_owned);
    let key = match kty {
        "RSA" => rsa_key(entry)?,
        "EC" => match string_member(entry, "crv")? {
            Some("P-256") => PublicKey::P256(ec_point(entry, 32)?),
            Some("P-384") => PublicKey::P384(ec_point(entry, 48)?),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if alg.is_some_and(|alg| !key.fits(alg)) {
        tracing::debug!(kid = ?kid, alg = ?alg, "jwks: key pinned to an algorithm of another key type, skipped");
        return Ok(None);
    }
    Ok(Some(Jwk { kid, alg, key }))
}

fn rsa_key(entry: &Map<String, Value>) -> Result<PublicKey, String> {
    let n = strip_zeros(bytes_member(entry, "n")?);
    let e = strip_zeros(bytes_member(entry, "e")?);
    let bits = rsa_bits(&n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "rsa modulus of {bits} bits, {MIN_RSA_BITS} to {MAX_RSA_BITS} required"
        ));
    }
    // ring verifies with exponents from 3 to 2^33 - 1, odd.
    let exponent = if e.len() <= 8 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        0
    };
    if !(3..(1 << 33)).contains(&exponent) || exponent % 2 == 0 {
        return Err("rsa exponent `e` is not an odd number from 3 to 2^33 - 1".to_owned());
    }
    Ok(PublicKey::Rsa { n, e })
}

fn ec_point(entry: &Map<String, Value>, width: usize) -> Result<Vec<u8>, String> {
    let x = bytes_member(entry, "x")?;
    let y = bytes_member(entry, "y")?;
    if x.len() != width || y.len() != width {
        return Err(format!("`x` and `y` must be {width} bytes each"));
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn string_member<'a>(entry: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match entry.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn bytes_member(entry: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = string_member(entry, name)?.ok_or_else(|| format!("no `{name}`"))?;
    jwt::decode(text, name).map_err(|_| format!("`{name}` is not unpadded base64url"))
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The bit length of a big-endian number without leading zero bytes.
pub(crate) fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
    }
}

fn jwks_error(reason: String) -> OidcError {
    OidcError::Jwks { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn jwks(keys: &str) -> Result<KeySet, OidcError> {
        KeySet::from_jwks_json(format!(r#"{{"keys":[{keys}]}}"#).as_bytes())
    }

    fn rsa(extra: &str) -> String {
        format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB"{extra}}}"#)
    }

    fn ec(extra: &str) -> String {
        let x = jwt::encode(&[1; 32]);
        let y = jwt::encode(&[2; 32]);
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"{extra}}}"#)
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        let set = jwks(&rsa(r#","kid":"2011-04-29","alg":"RS256""#)).unwrap();
        assert_eq!(
            set.keys[0].key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn parses_rsa_and_ec_keys() {
        let set = jwks(&format!(
            r#"{},{}"#,
            rsa(r#","kid":"r""#),
            ec(r#","kid":"e""#)
        ))
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(format!("{:?}", set.keys[0].key), "Rsa(2048 bits)");
        assert_eq!(
            set.keys[1].key,
            PublicKey::P256([&[4u8][..], &[1; 32], &[2; 32]].concat())
        );
    }

    #[test]
    fn skips_keys_it_cannot_use() {
        let keys = [
            rsa(r#","use":"enc""#),
            rsa(r#","alg":"RSA-OAEP""#),
            rsa(r#","alg":"HS256""#),
            rsa(r#","alg":"ES256""#),
            r#"{"kty":"oct","k":"AAAA"}"#.to_owned(),
            r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#.to_owned(),
            r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#.to_owned(),
            ec(r#","kid":"good""#),
        ];
        let set = jwks(&keys.join(",")).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
    }

    #[test]
    fn refuses_broken_documents() {
        let n_1024 = jwt::encode(&[0xc5; 128]);
        let n_small_padded = jwt::encode(&[&[0u8; 200][..], &[0xc5; 128]].concat());
        let n_huge = jwt::encode(&[0xc5; 1025]);
        let cases = [
            ("not json".to_owned(), "not a JSON object"),
            (r#"{"keys":{}}"#.to_owned(), "no `keys` array"),
            (r#"{"keys":[1]}"#.to_owned(), "key 0 is not an object"),
            (r#"{"keys":[]}"#.to_owned(), "no usable signing key"),
            (
                r#"{"keys":[{"kty":"oct"}]}"#.to_owned(),
                "no usable signing key among 1",
            ),
            (r#"{"keys":[{"n":"AQAB"}]}"#.to_owned(), "no `kty`"),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{n_1024}","e":"AQAB"}}]}}"#),
                "1024 bits",
            ),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{n_small_padded}","e":"AQAB"}}]}}"#),
                "1024 bits",
            ),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{n_huge}","e":"AQAB"}}]}}"#),
                "8200 bits",
            ),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{RFC7638_N}","e":"AQ"}}]}}"#),
                "exponent",
            ),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{RFC7638_N}","e":"A"}}]}}"#),
                "base64url",
            ),
            (
                format!(r#"{{"keys":[{{"kty":"RSA","n":"{RFC7638_N}"}}]}}"#),
                "no `e`",
            ),
            (
                format!(r#"{{"keys":[{}]}}"#, rsa(r#","kid":5"#)),
                "`kid` is not a string",
            ),
            (
                r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#.to_owned(),
                "32 bytes",
            ),
            (
                format!(r#"{{"keys":[{}],"keys":[]}}"#, rsa("")),
                "duplicate member",
            ),
        ];
        for (document, expected) in cases {
            let Err(OidcError::Jwks { reason }) = KeySet::from_jwks_json(document.as_bytes())
            else {
                panic!("accepted {document}");
            };
            assert!(reason.contains(expected), "{reason} / {expected}");
        }
    }

    #[test]
    fn caps_size_and_key_count() {
        let many = vec![ec(""); MAX_JWKS_KEYS + 1].join(",");
        assert!(matches!(jwks(&many), Err(OidcError::Jwks { .. })));
        assert_eq!(
            jwks(&vec![ec(""); MAX_JWKS_KEYS].join(",")).unwrap().len(),
            MAX_JWKS_KEYS
        );
        let big = format!(
            r#"{{"keys":[{}],"pad":"{}"}}"#,
            ec(""),
            "a".repeat(MAX_JWKS_BYTES)
        );
        assert!(matches!(
            KeySet::from_jwks_json(big.as_bytes()),
            Err(OidcError::Jwks { .. })
        ));
    }

    #[test]
    fn candidates_follow_kid_and_alg() {
        let set = jwks(&format!(
            "{},{},{}",
            rsa(r#","kid":"r1""#),
            rsa(r#","kid":"r2","alg":"PS256""#),
            ec(r#","kid":"e1""#)
        ))
        .unwrap();
        assert_eq!(set.candidates(Alg::Rs256, Some("r1")).unwrap().len(), 1);
        assert_eq!(set.candidates(Alg::Rs256, None).unwrap().len(), 1);
        assert_eq!(set.candidates(Alg::Ps256, None).unwrap().len(), 2);
        assert_eq!(
            set.candidates(Alg::Rs256, Some("r2")).unwrap_err(),
            OidcError::KeyMismatch {
                kid: "r2".into(),
                alg: Alg::Rs256
            }
        );
        assert_eq!(
            set.candidates(Alg::Es256, Some("r1")).unwrap_err(),
            OidcError::KeyMismatch {
                kid: "r1".into(),
                alg: Alg::Es256
            }
        );
        assert_eq!(
            set.candidates(Alg::Es256, Some("nope")).unwrap_err(),
            OidcError::UnknownKey {
                kid: Some("nope".into())
            }
        );
        assert_eq!(
            set.candidates(Alg::Es384, None).unwrap_err(),
            OidcError::UnknownKey { kid: None }
        );
    }
}
