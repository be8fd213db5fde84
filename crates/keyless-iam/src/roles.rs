//! IAM roles: who may assume them (the trust policy), what their sessions may do (inline and
//! attached policies, a permissions boundary), how long a session may last, and their tags,
//! with the operations that change them. IAM's rules and texts, like the users' in `state.rs`.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html>

use std::collections::BTreeMap;

use keyless_policy::{Policy, PolicyError, PolicyKind};

use serde_json::Value;

use crate::rules::{
    attach, check_document, check_name, check_path, check_tags, detach, pattern_error,
};
pub use crate::state::Role;
use crate::state::{IamState, UserPolicy};
use crate::{IamError, managed};

/// The longest session a role allows unless it says otherwise, in seconds.
pub const DEFAULT_MAX_SESSION_DURATION: u32 = 3600;
/// The longest `MaxSessionDuration` IAM accepts, in seconds (12 hours).
pub const MAX_SESSION_DURATION: u32 = 43_200;

/// Actions a trust policy may name (IAM refuses any other): the ways to assume a role and
/// what may be passed along with them.
const TRUST_ACTIONS: &[&str] = &[
    "assumerole",
    "assumerolewithsaml",
    "assumerolewithwebidentity",
    "tagsession",
    "setsourceidentity",
    "setcontext",
];

/// What `CreateRole` takes.
#[derive(Debug, Clone, Default)]
pub struct NewRole<'a> {
    /// 1 to 64 of `A-Za-z0-9+=,.@_-`.
    pub name: &'a str,
    /// `/` or `/division/`.
    pub path: &'a str,
    /// The trust policy.
    pub assume_role_policy: &'a str,
    /// Free text, up to 1000 characters.
    pub description: Option<&'a str>,
    /// 3600 to 43200; 3600 when absent.
    pub max_session_duration: Option<u32>,
    /// The ARN of an existing managed policy.
    pub permissions_boundary: Option<&'a str>,
    /// Up to [`MAX_TAGS`].
    pub tags: Vec<(String, String)>,
}

fn malformed_trust(message: &str) -> IamError {
    IamError::MalformedTrustPolicy(message.to_owned())
}

/// Checks a trust policy as IAM does before storing it, with IAM's texts for the mistakes
/// peculiar to trust policies (`Has prohibited field Resource`), and compiles it.
pub fn check_trust_policy(document: &str) -> Result<Policy, IamError> {
    // Read as the compiler reads it, so that the checks below see no key a duplicate hides.
    let value = keyless_policy::parse_json(document).map_err(|error| match error {
        PolicyError::Json { .. } => malformed_trust("This policy contains invalid Json"),
        error => IamError::MalformedPolicy {
            which: "AssumeRolePolicyDocument".into(),
            error,
        },
    })?;
    let statements: Vec<&Value> = match value.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for statement in statements.iter().filter_map(|s| s.as_object()) {
        if statement.contains_key("Resource") {
            return Err(malformed_trust("Has prohibited field Resource"));
        }
        if statement.contains_key("NotResource") {
            return Err(malformed_trust(
                "AssumeRole policy must not contain resources.",
            ));
        }
        if !statement.contains_key("Principal") && !statement.contains_key("NotPrincipal") {
            return Err(malformed_trust("Missing required field Principal"));
        }
        let actions: Vec<&str> = match statement.get("Action") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !actions.iter().all(|a| is_trust_action(a)) {
            return Err(malformed_trust(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
    }
    Policy::parse_as(document, PolicyKind::Trust).map_err(|error| IamError::MalformedPolicy {
        which: "AssumeRolePolicyDocument".into(),
        error,
    })
}

/// `sts:AssumeRole*`, `sts:TagSession`, ... or a wildcard that matches one of them.
fn is_trust_action(action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    let Some(name) = action.strip_prefix("sts:") else {
        return false;
    };
    TRUST_ACTIONS
        .iter()
        .any(|known| keyless_policy::wildcard_match(name, known))
}

/// Checks `MaxSessionDuration`: 3600 to 43200 seconds.
pub fn check_max_session_duration(seconds: u32) -> Result<(), IamError> {
    let bound = if seconds < DEFAULT_MAX_SESSION_DURATION {
        format!("greater than or equal to {DEFAULT_MAX_SESSION_DURATION}")
    } else if seconds > MAX_SESSION_DURATION {
        format!("less than or equal to {MAX_SESSION_DURATION}")
    } else {
        return Ok(());
    };
    Err(IamError::Validation(format!(
        "1 validation error detected: Value '{seconds}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value {bound}"
    )))
}

/// Checks a role's description: up to 1000 characters of Latin-1 text.
pub fn check_description(description: &str) -> Result<(), IamError> {
    let printable = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{a1}'..='\u{ff}');
    if !description.chars().all(printable) {
        return Err(pattern_error(
            "description",
            description,
            r"[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*",
        ));
    }
    if description.chars().count() > 1000 {
        return Err(IamError::Validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".into(),
        ));
    }
    Ok(())
}

fn no_such_role(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The role with name {name} cannot be found."))
}

fn no_such_role_policy(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The role policy with name {name} cannot be found."))
}

impl IamState {
    /// A role by name (any case).
    pub fn role(&self, name: &str) -> Result<&Role, IamError> {
        self.roles
            .get(&name.to_lowercase())
            .ok_or_else(|| no_such_role(name))
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut Role, IamError> {
        self.roles
            .get_mut(&name.to_lowercase())
            .ok_or_else(|| no_such_role(name))
    }

    /// Creates a role.
    pub fn create_role(
        &mut self,
        account_id: &str,
        new: NewRole<'_>,
        id: String,
        now: i64,
    ) -> Result<&Role, IamError> {
        check_name("roleName", new.name, 64)?;
        check_path("path", new.path)?;
        if let Some(description) = new.description {
            check_description(description)?;
        }
        let max_session_duration = new
            .max_session_duration
            .unwrap_or(DEFAULT_MAX_SESSION_DURATION);
        check_max_session_duration(max_session_duration)?;
        check_tags(&new.tags)?;
        check_trust_policy(new.assume_role_policy)?;
        let key = new.name.to_lowercase();
        if self.roles.contains_key(&key) {
            return Err(IamError::EntityAlreadyExists(format!(
                "Role with name {} already exists.",
                new.name
            )));
        }
        if let Some(arn) = new.permissions_boundary {
            self.check_boundary(account_id, arn)?;
        }
        Ok(self.roles.entry(key).or_insert(Role {
            name: new.name.to_owned(),
            path: new.path.to_owned(),
            id,
            created: now,
            assume_role_policy: new.assume_role_policy.to_owned(),
            description: new.description.map(str::to_owned),
            max_session_duration,
            inline_policies: BTreeMap::new(),
            attached: Vec::new(),
            permissions_boundary: new.permissions_boundary.map(str::to_owned),
            tags: new.tags,
        }))
    }

    /// Refuses a permissions boundary that names no managed policy.
    fn check_boundary(&self, account_id: &str, arn: &str) -> Result<(), IamError> {
        if managed::by_arn(arn).is_none() && self.policy(account_id, arn).is_err() {
            return Err(IamError::NoSuchEntity(format!(
                "Scope ARN: {arn} does not exist or is not attachable."
            )));
        }
        Ok(())
    }

    /// Deletes a role that holds no policies, as IAM requires.
    pub fn delete_role(&mut self, name: &str) -> Result<(), IamError> {
        let role = self.role(name)?;
        if !role.inline_policies.is_empty() {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must delete policies first.".into(),
            ));
        }
        if !role.attached.is_empty() {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must detach all policies first.".into(),
            ));
        }
        self.roles.remove(&name.to_lowercase());
        Ok(())
    }

    /// Replaces a role's trust policy.
    pub fn update_assume_role_policy(
        &mut self,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_trust_policy(document)?;
        self.role_mut(name)?.assume_role_policy = document.to_owned();
        Ok(())
    }

    /// Changes a role's description (an empty one removes it) and longest session, where given.
    pub fn update_role(
        &mut self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<u32>,
    ) -> Result<(), IamError> {
        if let Some(description) = description {
            check_description(description)?;
        }
        if let Some(seconds) = max_session_duration {
            check_max_session_duration(seconds)?;
        }
        let role = self.role_mut(name)?;
        if let Some(description) = description {
            role.description = (!description.is_empty()).then(|| description.to_owned());
        }
        if let Some(seconds) = max_session_duration {
            role.max_session_duration = seconds;
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) a role's permissions boundary.
    pub fn set_role_permissions_boundary(
        &mut self,
        account_id: &str,
        name: &str,
        arn: Option<&str>,
    ) -> Result<(), IamError> {
        if let Some(arn) = arn {
            self.check_boundary(account_id, arn)?;
        }
        self.role_mut(name)?.permissions_boundary = arn.map(str::to_owned);
        Ok(())
    }

    /// Adds or replaces a role's inline policy.
    pub fn put_role_policy(
        &mut self,
        role: &str,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_name("policyName", name, 128)?;
        check_document(document)?;
        self.role_mut(role)?
            .inline_policies
            .insert(name.to_owned(), document.to_owned());
        Ok(())
    }

    /// A role's inline policy document.
    pub fn role_policy(&self, role: &str, name: &str) -> Result<&str, IamError> {
        self.role(role)?
            .inline_policies
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| no_such_role_policy(name))
    }

    /// Deletes a role's inline policy.
    pub fn delete_role_policy(&mut self, role: &str, name: &str) -> Result<(), IamError> {
        self.role_mut(role)?
            .inline_policies
            .remove(name)
            .map(drop)
            .ok_or_else(|| no_such_role_policy(name))
    }

    /// Attaches a managed policy (AWS managed, or customer managed in this account) to a role.
    pub fn attach_role_policy(
        &mut self,
        account_id: &str,
        role: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        self.check_attachable(account_id, arn)?;
        attach(&mut self.role_mut(role)?.attached, arn, "PoliciesPerRole")
    }

    /// Detaches a managed policy from a role.
    pub fn detach_role_policy(&mut self, role: &str, arn: &str) -> Result<(), IamError> {
        detach(&mut self.role_mut(role)?.attached, arn)
    }

    /// The compiled identity policies of a role: inline policies, then attached ones.
    pub fn role_policies(
        &self,
        account_id: &str,
        role: &Role,
    ) -> Result<Vec<UserPolicy>, IamError> {
        self.identity_policies(account_id, &role.inline_policies, &role.attached)
    }

    /// A role's permissions boundary, compiled.
    pub fn role_boundary(
        &self,
        account_id: &str,
        role: &Role,
    ) -> Result<Option<UserPolicy>, IamError> {
        role.permissions_boundary
            .as_deref()
            .map(|arn| self.managed_policy(account_id, arn))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";
    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com:aud":"sts.amazonaws.com"}}}]}"#;
    const DOC: &str =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#;

    fn new_role(name: &str) -> NewRole<'_> {
        NewRole {
            name,
            path: "/",
            assume_role_policy: TRUST,
            ..Default::default()
        }
    }

    fn state_with_registry() -> IamState {
        let mut s = IamState::default();
        s.create_role(ACCOUNT, new_role("registry"), "AROA1".into(), 10)
            .unwrap();
        s
    }

    #[test]
    fn roles_are_unique_without_regard_to_case_and_have_arns() {
        let mut s = state_with_registry();
        let err = s
            .create_role(ACCOUNT, new_role("Registry"), "AROA2".into(), 11)
            .unwrap_err();
        assert_eq!(err.code(), "EntityAlreadyExists");
        assert_eq!(err.to_string(), "Role with name Registry already exists.");
        let role = s.role("REGISTRY").unwrap();
        assert_eq!(role.arn(ACCOUNT), "arn:aws:iam::111122223333:role/registry");
        assert_eq!(role.max_session_duration, 3600);
        assert_eq!(
            s.role("nope").unwrap_err().to_string(),
            "The role with name nope cannot be found."
        );
        let mut pathed = new_role("ci");
        pathed.path = "/gitlab/";
        let role = s.create_role(ACCOUNT, pathed, "AROA3".into(), 12).unwrap();
        assert_eq!(
            role.arn(ACCOUNT),
            "arn:aws:iam::111122223333:role/gitlab/ci"
        );
    }

    #[test]
    fn trust_policies_are_checked_with_iams_texts() {
        let check = |doc: &str| check_trust_policy(doc).unwrap_err().to_string();
        assert_eq!(check("{"), "This policy contains invalid Json");
        assert_eq!(
            check(
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole","Resource":"*"}}"#
            ),
            "Has prohibited field Resource"
        );
        assert_eq!(
            check(r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#),
            "Missing required field Principal"
        );
        assert_eq!(
            check(r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*"}]}"#),
            "AssumeRole policy may only specify STS AssumeRole actions."
        );
        assert_eq!(
            check(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject"}]}"#
            ),
            "AssumeRole policy may only specify STS AssumeRole actions."
        );
        // A duplicate is refused before the checks that would read only its last value.
        let err = check_trust_policy(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Action":"s3:*"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), "MalformedPolicyDocument");
        assert_eq!(
            err.to_string(),
            "AssumeRolePolicyDocument: Statement.Action: duplicate key: a key may appear only once in an object"
        );
        for ok in [
            "sts:AssumeRole*",
            "sts:TagSession",
            "STS:assumerole",
            "sts:*",
        ] {
            let doc = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Service":"ec2.amazonaws.com"}},"Action":"{ok}"}}}}"#
            );
            assert!(check_trust_policy(&doc).is_ok(), "{ok}");
        }
        let err = check_trust_policy(
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"sts:AssumeRole"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), "MalformedPolicyDocument");
        let mut s = state_with_registry();
        assert_eq!(
            s.update_assume_role_policy("registry", "[]")
                .unwrap_err()
                .code(),
            "MalformedPolicyDocument"
        );
        assert_eq!(s.role("registry").unwrap().assume_role_policy, TRUST);
    }

    #[test]
    fn durations_descriptions_tags_and_boundaries_follow_iam_rules() {
        let mut s = IamState::default();
        let mut attempt = |new: NewRole<'_>| {
            s.create_role(ACCOUNT, new, "AROA1".into(), 0)
                .map(drop)
                .unwrap_err()
        };
        let err = attempt(NewRole {
            max_session_duration: Some(3599),
            ..new_role("r")
        });
        assert_eq!(
            err.to_string(),
            "1 validation error detected: Value '3599' at 'maxSessionDuration' failed to satisfy constraint: Member must have value greater than or equal to 3600"
        );
        attempt(NewRole {
            max_session_duration: Some(43_201),
            ..new_role("r")
        });
        let long = "d".repeat(1001);
        attempt(NewRole {
            description: Some(&long),
            ..new_role("r")
        });
        let err = attempt(NewRole {
            tags: vec![("env".into(), "a".into()), ("ENV".into(), "b".into())],
            ..new_role("r")
        });
        assert_eq!(err.code(), "InvalidInput");
        let err = attempt(NewRole {
            tags: vec![("bad!".into(), String::new())],
            ..new_role("r")
        });
        assert!(err.to_string().contains("at 'tags.1.member.key'"), "{err}");
        let err = attempt(NewRole {
            permissions_boundary: Some("arn:aws:iam::111122223333:policy/none"),
            ..new_role("r")
        });
        assert_eq!(
            err.to_string(),
            "Scope ARN: arn:aws:iam::111122223333:policy/none does not exist or is not attachable."
        );
        assert!(s.roles.is_empty());
        let new = NewRole {
            max_session_duration: Some(43_200),
            permissions_boundary: Some("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"),
            tags: vec![("team".into(), "gitlab".into())],
            ..new_role("r")
        };
        s.create_role(ACCOUNT, new, "AROA1".into(), 0).unwrap();
        let role = s.role("r").unwrap();
        let boundary = s.role_boundary(ACCOUNT, role).unwrap().unwrap();
        assert_eq!(boundary.name, "AmazonS3ReadOnlyAccess");
        s.update_role("r", Some("registry pods"), Some(7200))
            .unwrap();
        let role = s.role("r").unwrap();
        assert_eq!(role.description.as_deref(), Some("registry pods"));
        assert_eq!(role.max_session_duration, 7200);
        s.update_role("r", Some(""), None).unwrap();
        assert_eq!(s.role("r").unwrap().description, None);
    }

    #[test]
    fn a_role_is_deleted_only_once_its_policies_are_gone() {
        let mut s = state_with_registry();
        s.put_role_policy("registry", "rw", DOC).unwrap();
        let arn = "arn:aws:iam::aws:policy/AmazonS3FullAccess";
        s.attach_role_policy(ACCOUNT, "registry", arn).unwrap();
        assert_eq!(s.attachment_count(arn), 1);
        let conflict = |s: &mut IamState| s.delete_role("registry").unwrap_err().to_string();
        assert_eq!(
            conflict(&mut s),
            "Cannot delete entity, must delete policies first."
        );
        assert_eq!(s.role_policy("registry", "rw").unwrap(), DOC);
        s.delete_role_policy("registry", "rw").unwrap();
        assert_eq!(
            s.delete_role_policy("registry", "rw")
                .unwrap_err()
                .to_string(),
            "The role policy with name rw cannot be found."
        );
        assert_eq!(
            conflict(&mut s),
            "Cannot delete entity, must detach all policies first."
        );
        s.detach_role_policy("registry", arn).unwrap();
        s.delete_role("registry").unwrap();
        assert!(s.roles.is_empty());
    }

    #[test]
    fn role_attachments_have_a_quota_and_block_policy_deletion() {
        let mut s = state_with_registry();
        let policy = s
            .create_policy("p", "/", "", DOC, "ANPA1".into(), 0)
            .unwrap()
            .arn(ACCOUNT);
        s.attach_role_policy(ACCOUNT, "registry", &policy).unwrap();
        assert_eq!(
            s.delete_policy(ACCOUNT, &policy).unwrap_err().code(),
            "DeleteConflict"
        );
        let missing = "arn:aws:iam::aws:policy/Nope";
        assert_eq!(
            s.attach_role_policy(ACCOUNT, "registry", missing)
                .unwrap_err()
                .code(),
            "NoSuchEntity"
        );
        for m in managed::all().iter().take(4) {
            s.attach_role_policy(ACCOUNT, "registry", m.arn).unwrap();
        }
        let role = s.role("registry").unwrap();
        let names: Vec<String> = s
            .role_policies(ACCOUNT, role)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names.len(), 5);
        assert_eq!(names[0], "p");
        let mut full = role.clone();
        full.attached = (0..10).map(|i| format!("arn:{i}")).collect();
        let err = attach(&mut full.attached, "arn:x", "PoliciesPerRole").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot exceed quota for PoliciesPerRole: 10"
        );

        s.detach_role_policy("registry", &policy).unwrap();
        s.set_role_permissions_boundary(ACCOUNT, "registry", Some(&policy))
            .unwrap();
        assert_eq!(s.boundary_usage_count(&policy), 1);
        assert_eq!(
            s.delete_policy(ACCOUNT, &policy).unwrap_err().code(),
            "DeleteConflict"
        );
    }

    #[test]
    fn old_state_without_roles_still_loads() {
        let old = r#"{"users":{},"policies":{}}"#;
        let state: IamState = serde_json::from_str(old).unwrap();
        assert!(state.roles.is_empty() && state.oidc_providers.is_empty());
        let s = state_with_registry();
        let back: IamState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
