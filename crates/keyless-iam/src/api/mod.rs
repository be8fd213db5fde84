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

pub use error::ApiError;

use std::cell::Cell;
use std::net::IpAddr;

use keyless_types::audit;
use keyless_types::query::{self, Params};

use crate::{Caller, IamError, IamStore};

/// IAM's XML namespace.
pub const IAM_NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

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

/// What the handler answers: an HTTP status and an XML body, and what the audit trail keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The XML body.
    pub body: String,
    /// For the request's log and audit record.
    pub outcome: audit::Outcome,
}

/// Runs an IAM action for a verified caller.
pub fn handle(store: &dyn IamStore, req: &ApiRequest<'_>, request_id: &str) -> ApiResponse {
    let cx = Cx {
        store,
        req,
        decisions: Cell::default(),
    };
    let mut response = match dispatch(&cx) {
        Ok(result) => ApiResponse {
            status: 200,
            body: query::response(IAM_NAMESPACE, req.action, result.as_deref(), request_id),
            outcome: audit::Outcome::default(),
        },
        Err(e) => e.response(IAM_NAMESPACE, request_id),
    };
    response.outcome.decisions = cx.decisions.get();
    response
}

/// The result of an action: the content of `<ActionResult>`, or nothing.
type Outcome = Result<Option<String>, ApiError>;

/// Every action this API implements, by its name in `Action=`.
const ACTIONS: &[(&str, Handler)] = &[
    ("CreateUser", users::create_user),
    ("GetUser", users::get_user),
    ("ListUsers", users::list_users),
    ("DeleteUser", users::delete_user),
    ("CreateAccessKey", users::create_access_key),
    ("ListAccessKeys", users::list_access_keys),
    ("UpdateAccessKey", users::update_access_key),
    ("DeleteAccessKey", users::delete_access_key),
    ("PutUserPolicy", users::put_user_policy),
    ("GetUserPolicy", users::get_user_policy),
    ("ListUserPolicies", users::list_user_policies),
    ("DeleteUserPolicy", users::delete_user_policy),
    ("AttachUserPolicy", users::attach_user_policy),
    ("DetachUserPolicy", users::detach_user_policy),
    (
        "ListAttachedUserPolicies",
        users::list_attached_user_policies,
    ),
    ("CreateRole", roles::create_role),
    ("GetRole", roles::get_role),
    ("ListRoles", roles::list_roles),
    ("DeleteRole", roles::delete_role),
    ("UpdateRole", roles::update_role),
    ("UpdateAssumeRolePolicy", roles::update_assume_role_policy),
    ("PutRolePolicy", roles::put_role_policy),
    ("GetRolePolicy", roles::get_role_policy),
    ("ListRolePolicies", roles::list_role_policies),
    ("DeleteRolePolicy", roles::delete_role_policy),
    ("AttachRolePolicy", roles::attach_role_policy),
    ("DetachRolePolicy", roles::detach_role_policy),
    (
        "ListAttachedRolePolicies",
        roles::list_attached_role_policies,
    ),
    (
        "CreateOpenIDConnectProvider",
        oidc_providers::create_open_id_connect_provider,
    ),
    (
        "GetOpenIDConnectProvider",
        oidc_providers::get_open_id_connect_provider,
    ),
    (
        "ListOpenIDConnectProviders",
        oidc_providers::list_open_id_connect_providers,
    ),
    (
        "DeleteOpenIDConnectProvider",
        oidc_providers::delete_open_id_connect_provider,
    ),
    (
        "AddClientIDToOpenIDConnectProvider",
        oidc_providers::add_client_id,
    ),
    (
        "RemoveClientIDFromOpenIDConnectProvider",
        oidc_providers::remove_client_id,
    ),
    ("CreatePolicy", policies::create_policy),
    ("GetPolicy", policies::get_policy),
    ("GetPolicyVersion", policies::get_policy_version),
    ("ListPolicies", policies::list_policies),
    ("DeletePolicy", policies::delete_policy),
    ("SimulateCustomPolicy", policies::simulate_custom_policy),
    (
        "SimulatePrincipalPolicy",
        policies::simulate_principal_policy,
    ),
];

type Handler = fn(&Cx<'_>) -> Outcome;

/// The name of an action this API implements (a `'static` name, for labels), or `None`.
pub fn action_name(action: &str) -> Option<&'static str> {
    ACTIONS
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(name, _)| *name)
}

fn dispatch(cx: &Cx<'_>) -> Outcome {
    match ACTIONS.iter().find(|(name, _)| *name == cx.req.action) {
        Some((_, handler)) => handler(cx),
        None => Err(ApiError::InvalidAction(cx.req.action.to_owned())),
    }
}

/// One request being handled.
struct Cx<'a> {
    store: &'a dyn IamStore,
    req: &'a ApiRequest<'a>,
    /// The policy decisions taken so far.
    decisions: Cell<audit::Decisions>,
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
            return Err(ApiError::AccessDenied {
                message: format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} with session credentials",
                    session.arn
                ),
                why: Some("implicitDeny: IAM takes no session credentials but a role's".into()),
            });
        }
        let mut ctx =
            crate::request_context(self.req.source_ip, self.req.secure_transport, self.req.now);
        for (key, value) in keys {
            ctx.insert(*key, (*value).to_owned());
        }
        let decided = caller.authorize(self.account(), action, resource, &mut ctx, None);
        // The root user's actions are not the policy engine's decisions: not counted.
        if !caller.is_root() {
            let mut decisions = self.decisions.get();
            decided.verdict.tally(&mut decisions);
            self.decisions.set(decisions);
        }
        if decided.verdict.is_allowed() {
            return Ok(());
        }
        let mut message = format!(
            "User: {} is not authorized to perform: {action} on resource: {resource}",
            caller.arn(self.account())
        );
        if let Some(by) = decided.denied_by {
            message.push(' ');
            message.push_str(&by.phrase(action));
        }
        Err(ApiError::AccessDenied {
            message,
            why: Some(decided.text),
        })
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
