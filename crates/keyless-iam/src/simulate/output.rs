//! `SimulateCustomPolicy`'s response, serialized with the IAM API model's member names and order
//! (the order in which awscli prints them).

use std::collections::BTreeMap;

use keyless_policy::{Matched, SourceKind};
use serde::Serialize;

/// The response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SimulatePolicyOutput {
    /// One result per action and resource.
    pub evaluation_results: Vec<EvaluationResult>,
    /// Always false: every result is returned at once. awscli does not print it.
    pub is_truncated: bool,
}

/// The result for one action on one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EvaluationResult {
    /// The action.
    pub eval_action_name: String,
    /// The resource, `*` when none was given.
    pub eval_resource_name: String,
    /// `allowed`, `explicitDeny` or `implicitDeny`.
    pub eval_decision: String,
    /// Every statement that applied.
    pub matched_statements: Vec<StatementRef>,
    /// Condition keys the policies use that the input did not supply.
    pub missing_context_values: Vec<String>,
    /// Present when a permissions boundary was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_decision_detail: Option<PermissionsBoundaryDecisionDetail>,
    /// Per policy type, for cross-account resources; empty for others, absent for `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_decision_details: Option<BTreeMap<String, String>>,
    /// The same decision for the named resource; absent for `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_specific_results: Option<Vec<ResourceSpecificResult>>,
}

/// The result for one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceSpecificResult {
    /// The resource.
    pub eval_resource_name: String,
    /// `allowed`, `explicitDeny` or `implicitDeny`.
    pub eval_resource_decision: String,
    /// Every statement that applied.
    pub matched_statements: Vec<StatementRef>,
    /// Condition keys the policies use that the input did not supply.
    pub missing_context_values: Vec<String>,
    /// Per policy type, for cross-account resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_decision_details: Option<BTreeMap<String, String>>,
    /// Present when a permissions boundary was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_decision_detail: Option<PermissionsBoundaryDecisionDetail>,
}

/// Whether the permissions boundary allowed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PermissionsBoundaryDecisionDetail {
    /// Whether it allowed.
    pub allowed_by_permissions_boundary: bool,
}

/// A statement that applied, by policy and position.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatementRef {
    /// `PolicyInputList.N`, `PermissionsBoundaryPolicyInputList.N`, `ResourcePolicy`, or a
    /// managed policy's name.
    pub source_policy_id: String,
    /// `IAM Policy`, `Permissions Boundary Policy` or `Resource Policy`, as IAM reports them.
    pub source_policy_type: String,
    /// Where the statement starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_position: Option<Position>,
    /// Where it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_position: Option<Position>,
    /// The statement's `Sid`, for the human-readable report (not part of IAM's output).
    #[serde(skip)]
    pub sid: Option<String>,
    /// The statement's effect, for the human-readable report (not part of IAM's output).
    #[serde(skip)]
    pub effect: Option<keyless_policy::Effect>,
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl StatementRef {
    pub(super) fn from_matched(m: &Matched<'_>) -> Self {
        let span = m.statement.span();
        let position = |p: keyless_policy::Position| Position {
            line: p.line,
            column: p.column,
        };
        Self {
            source_policy_id: m.source.id.to_owned(),
            source_policy_type: match m.kind {
                SourceKind::Identity | SourceKind::Session => "IAM Policy",
                SourceKind::Boundary => "Permissions Boundary Policy",
                SourceKind::Resource => "Resource Policy",
            }
            .to_owned(),
            start_position: span.map(|s| position(s.start)),
            end_position: span.map(|s| position(s.end)),
            sid: m.statement.sid().map(str::to_owned),
            effect: Some(m.statement.effect()),
        }
    }
}
