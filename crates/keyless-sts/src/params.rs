//! The parameters STS actions share, read and checked as STS does: `DurationSeconds`,
//! `RoleSessionName`, and the session policies and tags (`Policy`, `PolicyArns.member.N.arn`,
//! `Tags.member.N.Key`) with their packed size.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/CommonParameters.html>
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html#API_AssumeRole_RequestParameters>

use keyless_iam::IamStore;
use keyless_policy::{Context, Policy, PolicyKind};
use keyless_types::query::{Params, ValidationError};

use crate::StsError;

/// The shortest session, in seconds.
pub(crate) const MIN_DURATION: i64 = 900;
/// The longest role session.
pub(crate) const MAX_ROLE_DURATION: i64 = 43_200;
/// The longest session of a role assumed with a role session's credentials (role chaining).
pub(crate) const MAX_CHAINED_DURATION: i64 = 3600;
/// A session's length when the caller names none.
pub(crate) const DEFAULT_DURATION: i64 = 3600;
/// The longest inline session policy, in characters.
pub(crate) const MAX_SESSION_POLICY: usize = 2048;
/// The most managed session policies.
pub(crate) const MAX_POLICY_ARNS: usize = 10;

/// `DurationSeconds`, between 900 and `max`, defaulting to an hour (or `max` if shorter).
pub(crate) fn duration(params: &Params, max: i64, max_error: &str) -> Result<i64, StsError> {
    let Some(text) = params.get("DurationSeconds") else {
        return Ok(DEFAULT_DURATION.min(max));
    };
    let value: i64 = text.parse().map_err(|_| {
        StsError::Validation(format!(
            "1 validation error detected: Value '{text}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"
        ))
    })?;
    if value < MIN_DURATION {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}"
        )));
    }
    if value > MAX_ROLE_DURATION {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_ROLE_DURATION}"
        )));
    }
    if value > max {
        return Err(StsError::Validation(max_error.to_owned()));
    }
    Ok(value)
}

/// `RoleSessionName`: 2 to 64 of `[\w+=,.@-]`.
pub(crate) fn session_name(params: &Params) -> Result<String, StsError> {
    let name = params.required("RoleSessionName")?;
    let len = name.chars().count();
    if len < 2 {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2"
        )));
    }
    if len > 64 {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(name.to_owned())
}

/// The session policies a call passes (`Policy`, `PolicyArns.member.N.arn`) and tags
/// (`Tags.member.N.Key/Value`), checked, with their packed size in percent of the limit.
#[derive(Debug, Default)]
pub(crate) struct SessionExtras {
    pub(crate) policy: Option<String>,
    pub(crate) policy_arns: Vec<String>,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) packed_percent: Option<u32>,
}

impl SessionExtras {
    /// The session tags of the request as the trust policy sees them: `aws:RequestTag/KEY`
    /// and `aws:TagKeys`.
    pub(crate) fn insert_request_tags(&self, ctx: &mut Context) {
        for (key, value) in &self.tags {
            ctx.insert(format!("aws:RequestTag/{key}"), value.clone());
        }
        if !self.tags.is_empty() {
            ctx.insert_multi("aws:TagKeys", self.tags.iter().map(|(k, _)| k.clone()));
        }
    }
}

pub(crate) fn session_extras(
    params: &Params,
    store: &dyn IamStore,
    allow_tags: bool,
) -> Result<SessionExtras, StsError> {
    let mut extras = SessionExtras::default();
    if let Some(text) = params.get("Policy") {
        if text.chars().count() > MAX_SESSION_POLICY {
            return Err(StsError::Validation(format!(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to {MAX_SESSION_POLICY}"
            )));
        }
        Policy::parse_as(text, PolicyKind::Identity)
            .map_err(|e| StsError::MalformedPolicyDocument(e.to_string()))?;
        // Kept as sent, minus the whitespace that JSON allows between tokens.
        let compact = serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| text.to_owned());
        extras.policy = Some(compact);
    }
    let arns: Vec<String> = params
        .structs("PolicyArns")
        .iter()
        .filter_map(|p| p.get("arn").map(str::to_owned))
        .collect();
    if arns.len() > MAX_POLICY_ARNS {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to {MAX_POLICY_ARNS}"
        )));
    }
    let snapshot = store.snapshot();
    for arn in &arns {
        let exists = keyless_iam::managed::by_arn(arn).is_some()
            || snapshot.state.policy(store.account_id(), arn).is_ok();
        if !exists {
            return Err(StsError::Validation(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        }
    }
    extras.policy_arns = arns;
    if allow_tags {
        for tag in params.structs("Tags") {
            let (Some(key), Some(value)) = (tag.get("Key"), tag.get("Value")) else {
                return Err(ValidationError::null("tags.member.key").into());
            };
            extras.tags.push((key.to_owned(), value.to_owned()));
        }
        check_tags(&extras.tags)?;
    }
    extras.pack()?;
    Ok(extras)
}

/// STS's rules on session tags: at most 50, keys of 1 to 128 characters and values of at most
/// 256, no key twice (ignoring case).
fn check_tags(tags: &[(String, String)]) -> Result<(), StsError> {
    for (i, (key, value)) in tags.iter().enumerate() {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(StsError::Validation(format!(
                "1 validation error detected: Value '{key}' at 'tags' failed to satisfy constraint: tag keys must be 1 to 128 characters and values at most 256"
            )));
        }
        if tags[..i].iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(StsError::Validation(format!(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive: {key}"
            )));
        }
    }
    if tags.len() > 50 {
        return Err(StsError::Validation(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50".into(),
        ));
    }
    Ok(())
}

impl SessionExtras {
    /// Sets the session's tags to a web identity's: `passed`, the token's tag claim, checked as
    /// passed tags are and counted in the packed budget; then `derived`, the pod's tags from its
    /// `kubernetes.io` claims, which Keyless adds itself (as IRSA on AWS adds none, they do not
    /// take from the budget a session policy had).
    pub(crate) fn set_web_tags(
        &mut self,
        passed: Vec<(String, String)>,
        derived: Vec<(String, String)>,
    ) -> Result<(), StsError> {
        self.tags = passed;
        self.pack()?;
        self.tags.extend(derived);
        check_tags(&self.tags)
    }

    /// The packed size of the session policies and tags, in percent of the budget
    /// (`PackedPolicyTooLarge` past 100): the policy's and ARNs' characters and each tag's
    /// key and value plus two, over the 2,048 characters of an inline session policy.
    fn pack(&mut self) -> Result<(), StsError> {
        let packed: usize = self.policy.as_ref().map_or(0, String::len)
            + self.policy_arns.iter().map(String::len).sum::<usize>()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        self.packed_percent = None;
        if packed > 0 {
            let percent = (packed * 100).div_ceil(MAX_SESSION_POLICY);
            if percent > 100 {
                return Err(StsError::PackedPolicyTooLarge(format!(
                    "Packed size of consolidated session policies and session tags exceeds {percent}%."
                )));
            }
            self.packed_percent = u32::try_from(percent).ok();
        }
        Ok(())
    }
}
