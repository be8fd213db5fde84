//! Virtual-hosted-style addressing (`--domain`): `BUCKET.DOMAIN` names the bucket; any other
//! host (the server's own address, a Kubernetes Service's name, an IP) is path style.
//!
//! s3s's `MultiDomain` reads a host that matches no domain as the bucket itself (S3's CNAME
//! addressing), so a client that reaches the server by a second name (in-cluster
//! `keyless.keyless.svc:9000` beside the ingress's `s3.example.com`) would have its every request
//! sent to a bucket named after that host. Keyless serves buckets under its domains only.

use s3s::host::{S3Host, VirtualHost};

/// The domains of virtual-hosted-style requests, each with and without the port.
#[derive(Debug, Clone)]
pub struct Domains {
    domains: Vec<String>,
}

/// A `--domain` that cannot be one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a domain name (letters, digits and `-` between dots, and an optional :port)")]
pub struct InvalidDomain(pub String);

impl Domains {
    /// The domains `names` (`s3.example.com`, `s3.example.com:9000`), in lower case.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Result<Self, InvalidDomain> {
        let mut domains = Vec::new();
        for name in names {
            let name = name.as_ref().to_ascii_lowercase();
            let (host, port) = match name.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (name.as_str(), None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
                return Err(InvalidDomain(name));
            }
            domains.push(name);
        }
        // The longest first, so that `a.s3.example.com` is not read as bucket `a.s3` of
        // `example.com` when both are domains.
        domains.sort_by_key(|d| std::cmp::Reverse(d.len()));
        Ok(Self { domains })
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<VirtualHost<'a>> {
        let lower = host.to_ascii_lowercase();
        for domain in &self.domains {
            if lower == *domain {
                return Ok(VirtualHost::new(domain.as_str()));
            }
            if let Some(bucket) = lower
                .strip_suffix(domain.as_str())
                .and_then(|h| h.strip_suffix('.'))
                .filter(|b| !b.is_empty())
            {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket.to_owned()));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(domains: &Domains, host: &str) -> (String, Option<String>) {
        let vh = domains.parse_host_header(host).unwrap();
        (vh.domain().to_owned(), vh.bucket().map(str::to_owned))
    }

    #[test]
    fn buckets_only_under_the_domains() {
        let d = Domains::new(["s3.example.com", "s3.example.com:9000"]).unwrap();
        assert_eq!(parse(&d, "logs.s3.example.com").1.as_deref(), Some("logs"));
        assert_eq!(
            parse(&d, "Logs.S3.Example.com:9000").1.as_deref(),
            Some("logs")
        );
        assert_eq!(
            parse(&d, "my.dotted.bucket.s3.example.com").1.as_deref(),
            Some("my.dotted.bucket")
        );
        assert_eq!(parse(&d, "s3.example.com").1, None);
        assert_eq!(parse(&d, "s3.example.com:9000").1, None);
        // Regression: s3s's MultiDomain took these for buckets named after the host.
        for other in [
            "keyless.keyless.svc:9000",
            "10.0.0.7:9000",
            "[::1]:9000",
            "localhost",
            "xs3.example.com",
        ] {
            assert_eq!(parse(&d, other).1, None, "{other}");
        }
    }

    #[test]
    fn names_that_are_not_domains_are_refused() {
        for bad in [
            "",
            "s3..example.com",
            "s3.example.com:http",
            "s3_example.com",
            ".example.com",
        ] {
            assert!(Domains::new([bad]).is_err(), "{bad}");
        }
    }
}
