//! `keyless iam create-service-account`: what `eksctl create iamserviceaccount` does, against
//! a running server's IAM API: find the cluster's OIDC provider, create a role whose trust
//! policy admits that one service account's tokens, attach the policies, and print the
//! ServiceAccount YAML with its `eks.amazonaws.com/role-arn` annotation.
//!
//! The calls go through `aws-sdk-iam` on the tools' one SDK stack (`client.rs`): the default
//! credential chain, http:// or https:// with the platform's roots plus --ca-bundle, retries.
//! The chain's profile step also reads the server's data folder's `root-credentials` (an AWS
//! shared credentials file), so that on the server's host its `[default]` signs unless keys in
//! the environment or a named profile say otherwise.
//! <https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html>

use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::cli::CreateServiceAccountArgs;
use crate::output::outln;
use crate::tools::client::{self, Client, ClientArgs};

/// The file of a server's data folder that holds the root user's key pair.
const ROOT_CREDENTIALS: &str = "root-credentials";

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

pub(crate) fn create_service_account(args: &CreateServiceAccountArgs) -> anyhow::Result<ExitCode> {
    let role_arn = client::runtime()?.block_on(create(args))?;
    eprintln!(
        "keyless: created role {role_arn} for service account {}/{}",
        args.namespace, args.name
    );
    outln!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {}\n  namespace: {}\n  annotations:\n    eks.amazonaws.com/role-arn: \"{role_arn}\"",
        args.name,
        args.namespace
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The SDK configuration of `create-service-account`: the tools' default chain, whose profile
/// step also reads the data folder's root credentials (an AWS shared credentials file) after
/// ~/.aws/credentials, as if AWS_SHARED_CREDENTIALS_FILE named both.
async fn load(args: &CreateServiceAccountArgs) -> anyhow::Result<Client> {
    let root = args.data_dir.join(ROOT_CREDENTIALS);
    let has_root = root.is_file();
    let client_args = ClientArgs {
        endpoint: Some(args.endpoint_url.clone()),
        profile: args.profile.clone(),
        ca_bundle: args.ca_bundle.clone(),
        credentials_file: has_root.then(|| root.clone()),
        ..ClientArgs::default()
    };
    let client = Client::load(&client_args, None).await?;
    client.credentials().await.with_context(|| {
        if has_root {
            format!(
                "no credentials to call IAM with (the default chain, {} included)",
                root.display()
            )
        } else {
            format!(
                "no credentials to call IAM with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 a profile (--profile, AWS_PROFILE), or --data-dir to a server's data folder \
                 (there is no {})",
                root.display()
            )
        }
    })?;
    Ok(client)
}

/// Finds the provider, creates the role and attaches the policies; the role's ARN.
async fn create(args: &CreateServiceAccountArgs) -> anyhow::Result<String> {
    let client = load(args).await?;
    let iam = client.iam(&args.endpoint_url, None);
    let listed = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(client::sdk_error(&e)))
        .context("ListOpenIDConnectProviders")?;
    let providers: Vec<&str> = listed
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn())
        .collect();
    let provider_arn = match (&args.issuer, providers.as_slice()) {
        (Some(url), _) => {
            let key = keyless_types::ProviderUrl::read(url)
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
    let created = iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(policy)
        .description(format!(
            "IAM role for service account {}/{}",
            args.namespace, args.name
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(client::sdk_error(&e)))
        .context("CreateRole")?;
    let role_arn = created
        .role()
        .map(|role| role.arn().to_owned())
        .filter(|arn| !arn.is_empty())
        .context("CreateRole answered no ARN")?;
    for arn in &args.policy_arns {
        iam.attach_role_policy()
            .role_name(&role_name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(client::sdk_error(&e)))
            .with_context(|| {
                format!("role `{role_name}` was created, but attaching `{arn}` failed")
            })?;
    }
    Ok(role_arn)
}
