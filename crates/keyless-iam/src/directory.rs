//! `Directory`: the compiled, read-only view of IAM state that every request consults (access
//! key to secret and identity, with the identity's policies compiled), and the configuration
//! file's users and policies applied to the state at start.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html>

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use keyless_policy::Principal;
use keyless_types::Secret;

use crate::state::{IamState, UserPolicy, check_document};
use crate::{IamError, ids};

/// A user as requests see it: who it is and the identity policies that apply to it.
#[derive(Debug)]
pub struct Identity {
    /// The user's name.
    pub name: String,
    /// `AIDA...`.
    pub user_id: String,
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub arn: String,
    /// The account.
    pub account_id: String,
    /// The compiled identity policies: inline ones, then attached ones.
    pub policies: Vec<UserPolicy>,
}

impl Identity {
    /// The principal resource-based policies match.
    pub fn principal(&self) -> Principal {
        Principal::User {
            arn: self.arn.clone(),
            account: self.account_id.clone(),
        }
    }
}

/// An access key and the identity it signs for.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The secret access key.
    pub secret: Secret,
    /// Who signs with it.
    pub identity: Arc<Identity>,
}

/// A user to create from the configuration file.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    /// 1 to 64 of `A-Za-z0-9+=,.@_-`.
    pub name: String,
    /// `/` or `/division/` style path.
    pub path: Option<String>,
    /// Access key pairs: `(AKIA..., secret)`.
    pub access_keys: Vec<(String, Secret)>,
    /// Inline policies: `(name, document)`.
    pub inline_policies: Vec<(String, String)>,
    /// ARNs of attached managed policies (AWS managed or declared in the same directory).
    pub policy_arns: Vec<String>,
}

/// A customer managed policy to create from the configuration file.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The policy's name; its ARN is `arn:aws:iam::ACCOUNT:policy/NAME`.
    pub name: String,
    /// The document.
    pub document: String,
}

/// The active access keys of an account's users, with their compiled identities.
#[derive(Debug, Default)]
pub struct Directory {
    keys: HashMap<String, Credential>,
}

fn valid_name(name: &str) -> bool {
    crate::state::check_name("name", name, 64).is_ok()
}

fn valid_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Directory {
    /// The active credential with this access key id.
    pub fn credential(&self, access_key_id: &str) -> Option<&Credential> {
        self.keys.get(access_key_id)
    }

    /// Compiles the state of account `account_id`: every active key to its user's identity.
    pub fn compile(state: &IamState, account_id: &str) -> Result<Self, IamError> {
        let mut keys = HashMap::new();
        for user in state.users.values() {
            let identity = Arc::new(Identity {
                name: user.name.clone(),
                user_id: user.id.clone(),
                arn: user.arn(account_id),
                account_id: account_id.to_owned(),
                policies: state.user_policies(account_id, user)?,
            });
            for key in user.access_keys.iter().filter(|k| k.active) {
                let credential = Credential {
                    secret: key.secret.clone(),
                    identity: Arc::clone(&identity),
                };
                keys.insert(key.id.clone(), credential);
            }
        }
        Ok(Self { keys })
    }

    /// Builds the directory of the configuration's users and policies alone.
    pub fn build(
        account_id: &str,
        policies: &[PolicySpec],
        users: &[UserSpec],
    ) -> Result<Self, IamError> {
        let mut state = IamState::default();
        apply_specs(&mut state, account_id, policies, users, 0)?;
        Self::compile(&state, account_id)
    }
}

/// Applies the configuration file's policies and users to `state`, checking every name, key
/// and document and naming the field at fault: missing ones are created, declared documents
/// become the default version, declared inline policies, attachments and keys are set.
/// Nothing else in the state is touched.
pub fn apply_specs(
    state: &mut IamState,
    account_id: &str,
    policies: &[PolicySpec],
    users: &[UserSpec],
    now: i64,
) -> Result<(), IamError> {
    let mut declared = HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        if !valid_name(&p.name) {
            return Err(IamError::InvalidInput(format!(
                "policies[{i}].name: `{}` is not a valid policy name",
                p.name
            )));
        }
        if !declared.insert(p.name.to_lowercase()) {
            return Err(IamError::InvalidInput(format!(
                "policies[{i}].name: `{}` is declared twice",
                p.name
            )));
        }
        check_document(&p.document).map_err(|e| at(e, &format!("policies[{i}] (`{}`)", p.name)))?;
        let arn = format!("arn:aws:iam::{account_id}:policy/{}", p.name);
        match state.policy(account_id, &arn) {
            Ok(existing) if existing.default_document() == p.document => {}
            Ok(_) => state.set_default_document(account_id, &arn, &p.document, now)?,
            Err(_) => {
                state.create_policy(&p.name, "/", "", &p.document, ids::policy_id()?, now)?;
            }
        }
    }
    let mut names = HashSet::new();
    let mut key_owner: HashMap<&str, usize> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        let at_user = format!("users[{i}]");
        if !valid_name(&u.name) {
            return Err(IamError::InvalidInput(format!(
                "{at_user}.name: `{}` is not a valid user name",
                u.name
            )));
        }
        if !names.insert(u.name.to_lowercase()) {
            return Err(IamError::InvalidInput(format!(
                "{at_user}.name: `{}` is declared twice",
                u.name
            )));
        }
        let path = u.path.as_deref().unwrap_or("/");
        if crate::state::check_path("path", path).is_err() {
            return Err(IamError::InvalidInput(format!(
                "{at_user}.path: `{path}` must begin and end with `/`"
            )));
        }
        for (j, (name, document)) in u.inline_policies.iter().enumerate() {
            check_document(document)
                .map_err(|e| at(e, &format!("{at_user}.policies[{j}] (`{name}`)")))?;
        }
        for (id, _) in &u.access_keys {
            if !valid_access_key_id(id) {
                return Err(IamError::InvalidInput(format!(
                    "{at_user}.access_key_id: `{id}` is not an access key id"
                )));
            }
            if key_owner.insert(id, i).is_some() {
                return Err(IamError::InvalidInput(format!(
                    "{at_user}.access_key_id: `{id}` is used twice"
                )));
            }
        }
        match state.user(&u.name) {
            Ok(existing) if existing.path != path => {
                let key = u.name.to_lowercase();
                if let Some(user) = state.users.get_mut(&key) {
                    user.path = path.to_owned();
                }
            }
            Ok(_) => {}
            Err(_) => {
                state.create_user(&u.name, path, ids::user_id()?, now)?;
            }
        }
        for (name, document) in &u.inline_policies {
            state.put_user_policy(&u.name, name, document)?;
        }
        for arn in &u.policy_arns {
            state.attach_user_policy(account_id, &u.name, arn)?;
        }
        for (id, secret) in &u.access_keys {
            match state.access_key(id) {
                Some((owner, _)) if !owner.name.eq_ignore_ascii_case(&u.name) => {
                    return Err(IamError::InvalidInput(format!(
                        "{at_user}.access_key_id: `{id}` belongs to user `{}`",
                        owner.name
                    )));
                }
                Some(_) => {
                    let key = u.name.to_lowercase();
                    if let Some(k) = state
                        .users
                        .get_mut(&key)
                        .and_then(|u| u.access_keys.iter_mut().find(|k| k.id == *id))
                    {
                        // The declared secret wins; a key deactivated through the API
                        // stays inactive.
                        k.secret = secret.clone();
                    }
                }
                None => {
                    state
                        .create_access_key(&u.name, id.clone(), secret.clone(), now)
                        .map_err(|e| {
                            IamError::InvalidInput(format!("{at_user}.access_key_id: {e}"))
                        })?;
                }
            }
        }
    }
    Ok(())
}

/// Names the configuration field a document came from.
fn at(error: IamError, which: &str) -> IamError {
    match error {
        IamError::MalformedPolicy { error, .. } => IamError::MalformedPolicy {
            which: which.to_owned(),
            error,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket"],"Resource":"arn:aws:s3:::registry"},{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::registry/*"}]}"#;

    fn user(name: &str) -> UserSpec {
        UserSpec {
            name: name.into(),
            access_keys: vec![("AKIAREGISTRY00000001".into(), Secret::new("s3cr3t"))],
            inline_policies: vec![("rw".into(), RW.into())],
            policy_arns: vec![
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into(),
                "arn:aws:iam::111122223333:policy/extra".into(),
            ],
            ..Default::default()
        }
    }

    fn extra() -> PolicySpec {
        PolicySpec {
            name: "extra".into(),
            document: r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}}"#.into(),
        }
    }

    #[test]
    fn builds_identities_with_all_their_policies() {
        let dir = Directory::build("111122223333", &[extra()], &[user("gitlab-registry")]).unwrap();
        let c = dir.credential("AKIAREGISTRY00000001").unwrap();
        assert_eq!(c.secret.expose(), "s3cr3t");
        assert_eq!(
            c.identity.arn,
            "arn:aws:iam::111122223333:user/gitlab-registry"
        );
        assert!(c.identity.user_id.starts_with("AIDA") && c.identity.user_id.len() == 21);
        let names: Vec<&str> = c
            .identity
            .policies
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["rw", "AmazonS3ReadOnlyAccess", "extra"]);
        assert!(dir.credential("AKIAOTHER").is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_declared_key_deactivated_through_the_api_stays_inactive() {
        let mut state = IamState::default();
        let users = [user("gitlab-registry")];
        apply_specs(&mut state, "111122223333", &[extra()], &users, 0).unwrap();
        state
            .update_access_key("gitlab-registry", "AKIAREGISTRY00000001", false)
            .unwrap();
        apply_specs(&mut state, "111122223333", &[extra()], &users, 1).unwrap();
        let dir = Directory::compile(&state, "111122223333").unwrap();
        assert!(dir.credential("AKIAREGISTRY00000001").is_none());
    }

    #[test]
    fn refuses_bad_specs_naming_the_field() {
        let err = |users: &[UserSpec]| {
            Directory::build("111122223333", &[], users)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[user("bad name")]),
            "users[0].name: `bad name` is not a valid user name"
        );
        let mut missing = user("u");
        missing.policy_arns = vec!["arn:aws:iam::111122223333:policy/nope".into()];
        assert_eq!(
            err(&[missing]),
            "policy `arn:aws:iam::111122223333:policy/nope` does not exist or is not attachable"
        );
        let mut bad_doc = user("u");
        bad_doc.policy_arns.clear();
        bad_doc.inline_policies = vec![("p".into(), r#"{"Statement":{"Effect":"Allow"}}"#.into())];
        assert_eq!(
            err(&[bad_doc]),
            "users[0].policies[0] (`p`): Statement: missing `Action` or `NotAction`"
        );
        let mut a = user("a");
        a.policy_arns.clear();
        let mut b = a.clone();
        b.name = "b".into();
        assert_eq!(
            err(&[a, b]),
            "users[1].access_key_id: `AKIAREGISTRY00000001` is used twice"
        );
    }
}
