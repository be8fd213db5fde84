//! `keyless whoami`: GetCallerIdentity under the credentials the SDK's default chain finds, and
//! which step of the chain found them.
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html>

use std::process::ExitCode;

use anyhow::Context as _;

use crate::output::{out, outln};
use crate::tools::client::{self, Client, ClientArgs};

/// Arguments of `keyless whoami`.
#[derive(Debug, clap::Args)]
pub(crate) struct WhoamiArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,

    /// Print JSON (GetCallerIdentity's `UserId`, `Account`, `Arn`, plus `Source`).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Who the caller is and where the credentials came from.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Identity {
    pub(crate) user_id: String,
    pub(crate) account: String,
    pub(crate) arn: String,
    pub(crate) access_key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expiration: Option<String>,
    pub(crate) source: client::Source,
}

pub(crate) fn run(args: &WhoamiArgs) -> anyhow::Result<ExitCode> {
    let identity = client::runtime()?.block_on(async {
        let client = Client::load(&args.client, None).await?;
        identify(&client, args.client.profile.as_deref()).await
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&identity)?)?;
    } else {
        out!("{}", human(&identity))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves credentials once, then asks STS who they belong to.
pub(crate) async fn identify(client: &Client, profile: Option<&str>) -> anyhow::Result<Identity> {
    let credentials = client
        .credentials()
        .await
        .context("no credentials were found")?;
    let source = client::describe_source(&credentials, profile);
    let sts = client.sts();
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(client::sdk_error(&e)))
        .with_context(|| {
            format!(
                "GetCallerIdentity at {} failed",
                client.sts_endpoint.as_deref().unwrap_or("AWS STS")
            )
        })?;
    Ok(Identity {
        user_id: out.user_id.unwrap_or_default(),
        account: out.account.unwrap_or_default(),
        arn: out.arn.unwrap_or_default(),
        access_key_id: credentials.access_key_id().to_owned(),
        expiration: credentials.expiry().map(|t| {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            keyless_types::time::iso8601(secs as i64)
        }),
        source,
    })
}

fn human(id: &Identity) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}", id.arn);
    let _ = writeln!(out, "  account      {}", id.account);
    let _ = writeln!(out, "  user id      {}", id.user_id);
    let _ = writeln!(out, "  access key   {}", id.access_key_id);
    if let Some(exp) = &id.expiration {
        let _ = writeln!(out, "  expires      {exp}");
    }
    let _ = writeln!(out, "  source       {}", id.source);
    out
}
