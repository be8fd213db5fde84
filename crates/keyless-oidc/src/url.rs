//! Issuer URLs: the well-known URLs derived from an issuer, and which URLs may be fetched. What
//! IAM accepts as a provider URL, and the key it names the provider by, is
//! [`keyless_types::ProviderUrl`].
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html>,
//! <https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig>.

use keyless_types::net::{host_of, is_loopback_host, split_scheme};
use keyless_types::{ProviderUrl, ProviderUrlError};

use crate::OidcError;

/// The path of the discovery document below an issuer URL.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The path of the key set below the URL of a Keyless issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Checks a provider (issuer) URL by IAM's rules ([`ProviderUrl`]), for this crate's errors.
pub(crate) fn provider_url(url: &str) -> Result<ProviderUrl, OidcError> {
    ProviderUrl::parse(url).map_err(|reason: ProviderUrlError| OidcError::ProviderUrl {
        url: url.to_owned(),
        reason,
    })
}

/// The discovery document URL of an issuer (its trailing slash removed first, per OpenID
/// Connect Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'))
}

/// The key set URL of a Keyless issuer.
pub fn jwks_url(issuer: &str) -> String {
    format!("{}{JWKS_PATH}", issuer.trim_end_matches('/'))
}

/// Checks a URL to be fetched (a discovery document or key set): `https://`, or `http://`
/// to a loopback host; no userinfo.
pub(crate) fn check_fetch_url(url: &str) -> Result<(), &'static str> {
    let (secure, rest) = match split_scheme(url) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        _ => return Err("only `https://` is fetched"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("a user name or password in the url is refused");
    }
    let host = host_of(authority).ok_or("the url has no valid host")?;
    if !secure && !is_loopback_host(host) {
        return Err("`http://` is fetched only from a loopback host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_refused_with_their_reason() {
        match provider_url("http://issuer.example") {
            Err(e @ OidcError::ProviderUrl { .. }) => assert_eq!(
                e.to_string(),
                "invalid provider url `http://issuer.example`: `http://` is allowed only for a loopback host"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            provider_url("HTTPS://Issuer.example/x").unwrap().key(),
            "issuer.example/x"
        );
    }

    #[test]
    fn fetch_urls() {
        assert_eq!(check_fetch_url("https://a.example/keys?x=1"), Ok(()));
        assert_eq!(check_fetch_url("http://127.0.0.1:8080/keys"), Ok(()));
        assert!(check_fetch_url("http://a.example/keys").is_err());
        assert!(check_fetch_url("http://a.example@127.0.0.1/keys").is_err());
        assert!(check_fetch_url("file:///etc/passwd").is_err());
        assert!(check_fetch_url("https:///keys").is_err());
        // The scheme is case-insensitive, as the provider URL's is: an issuer IAM accepts as
        // `HTTPS://...` is fetched from.
        assert_eq!(check_fetch_url("HTTPS://a.example/keys"), Ok(()));
        assert_eq!(check_fetch_url("HTTP://LOCALHOST:8080/keys"), Ok(()));
        assert!(check_fetch_url("HTTP://a.example/keys").is_err());
    }

    #[test]
    fn well_known_urls() {
        assert_eq!(
            discovery_url("https://a.example/id/x/"),
            "https://a.example/id/x/.well-known/openid-configuration"
        );
        assert_eq!(
            jwks_url("https://a.example"),
            "https://a.example/.well-known/jwks.json"
        );
    }
}
