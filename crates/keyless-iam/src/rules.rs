//! The checks IAM applies to the input of many operations (names, paths, policy documents,
//! tags) and the attached-policy lists users and roles share, with IAM's error texts.

use std::collections::HashSet;

use keyless_policy::{Policy, PolicyKind};

use crate::IamError;

/// Managed policies attached to one user, or one role, at once.
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// Tags one role or provider may carry.
pub const MAX_TAGS: usize = 50;

/// IAM's `1 validation error detected` text for a parameter that fails its pattern.
pub(crate) fn pattern_error(param: &str, value: &str, pattern: &str) -> IamError {
    IamError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{param}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
    ))
}

/// Checks a user, policy or inline policy name: `[\w+=,.@-]+`, 1 to `max` characters.
pub fn check_name(param: &str, name: &str, max: usize) -> Result<(), IamError> {
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !valid || name.is_empty() {
        return Err(pattern_error(param, name, r"[\w+=,.@-]+"));
    }
    if name.len() > max {
        return Err(IamError::Validation(format!(
            "1 validation error detected: Value '{name}' at '{param}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// Checks a path: `/` or `/a/b/`, at most 512 characters of printable ASCII.
pub fn check_path(param: &str, path: &str) -> Result<(), IamError> {
    let valid = path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        Ok(())
    } else {
        Err(pattern_error(
            param,
            path,
            r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)",
        ))
    }
}

/// Parses an identity policy document, as IAM checks one before storing it.
pub fn check_document(document: &str) -> Result<Policy, IamError> {
    Policy::parse_as(document, PolicyKind::Identity).map_err(|error| IamError::MalformedPolicy {
        which: "PolicyDocument".into(),
        error,
    })
}

/// Checks tags as IAM does: at most [`MAX_TAGS`], keys of 1 to 128 and values of up to 256
/// letters, digits, spaces and `_.:/=+-@`, keys unique without regard to case.
pub fn check_tags(tags: &[(String, String)]) -> Result<(), IamError> {
    if tags.len() > MAX_TAGS {
        return Err(IamError::Validation(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS}"
        )));
    }
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    let mut keys = HashSet::new();
    for (i, (key, value)) in tags.iter().enumerate() {
        let n = i + 1;
        for (field, text, max, pattern) in [
            ("key", key, 128, r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+"),
            ("value", value, 256, r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"),
        ] {
            let param = format!("tags.{n}.member.{field}");
            if !text.chars().all(allowed) || (field == "key" && text.is_empty()) {
                return Err(pattern_error(&param, text, pattern));
            }
            if text.chars().count() > max {
                return Err(IamError::Validation(format!(
                    "1 validation error detected: Value '{text}' at '{param}' failed to satisfy constraint: Member must have length less than or equal to {max}"
                )));
            }
        }
        if !keys.insert(key.to_lowercase()) {
            return Err(IamError::InvalidInput(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            ));
        }
    }
    Ok(())
}

/// Adds `arn` to a user's or role's attached policies, once, within `quota`.
pub(crate) fn attach(attached: &mut Vec<String>, arn: &str, quota: &str) -> Result<(), IamError> {
    if attached.iter().any(|a| a == arn) {
        return Ok(());
    }
    if attached.len() >= MAX_ATTACHED_POLICIES {
        return Err(IamError::LimitExceeded(format!(
            "Cannot exceed quota for {quota}: {MAX_ATTACHED_POLICIES}"
        )));
    }
    attached.push(arn.to_owned());
    Ok(())
}

/// Removes `arn` from a user's or role's attached policies.
pub(crate) fn detach(attached: &mut Vec<String>, arn: &str) -> Result<(), IamError> {
    let before = attached.len();
    attached.retain(|a| a != arn);
    if attached.len() == before {
        return Err(IamError::NoSuchEntity(format!(
            "Policy {arn} was not found."
        )));
    }
    Ok(())
}
