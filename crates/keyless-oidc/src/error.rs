//! `OidcError`, the one error of this crate, and the wording AWS STS gives each failure.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html#API_AssumeRoleWithWebIdentity_Errors>
//!
//! STS maps them so: [`OidcError::Expired`] answers `ExpiredTokenException`; everything else a
//! token can be refused for answers `InvalidIdentityToken`. [`OidcError::UnknownKey`] first
//! deserves one [`crate::JwksCache::refresh`] (the issuer may have rotated its keys) and a second
//! try. The messages of [`OidcError::aws_message`] are the ones real STS sends, as seen by
//! clients, so tools that grep for them keep working.

use crate::jwt::Alg;

/// Why a token, a key set, a signing key or a fetch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token is not a compact JWS of three base64url parts with JSON objects in them.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// The header names an algorithm this crate does not verify (`none`, `HS256`, ...).
    #[error("unsupported signing algorithm `{alg}`")]
    UnsupportedAlg {
        /// The `alg` of the header, as sent.
        alg: String,
    },
    /// No key of the issuer's key set has the token's `kid` (or, without a `kid`, none fits
    /// its algorithm). The issuer may have rotated: refresh the keys once, then refuse.
    #[error("{}", unknown_key(.kid))]
    UnknownKey {
        /// The `kid` of the header.
        kid: Option<String>,
    },
    /// The key named by `kid` cannot make signatures of the token's algorithm (an RSA key for
    /// `ES256`, or a key the key set pins to another `alg`).
    #[error("key `{kid}` cannot verify `{alg}` signatures")]
    KeyMismatch {
        /// The `kid` of the header.
        kid: String,
        /// The `alg` of the header.
        alg: Alg,
    },
    /// The token has no `kid` and too many keys of the set could have signed it.
    #[error("token has no `kid` and {candidates} keys could have signed it")]
    AmbiguousKey {
        /// How many keys fit the token's algorithm.
        candidates: usize,
    },
    /// No candidate key verifies the signature.
    #[error("signature does not verify")]
    BadSignature,
    /// The `iss` claim is not the expected issuer (compared as exact strings).
    #[error("token issuer `{found}` is not `{expected}`")]
    IssuerMismatch {
        /// The issuer the caller expected.
        expected: String,
        /// The `iss` claim.
        found: String,
    },
    /// None of the token's audiences is one the caller accepts.
    #[error("token audience {} is not an accepted one", backticked(.found))]
    AudienceMismatch {
        /// The `aud` claim, as a list.
        found: Vec<String>,
    },
    /// The token expired: `exp + leeway <= now`.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim, unix seconds.
        exp: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// The token is not valid yet: `nbf - leeway > now`.
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The `nbf` claim, unix seconds.
        nbf: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// The token says it was issued in the future: `iat - leeway > now`.
    #[error("token was issued at {iat}, in the future (now {now})")]
    IssuedInFuture {
        /// The `iat` claim, unix seconds.
        iat: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// A registered claim is missing or of the wrong type.
    #[error("claim `{name}` {reason}")]
    Claim {
        /// The claim (`exp`, `sub`, ...).
        name: &'static str,
        /// What is wrong with it ("is missing", "is not a number", ...).
        reason: &'static str,
    },
    /// The account has no OpenID Connect provider for the token's issuer. This crate never
    /// returns it; the STS service does, after looking the issuer up in IAM, so that its
    /// message comes from [`OidcError::aws_message`] like the others.
    #[error("no openid connect provider for issuer `{issuer}`")]
    NoProvider {
        /// The `iss` claim of the token.
        issuer: String,
    },
    /// No source of a [`crate::KeyChain`] serves the token's issuer.
    #[error("no source of keys serves issuer `{issuer}`")]
    NoKeySource {
        /// The issuer.
        issuer: String,
    },
    /// A JWKS document was refused.
    #[error("invalid key set: {reason}")]
    Jwks {
        /// What is wrong with it.
        reason: String,
    },
    /// An issuer's discovery document was refused.
    #[error("discovery document of `{issuer}` refused: {reason}")]
    Discovery {
        /// The issuer whose document it is.
        issuer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Fetching a discovery document or a key set failed.
    #[error("cannot fetch `{url}`: {reason}")]
    Fetch {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A provider or issuer URL was refused.
    #[error("invalid provider url `{url}`: {reason}")]
    ProviderUrl {
        /// The URL, as given.
        url: String,
        /// What is wrong with it (part of the message, so not also a `source`).
        reason: keyless_types::ProviderUrlError,
    },
    /// A signing key could not be loaded or used.
    #[error("invalid signing key: {reason}")]
    SigningKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The persisted key ring of the issuer was refused.
    #[error("invalid issuer key ring: {reason}")]
    KeyRing {
        /// What is wrong with it.
        reason: String,
    },
    /// A field of the claims to mint was refused.
    #[error("invalid {field} `{value}`: {reason}")]
    InvalidClaim {
        /// The field (`namespace`, `service account`, `audience`, ...).
        field: &'static str,
        /// The value, as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The lifetime asked of a token to mint is out of range.
    #[error("token duration of {seconds} seconds is outside {min}..={max}")]
    Duration {
        /// The duration asked for.
        seconds: i64,
        /// The shortest allowed.
        min: i64,
        /// The longest allowed.
        max: i64,
    },
}

/// AWS's text for a token STS could not validate, from the API reference.
const INVALID_TOKEN: &str = "The web identity token that was passed could not be validated by \
     AWS. Get a new identity token from the identity provider and then retry the request.";

/// AWS's text when it cannot get the provider's keys (two spaces after the comma are AWS's).
const NO_KEYS: &str = "Couldn't retrieve verification key from your identity provider,  \
     please reference AssumeRoleWithWebIdentity documentation for requirements";

impl OidcError {
    /// The message AWS STS answers for this failure, where its wording is known; otherwise the
    /// generic `InvalidIdentityToken` text. Never contains more than the client already sent
    /// (its token's claims) or the public issuer URL.
    pub fn aws_message(&self) -> String {
        match self {
            Self::Expired { exp, now } => format!(
                "Token expired: current date/time {now} must be before the expiration date/time {exp}"
            ),
            Self::AudienceMismatch { .. } => "Incorrect token audience".to_owned(),
            Self::NoProvider { issuer } | Self::IssuerMismatch { found: issuer, .. } => {
                format!("No OpenIDConnect provider found in your account for {issuer}")
            }
            Self::Jwks { .. }
            | Self::Discovery { .. }
            | Self::Fetch { .. }
            | Self::NoKeySource { .. } => NO_KEYS.to_owned(),
            _ => INVALID_TOKEN.to_owned(),
        }
    }
}

fn unknown_key(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!("no key `{kid}` in the issuer's key set"),
        None => "no key of the issuer's key set fits the token's algorithm".to_owned(),
    }
}

fn backticked(values: &[String]) -> String {
    if values.is_empty() {
        return "(none)".to_owned();
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_final_period() {
        let errors = [
            OidcError::Malformed {
                reason: "2 parts, not 3".into(),
            },
            OidcError::UnsupportedAlg { alg: "none".into() },
            OidcError::UnknownKey {
                kid: Some("k1".into()),
            },
            OidcError::UnknownKey { kid: None },
            OidcError::KeyMismatch {
                kid: "k1".into(),
                alg: Alg::Es256,
            },
            OidcError::AmbiguousKey { candidates: 7 },
            OidcError::BadSignature,
            OidcError::IssuerMismatch {
                expected: "https://a".into(),
                found: "https://b".into(),
            },
            OidcError::AudienceMismatch {
                found: vec!["x".into(), "y".into()],
            },
            OidcError::Expired { exp: 10, now: 20 },
            OidcError::NotYetValid { nbf: 30, now: 20 },
            OidcError::IssuedInFuture { iat: 30, now: 20 },
            OidcError::Claim {
                name: "exp",
                reason: "is missing",
            },
            OidcError::NoProvider {
                issuer: "https://a".into(),
            },
            OidcError::NoKeySource {
                issuer: "https://a".into(),
            },
            OidcError::Jwks {
                reason: "no keys".into(),
            },
            OidcError::Discovery {
                issuer: "https://a".into(),
                reason: "x".into(),
            },
            OidcError::Fetch {
                url: "https://a".into(),
                reason: "timed out".into(),
            },
            OidcError::ProviderUrl {
                url: "ftp://a".into(),
                reason: keyless_types::ProviderUrlError::Scheme,
            },
            OidcError::SigningKey { reason: "x".into() },
            OidcError::KeyRing { reason: "x".into() },
            OidcError::InvalidClaim {
                field: "namespace",
                value: "A".into(),
                reason: "x",
            },
            OidcError::Duration {
                seconds: 1,
                min: 600,
                max: 172_800,
            },
        ];
        for e in errors {
            let text = e.to_string();
            let first = text.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn user_input_is_in_backticks() {
        let e = OidcError::AudienceMismatch {
            found: vec!["x".into(), "y".into()],
        };
        assert_eq!(
            e.to_string(),
            "token audience `x`, `y` is not an accepted one"
        );
        let e = OidcError::UnknownKey {
            kid: Some("abc".into()),
        };
        assert_eq!(e.to_string(), "no key `abc` in the issuer's key set");
    }

    #[test]
    fn aws_messages_match_sts() {
        let e = OidcError::Expired {
            exp: 1_731_095_240,
            now: 1_731_098_245,
        };
        assert_eq!(
            e.aws_message(),
            "Token expired: current date/time 1731098245 must be before the expiration \
             date/time 1731095240"
        );
        let e = OidcError::AudienceMismatch { found: vec![] };
        assert_eq!(e.aws_message(), "Incorrect token audience");
        let e = OidcError::NoProvider {
            issuer: "https://token.actions.githubusercontent.com".into(),
        };
        assert_eq!(
            e.aws_message(),
            "No OpenIDConnect provider found in your account for \
             https://token.actions.githubusercontent.com"
        );
        let e = OidcError::Fetch {
            url: "https://a".into(),
            reason: "x".into(),
        };
        assert!(
            e.aws_message()
                .starts_with("Couldn't retrieve verification key")
        );
        assert!(
            OidcError::BadSignature
                .aws_message()
                .starts_with("The web identity token")
        );
    }
}
