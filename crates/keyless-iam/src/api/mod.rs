//! The IAM query API (`aws iam ...`) for users, policies, roles and OpenID Connect providers:
//! parameters as the query protocol sends them (`Action=CreateUser&UserName=bob`, lists as
//! `Name.member.N`), each action authorized by the caller's identity policies, then run
//! against the [`IamStore`] and answered in IAM's XML.
//! The transport (HTTP, SigV4) is the server's; this module takes a verified caller.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_Operations.html>

mod error;
mod oidc_providers;
mod policies;
mod roles;
mod users;
pub mod xml;

pub use error::ApiError;

use std::net::IpAddr;

use crate::{Caller, IamError, IamStore};

/// A request's parameters, decoded, in the order received.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Wraps decoded name and value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Decodes `application/x-www-form-urlencoded` text (a body or a query string).
    pub fn parse_form(text: &str) -> Self {
        let decode = |s: &str| keyless_types::encoding::form_decode(s).into_owned();
        Self(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// Adds the pairs of `other` after these.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` or any of its members (`name.member.1`, `name.Key`) was given.
    pub fn mentions(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// The value of a required parameter.
    pub fn required(&self, name: &str) -> Result<&str, IamError> {
        self.get(name).ok_or_else(|| {
            IamError::Validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                camel(name)
            ))
        })
    }

    /// The members of list `name` (`name.member.1`, `name.member.2`, ...), in index order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u32, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The structures of list `name`: for each index, its fields (`name.member.N.Field`).
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.member.");
        let mut items: std::collections::BTreeMap<u32, Vec<(String, String)>> = Default::default();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            if let Ok(n) = n.parse() {
                items
                    .entry(n)
                    .or_default()
                    .push((field.to_owned(), v.clone()));
            }
        }
        items.into_values().map(Params).collect()
    }

    /// A boolean parameter, `false` when absent.
    pub fn flag(&self, name: &str) -> Result<bool, IamError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(IamError::Validation(format!(
                "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must be a boolean",
                camel(name)
            ))),
        }
    }

    /// `MaxItems` (1 to 1000, 100 when absent) and `Marker`.
    pub fn page(&self) -> Result<Page<'_>, IamError> {
        let max_items = match self.get("MaxItems") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    IamError::Validation(format!(
                        "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
                    ))
                })?,
        };
        Ok(Page {
            marker: self.get("Marker"),
            max_items,
        })
    }
}

/// `UserName` as IAM's validation messages name it: `userName`.
fn camel(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Where a listing starts and how long it may be.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The key of the first item to return, from the previous page's `Marker`.
    pub marker: Option<&'a str>,
    /// How many items at most.
    pub max_items: usize,
}

impl Page<'_> {
    /// The page of `items`, in the order of `key`, and the marker of the next page, if any.
    pub fn take<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        items.sort_by_cached_key(&key);
        let mut rest: Vec<T> = match self.marker {
            Some(marker) => items
                .into_iter()
                .skip_while(|i| key(i).as_str() < marker)
                .collect(),
            None => items,
        };
        let next = rest.get(self.max_items).map(&key);
        rest.truncate(self.max_items);
        (rest, next)
    }
}

/// What the server knows of a request besides its parameters.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// The `Action` parameter.
    pub action: &'a str,
    /// Every parameter.
    pub params: &'a Params,
    /// Who signed it.
    pub caller: &'a Caller,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Whether it came over TLS.
    pub secure_transport: bool,
    /// Seconds since the epoch.
    pub now: i64,
}

/// What the handler answers: an HTTP status and an XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The XML body.
    pub body: String,
}

/// Runs an IAM action for a verified caller.
pub fn handle(store: &dyn IamStore, req: &ApiRequest<'_>, request_id: &str) -> ApiResponse {
    let cx = Cx { store, req };
    match dispatch(&cx) {
        Ok(result) => ApiResponse {
            status: 200,
            body: xml::response(
                xml::IAM_NAMESPACE,
                req.action,
                result.as_deref(),
                request_id,
            ),
        },
        Err(e) => e.response(xml::IAM_NAMESPACE, request_id),
    }
}

/// The result of an action: the content of `<ActionResult>`, or nothing.
type Outcome = Result<Option<String>, ApiError>;

fn dispatch(cx: &Cx<'_>) -> Outcome {
    match cx.req.action {
        "CreateUser" => users::create_user(cx),
        "GetUser" => users::get_user(cx),
        "ListUsers" => users::list_users(cx),
        "DeleteUser" => users::delete_user(cx),
        "CreateAccessKey" => users::create_access_key(cx),
        "ListAccessKeys" => users::list_access_keys(cx),
        "UpdateAccessKey" => users::update_access_key(cx),
        "DeleteAccessKey" => users::delete_access_key(cx),
        "PutUserPolicy" => users::put_user_policy(cx),
        "GetUserPolicy" => users::get_user_policy(cx),
        "ListUserPolicies" => users::list_user_policies(cx),
        "DeleteUserPolicy" => users::delete_user_policy(cx),
        "AttachUserPolicy" => users::attach_user_policy(cx),
        "DetachUserPolicy" => users::detach_user_policy(cx),
        "ListAttachedUserPolicies" => users::list_attached_user_policies(cx),
        "CreateRole" => roles::create_role(cx),
        "GetRole" => roles::get_role(cx),
        "ListRoles" => roles::list_roles(cx),
        "DeleteRole" => roles::delete_role(cx),
        "UpdateRole" => roles::update_role(cx),
        "UpdateAssumeRolePolicy" => roles::update_assume_role_policy(cx),
        "PutRolePolicy" => roles::put_role_policy(cx),
        "GetRolePolicy" => roles::get_role_policy(cx),
        "ListRolePolicies" => roles::list_role_policies(cx),
        "DeleteRolePolicy" => roles::delete_role_policy(cx),
        "AttachRolePolicy" => roles::attach_role_policy(cx),
        "DetachRolePolicy" => roles::detach_role_policy(cx),
        "ListAttachedRolePolicies" => roles::list_attached_role_policies(cx),
        "CreateOpenIDConnectProvider" => oidc_providers::create_open_id_connect_provider(cx),
        "GetOpenIDConnectProvider" => oidc_providers::get_open_id_connect_provider(cx),
        "ListOpenIDConnectProviders" => oidc_providers::list_open_id_connect_providers(cx),
        "DeleteOpenIDConnectProvider" => oidc_providers::delete_open_id_connect_provider(cx),
        "AddClientIDToOpenIDConnectProvider" => oidc_providers::add_client_id(cx),
        "RemoveClientIDFromOpenIDConnectProvider" => oidc_providers::remove_client_id(cx),
        "CreatePolicy" => policies::create_policy(cx),
        "GetPolicy" => policies::get_policy(cx),
        "GetPolicyVersion" => policies::get_policy_version(cx),
        "ListPolicies" => policies::list_policies(cx),
        "DeletePolicy" => policies::delete_policy(cx),
        "SimulateCustomPolicy" => policies::simulate_custom_policy(cx),
        "SimulatePrincipalPolicy" => policies::simulate_principal_policy(cx),
        other => Err(ApiError::InvalidAction(other.to_owned())),
    }
}

/// One request being handled.
struct Cx<'a> {
    store: &'a dyn IamStore,
    req: &'a ApiRequest<'a>,
}

impl Cx<'_> {
    fn account(&self) -> &str {
        self.store.account_id()
    }

    fn params(&self) -> &Params {
        self.req.params
    }

    /// The ARN of user `name`, by its path if it exists.
    fn user_arn(&self, name: &str) -> String {
        match self.store.snapshot().state.user(name) {
            Ok(user) => user.arn(self.account()),
            Err(_) => format!("arn:aws:iam::{}:user/{name}", self.account()),
        }
    }

    /// `UserName`, or the caller's own name when absent (for an IAM user).
    fn user_name_or_caller(&self) -> Result<String, ApiError> {
        match (self.params().get("UserName"), self.req.caller) {
            (Some(name), _) => Ok(name.to_owned()),
            (None, Caller::User(identity)) => Ok(identity.name.clone()),
            (None, Caller::Root | Caller::Session(_)) => Err(ApiError::Iam(IamError::Validation(
                "Must specify userName when calling with non-User credentials".into(),
            ))),
        }
    }

    /// Decides `action` on `resource` for the caller: the root user may do anything in its
    /// account; an IAM user what its identity policies allow.
    fn authorize(&self, action: &str, resource: &str) -> Result<(), ApiError> {
        self.authorize_with(action, resource, &[])
    }

    /// [`Cx::authorize`] with the action's own condition keys (`iam:PolicyARN`, ...).
    fn authorize_with(
        &self,
        action: &str,
        resource: &str,
        keys: &[(&'static str, &str)],
    ) -> Result<(), ApiError> {
        let caller = self.req.caller;
        if let Caller::Session(session) = caller
            && !matches!(session.kind, crate::SessionKind::Role(_))
        {
            // As IAM does for GetSessionToken credentials without MFA.
            return Err(ApiError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} with session credentials",
                session.arn
            )));
        }
        let mut ctx =
            crate::request_context(self.req.source_ip, self.req.secure_transport, self.req.now);
        for (key, value) in keys {
            ctx.insert(*key, (*value).to_owned());
        }
        let verdict = caller.authorize(self.account(), action, resource, &mut ctx, None);
        if verdict.is_allowed() {
            Ok(())
        } else {
            Err(ApiError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource}",
                caller.arn(self.account())
            )))
        }
    }

    /// Applies a change to the state, durably.
    fn update(
        &self,
        change: &mut dyn FnMut(&mut crate::IamState) -> Result<(), IamError>,
    ) -> Result<(), ApiError> {
        self.store.update(change).map(drop).map_err(ApiError::Iam)
    }
}

#[cfg(test)]
mod tests;
