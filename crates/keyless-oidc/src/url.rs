//! Provider URLs: what IAM accepts as an OpenID Connect provider or issuer URL, the key IAM
//! names the provider by, and the well-known URLs derived from an issuer.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html>,
//! <https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig>.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::OidcError;

/// The longest provider URL accepted, as IAM's `Url` parameter.
pub const MAX_PROVIDER_URL_LEN: usize = 255;

/// The path of the discovery document below an issuer URL.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The path of the key set below the URL of a Keyless issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Checks a provider (issuer) URL: `https://` required, `http://` only for a loopback host
/// (127.0.0.0/8, `::1`, `localhost`); no userinfo, query or fragment; at most
/// [`MAX_PROVIDER_URL_LEN`] characters.
pub fn check_provider_url(url: &str) -> Result<(), OidcError> {
    let refuse = |reason| {
        Err(OidcError::ProviderUrl {
            url: url.to_owned(),
            reason,
        })
    };
    if url.len() > MAX_PROVIDER_URL_LEN {
        return refuse("longer than 255 characters");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("contains whitespace or control characters");
    }
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return refuse("must start with `https://`");
    };
    if url.contains('?') {
        return refuse("must not have a query");
    }
    if url.contains('#') {
        return refuse("must not have a fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return refuse("must not have a user name or password");
    }
    let Some(host) = host_of(authority) else {
        return refuse("has no valid host");
    };
    if !secure && !is_loopback_host(host) {
        return refuse("`http://` is allowed only for a loopback host");
    }
    Ok(())
}

/// Checks the URL of Keyless's own issuer: as [`check_provider_url`], except that `http://`
/// is accepted on any host. Keyless verifies its own tokens with the keys it holds and never
/// fetches them, so a node address without TLS works for Keyless itself; relying parties
/// elsewhere fetch the documents in the clear, which [`is_plain_http_off_loopback`] tells the
/// caller to warn about. This is not a provider check: providers others run keep
/// [`check_provider_url`].
pub fn check_own_issuer_url(url: &str) -> Result<(), OidcError> {
    let Some(rest) = url.strip_prefix("http://") else {
        return check_provider_url(url);
    };
    // The same rules as an https URL with the same authority and path.
    check_provider_url(&format!("https://{rest}")).map_err(|e| match e {
        OidcError::ProviderUrl { reason, .. } => OidcError::ProviderUrl {
            url: url.to_owned(),
            reason,
        },
        other => other,
    })
}

/// Whether `url` is `http://` to a host other than this machine's loopback: documents anyone
/// else fetches from it travel in the clear.
pub fn is_plain_http_off_loopback(url: &str) -> bool {
    url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host_of(authority).is_some_and(is_loopback_host)
    })
}

/// The provider's key in IAM: the URL without its scheme and trailing slashes
/// (`oidc.eks.us-east-1.amazonaws.com/id/ABC`), as in
/// `arn:aws:iam::123456789012:oidc-provider/<key>` and condition keys (`<key>:sub`).
pub fn provider_key(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.trim_end_matches('/').to_owned()
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
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("only `https://` is fetched");
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

/// The host of an authority (`host`, `host:port`, `[v6]:port`), brackets removed; `None` when
/// it is empty or its port is not a number.
pub(crate) fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        port.parse::<u16>().ok()?;
    }
    if host.is_empty() {
        return None;
    }
    Some(host)
}

/// Whether a host (brackets removed) is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert_eq!(check_provider_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn refuses_the_rest() {
        let long = format!("https://a.example/{}", "x".repeat(MAX_PROVIDER_URL_LEN));
        for (url, reason) in [
            ("http://issuer.example", "loopback"),
            ("http://10.0.0.1", "loopback"),
            ("http://[::2]", "loopback"),
            ("http://localhost.evil.example", "loopback"),
            ("http://127.0.0.1.nip.io", "loopback"),
            ("ftp://issuer.example", "https://"),
            ("HTTPS://issuer.example", "https://"),
            ("issuer.example", "https://"),
            ("https://issuer.example/?a=b", "query"),
            ("https://issuer.example/#x", "fragment"),
            ("https://user:pw@issuer.example", "user name"),
            ("http://evil.example@127.0.0.1", "user name"),
            ("https://", "host"),
            ("https://:443/x", "host"),
            ("https://issuer.example:99999", "host"),
            ("https://issuer.example:", "host"),
            ("https://[::1/x", "host"),
            ("https://issuer.example/a b", "whitespace"),
            (long.as_str(), "255"),
        ] {
            match check_provider_url(url) {
                Err(OidcError::ProviderUrl { reason: r, .. }) => {
                    assert!(r.contains(reason), "{url}: {r}");
                }
                other => panic!("{url}: {other:?}"),
            }
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
        for (url, reason) in [
            ("http://10.0.0.5:9000/?a=b", "query"),
            ("http://user@10.0.0.5", "user name"),
            ("http://10.0.0.5:99999", "host"),
            ("http://", "host"),
            ("ftp://10.0.0.5", "https://"),
        ] {
            match check_own_issuer_url(url) {
                Err(OidcError::ProviderUrl { url: u, reason: r }) => {
                    assert!(r.contains(reason), "{url}: {r}");
                    assert_eq!(u, url);
                }
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
    fn provider_key_drops_scheme_and_trailing_slash() {
        assert_eq!(
            provider_key("https://oidc.eks.us-east-1.amazonaws.com/id/ABC/"),
            "oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        assert_eq!(
            provider_key("https://accounts.google.com"),
            "accounts.google.com"
        );
        assert_eq!(provider_key("http://127.0.0.1:9000/"), "127.0.0.1:9000");
    }

    #[test]
    fn fetch_urls() {
        assert_eq!(check_fetch_url("https://a.example/keys?x=1"), Ok(()));
        assert_eq!(check_fetch_url("http://127.0.0.1:8080/keys"), Ok(()));
        assert!(check_fetch_url("http://a.example/keys").is_err());
        assert!(check_fetch_url("http://a.example@127.0.0.1/keys").is_err());
        assert!(check_fetch_url("file:///etc/passwd").is_err());
        assert!(check_fetch_url("https:///keys").is_err());
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
