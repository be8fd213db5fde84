//! IAM state: users with their access keys and policies, customer managed policies, roles and
//! OpenID Connect providers, with the operations on users and managed policies (those on roles
//! and providers live in `roles.rs` and `oidc_providers.rs`; the checks they share in
//! `rules.rs`). Each operation checks its input the way IAM does and fails
//! with IAM's error code and text. Plain data: no IO and no clock (the caller passes the time
//! and fresh ids), so that every store (embedded now, PostgreSQL next) shares the rules.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_Operations.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>

use std::collections::BTreeMap;

use keyless_policy::Policy;
use keyless_types::{ProviderUrl, Secret};
use serde::{Deserialize, Deserializer, Serialize};

use crate::rules::{attach, check_document, check_name, check_path, detach};
use crate::{IamError, managed};

/// Access keys a user may hold at once.
pub const MAX_ACCESS_KEYS: usize = 2;
/// Versions a customer managed policy keeps.
pub const MAX_POLICY_VERSIONS: usize = 5;

/// Everything IAM knows about one account. Names are unique without regard to case, as in
/// IAM, so maps are keyed by the lowercase name and keep the name as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IamState {
    /// Users by lowercase name.
    pub users: BTreeMap<String, User>,
    /// Customer managed policies by lowercase name.
    pub policies: BTreeMap<String, ManagedPolicy>,
    /// Roles by lowercase name.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// OpenID Connect providers by key ([`OidcProvider::key`]): the URL without its scheme
    /// and trailing `/`, the host in lower case (`oidc.eks.us-east-1.amazonaws.com/id/ABC`).
    #[serde(default, deserialize_with = "providers_by_key")]
    pub oidc_providers: BTreeMap<String, OidcProvider>,
}

/// The stored providers, filed again under their keys: before `ProviderUrl`, a key kept the
/// host's case (`Issuer.example/x`), and a provider filed so would not be found by its ARN.
fn providers_by_key<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, OidcProvider>, D::Error> {
    let stored = BTreeMap::<String, OidcProvider>::deserialize(d)?;
    Ok(stored.into_values().map(|p| (p.key(), p)).collect())
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The name as created.
    pub name: String,
    /// `/` or `/division/`.
    pub path: String,
    /// `AIDA...`, unique: a user created again under the same name gets a new one.
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// At most [`MAX_ACCESS_KEYS`].
    pub access_keys: Vec<AccessKey>,
    /// Inline policies: name to document.
    pub inline_policies: BTreeMap<String, String>,
    /// ARNs of attached managed policies, in attachment order.
    pub attached: Vec<String>,
}

/// An access key pair of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKey {
    /// `AKIA...`.
    pub id: String,
    /// The secret access key.
    #[serde(with = "secret_text")]
    pub secret: Secret,
    /// Inactive keys sign nothing.
    pub active: bool,
    /// Seconds since the epoch.
    pub created: i64,
}

/// A customer managed policy with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    /// The name as created.
    pub name: String,
    /// `/` or `/division/`.
    pub path: String,
    /// `ANPA...`.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// When the default version last changed.
    pub updated: i64,
    /// The number of the default version (`v3` is 3).
    pub default_version: u32,
    /// The number the next version gets.
    pub next_version: u32,
    /// At most [`MAX_POLICY_VERSIONS`], oldest first.
    pub versions: Vec<PolicyVersion>,
}

/// One version of a managed policy's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `1` for `v1`.
    pub number: u32,
    /// The JSON text as given.
    pub document: String,
    /// Seconds since the epoch.
    pub created: i64,
}

impl ManagedPolicy {
    /// The document of the default version.
    pub fn default_document(&self) -> &str {
        self.version(self.default_version)
            .map_or("", |v| v.document.as_str())
    }

    /// A version by number.
    pub fn version(&self, number: u32) -> Option<&PolicyVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// `arn:aws:iam::ACCOUNT:policy/PATH/NAME`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:policy{}{}", self.path, self.name)
    }
}

impl User {
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:user{}{}", self.path, self.name)
    }
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// The name as created.
    pub name: String,
    /// `/` or `/division/`.
    pub path: String,
    /// `AROA...`, unique: a role created again under the same name gets a new one.
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The trust policy: who may assume the role, as given.
    pub assume_role_policy: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The longest session, in seconds: 3600 to 43200.
    pub max_session_duration: u32,
    /// Inline policies: name to document.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    /// ARNs of attached managed policies, in attachment order.
    #[serde(default)]
    pub attached: Vec<String>,
    /// The ARN of the managed policy that bounds the role's permissions.
    #[serde(default)]
    pub permissions_boundary: Option<String>,
    /// `(key, value)` pairs, in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl Role {
    /// `arn:aws:iam::ACCOUNT:role/PATH/NAME`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:role{}{}", self.path, self.name)
    }
}

/// An OpenID Connect identity provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OidcProvider {
    /// The issuer URL as created, scheme included (`https://host/path`).
    pub url: String,
    /// The audiences its tokens may name, in the order added.
    pub client_ids: Vec<String>,
    /// SHA-1 fingerprints (40 hex digits) of the issuer's certificates; IAM no longer needs
    /// them, Keyless keeps them for what lists them.
    #[serde(default)]
    pub thumbprints: Vec<String>,
    /// Seconds since the epoch.
    pub created: i64,
    /// `(key, value)` pairs, in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl OidcProvider {
    /// The key it is filed under ([`ProviderUrl::key`]): the URL without its scheme and
    /// trailing `/`, the host in lower case. A URL stored by an older version that no longer
    /// parses is its own key.
    pub fn key(&self) -> String {
        ProviderUrl::read(&self.url).map_or_else(|_| self.url.clone(), |u| u.key().to_owned())
    }

    /// `arn:aws:iam::ACCOUNT:oidc-provider/KEY`.
    pub fn arn(&self, account_id: &str) -> String {
        format!("arn:aws:iam::{account_id}:oidc-provider/{}", self.key())
    }
}

mod secret_text {
    use keyless_types::Secret;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

fn no_such_user(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}

impl IamState {
    /// A user by name (any case).
    pub fn user(&self, name: &str) -> Result<&User, IamError> {
        self.users
            .get(&name.to_lowercase())
            .ok_or_else(|| no_such_user(name))
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, IamError> {
        self.users
            .get_mut(&name.to_lowercase())
            .ok_or_else(|| no_such_user(name))
    }

    /// The user holding an access key, and the key.
    pub fn access_key(&self, id: &str) -> Option<(&User, &AccessKey)> {
        self.users
            .values()
            .find_map(|u| u.access_keys.iter().find(|k| k.id == id).map(|k| (u, k)))
    }

    /// Creates a user.
    pub fn create_user(
        &mut self,
        name: &str,
        path: &str,
        id: String,
        now: i64,
    ) -> Result<&User, IamError> {
        check_name("userName", name, 64)?;
        check_path("path", path)?;
        let key = name.to_lowercase();
        if self.users.contains_key(&key) {
            return Err(IamError::EntityAlreadyExists(format!(
                "User with name {name} already exists."
            )));
        }
        Ok(self.users.entry(key).or_insert(User {
            name: name.to_owned(),
            path: path.to_owned(),
            id,
            created: now,
            access_keys: Vec::new(),
            inline_policies: BTreeMap::new(),
            attached: Vec::new(),
        }))
    }

    /// Deletes a user that holds no access keys and no policies, as IAM requires.
    pub fn delete_user(&mut self, name: &str) -> Result<(), IamError> {
        let user = self.user(name)?;
        let conflict = if !user.access_keys.is_empty() {
            Some("Cannot delete entity, must delete access keys first.")
        } else if !user.inline_policies.is_empty() {
            Some("Cannot delete entity, must delete policies first.")
        } else if !user.attached.is_empty() {
            Some("Cannot delete entity, must detach all policies first.")
        } else {
            None
        };
        if let Some(message) = conflict {
            return Err(IamError::DeleteConflict(message.into()));
        }
        self.users.remove(&name.to_lowercase());
        Ok(())
    }

    /// Gives a user a new access key pair.
    pub fn create_access_key(
        &mut self,
        user: &str,
        id: String,
        secret: Secret,
        now: i64,
    ) -> Result<AccessKey, IamError> {
        if self.access_key(&id).is_some() {
            return Err(IamError::EntityAlreadyExists(format!(
                "Access key {id} already exists."
            )));
        }
        let user = self.user_mut(user)?;
        if user.access_keys.len() >= MAX_ACCESS_KEYS {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
            )));
        }
        let key = AccessKey {
            id,
            secret,
            active: true,
            created: now,
        };
        user.access_keys.push(key.clone());
        Ok(key)
    }

    fn key_mut(&mut self, user: &str, id: &str) -> Result<&mut AccessKey, IamError> {
        self.user_mut(user)?
            .access_keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| {
                IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
            })
    }

    /// Activates or deactivates a user's access key.
    pub fn update_access_key(
        &mut self,
        user: &str,
        id: &str,
        active: bool,
    ) -> Result<(), IamError> {
        self.key_mut(user, id)?.active = active;
        Ok(())
    }

    /// Deletes a user's access key.
    pub fn delete_access_key(&mut self, user: &str, id: &str) -> Result<(), IamError> {
        self.key_mut(user, id)?;
        self.user_mut(user)?.access_keys.retain(|k| k.id != id);
        Ok(())
    }

    /// Adds or replaces a user's inline policy.
    pub fn put_user_policy(
        &mut self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_name("policyName", name, 128)?;
        check_document(document)?;
        self.user_mut(user)?
            .inline_policies
            .insert(name.to_owned(), document.to_owned());
        Ok(())
    }

    /// A user's inline policy document.
    pub fn user_policy(&self, user: &str, name: &str) -> Result<&str, IamError> {
        self.user(user)?
            .inline_policies
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| no_such_user_policy(name))
    }

    /// Deletes a user's inline policy.
    pub fn delete_user_policy(&mut self, user: &str, name: &str) -> Result<(), IamError> {
        self.user_mut(user)?
            .inline_policies
            .remove(name)
            .map(drop)
            .ok_or_else(|| no_such_user_policy(name))
    }

    /// Creates a customer managed policy.
    pub fn create_policy(
        &mut self,
        name: &str,
        path: &str,
        description: &str,
        document: &str,
        id: String,
        now: i64,
    ) -> Result<&ManagedPolicy, IamError> {
        check_name("policyName", name, 128)?;
        check_path("path", path)?;
        if description.chars().count() > 1000 {
            return Err(IamError::Validation(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".into(),
            ));
        }
        check_document(document)?;
        let key = name.to_lowercase();
        if self.policies.contains_key(&key) {
            return Err(IamError::EntityAlreadyExists(format!(
                "A policy called {name} already exists. Duplicate names are not allowed."
            )));
        }
        Ok(self.policies.entry(key).or_insert(ManagedPolicy {
            name: name.to_owned(),
            path: path.to_owned(),
            id,
            description: description.to_owned(),
            created: now,
            updated: now,
            default_version: 1,
            next_version: 2,
            versions: vec![PolicyVersion {
                number: 1,
                document: document.to_owned(),
                created: now,
            }],
        }))
    }

    /// Makes `document` the default version of a customer managed policy, dropping the oldest
    /// version when the policy already has [`MAX_POLICY_VERSIONS`].
    pub fn set_default_document(
        &mut self,
        account_id: &str,
        arn: &str,
        document: &str,
        now: i64,
    ) -> Result<(), IamError> {
        check_document(document)?;
        let policy = self.policy_mut(account_id, arn)?;
        if policy.versions.len() >= MAX_POLICY_VERSIONS {
            let default = policy.default_version;
            if let Some(oldest) = policy.versions.iter().position(|v| v.number != default) {
                policy.versions.remove(oldest);
            }
        }
        let number = policy.next_version;
        policy.versions.push(PolicyVersion {
            number,
            document: document.to_owned(),
            created: now,
        });
        policy.next_version += 1;
        policy.default_version = number;
        policy.updated = now;
        Ok(())
    }

    /// The customer managed policy with this ARN.
    pub fn policy(&self, account_id: &str, arn: &str) -> Result<&ManagedPolicy, IamError> {
        self.policies
            .values()
            .find(|p| p.arn(account_id) == arn)
            .ok_or_else(|| IamError::NoSuchEntity(format!("Policy {arn} was not found.")))
    }

    fn policy_mut(&mut self, account_id: &str, arn: &str) -> Result<&mut ManagedPolicy, IamError> {
        self.policies
            .values_mut()
            .find(|p| p.arn(account_id) == arn)
            .ok_or_else(|| IamError::NoSuchEntity(format!("Policy {arn} was not found.")))
    }

    /// How many users and roles a managed policy (customer or AWS) is attached to.
    pub fn attachment_count(&self, arn: &str) -> usize {
        let users = self.users.values().map(|u| &u.attached);
        let roles = self.roles.values().map(|r| &r.attached);
        users
            .chain(roles)
            .filter(|attached| attached.iter().any(|a| a == arn))
            .count()
    }

    /// How many roles a managed policy is the permissions boundary of.
    pub fn boundary_usage_count(&self, arn: &str) -> usize {
        self.roles
            .values()
            .filter(|r| r.permissions_boundary.as_deref() == Some(arn))
            .count()
    }

    /// Deletes a customer managed policy, with all its versions, when nothing uses it.
    pub fn delete_policy(&mut self, account_id: &str, arn: &str) -> Result<(), IamError> {
        let key = self.policy(account_id, arn)?.name.to_lowercase();
        if self.attachment_count(arn) + self.boundary_usage_count(arn) > 0 {
            return Err(IamError::DeleteConflict(
                "Cannot delete a policy attached to entities.".into(),
            ));
        }
        self.policies.remove(&key);
        Ok(())
    }

    /// Attaches a managed policy (AWS managed, or customer managed in this account) to a user.
    pub fn attach_user_policy(
        &mut self,
        account_id: &str,
        user: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        self.check_attachable(account_id, arn)?;
        attach(&mut self.user_mut(user)?.attached, arn, "PoliciesPerUser")
    }

    /// Refuses an ARN that names neither an AWS managed policy Keyless carries nor a customer
    /// managed policy of this account.
    pub(crate) fn check_attachable(&self, account_id: &str, arn: &str) -> Result<(), IamError> {
        if managed::by_arn(arn).is_none() && self.policy(account_id, arn).is_err() {
            return Err(IamError::NoSuchPolicy(arn.to_owned()));
        }
        Ok(())
    }

    /// Detaches a managed policy from a user.
    pub fn detach_user_policy(&mut self, user: &str, arn: &str) -> Result<(), IamError> {
        detach(&mut self.user_mut(user)?.attached, arn)
    }

    /// The compiled identity policies of a user, each with its name and kind, in the order
    /// decisions report them: inline policies, then attached ones.
    pub fn user_policies(
        &self,
        account_id: &str,
        user: &User,
    ) -> Result<Vec<UserPolicy>, IamError> {
        self.identity_policies(account_id, &user.inline_policies, &user.attached)
    }

    /// The compiled identity policies of a user or role: its inline policies, then the managed
    /// policies attached to it.
    pub fn identity_policies(
        &self,
        account_id: &str,
        inline: &BTreeMap<String, String>,
        attached: &[String],
    ) -> Result<Vec<UserPolicy>, IamError> {
        let mut out = Vec::with_capacity(inline.len() + attached.len());
        for (name, document) in inline {
            out.push(UserPolicy {
                name: name.clone(),
                kind: UserPolicyKind::Inline,
                policy: std::sync::Arc::new(check_document(document)?),
            });
        }
        for arn in attached {
            out.push(self.managed_policy(account_id, arn)?);
        }
        Ok(out)
    }

    /// A managed policy (AWS managed, or customer managed in this account), compiled.
    pub fn managed_policy(&self, account_id: &str, arn: &str) -> Result<UserPolicy, IamError> {
        let (name, kind, policy) = match managed::by_arn(arn) {
            Some(m) => (
                m.name.to_owned(),
                UserPolicyKind::AwsManaged,
                m.policy().clone(),
            ),
            None => {
                let p = self.policy(account_id, arn)?;
                (
                    p.name.clone(),
                    UserPolicyKind::CustomerManaged,
                    check_document(p.default_document())?,
                )
            }
        };
        Ok(UserPolicy {
            name,
            kind,
            policy: std::sync::Arc::new(policy),
        })
    }
}

/// Where a user's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserPolicyKind {
    /// An inline policy.
    Inline,
    /// An AWS managed policy.
    AwsManaged,
    /// A customer managed policy.
    CustomerManaged,
}

impl UserPolicyKind {
    /// The `SourcePolicyType` the simulator reports.
    pub fn source_type(self) -> &'static str {
        match self {
            Self::Inline => "user",
            Self::AwsManaged => "aws-managed",
            Self::CustomerManaged => "user-managed",
        }
    }
}

/// A compiled identity policy of a user.
#[derive(Debug, Clone)]
pub struct UserPolicy {
    /// Its name.
    pub name: String,
    /// Where it comes from.
    pub kind: UserPolicyKind,
    /// The compiled document.
    pub policy: std::sync::Arc<Policy>,
}

fn no_such_user_policy(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The user policy with name {name} cannot be found."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#;
    const ACCOUNT: &str = "111122223333";

    fn state_with_bob() -> IamState {
        let mut s = IamState::default();
        s.create_user("bob", "/", "AIDABOB".into(), 10).unwrap();
        s
    }

    #[test]
    fn names_are_unique_without_regard_to_case() {
        let mut s = state_with_bob();
        let err = s.create_user("BOB", "/", "AIDAX".into(), 11).unwrap_err();
        assert_eq!(err.code(), "EntityAlreadyExists");
        assert_eq!(err.to_string(), "User with name BOB already exists.");
        assert_eq!(s.user("Bob").unwrap().name, "bob");
        assert_eq!(
            s.user("alice").unwrap_err().to_string(),
            "The user with name alice cannot be found."
        );
    }

    #[test]
    fn names_and_paths_follow_iam_patterns() {
        let mut s = IamState::default();
        let err = s.create_user("bad name", "/", "A".into(), 0).unwrap_err();
        assert_eq!(err.code(), "ValidationError");
        assert!(err.to_string().contains("at 'userName'"), "{err}");
        let err = s.create_user("ok", "nopath", "A".into(), 0).unwrap_err();
        assert!(err.to_string().contains("at 'path'"), "{err}");
        let long = "a".repeat(65);
        assert!(s.create_user(&long, "/", "A".into(), 0).is_err());
        assert!(
            s.create_user("a.b@c_d-e+f=g,h", "/div/", "A".into(), 0)
                .is_ok()
        );
    }

    #[test]
    fn a_user_is_deleted_only_once_empty() {
        let mut s = state_with_bob();
        s.create_access_key("bob", "AKIA1".into(), Secret::new("x"), 12)
            .unwrap();
        s.put_user_policy("bob", "p", DOC).unwrap();
        s.attach_user_policy(ACCOUNT, "bob", "arn:aws:iam::aws:policy/AmazonS3FullAccess")
            .unwrap();
        let conflict = |s: &mut IamState| s.delete_user("bob").unwrap_err().to_string();
        assert_eq!(
            conflict(&mut s),
            "Cannot delete entity, must delete access keys first."
        );
        s.delete_access_key("bob", "AKIA1").unwrap();
        assert_eq!(
            conflict(&mut s),
            "Cannot delete entity, must delete policies first."
        );
        s.delete_user_policy("bob", "p").unwrap();
        assert_eq!(
            conflict(&mut s),
            "Cannot delete entity, must detach all policies first."
        );
        s.detach_user_policy("bob", "arn:aws:iam::aws:policy/AmazonS3FullAccess")
            .unwrap();
        s.delete_user("bob").unwrap();
        assert!(s.users.is_empty());
    }

    #[test]
    fn access_keys_have_a_quota_and_unique_ids() {
        let mut s = state_with_bob();
        s.create_access_key("bob", "AKIA1".into(), Secret::new("x"), 0)
            .unwrap();
        let dup = s
            .create_access_key("bob", "AKIA1".into(), Secret::new("y"), 0)
            .unwrap_err();
        assert_eq!(dup.code(), "EntityAlreadyExists");
        s.create_access_key("bob", "AKIA2".into(), Secret::new("y"), 0)
            .unwrap();
        let err = s
            .create_access_key("bob", "AKIA3".into(), Secret::new("z"), 0)
            .unwrap_err();
        assert_eq!(err.code(), "LimitExceeded");
        assert_eq!(
            err.to_string(),
            "Cannot exceed quota for AccessKeysPerUser: 2"
        );
        s.update_access_key("bob", "AKIA2", false).unwrap();
        assert!(!s.access_key("AKIA2").unwrap().1.active);
        assert_eq!(
            s.delete_access_key("bob", "AKIA9").unwrap_err().to_string(),
            "The Access Key with id AKIA9 cannot be found."
        );
    }

    #[test]
    fn managed_policies_attach_by_arn_and_block_their_deletion() {
        let mut s = state_with_bob();
        let arn = s
            .create_policy("rw", "/", "", DOC, "ANPA1".into(), 5)
            .unwrap()
            .arn(ACCOUNT);
        assert_eq!(arn, "arn:aws:iam::111122223333:policy/rw");
        s.attach_user_policy(ACCOUNT, "bob", &arn).unwrap();
        s.attach_user_policy(ACCOUNT, "bob", &arn).unwrap();
        assert_eq!(s.attachment_count(&arn), 1);
        assert_eq!(
            s.delete_policy(ACCOUNT, &arn).unwrap_err().code(),
            "DeleteConflict"
        );
        let missing = "arn:aws:iam::111122223333:policy/nope";
        assert_eq!(
            s.attach_user_policy(ACCOUNT, "bob", missing)
                .unwrap_err()
                .code(),
            "NoSuchEntity"
        );
        let policies = s.user_policies(ACCOUNT, s.user("bob").unwrap()).unwrap();
        assert_eq!(policies[0].name, "rw");
        assert_eq!(policies[0].kind, UserPolicyKind::CustomerManaged);
        s.detach_user_policy("bob", &arn).unwrap();
        assert_eq!(
            s.detach_user_policy("bob", &arn).unwrap_err().to_string(),
            format!("Policy {arn} was not found.")
        );
        s.delete_policy(ACCOUNT, &arn).unwrap();
        assert!(s.policies.is_empty());
    }

    #[test]
    fn documents_are_checked_before_they_are_stored() {
        let mut s = state_with_bob();
        let err = s
            .put_user_policy("bob", "p", r#"{"Statement":{"Effect":"Allow"}}"#)
            .unwrap_err();
        assert_eq!(err.code(), "MalformedPolicyDocument");
        assert!(s.user("bob").unwrap().inline_policies.is_empty());
    }

    #[test]
    fn new_default_versions_keep_at_most_five() {
        let mut s = IamState::default();
        s.create_policy("p", "/", "", DOC, "ANPA1".into(), 0)
            .unwrap();
        let arn = "arn:aws:iam::111122223333:policy/p";
        for t in 1..=6 {
            s.set_default_document(ACCOUNT, arn, DOC, t).unwrap();
        }
        let p = s.policy(ACCOUNT, arn).unwrap();
        assert_eq!(p.versions.len(), MAX_POLICY_VERSIONS);
        assert_eq!(p.default_version, 7);
        assert_eq!(p.versions[0].number, 3);
        assert_eq!(p.updated, 6);
    }

    #[test]
    fn state_round_trips_through_json_with_its_secrets() {
        let mut s = state_with_bob();
        s.create_access_key("bob", "AKIA1".into(), Secret::new("s3cr3t"), 0)
            .unwrap();
        let text = serde_json::to_string(&s).unwrap();
        let back: IamState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.access_key("AKIA1").unwrap().1.secret.expose(),
            "s3cr3t"
        );
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
