//! The policy simulator: `SimulateCustomPolicy`'s input, evaluation and output, shared by
//! `keyless policy simulate` and the IAM query API.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulateCustomPolicy.html>
//!
//! Each action is evaluated against each resource (`*` when none is given); a result names the
//! statements that applied, with their positions in the policy text as IAM counts them, and the
//! context keys the policies asked for but the input did not supply.

mod input;
mod output;

pub use input::{ContextEntry, ContextKeyType, SimulateCustomPolicyInput};
pub use output::{
    EvaluationResult, PermissionsBoundaryDecisionDetail, Position, ResourceSpecificResult,
    SimulatePolicyOutput, StatementRef,
};

use std::collections::BTreeMap;

use keyless_policy::{
    Decision, Effect, Policy, PolicyKind, PolicySet, Principal, Request, Source, SourceKind,
    Verdict, authorize,
};

use crate::IamError;
use crate::managed::ManagedPolicy;

/// A policy with the id the simulator reports it under.
#[derive(Debug, Clone)]
struct Named {
    id: String,
    policy: Policy,
}

/// A validated simulation, ready to run.
#[derive(Debug, Clone)]
pub struct Simulation {
    identity: Vec<Named>,
    boundary: Vec<Named>,
    resource_policy: Option<Policy>,
    caller: Option<Principal>,
    resource_account: Option<String>,
    actions: Vec<String>,
    resources: Vec<String>,
    context: keyless_policy::Context,
    /// `SourcePolicyType` of policies that are not given in the input: `(id, type)`.
    source_types: Vec<(String, &'static str)>,
}

impl Simulation {
    /// Validates a `SimulateCustomPolicy` request the way IAM does: required lists present,
    /// every policy well formed, a caller for a resource policy, context values of their type.
    pub fn from_input(input: &SimulateCustomPolicyInput) -> Result<Self, IamError> {
        Self::with_managed(input, &[])
    }

    /// Like [`Simulation::from_input`], with a principal's policies added to the identity
    /// policies (reported under their names and with their kind as `SourcePolicyType`), as
    /// `SimulatePrincipalPolicy` does; with any, `PolicyInputList` may be empty.
    pub fn with_sources(
        input: &SimulateCustomPolicyInput,
        sources: &[crate::state::UserPolicy],
    ) -> Result<Self, IamError> {
        let mut simulation = Self::with_extra(
            input,
            sources
                .iter()
                .map(|p| (p.name.clone(), Policy::clone(&p.policy)))
                .collect(),
        )?;
        simulation.source_types = sources
            .iter()
            .map(|p| (p.name.clone(), p.kind.source_type()))
            .collect();
        Ok(simulation)
    }

    /// Like [`Simulation::from_input`], with AWS managed policies added to the identity
    /// policies (reported under their names); with any, `PolicyInputList` may be empty.
    pub fn with_managed(
        input: &SimulateCustomPolicyInput,
        managed: &[&ManagedPolicy],
    ) -> Result<Self, IamError> {
        Self::with_extra(
            input,
            managed
                .iter()
                .map(|m| (m.name.to_owned(), m.policy().clone()))
                .collect(),
        )
    }

    fn with_extra(
        input: &SimulateCustomPolicyInput,
        extra: Vec<(String, Policy)>,
    ) -> Result<Self, IamError> {
        input.validate(!extra.is_empty())?;
        let parse_list = |list: &[String], name: &str| {
            list.iter()
                .enumerate()
                .map(|(i, text)| {
                    let id = format!("{name}.{}", i + 1);
                    Policy::parse_as(text, PolicyKind::Identity)
                        .map(|policy| Named {
                            id: id.clone(),
                            policy,
                        })
                        .map_err(|error| IamError::MalformedPolicy { which: id, error })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut identity = parse_list(&input.policy_input_list, "PolicyInputList")?;
        identity.extend(extra.into_iter().map(|(id, policy)| Named { id, policy }));
        let boundary = parse_list(
            &input.permissions_boundary_policy_input_list,
            "PermissionsBoundaryPolicyInputList",
        )?;
        let resource_policy = input
            .resource_policy
            .as_deref()
            .map(|text| {
                Policy::parse_as(text, PolicyKind::Resource).map_err(|error| {
                    IamError::MalformedPolicy {
                        which: "ResourcePolicy".into(),
                        error,
                    }
                })
            })
            .transpose()?;
        let caller = input
            .caller_arn
            .as_deref()
            .map(|arn| {
                Principal::from_arn(arn).ok_or_else(|| {
                    IamError::InvalidInput(format!(
                        "CallerArn `{arn}` is not the ARN of an IAM user, role or role session"
                    ))
                })
            })
            .transpose()?;
        let resource_account = match input.resource_owner.as_deref() {
            Some(owner) => Some(owner_account(owner)?),
            None => caller.as_ref().and_then(|c| c.account()).map(str::to_owned),
        };
        let resources = if input.resource_arns.is_empty() {
            vec!["*".to_owned()]
        } else {
            input.resource_arns.clone()
        };
        Ok(Self {
            identity,
            boundary,
            resource_policy,
            caller,
            resource_account,
            actions: input.action_names.clone(),
            resources,
            context: input.context()?,
            source_types: Vec::new(),
        })
    }

    /// Runs every action against every resource.
    pub fn run(&self) -> SimulatePolicyOutput {
        let identity: Vec<Source<'_>> = self
            .identity
            .iter()
            .map(|n| Source::new(&n.id, &n.policy))
            .collect();
        let boundary: Vec<Source<'_>> = self
            .boundary
            .iter()
            .map(|n| Source::new(&n.id, &n.policy))
            .collect();
        let set = PolicySet {
            identity: &identity,
            boundary: (!boundary.is_empty()).then_some(&boundary[..]),
            session: None,
            resource: self
                .resource_policy
                .as_ref()
                .map(|p| Source::new("ResourcePolicy", p)),
            resource_account: self.resource_account.as_deref(),
        };
        let mut results = Vec::new();
        for action in &self.actions {
            for resource in &self.resources {
                let mut req = Request::new(action, resource, &self.context);
                req.principal = self.caller.as_ref();
                let decision = authorize(&set, &req);
                results.push(self.result(action, resource, &decision));
            }
        }
        SimulatePolicyOutput {
            evaluation_results: results,
            is_truncated: false,
        }
    }

    fn result(&self, action: &str, resource: &str, d: &Decision<'_>) -> EvaluationResult {
        let mut matched: Vec<StatementRef> =
            d.matched.iter().map(StatementRef::from_matched).collect();
        for statement in &mut matched {
            if let Some((_, kind)) = self
                .source_types
                .iter()
                .find(|(id, _)| *id == statement.source_policy_id)
            {
                statement.source_policy_type = (*kind).to_owned();
            }
        }
        let missing: Vec<String> = d.missing_context.iter().map(|k| (*k).to_owned()).collect();
        let boundary = d
            .allowed_by_boundary
            .map(|allowed| PermissionsBoundaryDecisionDetail {
                allowed_by_permissions_boundary: allowed,
            });
        let details = (resource != "*").then(|| {
            let mut details = BTreeMap::new();
            if d.cross_account {
                details.insert(
                    "IAM Policy".to_owned(),
                    part(d, SourceKind::Identity).as_str().to_owned(),
                );
                details.insert(
                    "Resource Policy".to_owned(),
                    part(d, SourceKind::Resource).as_str().to_owned(),
                );
            }
            details
        });
        let specific = (resource != "*").then(|| {
            vec![ResourceSpecificResult {
                eval_resource_name: resource.to_owned(),
                eval_resource_decision: d.verdict.as_str().to_owned(),
                matched_statements: matched.clone(),
                missing_context_values: missing.clone(),
                eval_decision_details: details.clone(),
                permissions_boundary_decision_detail: boundary.clone(),
            }]
        });
        EvaluationResult {
            eval_action_name: action.to_owned(),
            eval_resource_name: resource.to_owned(),
            eval_decision: d.verdict.as_str().to_owned(),
            matched_statements: matched,
            missing_context_values: missing,
            permissions_boundary_decision_detail: boundary,
            eval_decision_details: details,
            resource_specific_results: specific,
        }
    }
}

/// What the policies of one kind said on their own.
fn part(d: &Decision<'_>, kind: SourceKind) -> Verdict {
    let effects = d
        .matched
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.statement.effect());
    let mut verdict = Verdict::ImplicitDeny;
    for effect in effects {
        match effect {
            Effect::Deny => return Verdict::ExplicitDeny,
            Effect::Allow => verdict = Verdict::Allowed,
        }
    }
    verdict
}

/// The account of `ResourceOwner`: `arn:aws:iam::ACCOUNT:root` or a bare account id.
fn owner_account(owner: &str) -> Result<String, IamError> {
    let account = match keyless_types::Arn::parse(owner) {
        Ok(arn) => arn.account().to_owned(),
        Err(_) => owner.to_owned(),
    };
    keyless_types::AccountId::parse(&account)
        .map(|a| a.as_str().to_owned())
        .map_err(|_| {
            IamError::InvalidInput(format!(
                "ResourceOwner `{owner}` is not an account id or `arn:aws:iam::ACCOUNT:root`"
            ))
        })
}

#[cfg(test)]
mod tests;
