//! `Directory`: the compiled, read-only view of IAM state that every request consults (access
//! key to secret and identity, with the identity's policies compiled; roles with their trust
//! and permission policies; OpenID Connect providers by issuer).
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html>

use std::collections::HashMap;
use std::sync::Arc;

use keyless_policy::{Policy, Principal};
use keyless_types::{ProviderUrl, Secret};

use crate::IamError;
use crate::roles::check_trust_policy;
use crate::specs::{PolicySpec, UserSpec, apply_specs};
use crate::state::{IamState, UserPolicy};

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

/// A role as `AssumeRole*` and its sessions see it: who may assume it, and what its sessions
/// may do.
#[derive(Debug)]
pub struct RoleIdentity {
    /// The role's name.
    pub name: String,
    /// `AROA...`.
    pub role_id: String,
    /// `arn:aws:iam::ACCOUNT:role/PATH/NAME`.
    pub arn: String,
    /// `/` or `/division/`.
    pub path: String,
    /// The account.
    pub account_id: String,
    /// The compiled trust policy.
    pub trust: Arc<Policy>,
    /// The compiled identity policies: inline ones, then attached ones.
    pub policies: Vec<UserPolicy>,
    /// The compiled permissions boundary, if the role has one.
    pub boundary: Option<UserPolicy>,
    /// The longest session, in seconds.
    pub max_session_duration: u32,
    /// The role's tags (`aws:PrincipalTag/KEY` in its sessions).
    pub tags: Vec<(String, String)>,
}

/// An OpenID Connect provider as `AssumeRoleWithWebIdentity` sees it.
#[derive(Debug)]
pub struct ProviderIdentity {
    /// `arn:aws:iam::ACCOUNT:oidc-provider/KEY`: the `Federated` principal trust policies name.
    pub arn: String,
    /// The issuer URL as created (the `iss` its tokens carry); its [`ProviderUrl::key`] is
    /// the prefix of its condition keys (`KEY:sub`, `KEY:aud`).
    pub url: ProviderUrl,
    /// The audiences its tokens may name.
    pub client_ids: Vec<String>,
}

/// An access key and the identity it signs for.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The secret access key.
    pub secret: Secret,
    /// Who signs with it.
    pub identity: Arc<Identity>,
}

/// The active access keys of an account's users, with their compiled identities, and the
/// account's roles and OpenID Connect providers.
#[derive(Debug, Default)]
pub struct Directory {
    keys: HashMap<String, Credential>,
    /// Users by lowercase name.
    users: HashMap<String, Arc<Identity>>,
    /// Roles by lowercase name.
    roles: HashMap<String, Arc<RoleIdentity>>,
    /// Roles by ARN.
    role_arns: HashMap<String, Arc<RoleIdentity>>,
    /// Providers by key.
    providers: HashMap<String, Arc<ProviderIdentity>>,
}

impl Directory {
    /// The active credential with this access key id.
    pub fn credential(&self, access_key_id: &str) -> Option<&Credential> {
        self.keys.get(access_key_id)
    }

    /// A user by name, without regard to case as in IAM.
    pub fn user(&self, name: &str) -> Option<&Arc<Identity>> {
        self.users.get(&name.to_lowercase())
    }

    /// A role by name, without regard to case as in IAM.
    pub fn role(&self, name: &str) -> Option<&Arc<RoleIdentity>> {
        self.roles.get(&name.to_lowercase())
    }

    /// A role by its ARN, path included (`arn:aws:iam::ACCOUNT:role/PATH/NAME`).
    pub fn role_by_arn(&self, arn: &str) -> Option<&Arc<RoleIdentity>> {
        self.role_arns.get(arn)
    }

    /// The provider of the issuer `issuer` (a token's `iss`): the one with the same key (the
    /// same URL but for a trailing `/` and the case of scheme and host), and the same scheme.
    pub fn oidc_provider(&self, issuer: &ProviderUrl) -> Option<&Arc<ProviderIdentity>> {
        self.providers
            .get(issuer.key())
            .filter(|p| p.url.is_https() == issuer.is_https())
    }

    /// Compiles the state of account `account_id`: every active key to its user's identity,
    /// every role and provider.
    pub fn compile(state: &IamState, account_id: &str) -> Result<Self, IamError> {
        let mut directory = Self::default();
        for role in state.roles.values() {
            let identity = Arc::new(RoleIdentity {
                name: role.name.clone(),
                role_id: role.id.clone(),
                arn: role.arn(account_id),
                path: role.path.clone(),
                account_id: account_id.to_owned(),
                trust: Arc::new(check_trust_policy(&role.assume_role_policy)?),
                policies: state.role_policies(account_id, role)?,
                boundary: state.role_boundary(account_id, role)?,
                max_session_duration: role.max_session_duration,
                tags: role.tags.clone(),
            });
            directory
                .role_arns
                .insert(identity.arn.clone(), Arc::clone(&identity));
            directory.roles.insert(role.name.to_lowercase(), identity);
        }
        for (key, provider) in &state.oidc_providers {
            let Ok(url) = ProviderUrl::parse(&provider.url) else {
                tracing::warn!(url = %provider.url, "an OIDC provider's URL no longer parses; its tokens are refused");
                continue;
            };
            let identity = ProviderIdentity {
                arn: provider.arn(account_id),
                url,
                client_ids: provider.client_ids.clone(),
            };
            directory.providers.insert(key.clone(), Arc::new(identity));
        }
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
            directory.users.insert(user.name.to_lowercase(), identity);
        }
        directory.keys = keys;
        Ok(directory)
    }

    /// Builds the directory of the configuration's users and policies alone.
    pub fn build(
        account_id: &str,
        policies: &[PolicySpec],
        users: &[UserSpec],
    ) -> Result<Self, IamError> {
        let mut state = IamState::default();
        apply_specs(&mut state, account_id, policies, users, &[], &[], 0)?;
        Self::compile(&state, account_id)
    }
}
