//! The compact JWS form of a JWT, taken apart strictly: size, three base64url parts without
//! padding, JSON objects without duplicate members, and the header's algorithm.
//!
//! <https://www.rfc-editor.org/rfc/rfc7515#section-7.1> (compact serialization),
//! <https://www.rfc-editor.org/rfc/rfc8725> (JWT best current practices).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::OidcError;

/// The longest token accepted, in bytes, checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A JWS algorithm this crate verifies. Anything else (`none`, the `HS*` family, ...) is refused
/// by name before a key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256, signature as fixed-width `r || s`.
    Es256,
    /// ECDSA on P-384 with SHA-384, signature as fixed-width `r || s`.
    Es384,
}

impl Alg {
    /// Every algorithm verified, in the order discovery documents list them.
    pub const ALL: [Alg; 6] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Es256,
        Alg::Es384,
    ];

    /// The algorithm of a JOSE name, matched exactly (`RS256`, not `rs256`).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE name (`RS256`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A token taken apart, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `header.claims`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) signature: Vec<u8>,
}

/// Takes a compact JWS apart, refusing anything unusual before it reaches a key.
pub(crate) fn parse(token: &str) -> Result<Parts<'_>, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than the {MAX_TOKEN_BYTES} allowed",
            token.len()
        )));
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        let count = token.split('.').count();
        return Err(malformed(format!("{count} parts, not 3")));
    };
    let signing_input = &token.as_bytes()[..header.len() + 1 + claims.len()];
    let header = object(&decode(header, "header")?, "header").map_err(malformed)?;
    let (alg, kid) = check_header(&header)?;
    let claims = object(&decode(claims, "claims")?, "claims").map_err(malformed)?;
    let signature = decode(signature, "signature")?;
    if signature.is_empty() {
        return Err(malformed("empty signature".to_owned()));
    }
    Ok(Parts {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

/// The header's algorithm and key id. `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only
/// from the caller's key set, never from the token.
fn check_header(header: &Map<String, Value>) -> Result<(Alg, Option<String>), OidcError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(malformed("header `alg` is not a string".to_owned())),
        None => return Err(malformed("header has no `alg`".to_owned())),
    };
    let Some(alg) = Alg::from_name(alg) else {
        return Err(OidcError::UnsupportedAlg { alg: alg.clone() });
    };
    if header.contains_key("crit") {
        return Err(malformed(
            "header has `crit` extensions and none is understood".to_owned(),
        ));
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("header `kid` is not a string".to_owned())),
        None => None,
    };
    Ok((alg, kid))
}

/// Base64url without padding, as JWS requires; anything else (padding, whitespace, `+`, `/`,
/// non-zero trailing bits) is refused.
pub(crate) fn decode(part: &str, what: &str) -> Result<Vec<u8>, OidcError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(format!("{what} is not unpadded base64url")))
}

/// Base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON object whose members all have distinct names: with duplicates, two parsers could
/// read two different tokens out of the same bytes.
pub(crate) fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(StrictObject)
        .and_then(|map| de.end().map(|()| map))
        .map_err(|e| format!("{what} is not a JSON object: {e}"))
}

struct StrictObject;

impl<'de> Visitor<'de> for StrictObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some((name, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&name) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate member `{name}`"
                )));
            }
            map.insert(name, value);
        }
        Ok(map)
    }
}

fn malformed(reason: String) -> OidcError {
    OidcError::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode(header.as_bytes()),
            encode(claims.as_bytes()),
            encode(signature)
        )
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"x"}"#,
            b"sig",
        );
        let parts = parse(&t).unwrap();
        assert_eq!(parts.alg, Alg::Es256);
        assert_eq!(parts.kid.as_deref(), Some("k1"));
        assert_eq!(parts.claims["sub"], "x");
        assert_eq!(parts.signature, b"sig");
        assert_eq!(
            parts.signing_input,
            t.rsplit_once('.').unwrap().0.as_bytes()
        );
    }

    #[test]
    fn alg_names_match_exactly() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        for name in ["rs256", "none", "HS256", "ES256 ", "EdDSA", "PS384", ""] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn duplicate_members_are_refused() {
        let t = token(r#"{"alg":"RS256","alg":"none"}"#, r#"{"sub":"x"}"#, b"sig");
        assert!(matches!(parse(&t), Err(OidcError::Malformed { .. })));
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#, b"sig");
        let Err(OidcError::Malformed { reason }) = parse(&t) else {
            panic!()
        };
        assert!(reason.contains("duplicate member `sub`"), "{reason}");
    }

    #[test]
    fn trailing_data_and_non_objects_are_refused() {
        for header in [
            r#"{"alg":"RS256"} {}"#,
            r#"["alg"]"#,
            r#""RS256""#,
            "",
            "\u{feff}{}",
        ] {
            let t = token(header, r#"{"sub":"x"}"#, b"sig");
            assert!(
                matches!(parse(&t), Err(OidcError::Malformed { .. })),
                "{header}"
            );
        }
    }

    #[test]
    fn base64_is_strict() {
        assert!(decode("YQ", "x").is_ok());
        for bad in ["YQ==", "YQ=", "Y Q", "YR", "a+b/", "YQ\n"] {
            assert!(decode(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_fields_are_typed() {
        let t = token(r#"{"alg":256}"#, r#"{}"#, b"sig");
        assert!(matches!(parse(&t), Err(OidcError::Malformed { .. })));
        let t = token(r#"{"alg":"RS256","kid":7}"#, r#"{}"#, b"sig");
        assert!(matches!(parse(&t), Err(OidcError::Malformed { .. })));
        let t = token(r#"{"kid":"k"}"#, r#"{}"#, b"sig");
        assert!(matches!(parse(&t), Err(OidcError::Malformed { .. })));
    }

    #[test]
    fn key_urls_in_the_header_are_ignored() {
        let header = r#"{"alg":"RS256","jku":"https://evil.test/jwks","x5u":"https://evil.test",
            "jwk":{"kty":"oct","k":"AAAA"}}"#;
        let t = token(header, r#"{}"#, b"sig");
        let parts = parse(&t).unwrap();
        assert_eq!(parts.kid, None);
    }
}
