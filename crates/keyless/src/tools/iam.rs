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

use crate::cli::{CreateServiceAccountArgs, IamConnectArgs, RevokeSessionsArgs};
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
async fn load(args: &IamConnectArgs) -> anyhow::Result<Client> {
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
    let client = load(&args.connect).await?;
    let iam = client.iam(&args.connect.endpoint_url, None);
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

/// The inline policy AWS's console writes to revoke a role's sessions.
const REVOKE_POLICY: &str = "AWSRevokeOlderSessions";

/// A revocation statement older than this revokes nothing any more: every session issued
/// before it has expired (12 hours is the longest role session).
const REVOCATION_KEPT_SECONDS: i64 = 12 * 3600 + 300;

/// Which sessions a revocation covers: all of the role's, or those whose session tags match.
fn scope(args: &RevokeSessionsArgs) -> anyhow::Result<Vec<(String, String)>> {
    use keyless_types::pod_tags::{NAMESPACE_TAG, POD_NAME_TAG, POD_UID_TAG, SERVICE_ACCOUNT_TAG};
    let tag = |name: &str, value: &str| (format!("aws:PrincipalTag/{name}"), value.to_owned());
    let pair = |flag: &str, text: &str| -> anyhow::Result<(String, String)> {
        match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_owned(), name.to_owned()))
            }
            _ => bail!("{flag} `{text}`: expected NAMESPACE/NAME"),
        }
    };
    Ok(
        match (
            &args.pod_uid,
            &args.pod,
            &args.service_account,
            &args.namespace,
        ) {
            (Some(uid), ..) => vec![tag(POD_UID_TAG, uid)],
            (_, Some(pod), ..) => {
                let (ns, name) = pair("--pod", pod)?;
                vec![tag(NAMESPACE_TAG, &ns), tag(POD_NAME_TAG, &name)]
            }
            (_, _, Some(sa), _) => {
                let (ns, name) = pair("--service-account", sa)?;
                vec![tag(NAMESPACE_TAG, &ns), tag(SERVICE_ACCOUNT_TAG, &name)]
            }
            (.., Some(ns)) => vec![tag(NAMESPACE_TAG, ns)],
            _ => Vec::new(),
        },
    )
}

/// The revocation policy after revoking, at `now`, the sessions `scope` names: `existing`'s
/// statements for other scopes are kept (those that revoke nothing any more are dropped), and
/// this scope's is replaced by one that denies every action to sessions issued before `now`.
pub(crate) fn revocation_policy(
    existing: Option<&str>,
    scope: &[(String, String)],
    now: i64,
) -> anyhow::Result<String> {
    use serde_json::{Value, json};
    let mut statements: Vec<Value> = match existing {
        Some(text) => {
            let doc: Value = serde_json::from_str(text)
                .with_context(|| format!("the role's {REVOKE_POLICY} policy is not JSON"))?;
            match doc.get("Statement") {
                Some(Value::Array(s)) => s.clone(),
                Some(one @ Value::Object(_)) => vec![one.clone()],
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let matching: Value = scope
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let condition = |s: &Value, key: &str| s.get("Condition").and_then(|c| c.get(key)).cloned();
    statements.retain(|s| {
        let issued = condition(s, "DateLessThan")
            .and_then(|d| {
                d.get("aws:TokenIssueTime")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .and_then(|t| keyless_types::time::parse_iso8601(&t));
        // Only revocations (a deny on the issue time) are ours to replace or drop.
        let Some(issued) = issued.filter(|_| s.get("Effect") == Some(&json!("Deny"))) else {
            return true;
        };
        let same_scope = condition(s, "StringEquals").unwrap_or_else(|| json!({})) == matching;
        !same_scope && now.saturating_sub(issued) < REVOCATION_KEPT_SECONDS
    });
    let mut condition = serde_json::Map::new();
    condition.insert(
        "DateLessThan".into(),
        json!({"aws:TokenIssueTime": keyless_types::time::iso8601(now)}),
    );
    if !scope.is_empty() {
        condition.insert("StringEquals".into(), matching);
    }
    statements.push(json!({
        "Effect": "Deny",
        "Action": ["*"],
        "Resource": ["*"],
        "Condition": condition,
    }));
    Ok(json!({"Version": "2012-10-17", "Statement": statements}).to_string())
}

pub(crate) fn revoke_sessions(args: &RevokeSessionsArgs) -> anyhow::Result<ExitCode> {
    let scope = scope(args)?;
    client::runtime()?.block_on(async {
        let client = load(&args.connect).await?;
        let iam = client.iam(&args.connect.endpoint_url, None);
        #[allow(clippy::disallowed_types, clippy::disallowed_methods)] // the tool's own clock
        let now = keyless_types::Clock::unix_seconds(&keyless_types::SystemClock);
        for role in &args.roles {
            let existing = match iam
                .get_role_policy()
                .role_name(role)
                .policy_name(REVOKE_POLICY)
                .send()
                .await
            {
                Ok(found) => Some(
                    keyless_types::encoding::percent_decode(found.policy_document()).into_owned(),
                ),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_no_such_entity_exception()) =>
                {
                    None
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(client::sdk_error(&e)))
                        .with_context(|| format!("GetRolePolicy of `{role}`"));
                }
            };
            let policy = revocation_policy(existing.as_deref(), &scope, now)?;
            iam.put_role_policy()
                .role_name(role)
                .policy_name(REVOKE_POLICY)
                .policy_document(policy)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(client::sdk_error(&e)))
                .with_context(|| format!("PutRolePolicy of `{role}`"))?;
            let what = match scope.as_slice() {
                [] => "every session".to_owned(),
                tags => format!(
                    "the sessions tagged {}",
                    tags.iter()
                        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("aws:PrincipalTag/")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            eprintln!(
                "keyless: revoked {what} of role {role} issued before {}",
                keyless_types::time::iso8601(now)
            );
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_replace_their_scope_and_drop_what_revokes_nothing() {
        let pod = vec![(
            "aws:PrincipalTag/kubernetes-pod-uid".to_owned(),
            "u-1".to_owned(),
        )];
        let first = revocation_policy(None, &[], 1_000_000).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(
            doc["Statement"][0],
            serde_json::json!({"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": "1970-01-12T13:46:40Z"}}})
        );
        keyless_policy::Policy::parse_as(&first, keyless_policy::PolicyKind::Identity).unwrap();
        // A pod's revocation is added beside the role's; a later one of the same scope replaces it.
        let both = revocation_policy(Some(&first), &pod, 1_000_010).unwrap();
        let again = revocation_policy(Some(&both), &pod, 1_000_020).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&again).unwrap();
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2, "{again}");
        assert_eq!(
            statements[1]["Condition"]["StringEquals"]["aws:PrincipalTag/kubernetes-pod-uid"],
            "u-1"
        );
        assert_eq!(
            statements[1]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "1970-01-12T13:47:00Z"
        );
        // A day later, the old statements revoke nothing and are dropped.
        let later = revocation_policy(Some(&again), &[], 1_000_000 + 86_400).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&later).unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 1);
        assert!(revocation_policy(Some("not json"), &[], 0).is_err());
        // A statement that is not a revocation is kept, whatever its scope.
        let own = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#;
        let kept = revocation_policy(Some(own), &[], 1_000_000).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2, "{kept}");
    }
}
