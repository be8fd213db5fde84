//! Hosts in URLs: the host of an authority, and whether a host is this machine (the one place
//! where plain `http://` is accepted for an issuer, a fetch or an STS endpoint).
//!
//! <https://www.rfc-editor.org/rfc/rfc3986#section-3.2> (authority, host, port).

use std::net::{IpAddr, Ipv6Addr};

/// Whether a host is this machine: `localhost` (any case), `127.0.0.0/8` or `::1` (with or
/// without its brackets). `localhost.example` and `127.0.0.1.nip.io` are not.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The scheme of a URL, as written, and what follows its `://`; `None` when it has none.
pub fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// The host of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`), brackets removed;
/// `None` when the host is empty, a bracketed host is not an IPv6 address, or the port is not
/// a number from 1 to 65535. User information (`user@`) is not split off: callers refuse it.
pub fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return None;
        }
    }
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.3.4.5",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "::2",
            "[::1",
            "",
            "keyless.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(split_scheme("HTTPS://a/b"), Some(("HTTPS", "a/b")));
        assert_eq!(split_scheme("http://"), Some(("http", "")));
        assert_eq!(split_scheme("a.example"), None);
        assert_eq!(split_scheme("://a"), None);
        assert_eq!(split_scheme("a b://c"), None);
    }

    #[test]
    fn hosts_of_authorities() {
        assert_eq!(host_of("a.example"), Some("a.example"));
        assert_eq!(host_of("a.example:8443"), Some("a.example"));
        assert_eq!(host_of("[2001:db8::1]"), Some("2001:db8::1"));
        assert_eq!(host_of("[::1]:8080"), Some("::1"));
        for bad in [
            "",
            ":443",
            "a.example:",
            "a.example:0",
            "a.example:x",
            "a.example:99999",
            "a.example:000443",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[127.0.0.1]",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
    }
}
