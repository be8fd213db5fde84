//! Who signed a request, once the signature checks out: the root user, an IAM user, or a
//! session (of a role, or a user's own). One place decides what a caller may do, so that S3,
//! IAM and STS apply the same evaluation logic: identity policies, then the role's
//! permissions boundary and the session's policies, with the caller's `aws:*` keys.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>

use std::sync::Arc;

use keyless_policy::{Context, Explanation, PolicySet, Principal, Request, Source, authorize};
use keyless_types::audit::{
    SessionAttributes, SessionContext, SessionIssuer, UserIdentity, WebIdFederationData,
};
use keyless_types::time::iso8601;

use crate::session::{SessionClaims, SessionSubject};
use crate::state::UserPolicy;
use crate::{Identity, RoleIdentity};

/// Who signed a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The account's root user: everything in the account.
    Root,
    /// An IAM user, with its identity policies.
    User(Arc<Identity>),
    /// Temporary credentials.
    Session(Arc<Session>),
}

/// A session, resolved against the current IAM state: a role that was deleted, or a user that
/// was, takes its sessions with it.
#[derive(Debug)]
pub struct Session {
    /// The temporary access key id.
    pub access_key_id: String,
    /// What the token says.
    pub claims: SessionClaims,
    /// Whose session it is, as it stands now.
    pub kind: SessionKind,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, or the user's (root's) ARN.
    pub arn: String,
    /// `ROLEID:SESSION`, or the user's id (the account id for root).
    pub user_id: String,
    /// The account.
    pub account_id: String,
    /// The compiled session policies; `None` when the session has none (which limits nothing).
    pub session_policies: Option<Vec<UserPolicy>>,
}

/// Whose session it is.
#[derive(Debug, Clone)]
pub enum SessionKind {
    /// A role's.
    Role(Arc<RoleIdentity>),
    /// An IAM user's own (GetSessionToken).
    User(Arc<Identity>),
    /// The root user's own (GetSessionToken).
    Root,
}

impl Session {
    /// The role session's name, for role sessions.
    pub fn session_name(&self) -> Option<&str> {
        match &self.claims.subject {
            SessionSubject::Role { session_name, .. } => Some(session_name),
            _ => None,
        }
    }
}

/// The condition keys every request has, whoever makes it: `aws:SourceIp`,
/// `aws:SecureTransport`, `aws:CurrentTime`, `aws:EpochTime`. The caller's own are added by
/// [`Caller::authorize`].
pub fn request_context(
    source_ip: Option<std::net::IpAddr>,
    secure_transport: bool,
    now: i64,
) -> Context {
    let mut ctx = Context::with_capacity(16);
    if let Some(ip) = source_ip {
        ctx.insert("aws:SourceIp", ip.to_string());
    }
    ctx.insert("aws:SecureTransport", secure_transport.to_string());
    ctx.insert("aws:CurrentTime", iso8601(now));
    ctx.insert("aws:EpochTime", now.to_string());
    ctx
}

fn sources(policies: &[UserPolicy]) -> Vec<Source<'_>> {
    policies
        .iter()
        .map(|p| Source::new(&p.name, &p.policy))
        .collect()
}

impl Caller {
    /// Whether the caller has the root user's powers (root, or a root session).
    pub fn is_root(&self) -> bool {
        match self {
            Self::Root => true,
            Self::User(_) => false,
            Self::Session(s) => matches!(s.kind, SessionKind::Root),
        }
    }

    /// The caller's ARN: the user's, root's, or the assumed-role session's.
    pub fn arn(&self, account_id: &str) -> String {
        match self {
            Self::Root => format!("arn:aws:iam::{account_id}:root"),
            Self::User(user) => user.arn.clone(),
            Self::Session(session) => session.arn.clone(),
        }
    }

    /// The caller's unique id, as GetCallerIdentity and `aws:userid` give it.
    pub fn user_id(&self, account_id: &str) -> String {
        match self {
            Self::Root => account_id.to_owned(),
            Self::User(user) => user.user_id.clone(),
            Self::Session(session) => session.user_id.clone(),
        }
    }

    /// Who the caller is in CloudTrail's words, signing with `access_key_id`.
    ///
    /// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>
    pub fn user_identity(&self, account_id: &str, access_key_id: Option<&str>) -> UserIdentity {
        let mut identity = UserIdentity {
            principal_id: Some(self.user_id(account_id)),
            arn: Some(self.arn(account_id)),
            account_id: Some(account_id.to_owned()),
            access_key_id: access_key_id.map(str::to_owned),
            ..UserIdentity::default()
        };
        match self {
            Self::Root => identity.kind = "Root".into(),
            Self::User(user) => {
                identity.kind = "IAMUser".into();
                identity.user_name = Some(user.name.clone());
            }
            Self::Session(session) => {
                let issuer = match &session.kind {
                    SessionKind::Role(role) => {
                        identity.kind = "AssumedRole".into();
                        Some(SessionIssuer {
                            kind: "Role".into(),
                            principal_id: role.role_id.clone(),
                            arn: role.arn.clone(),
                            account_id: role.account_id.clone(),
                            user_name: role.name.clone(),
                        })
                    }
                    SessionKind::User(user) => {
                        identity.kind = "IAMUser".into();
                        identity.user_name = Some(user.name.clone());
                        None
                    }
                    SessionKind::Root => {
                        identity.kind = "Root".into();
                        None
                    }
                };
                let claims = &session.claims;
                identity.session_context = Some(SessionContext {
                    session_issuer: issuer,
                    web_id_federation_data: claims.web_identity.as_ref().map(|(provider, _, _)| {
                        WebIdFederationData {
                            federated_provider: provider.clone(),
                            attributes: Default::default(),
                        }
                    }),
                    attributes: SessionAttributes {
                        creation_date: iso8601(claims.issued),
                        mfa_authenticated: "false".into(),
                    },
                    source_identity: claims.source_identity.clone(),
                    session_tags: claims.tags.iter().cloned().collect(),
                });
            }
        }
        identity
    }

    /// The principal that resource-based and trust policies match.
    pub fn principal(&self, account_id: &str) -> Principal {
        match self {
            Self::User(user) => user.principal(),
            Self::Session(session) => match &session.kind {
                SessionKind::Role(role) => Principal::RoleSession {
                    session_arn: session.arn.clone(),
                    role_arn: role.arn.clone(),
                    account: session.account_id.clone(),
                },
                SessionKind::User(user) => user.principal(),
                SessionKind::Root => Principal::User {
                    arn: format!("arn:aws:iam::{account_id}:root"),
                    account: account_id.to_owned(),
                },
            },
            Self::Root => Principal::User {
                arn: format!("arn:aws:iam::{account_id}:root"),
                account: account_id.to_owned(),
            },
        }
    }

    /// The global condition keys that describe the caller.
    ///
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>
    pub fn insert_context(&self, account_id: &str, ctx: &mut Context) {
        ctx.insert("aws:PrincipalAccount", account_id.to_owned());
        ctx.insert("aws:userid", self.user_id(account_id));
        match self {
            Self::Root => {
                ctx.insert("aws:PrincipalArn", self.arn(account_id));
                ctx.insert("aws:PrincipalType", "Account");
            }
            Self::User(user) => {
                ctx.insert("aws:username", user.name.clone());
                ctx.insert("aws:PrincipalArn", user.arn.clone());
                ctx.insert("aws:PrincipalType", "User");
            }
            Self::Session(session) => {
                ctx.insert("aws:TokenIssueTime", iso8601(session.claims.issued));
                match &session.kind {
                    SessionKind::Role(role) => {
                        ctx.insert("aws:PrincipalArn", role.arn.clone());
                        ctx.insert("aws:PrincipalType", "AssumedRole");
                        for (key, value) in &role.tags {
                            if !session.claims.tags.iter().any(|(k, _)| k == key) {
                                ctx.insert(format!("aws:PrincipalTag/{key}"), value.clone());
                            }
                        }
                        for (key, value) in &session.claims.tags {
                            ctx.insert(format!("aws:PrincipalTag/{key}"), value.clone());
                        }
                        if let Some(source) = &session.claims.source_identity {
                            ctx.insert("aws:SourceIdentity", source.clone());
                        }
                        if let Some((provider, _, _)) = &session.claims.web_identity {
                            ctx.insert("aws:FederatedProvider", provider.clone());
                        }
                    }
                    SessionKind::User(user) => {
                        ctx.insert("aws:username", user.name.clone());
                        ctx.insert("aws:PrincipalArn", user.arn.clone());
                        ctx.insert("aws:PrincipalType", "User");
                    }
                    SessionKind::Root => {
                        ctx.insert("aws:PrincipalArn", session.arn.clone());
                        ctx.insert("aws:PrincipalType", "Account");
                    }
                }
            }
        }
    }

    /// Whether any of this caller's policies (identity, boundary, session) tests a condition
    /// key starting with `prefix`.
    pub fn policies_mention(&self, prefix: &str) -> bool {
        let any = |policies: &[UserPolicy]| {
            policies
                .iter()
                .any(|p| p.policy.mentions_key_prefix(prefix))
        };
        match self {
            Self::Root => false,
            Self::User(user) => any(&user.policies),
            Self::Session(s) => {
                s.session_policies.as_deref().is_some_and(any)
                    || match &s.kind {
                        SessionKind::Role(role) => {
                            any(&role.policies)
                                || role
                                    .boundary
                                    .as_ref()
                                    .is_some_and(|b| any(std::slice::from_ref(b)))
                        }
                        SessionKind::User(user) => any(&user.policies),
                        SessionKind::Root => false,
                    }
            }
        }
    }

    /// Decides `action` on `resource` for this caller, with `resource_policy` (a bucket
    /// policy, a role's trust policy) owned by `account_id`. `ctx` must already hold the
    /// request's keys; the caller's own are added here. The decision is logged at debug level
    /// and returned with its explanation, for the audit trail, never for the client.
    pub fn authorize(
        &self,
        account_id: &str,
        action: &str,
        resource: &str,
        ctx: &mut Context,
        resource_policy: Option<Source<'_>>,
    ) -> Explanation {
        if self.is_root() {
            return Explanation::root();
        }
        self.insert_context(account_id, ctx);
        let principal = self.principal(account_id);
        let (identity, boundary, session) = match self {
            Self::Root => return Explanation::root(),
            Self::User(user) => (sources(&user.policies), None, None),
            Self::Session(s) => {
                let session = s.session_policies.as_deref().map(sources);
                match &s.kind {
                    SessionKind::Role(role) => (
                        sources(&role.policies),
                        role.boundary
                            .as_ref()
                            .map(|b| sources(std::slice::from_ref(b))),
                        session,
                    ),
                    SessionKind::User(user) => (sources(&user.policies), None, session),
                    SessionKind::Root => (Vec::new(), None, session),
                }
            }
        };
        let set = PolicySet {
            identity: &identity,
            boundary: boundary.as_deref(),
            session: session.as_deref(),
            resource: resource_policy,
            resource_account: Some(account_id),
        };
        let decision = authorize(&set, &Request::new(action, resource, ctx).by(&principal));
        tracing::debug!(principal = principal.arn().unwrap_or("-"), action, resource, %decision, "authorization");
        decision.explain()
    }
}
