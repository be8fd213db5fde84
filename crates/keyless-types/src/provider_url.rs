//! `ProviderUrl`: the URL of an OpenID Connect provider (an issuer), checked once, with the key
//! IAM files the provider under. IAM, the issuer, STS and the JWKS files given in the
//! configuration all name a provider by this one key, so they cannot disagree about it.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html>,
//! <https://openid.net/specs/openid-connect-core-1_0.html#IDToken> (`iss`),
//! <https://www.rfc-editor.org/rfc/rfc3986#section-6.2.2.1> (case).

use std::fmt;
use std::str::FromStr;

use crate::net::{host_of, is_loopback_host, split_scheme};

/// The longest provider URL accepted, as IAM's `Url` parameter (in characters).
pub const MAX_PROVIDER_URL_LEN: usize = 255;

/// Why a provider URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProviderUrlError {
    /// More than [`MAX_PROVIDER_URL_LEN`] characters.
    #[error("longer than 255 characters")]
    TooLong,
    /// Whitespace or a control character somewhere.
    #[error("contains whitespace or control characters")]
    Whitespace,
    /// No `scheme://` at all.
    #[error("must start with `https://`")]
    NoScheme,
    /// A scheme other than `https` and `http`.
    #[error("must start with `https://`")]
    Scheme,
    /// `http://` to a host that is not this machine.
    #[error("`http://` is allowed only for a loopback host")]
    NotLoopback,
    /// A `?query`.
    #[error("must not have a query")]
    Query,
    /// A `#fragment`.
    #[error("must not have a fragment")]
    Fragment,
    /// A `user:password@` before the host.
    #[error("must not have a user name or password")]
    UserInfo,
    /// A character IAM refuses in a provider URL (`@` or `\` in the path).
    #[error("must not contain `{0}`")]
    Character(char),
    /// No host, a bracketed host that is not IPv6, or a port that is not 1 to 65535.
    #[error("has no valid host")]
    Host,
}

/// A checked provider URL: `https://host[:port][/path]`, or `http://` for a loopback host
/// (`localhost`, `127.0.0.0/8`, `::1`), where an issuer on the same machine needs no TLS. No
/// user information, query or fragment; at most [`MAX_PROVIDER_URL_LEN`] characters. IAM takes
/// no port; Keyless does, for such local issuers.
///
/// Case follows RFC 3986 and IAM: the scheme and the host are case-insensitive
/// (`HTTPS://Issuer.Example/x` and `https://issuer.example/x` are one provider), the path is
/// not (`/id/ABC` and `/id/abc` are two). [`ProviderUrl::key`] is therefore the host in
/// lower case and the path as written; [`ProviderUrl::as_str`] is the URL exactly as given,
/// which is what the provider's tokens carry as `iss` and what they are compared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderUrl {
    url: String,
    key: String,
    https: bool,
}

impl ProviderUrl {
    /// Checks `url` and works out its key.
    pub fn parse(url: &str) -> Result<Self, ProviderUrlError> {
        use ProviderUrlError as E;
        if url.chars().count() > MAX_PROVIDER_URL_LEN {
            return Err(E::TooLong);
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(E::Whitespace);
        }
        let (scheme, rest) = split_scheme(url).ok_or(E::NoScheme)?;
        if rest.contains('?') {
            return Err(E::Query);
        }
        if rest.contains('#') {
            return Err(E::Fragment);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(E::UserInfo);
        }
        if let Some(c) = path.chars().find(|c| matches!(c, '@' | '\\')) {
            return Err(E::Character(c));
        }
        let host = host_of(authority).ok_or(E::Host)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            if !is_loopback_host(host) {
                return Err(E::NotLoopback);
            }
            false
        } else {
            return Err(E::Scheme);
        };
        let key = format!(
            "{}{}",
            authority.to_ascii_lowercase(),
            path.trim_end_matches('/')
        );
        Ok(Self {
            url: url.to_owned(),
            key,
            https,
        })
    }

    /// The URL as given: the `iss` of the provider's tokens.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The key IAM files the provider under: the URL without its scheme and trailing `/`, the
    /// host in lower case (`oidc.eks.us-east-1.amazonaws.com/id/ABC`). It ends the provider's
    /// ARN and begins its condition keys (`<key>:sub`, `<key>:aud`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the scheme is `https` (else it is `http`, to a loopback host).
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `arn:aws:iam::ACCOUNT:oidc-provider/KEY`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:oidc-provider/{}", self.key)
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for ProviderUrl {
    type Err = ProviderUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> String {
        ProviderUrl::parse(url).unwrap().key().to_owned()
    }

    #[test]
    fn accepts_https_and_loopback_http() {
        for url in [
            "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E",
            "https://token.actions.githubusercontent.com",
            "https://accounts.google.com/",
            "https://issuer.example:8443/realms/a",
            "https://[2001:db8::1]/x",
            "http://127.0.0.1:9000",
            "http://127.1.2.3/x",
            "http://localhost:8080/issuer",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "HTTPS://Issuer.example/x",
            "Http://127.0.0.1",
        ] {
            let parsed = ProviderUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.as_str(), url);
        }
    }

    #[test]
    fn refuses_the_rest() {
        use ProviderUrlError as E;
        let long = format!("https://a.example/{}", "x".repeat(MAX_PROVIDER_URL_LEN));
        for (url, why) in [
            ("http://issuer.example", E::NotLoopback),
            ("http://10.0.0.1", E::NotLoopback),
            ("http://[::2]", E::NotLoopback),
            ("http://localhost.evil.example", E::NotLoopback),
            ("http://127.0.0.1.nip.io", E::NotLoopback),
            ("ftp://issuer.example", E::Scheme),
            ("issuer.example", E::NoScheme),
            ("https://issuer.example/?a=b", E::Query),
            ("https://issuer.example?a=b", E::Query),
            ("https://issuer.example/#x", E::Fragment),
            ("https://user:pw@issuer.example", E::UserInfo),
            ("http://evil.example@127.0.0.1", E::UserInfo),
            ("https://issuer.example/@x", E::Character('@')),
            ("https://issuer.example/a\\b", E::Character('\\')),
            ("https://", E::Host),
            ("https://:443/x", E::Host),
            ("https://issuer.example:99999", E::Host),
            ("https://issuer.example:0", E::Host),
            ("https://issuer.example:", E::Host),
            ("https://[::1/x", E::Host),
            ("https://[127.0.0.1]", E::Host),
            ("https://issuer.example/a b", E::Whitespace),
            (long.as_str(), E::TooLong),
        ] {
            assert_eq!(ProviderUrl::parse(url), Err(why), "{url}");
        }
    }

    #[test]
    fn the_key_drops_scheme_and_trailing_slashes() {
        assert_eq!(
            key("https://oidc.eks.us-east-1.amazonaws.com/id/ABC/"),
            "oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        assert_eq!(key("https://accounts.google.com"), "accounts.google.com");
        assert_eq!(key("https://accounts.google.com//"), "accounts.google.com");
        assert_eq!(key("http://127.0.0.1:9000/"), "127.0.0.1:9000");
        assert_eq!(key("http://[::1]:9000/x"), "[::1]:9000/x");
    }

    /// IAM filed `HTTPS://Issuer.example/x` under one key and the JWKS files of the
    /// configuration under another (the scheme was only stripped when lower case), so the
    /// provider's JWKS file was never used.
    #[test]
    fn upper_case_scheme_and_host_name_the_same_provider() {
        let upper = ProviderUrl::parse("HTTPS://Issuer.Example/x").unwrap();
        let lower = ProviderUrl::parse("https://issuer.example/x/").unwrap();
        assert_eq!(upper.key(), "issuer.example/x");
        assert_eq!(upper.key(), lower.key());
        assert!(upper.is_https() && lower.is_https());
        assert_eq!(upper.as_str(), "HTTPS://Issuer.Example/x");
        assert_eq!(
            upper.arn("111122223333"),
            "arn:aws:iam::111122223333:oidc-provider/issuer.example/x"
        );
        // The path is case-sensitive.
        assert_ne!(
            key("https://a.example/id/ABC"),
            key("https://a.example/id/abc")
        );
        assert!(
            !ProviderUrl::parse("HTTP://LocalHost:9000")
                .unwrap()
                .is_https()
        );
    }

    #[test]
    fn displays_and_parses_as_given() {
        let url: ProviderUrl = "https://a.example/x/".parse().unwrap();
        assert_eq!(url.to_string(), "https://a.example/x/");
    }
}
