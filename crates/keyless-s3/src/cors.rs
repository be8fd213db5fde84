//! Cross-origin resource sharing as S3 has it: a bucket's CORS rules (Put/Get/DeleteBucketCors,
//! with S3's checks), the answer to a browser's preflight `OPTIONS` (which carries no
//! signature), and the `Access-Control-*` headers on the responses to requests that name an
//! `Origin`. Browser uploads with presigned URLs need both.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTOPTIONSobject.html>
//!
//! Pure: the rules come from the bucket's record.

use s3s::dto::{CORSConfiguration, CORSRule};
use serde::{Deserialize, Serialize};

/// Rules one configuration may hold (S3's limit).
pub const MAX_RULES: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One rule, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `ID`.
    pub id: Option<String>,
    /// `AllowedOrigin`s: exact, or with one `*`.
    pub origins: Vec<String>,
    /// `AllowedMethod`s.
    pub methods: Vec<String>,
    /// `AllowedHeader`s a preflight may ask for: exact (case-insensitive), or with one `*`.
    pub headers: Vec<String>,
    /// `ExposeHeader`s.
    pub expose: Vec<String>,
    /// `MaxAgeSeconds`.
    pub max_age: Option<i32>,
}

/// A bucket's CORS configuration, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    /// The rules; the first that matches a request answers it.
    pub rules: Vec<Rule>,
}

/// What answers a request from `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// `Access-Control-Allow-Origin`: `*` when the rule allows any origin, else the origin.
    pub origin: String,
    /// `Access-Control-Allow-Methods`.
    pub methods: String,
    /// `Access-Control-Allow-Headers` (preflights only): the headers asked for.
    pub headers: Option<String>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<String>,
    /// `Access-Control-Max-Age`.
    pub max_age: Option<i32>,
    /// `Access-Control-Allow-Credentials: true`, which S3 sends unless the origin is `*`.
    pub credentials: bool,
}

/// Why PutBucketCors refused a configuration: S3's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `MalformedXML` or `InvalidRequest`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// `pattern` with at most one `*`, matched against `value` (`eq` compares the fixed parts).
fn wildcard(pattern: &str, value: &str, eq: fn(&str, &str) -> bool) -> bool {
    match pattern.split_once('*') {
        None => eq(pattern, value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && eq(&value[..head.len()], head)
                && eq(&value[value.len() - tail.len()..], tail)
        }
    }
}

fn exact(a: &str, b: &str) -> bool {
    a == b
}

fn caseless(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Cors {
    /// Checks a configuration as PutBucketCors does.
    pub fn from_s3(config: &CORSConfiguration) -> Result<Self, Refused> {
        let malformed = |message: String| Refused {
            code: "MalformedXML",
            message,
        };
        if config.cors_rules.is_empty() {
            return Err(malformed(
                "a CORS configuration needs at least one rule".into(),
            ));
        }
        if config.cors_rules.len() > MAX_RULES {
            return Err(Refused {
                code: "InvalidRequest",
                message: format!(
                    "The number of CORS rules should not exceed allowed limit of {MAX_RULES} rules."
                ),
            });
        }
        let mut rules = Vec::with_capacity(config.cors_rules.len());
        for rule in &config.cors_rules {
            let CORSRule {
                allowed_headers,
                allowed_methods,
                allowed_origins,
                expose_headers,
                id,
                max_age_seconds,
            } = rule;
            if allowed_methods.is_empty() || allowed_origins.is_empty() {
                return Err(malformed(
                    "a CORS rule needs an AllowedMethod and an AllowedOrigin".into(),
                ));
            }
            for method in allowed_methods {
                if !METHODS.contains(&method.as_str()) {
                    return Err(Refused {
                        code: "InvalidRequest",
                        message: format!(
                            "Found unsupported HTTP method in CORS config. Unsupported method is {method}"
                        ),
                    });
                }
            }
            for origin in allowed_origins {
                if origin.matches('*').count() > 1 {
                    return Err(Refused {
                        code: "InvalidRequest",
                        message: format!(
                            "AllowedOrigin \"{origin}\" can not have more than one wildcard."
                        ),
                    });
                }
            }
            for header in allowed_headers.iter().flatten() {
                if header.matches('*').count() > 1 {
                    return Err(Refused {
                        code: "InvalidRequest",
                        message: format!(
                            "AllowedHeader \"{header}\" can not have more than one wildcard."
                        ),
                    });
                }
            }
            rules.push(Rule {
                id: id.clone(),
                origins: allowed_origins.clone(),
                methods: allowed_methods
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
                headers: allowed_headers.clone().unwrap_or_default(),
                expose: expose_headers.clone().unwrap_or_default(),
                max_age: *max_age_seconds,
            });
        }
        Ok(Self { rules })
    }

    /// The configuration as GetBucketCors answers it.
    pub fn to_s3(&self) -> Vec<CORSRule> {
        self.rules
            .iter()
            .map(|r| CORSRule {
                allowed_headers: (!r.headers.is_empty()).then(|| r.headers.clone()),
                allowed_methods: r.methods.clone(),
                allowed_origins: r.origins.clone(),
                expose_headers: (!r.expose.is_empty()).then(|| r.expose.clone()),
                id: r.id.clone(),
                max_age_seconds: r.max_age,
            })
            .collect()
    }

    fn answer(rule: &Rule, origin: &str, headers: Option<String>) -> Allowed {
        let any = rule.origins.iter().any(|o| o == "*");
        Allowed {
            origin: if any { "*".into() } else { origin.to_owned() },
            methods: rule.methods.join(", "),
            headers,
            expose: (!rule.expose.is_empty()).then(|| rule.expose.join(", ")),
            max_age: rule.max_age,
            credentials: !any,
        }
    }

    fn matching<'a>(&'a self, origin: &'a str, method: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| {
            r.methods.iter().any(|m| m == method)
                && r.origins.iter().any(|o| wildcard(o, origin, exact))
        })
    }

    /// The answer to a preflight from `origin` for `method` with `headers` (the
    /// `Access-Control-Request-Headers`, comma separated), or `None` when no rule allows it.
    pub fn preflight(&self, origin: &str, method: &str, headers: Option<&str>) -> Option<Allowed> {
        let asked: Vec<&str> = headers
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        self.matching(origin, method)
            .find(|r| {
                asked
                    .iter()
                    .all(|h| r.headers.iter().any(|p| wildcard(p, h, caseless)))
            })
            .map(|r| {
                let headers = (!asked.is_empty()).then(|| asked.join(", ").to_ascii_lowercase());
                Self::answer(r, origin, headers)
            })
    }

    /// The headers for an actual request from `origin` with `method`, if a rule allows it.
    pub fn actual(&self, origin: &str, method: &str) -> Option<Allowed> {
        self.matching(origin, method)
            .next()
            .map(|r| Self::answer(r, origin, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &[&str], methods: &[&str], headers: &[&str]) -> CORSConfiguration {
        CORSConfiguration {
            cors_rules: vec![CORSRule {
                allowed_headers: Some(headers.iter().map(|h| (*h).to_owned()).collect()),
                allowed_methods: methods.iter().map(|m| (*m).to_owned()).collect(),
                allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
                expose_headers: Some(vec!["ETag".into()]),
                id: Some("uploads".into()),
                max_age_seconds: Some(3000),
            }],
        }
    }

    #[test]
    fn preflights_match_origin_method_and_every_header_asked_for() {
        let cors = Cors::from_s3(&config(
            &["https://*.example.com"],
            &["PUT", "GET"],
            &["content-*", "x-amz-*"],
        ))
        .unwrap();
        let ok = cors
            .preflight(
                "https://app.example.com",
                "PUT",
                Some("Content-Type, X-Amz-Date"),
            )
            .unwrap();
        assert_eq!(ok.origin, "https://app.example.com");
        assert_eq!(ok.methods, "PUT, GET");
        assert_eq!(ok.headers.as_deref(), Some("content-type, x-amz-date"));
        assert_eq!(ok.expose.as_deref(), Some("ETag"));
        assert_eq!(ok.max_age, Some(3000));
        assert!(ok.credentials);
        assert!(cors.preflight("https://evil.com", "PUT", None).is_none());
        assert!(
            cors.preflight("https://app.example.com", "DELETE", None)
                .is_none()
        );
        assert!(
            cors.preflight("https://app.example.com", "PUT", Some("authorization"))
                .is_none()
        );
        assert!(cors.actual("https://app.example.com", "GET").is_some());
        let any = Cors::from_s3(&config(&["*"], &["GET"], &[])).unwrap();
        let answer = any.actual("https://whoever.org", "GET").unwrap();
        assert_eq!(answer.origin, "*");
        assert!(!answer.credentials);
        assert_eq!(
            Cors::from_s3(&CORSConfiguration {
                cors_rules: any.to_s3()
            })
            .unwrap(),
            any
        );
    }

    #[test]
    fn configurations_are_checked() {
        assert_eq!(
            Cors::from_s3(&config(&["*"], &["PATCH"], &[]))
                .unwrap_err()
                .code,
            "InvalidRequest"
        );
        assert_eq!(
            Cors::from_s3(&config(&["*.*"], &["GET"], &[]))
                .unwrap_err()
                .code,
            "InvalidRequest"
        );
        assert_eq!(
            Cors::from_s3(&CORSConfiguration { cors_rules: vec![] })
                .unwrap_err()
                .code,
            "MalformedXML"
        );
    }
}
