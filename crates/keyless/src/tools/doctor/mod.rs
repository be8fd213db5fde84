//! `keyless doctor`: walks the whole credential chain the AWS SDKs walk (keys, web identity,
//! container endpoint, IMDS), says what each step found and what it means, asks STS who the
//! credentials belong to, and proves list, write, read and delete on buckets.
//! <https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html>

mod bucket;
mod pod;
mod report;
mod sources;
mod steps;
mod token;

use std::process::ExitCode;
use std::time::Duration;

use crate::output::{out, outln};
use crate::tools::client::{self, Client, ClientArgs, env_nonempty};
use report::{Check, Report, Status};
use sources::KeyPair;

/// What the exit code means, for `--help`.
const EXIT_CODES: &str = "Exit codes: 0 works; 1 works, with warnings (such as keys that shadow \
                          the role); 2 broken (a check failed, or doctor itself could not run).";

/// Arguments of `keyless doctor`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,

    /// Prove list, write, read and delete on this bucket, with a probe object under
    /// `keyless-doctor/` that is deleted again; repeat for several.
    #[arg(long = "bucket", value_name = "BUCKET")]
    pub(crate) buckets: Vec<String>,

    /// Check the credentials an s3cmd configuration gives (GitLab's `s3cmd.config` secret):
    /// its endpoint, region and keys, which win over every role, as in `keyless backup`.
    #[arg(long, value_name = "FILE")]
    pub(crate) s3cmd_config: Option<std::path::PathBuf>,

    /// A profile of the shared credentials file whose keys may read the role (iam:GetRole), to
    /// check the role's trust policy against the token [default: the credentials the chain
    /// finds]
    #[arg(long, value_name = "NAME")]
    pub(crate) iam_profile: Option<String>,

    /// Print JSON: `{"status": "works"|"warnings"|"broken", "checks": [{"step", "status",
    /// "message", "hint"?, "details"?}]}`.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = client::runtime()?.block_on(diagnose(args))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.json())?)?;
    } else {
        out!("{}", report.human())?;
    }
    Ok(ExitCode::from(report.verdict().exit_code()))
}

async fn diagnose(args: &DoctorArgs) -> anyhow::Result<Report> {
    let now = crate::now();
    let mut client_args = args.client.clone();
    let mut pairs = Vec::new();
    let mut explicit = None;
    if let Some(path) = &args.s3cmd_config {
        let shown = path.display().to_string();
        explicit = crate::tools::backup::s3cmd::apply(path, &mut client_args)?;
        if let Some(keys) = &explicit {
            pairs.push(KeyPair {
                origin: format!("access_key and secret_key of the s3cmd config {shown}"),
                access_key_id: keys.access_key_id.clone(),
            });
        }
    }
    let profile = client_args
        .profile
        .clone()
        .or_else(|| env_nonempty("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let (env_id, env_secret) = (
        env_nonempty("AWS_ACCESS_KEY_ID"),
        env_nonempty("AWS_SECRET_ACCESS_KEY"),
    );
    if let (Some(id), Some(_)) = (&env_id, &env_secret) {
        pairs.push(KeyPair {
            origin: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            access_key_id: id.clone(),
        });
    }
    if let Some((pair, _)) = sources::shared_file_keys(&profile) {
        pairs.push(pair);
    }
    let half_pair = env_id.is_some() != env_secret.is_some();

    let (container, imds) = tokio::join!(sources::probe_container(), sources::probe_imds());
    let web_file = env_nonempty("AWS_WEB_IDENTITY_TOKEN_FILE");
    let role_arn = env_nonempty("AWS_ROLE_ARN");

    let mut roles = Vec::new();
    if let (Some(_), Some(arn)) = (&web_file, &role_arn) {
        roles.push(format!("web identity for {arn}"));
    }
    if let Some(c) = &container {
        roles.push(format!("the container endpoint {}", c.url));
    }
    if let Some(role) = imds.role() {
        roles.push(format!("the IMDS role {role}"));
    }

    let mut report = Report::default();
    report.push(steps::keys_check(&pairs, &roles, &profile, half_pair));

    let client = Client::load(&client_args, explicit).await?;
    let credentials = resolve(&client).await;

    // Web identity: the token, the role, and the role's trust policy.
    let claims = web_identity_checks(&mut report, web_file.as_deref(), role_arn.as_deref(), now);
    if let (Some(claims), Some(arn)) = (&claims, &role_arn)
        && report.checks.last().is_some_and(|c| c.status == Status::Ok)
    {
        report.push(trust_check(&client, args, arn, claims, credentials.as_ref().ok(), now).await);
    }
    // In a pod with no credentials at all: does its service account ask for a role?
    if pairs.is_empty()
        && web_file.is_none()
        && role_arn.is_none()
        && container.is_none()
        && let Some(check) = pod::check().await
    {
        report.push(check);
    }
    report.push(steps::container_check(container.as_ref()));
    report.push(steps::imds_check(&imds));

    // What the chain found, and who STS says it is.
    let sts_endpoint = client.sts_endpoint.clone().unwrap_or_else(|| {
        let region = client.config.region().map_or("us-east-1", |r| r.as_ref());
        format!("https://sts.{region}.amazonaws.com")
    });
    let mut who = None;
    match &credentials {
        Ok(creds) => {
            let source = client::describe_source(creds, client_args.profile.as_deref());
            let mut check = Check::new(
                "credentials",
                Status::Ok,
                format!("from {source}; access key {}", creds.access_key_id()),
            )
            .detail("source", source.kind.clone())
            .detail("access_key_id", creds.access_key_id());
            for (k, v) in &source.details {
                check = check.detail(k, v.clone());
            }
            report.push(check);
            match crate::tools::whoami::identify(&client, client_args.profile.as_deref()).await {
                Ok(id) => {
                    report.push(
                        Check::new(
                            "sts",
                            Status::Ok,
                            format!(
                                "GetCallerIdentity at {sts_endpoint}: {} (account {}), credentials from {}",
                                id.arn, id.account, id.source.kind
                            ),
                        )
                        .detail("endpoint", sts_endpoint.clone())
                        .detail("arn", id.arn.clone())
                        .detail("account", id.account.clone()),
                    );
                    who = Some(id.arn);
                }
                Err(e) => report.push(
                    Check::new("sts", Status::Fail, format!("{e:#}"))
                        .detail("endpoint", sts_endpoint.clone())
                        .hint(steps::credential_hint(&format!("{e:#}")).unwrap_or(
                            "STS refused the credentials the chain found: see the message",
                        )),
                ),
            }
        }
        Err(message) => {
            let mut check = Check::new("credentials", Status::Fail, message.clone());
            let token_failed = report
                .checks
                .iter()
                .any(|c| c.step == "web-identity token" && c.status == Status::Fail);
            if token_failed {
                check = check.hint("the web-identity token is not usable: see its step above");
            } else if let Some(hint) = steps::credential_hint(message) {
                check = check.hint(hint);
            }
            report.push(check);
            report.push(match reachable(&sts_endpoint).await {
                Ok(()) => Check::new(
                    "sts",
                    Status::Info,
                    format!("{sts_endpoint} is reachable; GetCallerIdentity not tried without credentials"),
                ),
                Err(e) => Check::new("sts", Status::Fail, format!("{sts_endpoint} is not reachable: {e}"))
                    .hint("check the STS endpoint (--sts-endpoint, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL) and the network"),
            });
        }
    }

    if !args.buckets.is_empty() {
        let s3 = client.s3();
        let who = who.unwrap_or_else(|| "these credentials".to_owned());
        for bucket in &args.buckets {
            if credentials.is_err() {
                report.push(Check::new(
                    format!("s3://{bucket}"),
                    Status::Fail,
                    "not tried: no credentials",
                ));
                continue;
            }
            let key = format!("{}{}", bucket::PROBE_PREFIX, probe_name());
            for check in bucket::prove(&s3, bucket, &who, &key).await {
                report.push(check);
            }
        }
    }
    Ok(report)
}

/// The credentials the chain finds, or its error in few words: for a refusal by STS, its code
/// and message (`AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity`).
async fn resolve(client: &Client) -> Result<aws_credential_types::Credentials, String> {
    use aws_credential_types::provider::ProvideCredentials as _;
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    let Some(provider) = client.config.credentials_provider() else {
        return Err("no credential provider is configured".to_owned());
    };
    let e = match provider.provide_credentials().await {
        Ok(credentials) => return Ok(credentials),
        Err(e) => e,
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if let Some(sdk) =
            cause.downcast_ref::<aws_sdk_sts::error::SdkError<AssumeRoleWithWebIdentityError>>()
            && let Some(code) = sdk.code()
        {
            return Err(format!(
                "STS refused AssumeRoleWithWebIdentity: {code}: {}",
                sdk.message().unwrap_or_default()
            ));
        }
        source = cause.source();
    }
    Err(keyless_types::error_chain(&e))
}

/// ` (key: value, ...)` of a credential source, or nothing.
/// A probe object's name, unique across pods (whose pids are often alike).
fn probe_name() -> String {
    #[allow(clippy::disallowed_methods)]
    // a unique name, not a decision: the binary reads the clock
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("probe-{nanos}-{}", std::process::id())
}

/// The web-identity steps; the token's claims when the token is usable.
fn web_identity_checks(
    report: &mut Report,
    file: Option<&str>,
    role_arn: Option<&str>,
    now: i64,
) -> Option<token::Claims> {
    const STEP: &str = "web-identity token";
    let file = match (file, role_arn) {
        (None, None) => {
            report.push(Check::new(
                STEP,
                Status::Info,
                "not configured (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are unset)",
            ));
            return None;
        }
        (None, Some(arn)) => {
            report.push(
                Check::new(STEP, Status::Warn, format!("AWS_ROLE_ARN is {arn} but AWS_WEB_IDENTITY_TOKEN_FILE is unset: the SDKs skip web identity"))
                    .hint("IRSA's webhook sets both, and mounts the token, for pods of a service account with an eks.amazonaws.com/role-arn annotation"),
            );
            return None;
        }
        (Some(file), None) => {
            report.push(
                Check::new(STEP, Status::Warn, format!("AWS_WEB_IDENTITY_TOKEN_FILE is {file} but AWS_ROLE_ARN is unset: the SDKs skip web identity"))
                    .hint("set AWS_ROLE_ARN to the role's ARN (the service account's eks.amazonaws.com/role-arn annotation)"),
            );
            return None;
        }
        (Some(file), Some(_)) => file,
    };
    let claims = match std::fs::read_to_string(file) {
        Err(e) => {
            report.push(
                Check::new(STEP, Status::Fail, format!("cannot read AWS_WEB_IDENTITY_TOKEN_FILE {file}: {e}"))
                    .hint("is the projected token volume mounted (IRSA: /var/run/secrets/eks.amazonaws.com/serviceaccount/token), and readable by this user?"),
            );
            None
        }
        Ok(text) => match token::decode_claims(&text) {
            Err(e) => {
                report.push(
                    Check::new(STEP, Status::Fail, format!("{file} does not hold a token: {e}"))
                        .hint("the file must hold a service-account token (a JWT), as the kubelet projects it"),
                );
                None
            }
            Ok(claims) => {
                let check = token::token_check(file, &claims, now);
                let usable = check.status == Status::Ok;
                report.push(check);
                usable.then_some(claims)
            }
        },
    };
    if let Some(arn) = role_arn {
        report.push(token::role_arn_check(arn));
    }
    claims
}

/// Reads the role's trust policy with GetRole and decides whether it admits the token.
async fn trust_check(
    client: &Client,
    args: &DoctorArgs,
    role_arn: &str,
    claims: &token::Claims,
    chain: Option<&aws_credential_types::Credentials>,
    now: i64,
) -> Check {
    const STEP: &str = "trust policy";
    let cannot = |why: String| {
        Check::new(STEP, Status::Info, format!("not checked: {why}")).hint(format!(
            "`aws iam get-role --role-name {}` shows it; its :sub and :aud conditions must match the token's",
            role_name(role_arn)
        ))
    };
    let Some(endpoint) =
        env_nonempty("AWS_ENDPOINT_URL_IAM").or_else(|| client.sts_endpoint.clone())
    else {
        return cannot("IAM is AWS's own, which doctor does not call".to_owned());
    };
    let (credentials, who) = match (&args.iam_profile, chain) {
        (Some(profile), _) => match sources::shared_file_keys(profile) {
            Some((pair, secret)) => (
                aws_credential_types::Credentials::new(
                    pair.access_key_id,
                    secret,
                    None,
                    None,
                    "IamProfile",
                ),
                pair.origin,
            ),
            None => return cannot(format!("profile `{profile}` has no keys")),
        },
        (None, Some(c)) => (
            c.clone(),
            format!("the credentials found (key {})", c.access_key_id()),
        ),
        (None, None) => {
            return cannot("no credentials to read the role with (try --iam-profile)".to_owned());
        }
    };
    let got = client
        .iam(&endpoint, Some(credentials))
        .get_role()
        .role_name(role_name(role_arn))
        .send()
        .await;
    let role = match got {
        Ok(out) => out.role,
        Err(e) => {
            return cannot(format!("GetRole with {who} failed: {}", client::sdk_error(&e))).hint(format!(
                "give doctor a profile allowed iam:GetRole with --iam-profile, or run `aws iam get-role --role-name {}`",
                role_name(role_arn)
            ));
        }
    };
    let Some(encoded) = role.as_ref().and_then(|r| r.assume_role_policy_document()) else {
        return cannot("GetRole answered no AssumeRolePolicyDocument".to_owned());
    };
    let document = keyless_types::encoding::percent_decode(encoded).into_owned();
    token::trust_check(&token::Trust {
        role_arn,
        document: &document,
        claims,
        session_name: env_nonempty("AWS_ROLE_SESSION_NAME").as_deref(),
        secure_transport: client
            .sts_endpoint
            .as_deref()
            .is_none_or(|e| e.starts_with("https://")),
        now,
    })
}

fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// Whether a TCP connection to the endpoint's host opens within two seconds.
async fn reachable(url: &str) -> Result<(), String> {
    let (https, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some((_, rest)) => (false, rest),
        None => (false, url),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let address = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:{}", if https { 443 } else { 80 })
    } else {
        authority.to_owned()
    };
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{address}: {e}")),
        Err(_) => Err(format!("{address}: no answer within 2 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_the_last_part_of_the_arn() {
        assert_eq!(role_name("arn:aws:iam::0:role/gitlab/registry"), "registry");
        assert_eq!(role_name("arn:aws:iam::0:role/r"), "r");
    }
}
