//! The STS query API: a request's action and parameters, with the caller the transport
//! verified (none for AssumeRoleWithWebIdentity, which is unsigned), dispatched to its
//! handler and answered in STS's XML. The checks every action shares on durations, session
//! names and session policies are in `params.rs`.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_Operations.html>

use std::net::IpAddr;
use std::sync::Arc;

use keyless_iam::session::SessionClaims;
use keyless_iam::{Caller, IamStore};
use keyless_policy::Context;
use keyless_types::audit::{Outcome, Resource};
use keyless_types::query::{self, Params};
use keyless_types::xml::Xml;

use crate::limit::{Limiter, Limits};
use crate::verify::TokenVerifier;
use crate::{SessionKey, StsError};

/// STS's XML namespace.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS service of an account.
#[derive(Clone)]
pub struct Sts {
    pub(crate) store: Arc<dyn IamStore>,
    pub(crate) key: Arc<SessionKey>,
    pub(crate) verifier: Arc<dyn TokenVerifier>,
    pub(crate) limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("account_id", &self.store.account_id())
            .finish_non_exhaustive()
    }
}

/// One STS call.
#[derive(Debug, Clone, Copy)]
pub struct StsRequest<'a> {
    /// The `Action` parameter.
    pub action: &'a str,
    /// Every parameter, from the query string and the form body.
    pub params: &'a Params,
    /// Who signed the request; `None` for an unsigned one.
    pub caller: Option<&'a Caller>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Whether it came over TLS.
    pub secure_transport: bool,
    /// Seconds since the epoch.
    pub now: i64,
}

/// An HTTP status and an XML body, and what the audit trail keeps of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct StsResponse {
    /// The HTTP status.
    pub status: u16,
    /// The XML body.
    pub body: String,
    /// For the request's log and audit record: the credentials' key id and expiry, never
    /// their secret or token.
    pub outcome: Outcome,
}

/// Every action STS answers, by its name in `Action=`.
pub const ACTIONS: &[&str] = &[
    "AssumeRoleWithWebIdentity",
    "AssumeRole",
    "GetCallerIdentity",
    "GetSessionToken",
];

/// The name of an action STS answers (a `'static` name, for labels), or `None`.
pub fn action_name(action: &str) -> Option<&'static str> {
    ACTIONS.iter().copied().find(|name| *name == action)
}

/// Whether an action may be called without a signature.
pub fn is_unsigned_action(action: &str) -> bool {
    matches!(action, "AssumeRoleWithWebIdentity")
}

impl Sts {
    /// STS over `store`'s roles, sealing sessions with `key` and checking web identity tokens
    /// with `verifier`.
    pub fn new(
        store: Arc<dyn IamStore>,
        key: Arc<SessionKey>,
        verifier: Arc<dyn TokenVerifier>,
    ) -> Self {
        Self {
            store,
            key,
            verifier,
            limiter: Arc::default(),
        }
    }

    /// The same STS, issuing within `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limiter = Arc::new(Limiter::new(limits));
        self
    }

    /// A session's length once checked against its role's (or caller's) maximum: `seconds`,
    /// or the configured cap if shorter. The cap is the operator's, not the role's: a longer
    /// request gets a shorter session, as credentials that expire sooner, not a refusal.
    pub(crate) fn clamp(&self, seconds: i64) -> i64 {
        match self.limiter.limits.max_session_seconds {
            Some(cap) => seconds.min(i64::from(cap)),
            None => seconds,
        }
    }

    /// The account.
    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// Answers one call.
    pub async fn handle(&self, req: &StsRequest<'_>, request_id: &str) -> StsResponse {
        let mut audit = Outcome::default();
        let answer = match (req.action, req.caller) {
            ("AssumeRoleWithWebIdentity", _) => {
                self.assume_role_with_web_identity(req, &mut audit).await
            }
            (_, None) => Err(StsError::AccessDenied(
                "Request is missing Authentication Token".into(),
            )),
            ("GetCallerIdentity", Some(caller)) => Ok(self.get_caller_identity(caller)),
            ("AssumeRole", Some(caller)) => self.assume_role(req, caller, &mut audit),
            ("GetSessionToken", Some(caller)) => self.get_session_token(req, caller, &mut audit),
            (other, Some(_)) => Err(StsError::InvalidAction(other.to_owned())),
        };
        match answer {
            Ok(result) => StsResponse {
                status: 200,
                body: query::response(STS_NAMESPACE, req.action, Some(&result), request_id),
                outcome: audit,
            },
            Err(e) => {
                let mut response = error_response(&e, request_id);
                audit.error = response.outcome.error.take();
                // Nothing was issued: only who asked, for what, and why it was refused.
                audit.response_elements = None;
                response.outcome = audit;
                response
            }
        }
    }
}

/// An error's whole response; internal causes are logged here and not sent.
pub fn error_response(e: &StsError, request_id: &str) -> StsResponse {
    let (code, status) = e.wire();
    if let StsError::Internal(cause) = e {
        tracing::error!(%cause, request_id, "sts request failed");
    } else {
        tracing::debug!(code, message = %e, "sts request refused");
    }
    let message = e.message();
    StsResponse {
        status,
        body: query::error_response(STS_NAMESPACE, code, &message, status < 500, request_id),
        outcome: Outcome {
            error: Some((code.to_owned(), message)),
            ..Outcome::default()
        },
    }
}

/// The request keys every STS decision sees.
pub(crate) fn request_context(req: &StsRequest<'_>) -> Context {
    keyless_iam::request_context(req.source_ip, req.secure_transport, req.now)
}

/// `<Credentials>` of a new session; the audit trail is told the key id and the expiry alone.
pub(crate) fn credentials(
    out: &mut Xml,
    key: &SessionKey,
    claims: &SessionClaims,
    audit: &mut Outcome,
) -> Result<(), StsError> {
    let (access_key_id, secret, token) = key.issue(claims)?;
    response_element(
        audit,
        "credentials",
        serde_json::json!({
            "accessKeyId": access_key_id,
            "expiration": keyless_types::time::cloudtrail_expiration(claims.expires),
        }),
    );
    out.open("Credentials")
        .text("AccessKeyId", &access_key_id)
        .text("SecretAccessKey", secret.expose())
        .text("SessionToken", &token)
        .date("Expiration", claims.expires)
        .close("Credentials");
    Ok(())
}

/// Sets `name` in the audit record's `responseElements`.
pub(crate) fn response_element(audit: &mut Outcome, name: &str, value: serde_json::Value) {
    let elements = audit
        .response_elements
        .get_or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let Some(map) = elements.as_object_mut() {
        map.insert(name.to_owned(), value);
    }
}

/// A role as one of an audit record's `resources`.
pub(crate) fn role_resource(role: &keyless_iam::RoleIdentity) -> Resource {
    Resource {
        arn: role.arn.clone(),
        account_id: Some(role.account_id.clone()),
        kind: "AWS::IAM::Role".into(),
    }
}
