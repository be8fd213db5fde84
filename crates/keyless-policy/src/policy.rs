//! The IAM JSON policy grammar: parsing a document into compiled statements.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html>
//!
//! Parsing validates and compiles at once: wildcards, variables, ARNs, CIDR blocks, numbers and
//! dates are read here, once, so that evaluation does no parsing of the policy.

use serde_json::{Map, Value};

use crate::arn_pattern::{ArnPattern, ArnPatternError};
use crate::condition::{Condition, Operator};
use crate::context::Context;
use crate::error::PolicyError;
use crate::pattern::{Pattern, Syntax};
use crate::principal::{Principal, PrincipalMatch, PrincipalSet};
use crate::span::{Span, statement_spans};

/// The policy language version. Without a `Version` element a policy is 2008-10-17, where
/// `${...}` is plain text rather than a policy variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `2008-10-17`: no policy variables.
    V2008_10_17,
    /// `2012-10-17`: the current version.
    V2012_10_17,
}

/// What a statement does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `"Effect": "Allow"`.
    Allow,
    /// `"Effect": "Deny"`.
    Deny,
}

/// Where a policy is used, which decides the elements it must and may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a user, group or role, or passed as a session policy or permissions boundary:
    /// needs `Resource`, may not name a `Principal`.
    Identity,
    /// Attached to a resource (a bucket policy): needs `Principal` and `Resource`.
    Resource,
    /// A role's trust policy: needs `Principal`, may not name a `Resource`.
    Trust,
    /// Any of the above: only the grammar is checked.
    Any,
}

impl PolicyKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Identity => "an identity-based policy",
            Self::Resource => "a resource-based policy",
            Self::Trust => "a trust policy",
            Self::Any => "a policy",
        }
    }
}

/// An element that lists items, or (`Not...`) everything except them.
#[derive(Debug, Clone, PartialEq)]
struct Clause<T> {
    not: bool,
    items: Vec<T>,
}

/// `Principal` (or, with `not`, `NotPrincipal`).
#[derive(Debug, Clone, PartialEq)]
struct PrincipalClause {
    not: bool,
    set: PrincipalSet,
}

/// A compiled policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: Version,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// A compiled statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    index: usize,
    sid: Option<String>,
    effect: Effect,
    principal: Option<PrincipalClause>,
    actions: Clause<Pattern>,
    resources: Option<Clause<ArnPattern>>,
    conditions: Vec<Condition>,
    span: Option<Span>,
}

impl Policy {
    /// The longest document accepted, in bytes: IAM's largest limit (the simulator's input);
    /// stores enforce IAM's smaller per-kind quotas (2 KiB inline user policies, 20 KiB bucket
    /// policies, ...). Matching costs at most pattern × text, so this also bounds evaluation.
    pub const MAX_LEN: usize = 131_072;

    /// Parses a policy of any kind from its JSON text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        Self::parse_as(text, PolicyKind::Any)
    }

    /// Parses a policy from its JSON text and checks it is fit to be used as `kind`. Statement
    /// positions in the text are recorded for explanations. Documents longer than
    /// [`Policy::MAX_LEN`] are refused, and so is a key repeated in one object (see
    /// [`crate::parse_json`]).
    pub fn parse_as(text: &str, kind: PolicyKind) -> Result<Self, PolicyError> {
        if text.len() > Self::MAX_LEN {
            return Err(PolicyError::TooLarge {
                len: text.len(),
                max: Self::MAX_LEN,
            });
        }
        let value = crate::json::parse(text)?;
        let mut policy = Self::from_value(&value, kind)?;
        if let Some(spans) = statement_spans(text)
            && spans.len() == policy.statements.len()
        {
            for (statement, span) in policy.statements.iter_mut().zip(spans) {
                statement.span = Some(span);
            }
        }
        Ok(policy)
    }

    /// Builds a policy from a parsed JSON document (no statement positions are known).
    pub fn from_value(value: &Value, kind: PolicyKind) -> Result<Self, PolicyError> {
        let doc = object(value, "policy", "a JSON object")?;
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(unknown("policy", key));
            }
        }
        let version = match doc.get("Version") {
            None => Version::V2008_10_17,
            Some(Value::String(v)) if v == "2012-10-17" => Version::V2012_10_17,
            Some(Value::String(v)) if v == "2008-10-17" => Version::V2008_10_17,
            Some(other) => {
                return Err(PolicyError::Value {
                    path: "Version".into(),
                    value: display(other),
                    expected: "`2012-10-17` or `2008-10-17`",
                });
            }
        };
        let id = match doc.get("Id") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return Err(type_error("Id", "a string")),
        };
        let raw: Vec<(&Value, String)> = match doc.get("Statement") {
            None => return Err(missing("policy", "`Statement`")),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(PolicyError::Empty {
                    path: "Statement".into(),
                });
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| (s, format!("Statement[{i}]")))
                .collect(),
            Some(single) => vec![(single, "Statement".to_owned())],
        };
        let mut statements = Vec::with_capacity(raw.len());
        for (index, (value, path)) in raw.into_iter().enumerate() {
            let statement = Statement::parse(value, &path, index, version, kind)?;
            if let Some(sid) = &statement.sid
                && statements
                    .iter()
                    .any(|s: &Statement| s.sid.as_ref() == Some(sid))
            {
                return Err(PolicyError::DuplicateSid {
                    path: format!("{path}.Sid"),
                    sid: sid.clone(),
                });
            }
            statements.push(statement);
        }
        Ok(Self {
            version,
            id,
            statements,
        })
    }

    /// The language version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The `Id` element.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Whether any condition tests a key that starts with `prefix` (case-insensitively, as
    /// condition keys compare): lets a caller fetch what only some policies ask about, such
    /// as an object's tags for `s3:ExistingObjectTag/`, only when one does.
    pub fn mentions_key_prefix(&self, prefix: &str) -> bool {
        self.statements.iter().any(|s| {
            s.conditions.iter().any(|c| {
                c.key
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
        })
    }
}

impl Statement {
    /// The statement's position in the `Statement` array (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The `Sid` element.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The `Effect` element.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Where the statement stands in the policy text, when parsed from text.
    pub fn span(&self) -> Option<Span> {
        self.span
    }

    /// Whether the statement applies to the request: its action, resource, principal and every
    /// condition match. For a statement that names principals, says how the caller matched.
    /// Condition keys the request lacks are added to `missing` once action and resource match.
    pub(crate) fn applies<'p>(
        &'p self,
        action: &str,
        resource: &str,
        principal: Option<&Principal>,
        ctx: &Context,
        missing: &mut Vec<&'p str>,
    ) -> Option<Option<PrincipalMatch>> {
        let action_hit = self
            .actions
            .items
            .iter()
            .any(|p| p.matches(action, ctx) == Some(true));
        if action_hit == self.actions.not {
            return None;
        }
        if let Some(resources) = &self.resources {
            let mut hit = false;
            let mut unresolved = Vec::new();
            for pattern in &resources.items {
                match pattern.matches(resource, ctx) {
                    Some(true) => {
                        hit = true;
                        break;
                    }
                    Some(false) => {}
                    None => unresolved.push(pattern),
                }
            }
            if !hit && !unresolved.is_empty() {
                // A resource with a variable that has no value matches nothing, and the
                // statement does not apply, whether it says `Resource` or `NotResource`.
                missing.extend(unresolved.iter().flat_map(|p| p.unresolved_keys(ctx)));
                return None;
            }
            if hit == resources.not {
                return None;
            }
        }
        let how = match &self.principal {
            None => None,
            Some(clause) => match (clause.not, clause.set.matches(principal)) {
                (false, Some(how)) => Some(how),
                (false, None) | (true, Some(_)) => return None,
                // `NotPrincipal`: the caller is not one of those named. When the caller is not
                // known, only a `Deny` may apply, so that nothing is allowed by ignorance.
                (true, None) if principal.is_some() || self.effect == Effect::Deny => {
                    Some(PrincipalMatch::Direct)
                }
                (true, None) => return None,
            },
        };
        let mut all = true;
        for condition in &self.conditions {
            // Every condition is evaluated, so that all missing keys are reported.
            all &= condition.eval(ctx, missing);
        }
        all.then_some(how)
    }

    fn parse(
        value: &Value,
        path: &str,
        index: usize,
        version: Version,
        kind: PolicyKind,
    ) -> Result<Self, PolicyError> {
        let obj = object(value, path, "a statement object")?;
        if obj.is_empty() {
            return Err(PolicyError::Empty { path: path.into() });
        }
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Condition"
            ) {
                return Err(unknown(path, key));
            }
        }
        let sid = match obj.get("Sid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(type_error(&format!("{path}.Sid"), "a string")),
        };
        let effect = match obj.get("Effect") {
            None => return Err(missing(path, "`Effect`")),
            Some(Value::String(e)) if e == "Allow" => Effect::Allow,
            Some(Value::String(e)) if e == "Deny" => Effect::Deny,
            Some(other) => {
                return Err(PolicyError::Value {
                    path: format!("{path}.Effect"),
                    value: display(other),
                    expected: "`Allow` or `Deny`",
                });
            }
        };
        let variables = version == Version::V2012_10_17;

        let principal = either(obj, path, "Principal", "NotPrincipal")?
            .map(|(not, name, v)| {
                parse_principal(v, &format!("{path}.{name}"))
                    .map(|set| PrincipalClause { not, set })
            })
            .transpose()?;
        let actions = match either(obj, path, "Action", "NotAction")? {
            None => return Err(missing(path, "`Action` or `NotAction`")),
            Some((not, name, v)) => Clause {
                not,
                items: parse_actions(v, &format!("{path}.{name}"))?,
            },
        };
        let resources = either(obj, path, "Resource", "NotResource")?
            .map(|(not, name, v)| {
                let path = format!("{path}.{name}");
                let items = strings(v, &path)?
                    .into_iter()
                    .map(|r| {
                        ArnPattern::parse(&r, variables).map_err(|e| PolicyError::Value {
                            path: path.clone(),
                            value: r,
                            expected: match e {
                                ArnPatternError::Malformed => "an ARN (`arn:partition:service:region:account:resource`) or `*`",
                                ArnPatternError::Variable(_) => "well-formed policy variables (`${key}` or `${key, 'default'}`)",
                            },
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Clause { not, items })
            })
            .transpose()?;
        let conditions = match obj.get("Condition") {
            None => Vec::new(),
            Some(v) => parse_conditions(v, &format!("{path}.Condition"), variables)?,
        };

        let needs_principal = matches!(kind, PolicyKind::Resource | PolicyKind::Trust);
        match (kind, &principal, &resources) {
            (PolicyKind::Identity, Some(p), _) => {
                return Err(PolicyError::NotAllowed {
                    path: path.into(),
                    element: if p.not { "NotPrincipal" } else { "Principal" },
                    kind: kind.describe(),
                });
            }
            (PolicyKind::Trust, _, Some(r)) => {
                return Err(PolicyError::NotAllowed {
                    path: path.into(),
                    element: if r.not { "NotResource" } else { "Resource" },
                    kind: kind.describe(),
                });
            }
            (_, None, _) if needs_principal => {
                return Err(missing(path, "`Principal` or `NotPrincipal`"));
            }
            (PolicyKind::Identity | PolicyKind::Resource, _, None) => {
                return Err(missing(path, "`Resource` or `NotResource`"));
            }
            _ => {}
        }
        Ok(Self {
            index,
            sid,
            effect,
            principal,
            actions,
            resources,
            conditions,
            span: None,
        })
    }
}

/// The value of `name` or of `not_name` (at most one of them), with whether it was the `Not` form.
fn either<'v>(
    obj: &'v Map<String, Value>,
    path: &str,
    name: &'static str,
    not_name: &'static str,
) -> Result<Option<(bool, &'static str, &'v Value)>, PolicyError> {
    match (obj.get(name), obj.get(not_name)) {
        (Some(_), Some(_)) => Err(PolicyError::Conflict {
            path: path.into(),
            first: name,
            second: not_name,
        }),
        (Some(v), None) => Ok(Some((false, name, v))),
        (None, Some(v)) => Ok(Some((true, not_name, v))),
        (None, None) => Ok(None),
    }
}

fn parse_actions(value: &Value, path: &str) -> Result<Vec<Pattern>, PolicyError> {
    let syntax = Syntax {
        wildcards: true,
        variables: false,
        ignore_ascii_case: true,
    };
    strings(value, path)?
        .into_iter()
        .map(|action| {
            let well_formed = action == "*"
                || action.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && !name.is_empty()
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'*' | b'?'))
                });
            if !well_formed {
                return Err(PolicyError::Value {
                    path: path.into(),
                    value: action,
                    expected: "`service:action` (wildcards allowed) or `*`",
                });
            }
            Pattern::parse(&action, syntax).map_err(|_| PolicyError::Value {
                path: path.into(),
                value: action.clone(),
                expected: "an action name",
            })
        })
        .collect()
}

fn parse_principal(value: &Value, path: &str) -> Result<PrincipalSet, PolicyError> {
    let mut set = PrincipalSet::default();
    let map = match value {
        Value::String(s) if s == "*" => {
            set.everyone = true;
            return Ok(set);
        }
        Value::Object(map) if !map.is_empty() => map,
        Value::Object(_) => return Err(PolicyError::Empty { path: path.into() }),
        _ => {
            return Err(type_error(
                path,
                "`*` or an object of `AWS`, `Federated`, `Service` or `CanonicalUser`",
            ));
        }
    };
    for (kind, v) in map {
        let path = format!("{path}.{kind}");
        let values = strings(v, &path)?;
        match kind.as_str() {
            "AWS" => {
                for id in values {
                    add_aws_principal(&mut set, id, &path)?;
                }
            }
            "Federated" => set.federated.extend(values.into_iter().map(Into::into)),
            "Service" => set.services.extend(values.into_iter().map(Into::into)),
            "CanonicalUser" => set
                .canonical_users
                .extend(values.into_iter().map(Into::into)),
            _ => return Err(unknown(&path[..path.len() - kind.len() - 1], kind)),
        }
    }
    Ok(set)
}

fn add_aws_principal(set: &mut PrincipalSet, id: String, path: &str) -> Result<(), PolicyError> {
    if id == "*" {
        set.everyone = true;
        return Ok(());
    }
    if let Ok(account) = keyless_types::AccountId::parse(&id) {
        set.accounts.push(account.as_str().into());
        return Ok(());
    }
    match keyless_types::Arn::parse(&id) {
        Ok(arn) if keyless_types::AccountId::parse(arn.account()).is_err() || id.contains('*') => {
            Err(PolicyError::Value {
                path: path.into(),
                value: id,
                expected: "`*`, a 12-digit account id, or an IAM/STS ARN without wildcards",
            })
        }
        Ok(arn) if arn.service() == "iam" && arn.resource() == "root" => {
            set.accounts.push(arn.account().into());
            Ok(())
        }
        Ok(arn) if arn.service() == "iam" && arn.resource().starts_with("role/") => {
            let name = arn.resource().rsplit('/').next().unwrap_or_default();
            set.roles.push((arn.account().into(), name.into()));
            Ok(())
        }
        Ok(arn) if matches!(arn.service(), "iam" | "sts") => {
            set.arns.push(id.into());
            Ok(())
        }
        _ => Err(PolicyError::Value {
            path: path.into(),
            value: id,
            expected: "`*`, a 12-digit account id, or an IAM/STS ARN without wildcards",
        }),
    }
}

fn parse_conditions(
    value: &Value,
    path: &str,
    variables: bool,
) -> Result<Vec<Condition>, PolicyError> {
    let blocks = object(value, path, "an object of condition operators")?;
    let mut conditions = Vec::new();
    for (operator, keys) in blocks {
        let op_path = format!("{path}.{operator}");
        let op = Operator::parse(operator).ok_or_else(|| PolicyError::Operator {
            path: path.into(),
            operator: operator.clone(),
        })?;
        let keys = object(keys, &op_path, "an object of condition keys")?;
        if keys.is_empty() {
            return Err(PolicyError::Empty { path: op_path });
        }
        for (key, values) in keys {
            let key_path = format!("{op_path}.{key}");
            if key.trim().is_empty() {
                return Err(PolicyError::Empty { path: key_path });
            }
            let values = scalars(values, &key_path)?;
            let condition =
                Condition::compile(operator, op, key, &values, variables).map_err(|bad| {
                    PolicyError::Value {
                        path: key_path.clone(),
                        value: bad.0,
                        expected: op.value_kind(),
                    }
                })?;
            conditions.push(condition);
        }
    }
    Ok(conditions)
}

/// A string or a non-empty array of strings.
fn strings(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err(PolicyError::Empty { path: path.into() }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(type_error(&format!("{path}[{i}]"), "a string")),
            })
            .collect(),
        _ => Err(type_error(path, "a string or an array of strings")),
    }
}

/// Condition values: strings, numbers or booleans, alone or in a non-empty array.
fn scalars(value: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value, path: &str| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(type_error(path, "a string, number or boolean")),
    };
    match value {
        Value::Array(items) if items.is_empty() => Err(PolicyError::Empty { path: path.into() }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| one(v, &format!("{path}[{i}]")))
            .collect(),
        v => one(v, path).map(|s| vec![s]),
    }
}

fn object<'v>(
    value: &'v Value,
    path: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, PolicyError> {
    value.as_object().ok_or_else(|| type_error(path, expected))
}

fn type_error(path: &str, expected: &'static str) -> PolicyError {
    PolicyError::Type {
        path: path.into(),
        expected,
    }
}

fn missing(path: &str, element: &'static str) -> PolicyError {
    PolicyError::Missing {
        path: path.into(),
        element,
    }
}

fn unknown(path: &str, element: &str) -> PolicyError {
    PolicyError::UnknownElement {
        path: path.into(),
        element: element.into(),
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Policy::parse_as(text, PolicyKind::Identity)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn condition_keys_are_found_by_prefix_in_any_case() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:GetObject","Resource":"*"},
            {"Effect":"Deny","Action":"s3:GetObject","Resource":"*",
             "Condition":{"StringEquals":{"S3:existingObjectTag/env":"prod"}}}]}"#,
        )
        .unwrap();
        assert!(p.mentions_key_prefix("s3:ExistingObjectTag/"));
        assert!(!p.mentions_key_prefix("s3:RequestObjectTag/"));
        let plain =
            Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
                .unwrap();
        assert!(!plain.mentions_key_prefix("s3:"));
    }

    #[test]
    fn single_values_and_arrays() {
        let p = Policy::parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#).unwrap();
        assert_eq!(p.statements().len(), 1);
        assert_eq!(p.version(), Version::V2012_10_17);
        let p = Policy::parse(r#"{"Statement":[{"Sid":"A","Effect":"Deny","NotAction":["s3:*","iam:*"],"NotResource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#).unwrap();
        assert_eq!(p.version(), Version::V2008_10_17);
        assert_eq!(p.statements()[0].sid(), Some("A"));
        assert_eq!(p.statements()[0].effect(), Effect::Deny);
    }

    #[test]
    fn errors_name_the_place() {
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"allow","Action":"*","Resource":"*"}]}"#
            ),
            "Statement[1].Effect: invalid value `allow`: expected `Allow` or `Deny`"
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"s3:prefix":{}}}}]}"#
            ),
            "Statement[0].Condition.StringLike.s3:prefix: expected a string, number or boolean"
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLikes":{"k":"v"}}}]}"#
            ),
            "Statement[0].Condition: unknown condition operator `StringLikes`"
        );
        assert_eq!(
            err(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"bucket/*"}}"#),
            "Statement.Resource: invalid value `bucket/*`: expected an ARN (`arn:partition:service:region:account:resource`) or `*`"
        );
        assert_eq!(
            err(r#"{"Statement":{"effect":"Allow","Action":"*","Resource":"*"}}"#),
            "Statement: unknown element `effect`"
        );
        assert_eq!(
            err(r#"{"Version":"2012-10-17","Statement":[]}"#),
            "Statement: must not be empty"
        );
        assert_eq!(
            err(r#"{"Statement":[{}]}"#),
            "Statement[0]: must not be empty"
        );
        assert_eq!(
            err(
                r#"{"Statement":{"Effect":"Allow","Action":"*","NotAction":"s3:*","Resource":"*"}}"#
            ),
            "Statement: `Action` and `NotAction` cannot be used together"
        );
        assert_eq!(
            err(r#"{"Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}"#),
            "Statement.Action: invalid value `GetObject`: expected `service:action` (wildcards allowed) or `*`"
        );
        assert_eq!(
            err(
                r#"{"Version":"2013-01-01","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#
            ),
            "Version: invalid value `2013-01-01`: expected `2012-10-17` or `2008-10-17`"
        );
        assert_eq!(
            err(
                r#"{"Statement":[{"Sid":"x","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"x","Effect":"Allow","Action":"*","Resource":"*"}]}"#
            ),
            "Statement[1].Sid: duplicate Sid `x`: statement ids must be unique within a policy"
        );
        assert!(err("{\"Statement\": [\n").starts_with("policy is not valid JSON: "));
    }

    #[test]
    fn kinds_check_their_elements() {
        let with_principal = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        assert!(Policy::parse_as(with_principal, PolicyKind::Resource).is_ok());
        assert_eq!(
            Policy::parse_as(with_principal, PolicyKind::Identity)
                .unwrap_err()
                .to_string(),
            "Statement: `Principal` is not allowed in an identity-based policy"
        );
        let trust = r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},"Action":"sts:AssumeRoleWithWebIdentity"}}"#;
        assert!(Policy::parse_as(trust, PolicyKind::Trust).is_ok());
        assert_eq!(
            Policy::parse_as(trust, PolicyKind::Resource)
                .unwrap_err()
                .to_string(),
            "Statement: missing `Resource` or `NotResource`"
        );
        assert_eq!(
            Policy::parse_as(
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
                PolicyKind::Trust
            )
            .unwrap_err()
            .to_string(),
            "Statement: `Resource` is not allowed in a trust policy"
        );
        assert_eq!(
            Policy::parse_as(
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::*:root"},"Action":"s3:*","Resource":"*"}}"#,
                PolicyKind::Resource
            )
            .unwrap_err()
            .to_string(),
            "Statement.Principal.AWS: invalid value `arn:aws:iam::*:root`: expected `*`, a 12-digit account id, or an IAM/STS ARN without wildcards"
        );
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let padding = " ".repeat(Policy::MAX_LEN);
        let text =
            format!(r#"{{"Statement":{{"Effect":"Allow","Action":"*","Resource":"*"}}}}{padding}"#);
        assert!(matches!(
            Policy::parse(&text),
            Err(PolicyError::TooLarge { .. })
        ));
    }

    #[test]
    fn spans_are_recorded_from_text() {
        let p = Policy::parse(
            "{\"Statement\":[\n{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}\n]}",
        )
        .unwrap();
        let span = p.statements()[0].span().unwrap();
        assert_eq!((span.start.line, span.start.column), (1, 15));
        assert_eq!((span.end.line, span.end.column), (2, 47));
    }
}
