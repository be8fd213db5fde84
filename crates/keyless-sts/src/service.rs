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
use keyless_types::query::{self, Params};
use keyless_types::xml::Xml;

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

/// An HTTP status and an XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsResponse {
    /// The HTTP status.
    pub status: u16,
    /// The XML body.
    pub body: String,
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
        }
    }

    /// The account.
    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// Answers one call.
    pub async fn handle(&self, req: &StsRequest<'_>, request_id: &str) -> StsResponse {
        let outcome = match (req.action, req.caller) {
            ("AssumeRoleWithWebIdentity", _) => self.assume_role_with_web_identity(req).await,
            (_, None) => Err(StsError::AccessDenied(
                "Request is missing Authentication Token".into(),
            )),
            ("GetCallerIdentity", Some(caller)) => Ok(self.get_caller_identity(caller)),
            ("AssumeRole", Some(caller)) => self.assume_role(req, caller),
            ("GetSessionToken", Some(caller)) => self.get_session_token(req, caller),
            (other, Some(_)) => Err(StsError::InvalidAction(other.to_owned())),
        };
        match outcome {
            Ok(result) => StsResponse {
                status: 200,
                body: query::response(STS_NAMESPACE, req.action, Some(&result), request_id),
            },
            Err(e) => error_response(&e, request_id),
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
    StsResponse {
        status,
        body: query::error_response(STS_NAMESPACE, code, &e.message(), status < 500, request_id),
    }
}

/// The request keys every STS decision sees.
pub(crate) fn request_context(req: &StsRequest<'_>) -> Context {
    keyless_iam::request_context(req.source_ip, req.secure_transport, req.now)
}

/// `<Credentials>` of a new session.
pub(crate) fn credentials(
    out: &mut Xml,
    key: &SessionKey,
    claims: &SessionClaims,
) -> Result<(), StsError> {
    let (access_key_id, secret, token) = key.issue(claims)?;
    out.open("Credentials")
        .text("AccessKeyId", &access_key_id)
        .text("SecretAccessKey", secret.expose())
        .text("SessionToken", &token)
        .date("Expiration", claims.expires)
        .close("Credentials");
    Ok(())
}
