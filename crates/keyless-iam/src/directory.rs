//! The `IamStore` seam and `Directory`, its in-memory implementation: users, their access keys
//! and their policies (inline, customer managed, AWS managed), compiled once when built.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html>

use std::collections::HashMap;
use std::sync::Arc;

use keyless_policy::{Policy, PolicyKind, Principal};
use keyless_types::Secret;
use md5::{Digest as _, Md5};

use crate::{IamError, managed};

/// A user as requests see it: who it is and the identity policies that apply to it.
#[derive(Debug)]
pub struct Identity {
    /// The user's name.
    pub name: String,
    /// `AIDA...`, stable for a given account and name.
    pub user_id: String,
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub arn: String,
    /// The account.
    pub account_id: String,
    /// The compiled identity policies, each with the name decisions report.
    pub policies: Vec<(String, Policy)>,
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

/// Where IAM state lives: the embedded directory now, a database next.
pub trait IamStore: Send + Sync + 'static {
    /// The active credential with this access key id.
    fn credential(&self, access_key_id: &str) -> Option<&Credential>;
}

/// A user to create.
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

/// A customer managed policy to create.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The policy's name; its ARN is `arn:aws:iam::ACCOUNT:policy/NAME`.
    pub name: String,
    /// The document.
    pub document: String,
}

/// Users and keys in memory.
#[derive(Debug, Default)]
pub struct Directory {
    keys: HashMap<String, Credential>,
}

impl IamStore for Directory {
    fn credential(&self, access_key_id: &str) -> Option<&Credential> {
        self.keys.get(access_key_id)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn valid_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A stable unique id for a user: `AIDA` and 17 characters derived from account and name.
fn user_id(account_id: &str, name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Md5::digest(format!("{account_id}/{name}").as_bytes());
    let tail: String = digest
        .iter()
        .cycle()
        .take(17)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("AIDA{tail}")
}

impl Directory {
    /// Builds the directory, checking every name, key and document.
    pub fn build(
        account_id: &str,
        policies: &[PolicySpec],
        users: &[UserSpec],
    ) -> Result<Self, IamError> {
        let mut customer: HashMap<String, (String, Policy)> = HashMap::new();
        for (i, p) in policies.iter().enumerate() {
            if !valid_name(&p.name) {
                return Err(IamError::InvalidInput(format!(
                    "policies[{i}].name: `{}` is not a valid policy name",
                    p.name
                )));
            }
            let policy = Policy::parse_as(&p.document, PolicyKind::Identity).map_err(|error| {
                IamError::MalformedPolicy {
                    which: format!("policies[{i}] (`{}`)", p.name),
                    error,
                }
            })?;
            let arn = format!("arn:aws:iam::{account_id}:policy/{}", p.name);
            if customer.insert(arn, (p.name.clone(), policy)).is_some() {
                return Err(IamError::InvalidInput(format!(
                    "policies[{i}].name: `{}` is declared twice",
                    p.name
                )));
            }
        }
        let mut dir = Self::default();
        let mut names = std::collections::HashSet::new();
        for (i, u) in users.iter().enumerate() {
            let at = format!("users[{i}]");
            if !valid_name(&u.name) {
                return Err(IamError::InvalidInput(format!(
                    "{at}.name: `{}` is not a valid user name",
                    u.name
                )));
            }
            if !names.insert(u.name.to_lowercase()) {
                return Err(IamError::InvalidInput(format!(
                    "{at}.name: `{}` is declared twice",
                    u.name
                )));
            }
            let path = u.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') || !path.ends_with('/') {
                return Err(IamError::InvalidInput(format!(
                    "{at}.path: `{path}` must begin and end with `/`"
                )));
            }
            let mut compiled = Vec::new();
            for (j, (name, document)) in u.inline_policies.iter().enumerate() {
                let policy = Policy::parse_as(document, PolicyKind::Identity).map_err(|error| {
                    IamError::MalformedPolicy {
                        which: format!("{at}.policies[{j}] (`{name}`)"),
                        error,
                    }
                })?;
                compiled.push((name.clone(), policy));
            }
            for arn in &u.policy_arns {
                if let Some(m) = managed::by_arn(arn) {
                    compiled.push((m.name.to_owned(), m.policy().clone()));
                } else if let Some((name, policy)) = customer.get(arn) {
                    compiled.push((name.clone(), policy.clone()));
                } else {
                    return Err(IamError::NoSuchPolicy(arn.clone()));
                }
            }
            let identity = Arc::new(Identity {
                name: u.name.clone(),
                user_id: user_id(account_id, &u.name),
                arn: format!("arn:aws:iam::{account_id}:user{path}{}", u.name),
                account_id: account_id.to_owned(),
                policies: compiled,
            });
            for (id, secret) in &u.access_keys {
                if !valid_access_key_id(id) {
                    return Err(IamError::InvalidInput(format!(
                        "{at}.access_key_id: `{id}` is not an access key id"
                    )));
                }
                let credential = Credential {
                    secret: secret.clone(),
                    identity: Arc::clone(&identity),
                };
                if dir.keys.insert(id.clone(), credential).is_some() {
                    return Err(IamError::InvalidInput(format!(
                        "{at}.access_key_id: `{id}` is used twice"
                    )));
                }
            }
        }
        Ok(dir)
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

    #[test]
    fn builds_identities_with_all_their_policies() {
        let extra = PolicySpec {
            name: "extra".into(),
            document: r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}}"#.into(),
        };
        let dir = Directory::build("111122223333", &[extra], &[user("gitlab-registry")]).unwrap();
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
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["rw", "AmazonS3ReadOnlyAccess", "extra"]);
        assert!(dir.credential("AKIAOTHER").is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
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
