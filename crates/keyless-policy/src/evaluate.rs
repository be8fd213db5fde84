//! The evaluation logic: how identity policies, permissions boundaries, session policies and a
//! resource-based policy combine into one decision that explains itself.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>
//!
//! 1. An explicit `Deny` in any policy decides: `explicitDeny`.
//! 2. Within one account, a resource-based policy may allow on its own, depending on whom it
//!    names: the caller itself (a user ARN, a session ARN, `*`) is enough; a role ARN is still
//!    limited by the role session's boundary and session policy; an account only delegates to
//!    the account's identity policies.
//! 3. Otherwise an identity policy must allow, and so must the permissions boundary and the
//!    session policy when there are any; across accounts the resource policy must allow too.
//! 4. Anything else is an `implicitDeny`.

use std::fmt;

use crate::context::Context;
use crate::policy::{Effect, Policy, Statement};
use crate::principal::{Principal, PrincipalMatch};

/// A policy together with the name it goes by in decisions (a policy name, an ARN, or the
/// simulator's `PolicyInputList.1`).
#[derive(Debug, Clone, Copy)]
pub struct Source<'p> {
    /// The name it goes by.
    pub id: &'p str,
    /// The compiled policy.
    pub policy: &'p Policy,
}

impl<'p> Source<'p> {
    /// Names a policy.
    pub fn new(id: &'p str, policy: &'p Policy) -> Self {
        Self { id, policy }
    }
}

/// The role a policy plays in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Attached to the user or role (inline or managed).
    Identity,
    /// The permissions boundary of the user or role.
    Boundary,
    /// A session policy passed when the role was assumed.
    Session,
    /// The resource's own policy (a bucket policy).
    Resource,
}

/// Every policy that bears on a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    /// Identity-based policies of the principal.
    pub identity: &'a [Source<'a>],
    /// Permissions boundary; `None` when the principal has none (which limits nothing).
    pub boundary: Option<&'a [Source<'a>]>,
    /// Session policies; `None` when the session has none (which limits nothing).
    pub session: Option<&'a [Source<'a>]>,
    /// The resource-based policy of the resource, if any.
    pub resource: Option<Source<'a>>,
    /// The account that owns the resource; `None` means the caller's own account.
    pub resource_account: Option<&'a str>,
}

/// What is being asked: an action on a resource by a principal, with its context keys.
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    /// The action, such as `s3:GetObject` (matched without regard to case).
    pub action: &'r str,
    /// The resource's ARN, or `*`.
    pub resource: &'r str,
    /// The caller, which resource-based and trust policies match against `Principal`.
    pub principal: Option<&'r Principal>,
    /// The request's condition keys.
    pub context: &'r Context,
}

impl<'r> Request<'r> {
    /// A request with no known principal.
    pub fn new(action: &'r str, resource: &'r str, context: &'r Context) -> Self {
        Self {
            action,
            resource,
            principal: None,
            context,
        }
    }

    /// The same request made by `principal`.
    pub fn by(mut self, principal: &'r Principal) -> Self {
        self.principal = Some(principal);
        self
    }
}

/// The outcome, in the simulator's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some policy allows and none denies.
    Allowed,
    /// A statement denies.
    ExplicitDeny,
    /// Nothing allows (or a boundary or session policy does not).
    ImplicitDeny,
}

impl Verdict {
    /// Counts this decision in `decisions`.
    pub fn tally(self, decisions: &mut keyless_types::audit::Decisions) {
        match self {
            Verdict::Allowed => decisions.allowed += 1,
            Verdict::ExplicitDeny => decisions.explicit_deny += 1,
            Verdict::ImplicitDeny => decisions.implicit_deny += 1,
        }
    }

    /// `allowed`, `explicitDeny` or `implicitDeny`, as IAM's simulator writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::ExplicitDeny => "explicitDeny",
            Self::ImplicitDeny => "implicitDeny",
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Self::Allowed
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statement that applied to the request.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The policy it belongs to.
    pub source: Source<'a>,
    /// The role of that policy.
    pub kind: SourceKind,
    /// The statement.
    pub statement: &'a Statement,
}

/// A decision and why: the statements that applied and the context keys that were missing.
/// Meant for logs, `doctor` and the simulator, never for the client.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The outcome.
    pub verdict: Verdict,
    /// Every statement that applied, `Allow` and `Deny`, in evaluation order.
    pub matched: Vec<Matched<'a>>,
    /// Condition keys (as the policies write them) that the request did not supply.
    pub missing_context: Vec<&'a str>,
    /// Whether an identity-based policy allowed.
    pub allowed_by_identity: bool,
    /// Whether the permissions boundary allowed, when there is one.
    pub allowed_by_boundary: Option<bool>,
    /// Whether the session policies allowed, when there are any.
    pub allowed_by_session: Option<bool>,
    /// Whether the resource-based policy allowed, when there is one.
    pub allowed_by_resource: Option<bool>,
    /// Whether the resource belongs to another account than the caller's, so that its resource
    /// policy and the caller's identity policies both had to allow.
    pub cross_account: bool,
}

impl Decision<'_> {
    /// The statements that decided the outcome: the denying ones for an explicit deny, the
    /// allowing ones for an allow, none for an implicit deny.
    pub fn deciding(&self) -> impl Iterator<Item = &Matched<'_>> {
        let want = match self.verdict {
            Verdict::ExplicitDeny => Some(Effect::Deny),
            Verdict::Allowed => Some(Effect::Allow),
            Verdict::ImplicitDeny => None,
        };
        self.matched
            .iter()
            .filter(move |m| Some(m.statement.effect()) == want)
    }

    /// Which kind of policy refused the request, as AWS's detailed AccessDenied messages name
    /// it; `None` when it was allowed.
    ///
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html>
    pub fn denied_by(&self) -> Option<DeniedBy> {
        match self.verdict {
            Verdict::Allowed => None,
            Verdict::ExplicitDeny => self
                .deciding()
                .next()
                .map(|m| DeniedBy::Explicit(m.kind))
                .or(Some(DeniedBy::Explicit(SourceKind::Identity))),
            // In the order AWS evaluates them once no statement denies.
            Verdict::ImplicitDeny => Some(DeniedBy::Implicit(
                if self.cross_account && self.allowed_by_resource == Some(false) {
                    SourceKind::Resource
                } else if !self.allowed_by_identity {
                    SourceKind::Identity
                } else if self.allowed_by_boundary == Some(false) {
                    SourceKind::Boundary
                } else if self.allowed_by_session == Some(false) {
                    SourceKind::Session
                } else {
                    SourceKind::Resource
                },
            )),
        }
    }

    /// The decision as an owned record: its verdict, its explanation in words (this
    /// decision's `Display`) and which policy refused it.
    pub fn explain(&self) -> Explanation {
        Explanation {
            verdict: self.verdict,
            text: self.to_string(),
            denied_by: self.denied_by(),
            cross_account: self.cross_account,
        }
    }
}

/// Which kind of policy refused a request, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedBy {
    /// A `Deny` statement of a policy of this kind.
    Explicit(SourceKind),
    /// No policy of this kind allowed.
    Implicit(SourceKind),
}

impl DeniedBy {
    /// The end of AWS's detailed AccessDenied message for `action`: `with an explicit deny in
    /// an identity-based policy`, `because no resource-based policy allows the s3:GetObject
    /// action`, ...
    pub fn phrase(self, action: &str) -> String {
        let name = |kind: SourceKind| match kind {
            SourceKind::Identity => "identity-based policy",
            SourceKind::Boundary => "permissions boundary",
            SourceKind::Session => "session policy",
            SourceKind::Resource => "resource-based policy",
        };
        match self {
            Self::Explicit(SourceKind::Identity) => {
                "with an explicit deny in an identity-based policy".to_owned()
            }
            Self::Explicit(kind) => format!("with an explicit deny in a {}", name(kind)),
            Self::Implicit(kind) => format!("because no {} allows the {action} action", name(kind)),
        }
    }
}

/// A decision kept past the policies it was made with: for logs and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The outcome.
    pub verdict: Verdict,
    /// Why, in words: `implicitDeny: no statement allows it`,
    /// `explicitDeny by bucket policy (DenyUnencrypted)`.
    pub text: String,
    /// Which kind of policy refused it; `None` when it was allowed.
    pub denied_by: Option<DeniedBy>,
    /// Whether the resource is another account's.
    pub cross_account: bool,
}

impl Explanation {
    /// An allow that no policy was consulted for (the root user's).
    pub fn root() -> Self {
        Self {
            verdict: Verdict::Allowed,
            text: "allowed: the account's root user".into(),
            denied_by: None,
            cross_account: false,
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict)?;
        let mut first = true;
        for m in self.deciding() {
            f.write_str(if first { " by " } else { ", " })?;
            first = false;
            write!(f, "{}", m.source.id)?;
            match m.statement.sid() {
                Some(sid) => write!(f, " ({sid})")?,
                None => write!(f, " (statement {})", m.statement.index() + 1)?,
            }
        }
        if self.verdict == Verdict::ImplicitDeny && self.allowed_by_boundary == Some(false) {
            f.write_str(": the permissions boundary does not allow it")?;
        } else if self.verdict == Verdict::ImplicitDeny {
            f.write_str(": no statement allows it")?;
        }
        if !self.missing_context.is_empty() {
            write!(f, "; missing context: {}", self.missing_context.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_implicit_deny_names_no_statement_as_its_reason() {
        let identity =
            Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
                .unwrap();
        let boundary =
            Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"ec2:*","Resource":"*"}}"#)
                .unwrap();
        let (ids, bs) = (
            [Source::new("role", &identity)],
            [Source::new("boundary", &boundary)],
        );
        let set = PolicySet {
            identity: &ids,
            boundary: Some(&bs),
            ..Default::default()
        };
        let ctx = Context::new();
        let d = authorize(&set, &Request::new("s3:GetObject", "*", &ctx));
        assert_eq!(d.verdict, Verdict::ImplicitDeny);
        assert_eq!(d.matched.len(), 1);
        assert_eq!(
            d.to_string(),
            "implicitDeny: the permissions boundary does not allow it"
        );
        assert_eq!(
            d.denied_by(),
            Some(DeniedBy::Implicit(SourceKind::Boundary))
        );
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    /// AWS's detailed messages, for each kind of policy that can refuse.
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html>
    #[test]
    fn each_refusing_policy_is_named_as_aws_names_it() {
        let allow = policy(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#);
        let deny = policy(r#"{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*"}}"#);
        let other = policy(r#"{"Statement":{"Effect":"Allow","Action":"ec2:*","Resource":"*"}}"#);
        let bucket_allow = policy(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
        );
        let bucket_deny = policy(
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
        );
        let me = Principal::User {
            arn: "arn:aws:iam::111122223333:user/me".into(),
            account: "111122223333".into(),
        };
        let ctx = Context::new();
        let decide = |identity: &[Source<'_>],
                      boundary: Option<&[Source<'_>]>,
                      session: Option<&[Source<'_>]>,
                      resource: Option<Source<'_>>,
                      owner: &str| {
            let set = PolicySet {
                identity,
                boundary,
                session,
                resource,
                resource_account: Some(owner),
            };
            let d = authorize(&set, &Request::new("s3:GetObject", "*", &ctx).by(&me));
            d.denied_by().map(|d| d.phrase("s3:GetObject"))
        };
        let [a, d, o] = [
            Source::new("a", &allow),
            Source::new("d", &deny),
            Source::new("o", &other),
        ];
        let own = "111122223333";
        assert_eq!(
            decide(&[o], None, None, None, own).as_deref(),
            Some("because no identity-based policy allows the s3:GetObject action")
        );
        assert_eq!(
            decide(&[a, d], None, None, None, own).as_deref(),
            Some("with an explicit deny in an identity-based policy")
        );
        assert_eq!(
            decide(&[a], Some(&[o]), None, None, own).as_deref(),
            Some("because no permissions boundary allows the s3:GetObject action")
        );
        assert_eq!(
            decide(&[a], Some(&[d]), None, None, own).as_deref(),
            Some("with an explicit deny in a permissions boundary")
        );
        assert_eq!(
            decide(&[a], None, Some(&[o]), None, own).as_deref(),
            Some("because no session policy allows the s3:GetObject action")
        );
        assert_eq!(
            decide(&[a], None, Some(&[d]), None, own).as_deref(),
            Some("with an explicit deny in a session policy")
        );
        assert_eq!(
            decide(&[a], None, None, Some(Source::new("b", &bucket_deny)), own).as_deref(),
            Some("with an explicit deny in a resource-based policy")
        );
        assert_eq!(
            decide(
                &[a],
                None,
                None,
                Some(Source::new("b", &other)),
                "444455556666"
            )
            .as_deref(),
            Some("because no resource-based policy allows the s3:GetObject action")
        );
        assert_eq!(
            decide(&[a], None, None, Some(Source::new("b", &bucket_allow)), own),
            None
        );
    }
}

/// What the statements of one group of policies said.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    allow: bool,
    deny: bool,
    /// For a resource policy: the strongest way an allowing statement named the caller.
    grant: Option<PrincipalMatch>,
}

struct Walk<'a, 'r> {
    req: &'r Request<'r>,
    matched: Vec<Matched<'a>>,
    missing: Vec<&'a str>,
}

impl<'a> Walk<'a, '_> {
    fn tally(&mut self, sources: &[Source<'a>], kind: SourceKind) -> Tally {
        let mut tally = Tally::default();
        for source in sources {
            for statement in source.policy.statements() {
                let applies = statement.applies(
                    self.req.action,
                    self.req.resource,
                    self.req.principal,
                    self.req.context,
                    &mut self.missing,
                );
                let Some(how) = applies else { continue };
                match statement.effect() {
                    Effect::Deny => tally.deny = true,
                    Effect::Allow => {
                        tally.allow = true;
                        tally.grant = tally.grant.max(how);
                    }
                }
                self.matched.push(Matched {
                    source: *source,
                    kind,
                    statement,
                });
            }
        }
        tally
    }
}

/// Decides `req` under `set`.
pub fn authorize<'a>(set: &PolicySet<'a>, req: &Request<'_>) -> Decision<'a> {
    let mut walk = Walk {
        req,
        matched: Vec::new(),
        missing: Vec::new(),
    };
    let identity = walk.tally(set.identity, SourceKind::Identity);
    let boundary = set.boundary.map(|b| walk.tally(b, SourceKind::Boundary));
    let session = set.session.map(|s| walk.tally(s, SourceKind::Session));
    let resource = set
        .resource
        .map(|r| walk.tally(std::slice::from_ref(&r), SourceKind::Resource));

    let denied = [Some(identity), boundary, session, resource]
        .iter()
        .flatten()
        .any(|t| t.deny);
    let boundary_ok = boundary.is_none_or(|t| t.allow);
    let session_ok = session.is_none_or(|t| t.allow);
    let identity_ok = identity.allow && boundary_ok && session_ok;
    // An unknown caller is taken to be of the resource's account; a caller without an account
    // (a web identity, a service) is of none.
    let same_account = match (set.resource_account, req.principal) {
        (None, _) | (_, None) => true,
        (Some(owner), Some(caller)) => caller.account() == Some(owner),
    };
    let allowed = match (resource, req.principal) {
        (Some(r), Some(Principal::Anonymous)) => r.allow,
        (None, Some(Principal::Anonymous)) => false,
        (None, _) => identity_ok && same_account,
        (Some(r), _) if !same_account => identity_ok && r.allow,
        (Some(r), _) => match r.grant {
            Some(PrincipalMatch::Direct) => true,
            Some(PrincipalMatch::Role) => boundary_ok && session_ok,
            Some(PrincipalMatch::Account) | None => identity_ok,
        },
    };
    let verdict = if denied {
        Verdict::ExplicitDeny
    } else if allowed {
        Verdict::Allowed
    } else {
        Verdict::ImplicitDeny
    };
    let mut missing = walk.missing;
    let mut seen = std::collections::HashSet::new();
    missing.retain(|k| seen.insert(k.to_lowercase()));
    Decision {
        verdict,
        matched: walk.matched,
        missing_context: missing,
        allowed_by_identity: identity.allow,
        allowed_by_boundary: boundary.map(|t| t.allow),
        allowed_by_session: session.map(|t| t.allow),
        allowed_by_resource: resource.map(|t| t.allow),
        cross_account: set.resource.is_some() && !same_account,
    }
}
