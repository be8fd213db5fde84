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

/// Checks the URL of Keyless's own issuer: a provider URL ([`ProviderUrl`]), except that
/// `http://` is accepted on any host. Keyless verifies its own tokens with the keys it holds and
/// never fetches them, so a node address without TLS works for Keyless itself; relying parties
/// elsewhere fetch the documents in the clear, which [`is_plain_http_off_loopback`] tells the
/// caller to warn about. Providers others run keep IAM's rule.
pub fn check_own_issuer_url(url: &str) -> Result<(), OidcError> {
    match split_scheme(url) {
        // The same rules as an https URL with the same authority and path.
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            provider_url(&format!("https://{rest}")).map_err(|e| match e {
                OidcError::ProviderUrl { reason, .. } => OidcError::ProviderUrl {
                    url: url.to_owned(),
                    reason,
                },
                other => other,
            })?;
        }
        _ => {
            provider_url(url)?;
        }
    }
    Ok(())
}

/// Whether `url` is `http://` to a host other than this machine's loopback: documents anyone
/// else fetches from it travel in the clear.
pub fn is_plain_http_off_loopback(url: &str) -> bool {
    match split_scheme(url) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host_of(authority).is_some_and(is_loopback_host)
        }
        _ => false,
    }
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
    }

    #[test]
    fn the_own_issuer_may_be_plain_http_anywhere() {
        for url in [
            "http://10.0.0.5:9000",
            "http://keyless.example:9000/issuer",
            "http://[2001:db8::5]:9000",
            "https://keyless.example.com",
            "http://127.0.0.1:9000",
        ] {
            assert_eq!(check_own_issuer_url(url), Ok(()), "{url}");
        }
        for url in [
            "http://10.0.0.5:9000/?a=b",
            "http://user@10.0.0.5",
            "http://10.0.0.5:99999",
            "http://",
            "ftp://10.0.0.5",
        ] {
            match check_own_issuer_url(url) {
                Err(OidcError::ProviderUrl { url: u, .. }) => assert_eq!(u, url),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(is_plain_http_off_loopback("http://10.0.0.5:9000"));
        assert!(is_plain_http_off_loopback("http://keyless.example/x"));
        assert!(!is_plain_http_off_loopback("http://127.0.0.1:9000"));
        assert!(!is_plain_http_off_loopback("http://localhost:9000/x"));
        assert!(!is_plain_http_off_loopback("http://[::1]:9000"));
        assert!(!is_plain_http_off_loopback("https://10.0.0.5:9000"));
    }

    #[test]
    fn provider_url_keys() {
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
