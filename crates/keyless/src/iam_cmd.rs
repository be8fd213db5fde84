//! `keyless iam create-service-account`: what `eksctl create iamserviceaccount` does, against
//! a running server's IAM API: find the cluster's OIDC provider, create a role whose trust
//! policy admits that one service account's tokens, attach the policies, and print the
//! ServiceAccount YAML with its `eks.amazonaws.com/role-arn` annotation.
//!
//! The calls are signed with SigV4 like awscli's. Plain `http://` endpoints only: the server's
//! IAM API is usually reached on loopback or inside the cluster.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use keyless_types::Clock as _;
use keyless_types::time::iso8601;

use crate::cli::CreateServiceAccountArgs;

/// A signed IAM query client.
pub(crate) struct IamClient {
    host: String,
    access_key_id: String,
    secret: String,
    token: Option<String>,
}

fn form_encode(text: &str) -> String {
    keyless_types::encoding::uri_encode(text, false)
}

impl IamClient {
    /// A client of the IAM API at `endpoint` (an http:// URL) signing with the given keys.
    pub(crate) fn new(
        endpoint: &str,
        access_key_id: String,
        secret: String,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            host: http_host(endpoint)?,
            access_key_id,
            secret,
            token,
        })
    }

    fn from_environment(endpoint: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let host = http_host(endpoint)?;
        #[allow(clippy::disallowed_methods)] // the binary reads its configuration
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Self {
                host,
                access_key_id: id,
                secret,
                token: env("AWS_SESSION_TOKEN"),
            });
        }
        let (root, _) = crate::root::root_key(data_dir)?;
        Ok(Self {
            host,
            access_key_id: root.access_key_id,
            secret: root.secret.expose().to_owned(),
            token: None,
        })
    }

    /// Calls `action` and returns the response body, or the IAM error's code and message.
    pub(crate) fn call(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", form_encode(k), form_encode(v)));
        }
        let now = crate::serve::SystemClock.unix_seconds();
        let amz_date = iso8601(now).replace(['-', ':'], "");
        let signer = keyless_sigv4::Signer {
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret,
            session_token: self.token.as_deref(),
            region: "us-east-1",
            service: "iam",
            amz_date: &amz_date,
        };
        let headers = [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", self.host.as_str()),
        ];
        let added = keyless_sigv4::sign(&signer, "POST", "/", "", &headers, body.as_bytes());
        let mut request = String::from("POST / HTTP/1.1\r\n");
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain(added.iter().map(|(k, v)| (*k, v.as_str())))
        {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        let mut stream = TcpStream::connect(&self.host)
            .with_context(|| format!("cannot reach `{}`", self.host))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .context("cannot read the response")?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("the response has no body")?;
        let ok = head.starts_with("HTTP/1.1 2");
        let body = dechunk(head, body);
        if !ok {
            bail!(
                "{action}: {} ({})",
                element(&body, "Message").unwrap_or_default(),
                element(&body, "Code").unwrap_or_default()
            );
        }
        Ok(body)
    }
}

/// The host and port of an http:// endpoint.
fn http_host(endpoint: &str) -> anyhow::Result<String> {
    let Some(host) = endpoint.strip_prefix("http://") else {
        bail!("--endpoint-url must be an http:// URL (`{endpoint}`)");
    };
    Ok(host.trim_end_matches('/').to_owned())
}

/// The body of a `Transfer-Encoding: chunked` response, joined.
pub(crate) fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The text of every `<tag>` in `xml`.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.match_indices(&open)
        .filter_map(|(i, _)| {
            let start = i + open.len();
            let end = xml[start..].find(&close)?;
            Some(&xml[start..start + end])
        })
        .collect()
}

pub(crate) fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    elements(xml, tag).into_iter().next()
}

/// The trust policy eksctl writes for a service account.
pub(crate) fn trust_policy(
    provider_arn: &str,
    provider_key: &str,
    namespace: &str,
    name: &str,
    audience: &str,
) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{provider_key}:sub"): format!("system:serviceaccount:{namespace}:{name}"),
                format!("{provider_key}:aud"): audience,
            }}
        }]
    })
    .to_string()
}

pub(crate) fn create_service_account(
    args: &CreateServiceAccountArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let client = IamClient::from_environment(&args.endpoint_url, &args.data_dir)?;
    let listed = client.call("ListOpenIDConnectProviders", &[])?;
    let providers = elements(&listed, "Arn");
    let provider_arn = match (&args.issuer, providers.as_slice()) {
        (Some(url), _) => {
            let key = keyless_types::ProviderUrl::parse(url)
                .with_context(|| format!("--issuer `{url}`"))?
                .key()
                .to_owned();
            providers
                .iter()
                .find(|arn| arn.ends_with(&format!(":oidc-provider/{key}")))
                .with_context(|| format!("no OIDC provider for `{url}`: create it with `aws iam create-open-id-connect-provider`"))?
                .to_string()
        }
        (None, [one]) => (*one).to_owned(),
        (None, []) => bail!(
            "the server has no OIDC provider: create one, or start `keyless serve`, which registers its own issuer"
        ),
        (None, _) => bail!(
            "several OIDC providers exist ({}): choose one with --issuer",
            providers.join(", ")
        ),
    };
    let provider_key = provider_arn
        .split_once(":oidc-provider/")
        .map(|(_, key)| key.to_owned())
        .context("the OIDC provider's ARN is malformed")?;
    let role_name = args.role_name.clone().unwrap_or_else(|| {
        let mut name = format!("keyless-{}-{}", args.namespace, args.name);
        name.truncate(64);
        name
    });
    let policy = trust_policy(
        &provider_arn,
        &provider_key,
        &args.namespace,
        &args.name,
        &args.audience,
    );
    let created = client.call(
        "CreateRole",
        &[
            ("RoleName", role_name.as_str()),
            ("AssumeRolePolicyDocument", policy.as_str()),
            (
                "Description",
                &format!(
                    "IAM role for service account {}/{}",
                    args.namespace, args.name
                ),
            ),
        ],
    )?;
    let role_arn = element(&created, "Arn")
        .context("CreateRole answered no ARN")?
        .to_owned();
    for arn in &args.policy_arns {
        client
            .call(
                "AttachRolePolicy",
                &[
                    ("RoleName", role_name.as_str()),
                    ("PolicyArn", arn.as_str()),
                ],
            )
            .with_context(|| {
                format!("role `{role_name}` was created, but attaching `{arn}` failed")
            })?;
    }
    eprintln!(
        "keyless: created role {role_arn} for service account {}/{}",
        args.namespace, args.name
    );
    println!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {}\n  namespace: {}\n  annotations:\n    eks.amazonaws.com/role-arn: \"{role_arn}\"",
        args.name, args.namespace
    );
    Ok(std::process::ExitCode::SUCCESS)
}
