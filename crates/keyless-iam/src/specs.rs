//! The configuration file's users, customer managed policies, roles and OpenID Connect
//! providers, applied to the IAM state at every start: created when missing, set to what the
//! file declares when present, every mistake refused with the field that holds it
//! (`roles[2].assume_role_policy: Has prohibited field Resource`).

use std::collections::{HashMap, HashSet};

use keyless_types::Secret;

use crate::oidc_providers::{
    NewOidcProvider, check_client_ids, check_thumbprints, parse_provider_url,
};
use crate::roles::{NewRole, check_description, check_max_session_duration, check_trust_policy};
use crate::rules::check_document;
use crate::state::IamState;
use crate::{IamError, ids};

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

/// A role to create from the configuration file.
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    /// 1 to 64 of `A-Za-z0-9+=,.@_-`.
    pub name: String,
    /// `/` or `/division/` style path.
    pub path: Option<String>,
    /// The trust policy.
    pub assume_role_policy: String,
    /// Free text.
    pub description: Option<String>,
    /// 3600 to 43200 seconds (3600 for a new role when absent).
    pub max_session_duration: Option<u32>,
    /// Inline policies: `(name, document)`.
    pub inline_policies: Vec<(String, String)>,
    /// ARNs of attached managed policies (AWS managed or declared in the same directory).
    pub policy_arns: Vec<String>,
}

/// An OpenID Connect provider to create from the configuration file.
#[derive(Debug, Clone, Default)]
pub struct OidcProviderSpec {
    /// The issuer URL: `https://...`, or `http://` for a loopback host.
    pub url: String,
    /// The audiences its tokens may name.
    pub client_ids: Vec<String>,
    /// SHA-1 fingerprints of the issuer's certificates (optional).
    pub thumbprints: Vec<String>,
}

/// A customer managed policy to create from the configuration file.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The policy's name; its ARN is `arn:aws:iam::ACCOUNT:policy/NAME`.
    pub name: String,
    /// The document.
    pub document: String,
}

fn valid_name(name: &str) -> bool {
    crate::rules::check_name("name", name, 64).is_ok()
}

fn valid_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Applies the configuration file's policies, users, roles and OpenID Connect providers to
/// `state`, checking every name, key, URL and document and naming the field at fault: missing
/// ones are created, declared documents become the default version (or the trust policy),
/// declared inline policies, attachments, keys and client IDs are set. Nothing else in the
/// state is touched.
pub fn apply_specs(
    state: &mut IamState,
    account_id: &str,
    policies: &[PolicySpec],
    users: &[UserSpec],
    roles: &[RoleSpec],
    providers: &[OidcProviderSpec],
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
        if crate::rules::check_path("path", path).is_err() {
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
    apply_roles(state, account_id, roles, now)?;
    apply_providers(state, account_id, providers, now)
}

/// Applies the declared roles: created when missing, trust policy, description, longest
/// session, inline policies and attachments set.
fn apply_roles(
    state: &mut IamState,
    account_id: &str,
    roles: &[RoleSpec],
    now: i64,
) -> Result<(), IamError> {
    let mut names = HashSet::new();
    for (i, r) in roles.iter().enumerate() {
        let at_role = format!("roles[{i}]");
        if !valid_name(&r.name) {
            return Err(IamError::InvalidInput(format!(
                "{at_role}.name: `{}` is not a valid role name",
                r.name
            )));
        }
        if !names.insert(r.name.to_lowercase()) {
            return Err(IamError::InvalidInput(format!(
                "{at_role}.name: `{}` is declared twice",
                r.name
            )));
        }
        let path = r.path.as_deref().unwrap_or("/");
        if crate::rules::check_path("path", path).is_err() {
            return Err(IamError::InvalidInput(format!(
                "{at_role}.path: `{path}` must begin and end with `/`"
            )));
        }
        check_trust_policy(&r.assume_role_policy)
            .map_err(|e| at(e, &format!("{at_role}.assume_role_policy")))?;
        if let Some(seconds) = r.max_session_duration {
            check_max_session_duration(seconds).map_err(|_| {
                IamError::InvalidInput(format!(
                    "{at_role}.max_session_duration: {seconds} is not 3600 to 43200 seconds"
                ))
            })?;
        }
        if let Some(description) = &r.description {
            check_description(description)
                .map_err(|e| IamError::InvalidInput(format!("{at_role}.description: {e}")))?;
        }
        for (j, (name, document)) in r.inline_policies.iter().enumerate() {
            check_document(document)
                .map_err(|e| at(e, &format!("{at_role}.policies[{j}] (`{name}`)")))?;
        }
        match state.role(&r.name) {
            Ok(_) => {
                if let Some(role) = state.roles.get_mut(&r.name.to_lowercase()) {
                    role.path = path.to_owned();
                    role.assume_role_policy = r.assume_role_policy.clone();
                }
                state.update_role(&r.name, r.description.as_deref(), r.max_session_duration)?;
            }
            Err(_) => {
                let new = NewRole {
                    name: &r.name,
                    path,
                    assume_role_policy: &r.assume_role_policy,
                    description: r.description.as_deref(),
                    max_session_duration: r.max_session_duration,
                    ..Default::default()
                };
                state.create_role(account_id, new, ids::role_id()?, now)?;
            }
        }
        for (name, document) in &r.inline_policies {
            state.put_role_policy(&r.name, name, document)?;
        }
        for arn in &r.policy_arns {
            state.attach_role_policy(account_id, &r.name, arn)?;
        }
    }
    Ok(())
}

/// Applies the declared OpenID Connect providers: created when missing, URL, client IDs and
/// thumbprints set.
fn apply_providers(
    state: &mut IamState,
    account_id: &str,
    providers: &[OidcProviderSpec],
    now: i64,
) -> Result<(), IamError> {
    let mut keys = HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        let at_provider = format!("oidc_providers[{i}]");
        let url = parse_provider_url(&p.url)
            .map_err(|e| IamError::InvalidInput(format!("{at_provider}.url: `{}`: {e}", p.url)))?;
        let key = url.key();
        if !keys.insert(key.to_owned()) {
            return Err(IamError::InvalidInput(format!(
                "{at_provider}.url: `{}` is declared twice",
                p.url
            )));
        }
        check_client_ids(&p.client_ids)
            .map_err(|e| IamError::InvalidInput(format!("{at_provider}.client_ids: {e}")))?;
        check_thumbprints(&p.thumbprints)
            .map_err(|e| IamError::InvalidInput(format!("{at_provider}.thumbprints: {e}")))?;
        match state.oidc_providers.get_mut(key) {
            Some(existing) => {
                existing.url = p.url.clone();
                let arn = existing.arn(account_id);
                state.set_oidc_provider_lists(account_id, &arn, &p.client_ids, &p.thumbprints)?;
            }
            None => {
                let new = NewOidcProvider {
                    url: p.url.clone(),
                    client_ids: p.client_ids.clone(),
                    thumbprints: p.thumbprints.clone(),
                    tags: Vec::new(),
                };
                state.create_oidc_provider(new, now)?;
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
        IamError::MalformedTrustPolicy(message) => {
            IamError::MalformedTrustPolicy(format!("{which}: {message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Directory;

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
        apply_specs(&mut state, "111122223333", &[extra()], &users, &[], &[], 0).unwrap();
        state
            .update_access_key("gitlab-registry", "AKIAREGISTRY00000001", false)
            .unwrap();
        apply_specs(&mut state, "111122223333", &[extra()], &users, &[], &[], 1).unwrap();
        let dir = Directory::compile(&state, "111122223333").unwrap();
        assert!(dir.credential("AKIAREGISTRY00000001").is_none());
    }

    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com/gitlab"},"Action":"sts:AssumeRoleWithWebIdentity"}}"#;

    fn role_spec(name: &str) -> RoleSpec {
        RoleSpec {
            name: name.into(),
            path: Some("/gitlab/".into()),
            assume_role_policy: TRUST.into(),
            inline_policies: vec![("rw".into(), RW.into())],
            policy_arns: vec!["arn:aws:iam::111122223333:policy/extra".into()],
            max_session_duration: Some(7200),
            ..Default::default()
        }
    }

    fn provider() -> OidcProviderSpec {
        OidcProviderSpec {
            url: "https://oidc.example.com/gitlab/".into(),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: Vec::new(),
        }
    }

    #[test]
    fn compiles_roles_and_providers_from_the_configuration() {
        let mut state = IamState::default();
        let account = "111122223333";
        apply_specs(
            &mut state,
            account,
            &[extra()],
            &[],
            &[role_spec("registry")],
            &[provider()],
            0,
        )
        .unwrap();
        let dir = Directory::compile(&state, account).unwrap();
        let role = dir.role("REGISTRY").unwrap();
        assert_eq!(role.arn, "arn:aws:iam::111122223333:role/gitlab/registry");
        assert!(role.role_id.starts_with("AROA") && role.role_id.len() == 21);
        assert_eq!(role.max_session_duration, 7200);
        let names: Vec<&str> = role.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["rw", "extra"]);
        assert!(role.boundary.is_none());
        assert_eq!(role.trust.statements().len(), 1);
        assert!(Arc::ptr_eq(dir.role_by_arn(&role.arn).unwrap(), role));
        assert!(
            dir.role_by_arn("arn:aws:iam::111122223333:role/registry")
                .is_none()
        );
        let issuer = |url: &str| keyless_types::ProviderUrl::parse(url).unwrap();
        let p = dir
            .oidc_provider(&issuer("https://oidc.example.com/gitlab"))
            .unwrap();
        assert_eq!(p.url.key(), "oidc.example.com/gitlab");
        assert_eq!(
            p.arn,
            "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/gitlab"
        );
        assert_eq!(p.client_ids, ["sts.amazonaws.com"]);
        assert!(
            dir.oidc_provider(&issuer("https://oidc.example.com/gitlab/"))
                .is_some()
        );
        assert!(
            dir.oidc_provider(&issuer("HTTPS://OIDC.example.com/gitlab"))
                .is_some()
        );
        // `http://` names no provider of an `https://` URL: it is not even a provider URL
        // off loopback (see the API test for loopback).
        assert!(keyless_types::ProviderUrl::parse("http://oidc.example.com/gitlab").is_err());
        assert!(
            dir.oidc_provider(&issuer("https://oidc.example.com/GitLab"))
                .is_none()
        );
        assert!(
            dir.oidc_provider(&issuer("https://oidc.example.com"))
                .is_none()
        );

        // A restart puts back what the file declares; what it does not mention stays.
        let id = role.role_id.clone();
        let open = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}"#;
        state.update_assume_role_policy("registry", open).unwrap();
        state.put_role_policy("registry", "api-added", RW).unwrap();
        let arn = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/gitlab";
        state.add_client_id(account, arn, "extra-audience").unwrap();
        apply_specs(
            &mut state,
            account,
            &[extra()],
            &[],
            &[role_spec("registry")],
            &[provider()],
            1,
        )
        .unwrap();
        let r = state.role("registry").unwrap();
        assert_eq!(
            (r.assume_role_policy.as_str(), r.id.as_str()),
            (TRUST, id.as_str())
        );
        assert!(r.inline_policies.contains_key("api-added"));
        assert_eq!(
            state.oidc_provider(account, arn).unwrap().client_ids,
            ["sts.amazonaws.com"]
        );
    }

    #[test]
    fn refuses_bad_roles_and_providers_naming_the_field() {
        let err = |roles: &[RoleSpec], providers: &[OidcProviderSpec]| {
            let mut state = IamState::default();
            apply_specs(
                &mut state,
                "111122223333",
                &[extra()],
                &[],
                roles,
                providers,
                0,
            )
            .unwrap_err()
            .to_string()
        };
        let mut with_resource = role_spec("r");
        with_resource.assume_role_policy = RW.into();
        assert_eq!(
            err(&[with_resource], &[]),
            "roles[0].assume_role_policy: Has prohibited field Resource"
        );
        assert_eq!(
            err(&[role_spec("r"), role_spec("R")], &[]),
            "roles[1].name: `R` is declared twice"
        );
        let mut long = role_spec("r");
        long.max_session_duration = Some(60);
        assert_eq!(
            err(&[long], &[]),
            "roles[0].max_session_duration: 60 is not 3600 to 43200 seconds"
        );
        let mut http = provider();
        http.url = "http://oidc.example.com".into();
        assert_eq!(
            err(&[], &[http]),
            "oidc_providers[0].url: `http://oidc.example.com`: Invalid Open ID Connect Provider URL. The URL must begin with https://."
        );
        let mut twice = provider();
        twice.url = "https://oidc.example.com/gitlab".into();
        assert_eq!(
            err(&[], &[provider(), twice]),
            "oidc_providers[1].url: `https://oidc.example.com/gitlab` is declared twice"
        );
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
