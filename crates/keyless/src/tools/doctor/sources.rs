//! The credential sources of the SDK's default chain that doctor looks at directly: key pairs
//! (environment, shared files, an s3cmd configuration), the container credentials endpoint and
//! the instance metadata service, each probed with short timeouts.
//! <https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html>
//! <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>

use std::time::Duration;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use keyless_types::shared_credentials::{SharedFile, profile_keys};

use crate::tools::client::env_nonempty;

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
            crate::tools::client::credentials_file_path(),
            SharedFile::Credentials,
        ),
        (crate::tools::client::config_file_path(), SharedFile::Config),
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
/// hyper reads the response (chunked or not); the body is kept to its first MiB.
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
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .with_context(|| format!("a request to `{url}` cannot be made"))?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("cannot reach {address}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .with_context(|| format!("{address} did not answer HTTP"))?;
        // The connection is driven beside the exchange; it ends when the exchange, which owns
        // the sender, is done.
        let response = async move {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>(Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::join!(response, connection) {
            (Ok(response), _) => Ok(response),
            (Err(_), Err(e)) => Err(anyhow::Error::new(e)),
            (Err(e), Ok(())) => Err(e),
        }
        .with_context(|| format!("{address} did not answer HTTP"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} ms", timeout.as_millis()))?
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

    /// Regression: a chunked answer whose chunk boundary falls inside a character. The
    /// hand-written reader decoded the raw response lossily, then sliced each chunk at its byte
    /// count, and panicked.
    #[tokio::test]
    async fn a_chunk_boundary_inside_a_character_is_read_whole() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/role", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            // "rôle": ô is C3 B4 in UTF-8, split between the two chunks.
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                      2\r\nr\xc3\r\n3\r\n\xb4le\r\n0\r\n\r\n",
                )
                .await
                .unwrap();
        });
        let got = http("GET", &url, &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((got.status, got.body.as_str()), (200, "rôle"));
    }
}
