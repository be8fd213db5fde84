//! Managed policies (customer managed, and AWS managed ones by their real ARNs) and the policy
//! simulator's two actions.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html>
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html>

use md5::{Digest as _, Md5};

use super::users::{encode_document, truncation};
use super::{ApiError, Cx, Outcome, Params};
use crate::rules::check_path;
use crate::simulate::{
    ContextEntry, EvaluationResult, PermissionsBoundaryDecisionDetail, SimulateCustomPolicyInput,
    SimulatePolicyOutput, Simulation, StatementRef,
};
use crate::state::ManagedPolicy;
use crate::{IamError, IamState, ids, managed};
use keyless_types::xml::Xml;

/// When the AWS managed policies Keyless carries were published, for their dates.
const AWS_MANAGED_DATE: i64 = 1_423_248_058; // 2015-02-06T18:40:58Z

/// A managed policy as responses describe it, customer or AWS managed.
struct View {
    name: String,
    id: String,
    arn: String,
    path: String,
    default_version: String,
    attachments: usize,
    boundary_usage: usize,
    description: String,
    created: i64,
    updated: i64,
}

impl View {
    fn customer(p: &ManagedPolicy, state: &IamState, account: &str) -> Self {
        let arn = p.arn(account);
        Self {
            name: p.name.clone(),
            id: p.id.clone(),
            attachments: state.attachment_count(&arn),
            boundary_usage: state.boundary_usage_count(&arn),
            arn,
            path: p.path.clone(),
            default_version: format!("v{}", p.default_version),
            description: p.description.clone(),
            created: p.created,
            updated: p.updated,
        }
    }

    fn aws(m: &managed::ManagedPolicy, state: &IamState) -> Self {
        Self {
            name: m.name.to_owned(),
            id: stable_policy_id(m.arn),
            arn: m.arn.to_owned(),
            path: "/".into(),
            default_version: m.version_id.to_owned(),
            attachments: state.attachment_count(m.arn),
            boundary_usage: state.boundary_usage_count(m.arn),
            description: m.description.to_owned(),
            created: AWS_MANAGED_DATE,
            updated: AWS_MANAGED_DATE,
        }
    }

    fn write(&self, x: &mut Xml, with_description: bool) {
        x.text("PolicyName", &self.name)
            .text("PolicyId", &self.id)
            .text("Arn", &self.arn)
            .text("Path", &self.path)
            .text("DefaultVersionId", &self.default_version)
            .value("AttachmentCount", self.attachments)
            .value("PermissionsBoundaryUsageCount", self.boundary_usage)
            .value("IsAttachable", true);
        if with_description && !self.description.is_empty() {
            x.text("Description", &self.description);
        }
        x.date("CreateDate", self.created)
            .date("UpdateDate", self.updated);
    }
}

/// An `ANPA...` id that stays the same for an AWS managed policy.
fn stable_policy_id(arn: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Md5::digest(arn.as_bytes());
    let tail: String = digest
        .iter()
        .cycle()
        .take(17)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("ANPA{tail}")
}

fn policy_resource(cx: &Cx<'_>, name: &str, path: &str) -> String {
    format!("arn:aws:iam::{}:policy{path}{name}", cx.account())
}

pub(super) fn create_policy(cx: &Cx<'_>) -> Outcome {
    if cx.params().mentions("Tags") {
        return Err(IamError::InvalidInput("Tags is not supported by this server".into()).into());
    }
    let p = cx.params();
    let (name, document) = (p.required("PolicyName")?, p.required("PolicyDocument")?);
    let path = p.get("Path").unwrap_or("/");
    let description = p.get("Description").unwrap_or("");
    cx.authorize("iam:CreatePolicy", &policy_resource(cx, name, path))?;
    let id = ids::policy_id()?;
    let mut created = None;
    cx.update(&mut |s| {
        let policy = s
            .create_policy(name, path, description, document, id.clone(), cx.req.now)?
            .clone();
        created = Some(View::customer(&policy, s, cx.account()));
        Ok(())
    })?;
    let mut x = Xml::new();
    if let Some(view) = created {
        x.open("Policy");
        view.write(&mut x, false);
        x.close("Policy");
    }
    Ok(Some(x.finish()))
}

pub(super) fn get_policy(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("PolicyArn")?;
    cx.authorize("iam:GetPolicy", arn)?;
    let snapshot = cx.store.snapshot();
    let view = match managed::by_arn(arn) {
        Some(m) => View::aws(m, &snapshot.state),
        None => View::customer(
            snapshot.state.policy(cx.account(), arn)?,
            &snapshot.state,
            cx.account(),
        ),
    };
    let mut x = Xml::new();
    x.open("Policy");
    view.write(&mut x, true);
    x.close("Policy");
    Ok(Some(x.finish()))
}

pub(super) fn get_policy_version(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("PolicyArn")?;
    let version = cx.params().required("VersionId")?;
    cx.authorize("iam:GetPolicyVersion", arn)?;
    let not_found = || {
        ApiError::Iam(IamError::NoSuchEntity(format!(
            "Policy {arn} version {version} does not exist or is not attachable."
        )))
    };
    let snapshot = cx.store.snapshot();
    let (document, is_default, created) = match managed::by_arn(arn) {
        Some(m) if m.version_id == version => (m.document.to_owned(), true, AWS_MANAGED_DATE),
        Some(_) => return Err(not_found()),
        None => {
            let policy = snapshot.state.policy(cx.account(), arn)?;
            let number = version
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .ok_or_else(not_found)?;
            let v = policy.version(number).ok_or_else(not_found)?;
            (
                v.document.clone(),
                number == policy.default_version,
                v.created,
            )
        }
    };
    let mut x = Xml::new();
    x.open("PolicyVersion")
        .text("Document", &encode_document(&document))
        .text("VersionId", version)
        .value("IsDefaultVersion", is_default)
        .date("CreateDate", created)
        .close("PolicyVersion");
    Ok(Some(x.finish()))
}

pub(super) fn list_policies(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let scope = p.get("Scope").unwrap_or("All");
    if !matches!(scope, "All" | "AWS" | "Local") {
        return Err(IamError::Validation(format!(
            "1 validation error detected: Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
        ))
        .into());
    }
    let only_attached = p.flag("OnlyAttached")?;
    let prefix = p.get("PathPrefix").unwrap_or("/");
    check_path("pathPrefix", prefix)?;
    let page = p.page()?;
    cx.authorize(
        "iam:ListPolicies",
        &format!("arn:aws:iam::{}:policy/", cx.account()),
    )?;
    let snapshot = cx.store.snapshot();
    let state = &snapshot.state;
    let mut views = Vec::new();
    if scope != "Local" {
        views.extend(managed::all().iter().map(|m| View::aws(m, state)));
    }
    if scope != "AWS" {
        views.extend(
            state
                .policies
                .values()
                .map(|p| View::customer(p, state, cx.account())),
        );
    }
    views.retain(|v| v.path.starts_with(prefix) && (!only_attached || v.attachments > 0));
    let (views, next) = page.take(views, |v| v.arn.clone());
    let mut x = Xml::new();
    x.members("Policies", views, |x, v| v.write(x, false));
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}

pub(super) fn delete_policy(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("PolicyArn")?;
    cx.authorize("iam:DeletePolicy", arn)?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.delete_policy(&account, arn))?;
    Ok(None)
}

/// The simulator's input as the query protocol sends it.
fn simulation_input(p: &Params) -> Result<SimulateCustomPolicyInput, IamError> {
    let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut entries = Vec::new();
    for entry in p.structs("ContextEntries") {
        entries.push(ContextEntry {
            context_key_name: entry.required("ContextKeyName")?.to_owned(),
            context_key_values: owned(entry.list("ContextKeyValues")),
            context_key_type: entry.required("ContextKeyType")?.parse()?,
        });
    }
    let max_items = p.page()?.max_items;
    Ok(SimulateCustomPolicyInput {
        policy_input_list: owned(p.list("PolicyInputList")),
        permissions_boundary_policy_input_list: owned(p.list("PermissionsBoundaryPolicyInputList")),
        action_names: owned(p.list("ActionNames")),
        resource_arns: owned(p.list("ResourceArns")),
        resource_policy: p.get("ResourcePolicy").map(str::to_owned),
        resource_owner: p.get("ResourceOwner").map(str::to_owned),
        caller_arn: p.get("CallerArn").map(str::to_owned),
        context_entries: entries,
        resource_handling_option: p.get("ResourceHandlingOption").map(str::to_owned),
        max_items: u32::try_from(max_items).ok(),
        marker: p.get("Marker").map(str::to_owned),
    })
}

pub(super) fn simulate_custom_policy(cx: &Cx<'_>) -> Outcome {
    let input = simulation_input(cx.params())?;
    cx.authorize("iam:SimulateCustomPolicy", "*")?;
    let output = Simulation::from_input(&input)?.run();
    simulation_page(output, cx.params())
}

pub(super) fn simulate_principal_policy(cx: &Cx<'_>) -> Outcome {
    let source = cx.params().required("PolicySourceArn")?;
    let mut input = simulation_input(cx.params())?;
    cx.authorize("iam:SimulatePrincipalPolicy", source)?;
    let snapshot = cx.store.snapshot();
    let state = &snapshot.state;
    let user = state
        .users
        .values()
        .find(|u| u.arn(cx.account()) == source)
        .ok_or_else(|| {
            IamError::NoSuchEntity(format!("The user with ARN {source} cannot be found."))
        })?;
    if input.caller_arn.is_none() {
        input.caller_arn = Some(source.to_owned());
    }
    let policies = state.user_policies(cx.account(), user)?;
    let output = Simulation::with_sources(&input, &policies)?.run();
    simulation_page(output, cx.params())
}

fn write_statements(x: &mut Xml, statements: &[StatementRef]) {
    x.members("MatchedStatements", statements, |x, s| {
        x.text("SourcePolicyId", &s.source_policy_id)
            .text("SourcePolicyType", &s.source_policy_type);
        for (tag, pos) in [
            ("StartPosition", s.start_position),
            ("EndPosition", s.end_position),
        ] {
            if let Some(pos) = pos {
                x.open(tag)
                    .value("Line", pos.line)
                    .value("Column", pos.column)
                    .close(tag);
            }
        }
    });
}

fn write_details(
    x: &mut Xml,
    missing: &[String],
    details: Option<&std::collections::BTreeMap<String, String>>,
    boundary: Option<&PermissionsBoundaryDecisionDetail>,
) {
    x.open("MissingContextValues");
    for key in missing {
        x.text("member", key);
    }
    x.close("MissingContextValues");
    if let Some(details) = details {
        x.open("EvalDecisionDetails");
        for (key, value) in details {
            x.open("entry")
                .text("key", key)
                .text("value", value)
                .close("entry");
        }
        x.close("EvalDecisionDetails");
    }
    if let Some(b) = boundary {
        x.open("PermissionsBoundaryDecisionDetail")
            .value(
                "AllowedByPermissionsBoundary",
                b.allowed_by_permissions_boundary,
            )
            .close("PermissionsBoundaryDecisionDetail");
    }
}

/// The page of results that `MaxItems` and `Marker` (the index of the first result) select.
fn simulation_page(output: SimulatePolicyOutput, p: &Params) -> Outcome {
    let page = p.page()?;
    let mut results = output.evaluation_results;
    let start = match page.marker {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= results.len())
            .ok_or_else(|| IamError::InvalidInput(format!("Marker `{m}` is not valid")))?,
    };
    let end = start.saturating_add(page.max_items).min(results.len());
    let next = (end < results.len()).then(|| end.to_string());
    results.truncate(end);
    results.drain(..start);
    Ok(Some(simulation_xml(&results, next)))
}

/// `SimulatePolicyResponse`'s content.
fn simulation_xml(results: &[EvaluationResult], next: Option<String>) -> String {
    let mut x = Xml::new();
    x.members("EvaluationResults", results, |x, r: &EvaluationResult| {
        x.text("EvalActionName", &r.eval_action_name)
            .text("EvalResourceName", &r.eval_resource_name)
            .text("EvalDecision", &r.eval_decision);
        write_statements(x, &r.matched_statements);
        write_details(
            x,
            &r.missing_context_values,
            r.eval_decision_details.as_ref(),
            r.permissions_boundary_decision_detail.as_ref(),
        );
        if let Some(specific) = &r.resource_specific_results {
            x.members("ResourceSpecificResults", specific, |x, s| {
                x.text("EvalResourceName", &s.eval_resource_name)
                    .text("EvalResourceDecision", &s.eval_resource_decision);
                write_statements(x, &s.matched_statements);
                write_details(
                    x,
                    &s.missing_context_values,
                    s.eval_decision_details.as_ref(),
                    s.permissions_boundary_decision_detail.as_ref(),
                );
            });
        }
    });
    truncation(&mut x, next);
    x.finish()
}
