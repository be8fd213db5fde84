//! The credential sources of the SDK's default chain that doctor looks at directly: key pairs
//! (environment, shared files, an s3cmd configuration), the container credentials endpoint and
//! the instance metadata service, each probed with short timeouts.
//! <https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html>
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>

use std::time::Duration;

use anyhow::Context as _;
use keyless_types::shared_credentials::{SharedFile, profile_keys};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::client::env_nonempty;

/// A key pair found somewhere, by where it is and its key id (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPair {
    pub(crate) origin: String,
    pub(crate) access_key_id: String,
}

/// `~/` expanded with HOME.
pub(crate) fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), env_nonempty("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => path.into(),
    }
}

/// The key pair the shared files give `profile`, if any: the credentials file first.
pub(crate) fn shared_file_keys(profile: &str) -> Option<(KeyPair, String)> {
    let files = [
        (
            crate::client::credentials_file_path(),
            SharedFile::Credentials,
        ),
        (crate::client::config_file_path(), SharedFile::Config),
    ];
    files.into_iter().find_map(|(path, kind)| {
        let text = std::fs::read_to_string(expand_home(&path)).ok()?;
        let (id, secret) = profile_keys(&text, profile, kind).pair()?;
        Some((
            KeyPair {
                origin: format!("profile `{profile}` of {path}"),
                access_key_id: id,
            },
            secret.expose().to_owned(),
        ))
    })
}

/// A response: status code and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// One plain-HTTP request with a deadline for all of it: IMDS and the container endpoint are
/// link-local HTTP services, and an absent one must cost a second, not the SDK's retries.
pub(crate) async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let address = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut bytes = Vec::new();
        stream.take(1 << 20).read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} ms", timeout.as_millis()))?
        .with_context(|| format!("cannot reach {address}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{address} did not answer HTTP"))?;
    Ok(Response {
        status,
        body: crate::iam_cmd::dechunk(head, body),
    })
}

/// What the instance metadata service said.
#[derive(Debug)]
pub(crate) enum Imds {
    /// AWS_EC2_METADATA_DISABLED.
    Disabled,
    /// No answer at the endpoint.
    Unreachable { endpoint: String, error: String },
    /// It answers, with this role (or none), over IMDSv2 or v1.
    Role {
        endpoint: String,
        role: Option<String>,
        v2: bool,
    },
    /// It answers the role listing with an unexpected status.
    Refused { endpoint: String, status: u16 },
}

impl Imds {
    pub(crate) fn role(&self) -> Option<&str> {
        match self {
            Self::Role { role, .. } => role.as_deref(),
            _ => None,
        }
    }
}

/// IMDSv2's token PUT, then the role listing, as the SDK does (falling back to v1 when the
/// token is refused).
pub(crate) async fn probe_imds() -> Imds {
    if env_nonempty("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Imds::Disabled;
    }
    let endpoint = env_nonempty("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".to_owned())
        .trim_end_matches('/')
        .to_owned();
    let timeout = Duration::from_secs(1);
    let token = match http(
        "PUT",
        &format!("{endpoint}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
        timeout,
    )
    .await
    {
        Ok(r) if r.status == 200 => Some(r.body.trim().to_owned()),
        Ok(_) => None,
        Err(e) => {
            return Imds::Unreachable {
                endpoint,
                error: format!("{e:#}"),
            };
        }
    };
    let headers: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| ("x-aws-ec2-metadata-token", t))
        .into_iter()
        .collect();
    let listing = http(
        "GET",
        &format!("{endpoint}/latest/meta-data/iam/security-credentials/"),
        &headers,
        timeout,
    )
    .await;
    match listing {
        Ok(r) if r.status == 200 => Imds::Role {
            endpoint,
            role: r
                .body
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned),
            v2: token.is_some(),
        },
        Ok(r) if r.status == 404 => Imds::Role {
            endpoint,
            role: None,
            v2: token.is_some(),
        },
        Ok(r) => Imds::Refused {
            endpoint,
            status: r.status,
        },
        Err(e) => Imds::Unreachable {
            endpoint,
            error: format!("{e:#}"),
        },
    }
}

/// The container credentials endpoint, when the environment names one.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) url: String,
    /// The answer: the key id of the credentials, or why there are none.
    pub(crate) outcome: Result<String, String>,
}

pub(crate) async fn probe_container() -> Option<Container> {
    let url = env_nonempty("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
        env_nonempty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .map(|p| format!("http://169.254.170.2{p}"))
    })?;
    if !url.starts_with("http://") {
        return Some(Container {
            outcome: Err("not probed: only http:// endpoints are".to_owned()),
            url,
        });
    }
    let token = match env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(file) => match std::fs::read_to_string(&file) {
            Ok(t) => Some(t.trim().to_owned()),
            Err(e) => {
                return Some(Container {
                    outcome: Err(format!(
                        "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {file}: {e}"
                    )),
                    url,
                });
            }
        },
        None => env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    let headers: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| ("authorization", t))
        .into_iter()
        .collect();
    let outcome = match http("GET", &url, &headers, Duration::from_secs(2)).await {
        Ok(r) if r.status == 200 => serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("AccessKeyId")?.as_str().map(str::to_owned))
            .ok_or_else(|| "answered 200 without an AccessKeyId".to_owned()),
        // Error bodies carry no credentials; a line of one says why.
        Ok(r) => Err(format!(
            "answered HTTP {}: {}",
            r.status,
            r.body
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    Some(Container { url, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_imds_endpoint_that_refuses_connections_is_unreachable_quickly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = http(
            "PUT",
            &format!("http://127.0.0.1:{port}/latest/api/token"),
            &[],
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("cannot reach"), "{err:#}");
    }
}
