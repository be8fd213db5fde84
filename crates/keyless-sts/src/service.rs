//! The STS query API: a request's action and parameters, with the caller the transport
//! verified (none for AssumeRoleWithWebIdentity, which is unsigned), dispatched to its
//! handler and answered in STS's XML. Every action shares the checks on durations, session
//! names and session policies kept here.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_Operations.html>

use std::net::IpAddr;
use std::sync::Arc;

use keyless_iam::api::Params;
use keyless_iam::api::xml::{self, Xml};
use keyless_iam::session::SessionClaims;
use keyless_iam::{Caller, IamStore};
use keyless_policy::{Context, Policy, PolicyKind};

use crate::web_identity::TokenVerifier;
use crate::{SessionKey, StsError};

/// STS's XML namespace.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The shortest session, in seconds.
pub(crate) const MIN_DURATION: i64 = 900;
/// The longest role session.
pub(crate) const MAX_ROLE_DURATION: i64 = 43_200;
/// The longest session of a role assumed with a role session's credentials (role chaining).
pub(crate) const MAX_CHAINED_DURATION: i64 = 3600;
/// A session's length when the caller names none.
pub(crate) const DEFAULT_DURATION: i64 = 3600;
/// The longest inline session policy, in characters.
pub(crate) const MAX_SESSION_POLICY: usize = 2048;
/// The most managed session policies.
pub(crate) const MAX_POLICY_ARNS: usize = 10;

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
                body: xml::response(STS_NAMESPACE, req.action, Some(&result), request_id),
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
        body: xml::error_response(STS_NAMESPACE, code, &e.message(), status < 500, request_id),
    }
}

/// `DurationSeconds`, between 900 and `max`, defaulting to an hour (or `max` if shorter).
pub(crate) fn duration(params: &Params, max: i64, max_error: &str) -> Result<i64, StsError> {
    let Some(text) = params.get("DurationSeconds") else {
        return Ok(DEFAULT_DURATION.min(max));
    };
    let value: i64 = text.parse().map_err(|_| {
        StsError::Validation(format!(
            "1 validation error detected: Value '{text}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"
        ))
    })?;
    if value < MIN_DURATION {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}"
        )));
    }
    if value > MAX_ROLE_DURATION {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_ROLE_DURATION}"
        )));
    }
    if value > max {
        return Err(StsError::Validation(max_error.to_owned()));
    }
    Ok(value)
}

/// `RoleSessionName`: 2 to 64 of `[\w+=,.@-]`.
pub(crate) fn session_name(params: &Params) -> Result<String, StsError> {
    let name = params
        .get("RoleSessionName")
        .ok_or_else(|| missing("roleSessionName"))?;
    let len = name.chars().count();
    if len < 2 {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2"
        )));
    }
    if len > 64 {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(name.to_owned())
}

/// The error for a missing required parameter, named as AWS names it (`roleArn`).
pub(crate) fn missing(name: &str) -> StsError {
    StsError::Validation(format!(
        "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
    ))
}

/// The session policies a call passes (`Policy`, `PolicyArns.member.N.arn`) and tags
/// (`Tags.member.N.Key/Value`), checked, with their packed size in percent of the limit.
#[derive(Debug, Default)]
pub(crate) struct SessionExtras {
    pub(crate) policy: Option<String>,
    pub(crate) policy_arns: Vec<String>,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) packed_percent: Option<u32>,
}

impl SessionExtras {
    /// The session tags of the request as the trust policy sees them: `aws:RequestTag/KEY`
    /// and `aws:TagKeys`.
    pub(crate) fn insert_request_tags(&self, ctx: &mut Context) {
        for (key, value) in &self.tags {
            ctx.insert(format!("aws:RequestTag/{key}"), value.clone());
        }
        if !self.tags.is_empty() {
            ctx.insert_multi("aws:TagKeys", self.tags.iter().map(|(k, _)| k.clone()));
        }
    }
}

pub(crate) fn session_extras(
    params: &Params,
    store: &dyn IamStore,
    allow_tags: bool,
) -> Result<SessionExtras, StsError> {
    let mut extras = SessionExtras::default();
    if let Some(text) = params.get("Policy") {
        if text.chars().count() > MAX_SESSION_POLICY {
            return Err(StsError::Validation(format!(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to {MAX_SESSION_POLICY}"
            )));
        }
        Policy::parse_as(text, PolicyKind::Identity)
            .map_err(|e| StsError::MalformedPolicyDocument(e.to_string()))?;
        // Kept as sent, minus the whitespace that JSON allows between tokens.
        let compact = serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| text.to_owned());
        extras.policy = Some(compact);
    }
    let arns: Vec<String> = params
        .structs("PolicyArns")
        .iter()
        .filter_map(|p| p.get("arn").map(str::to_owned))
        .collect();
    if arns.len() > MAX_POLICY_ARNS {
        return Err(StsError::Validation(format!(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to {MAX_POLICY_ARNS}"
        )));
    }
    let snapshot = store.snapshot();
    for arn in &arns {
        let exists = keyless_iam::managed::by_arn(arn).is_some()
            || snapshot.state.policy(store.account_id(), arn).is_ok();
        if !exists {
            return Err(StsError::Validation(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        }
    }
    extras.policy_arns = arns;
    if allow_tags {
        for tag in params.structs("Tags") {
            let (Some(key), Some(value)) = (tag.get("Key"), tag.get("Value")) else {
                return Err(missing("tags.member.key"));
            };
            if key.is_empty() || key.len() > 128 || value.len() > 256 {
                return Err(StsError::Validation(format!(
                    "1 validation error detected: Value '{key}' at 'tags' failed to satisfy constraint: tag keys must be 1 to 128 characters and values at most 256"
                )));
            }
            if extras.tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(StsError::Validation(format!(
                    "Duplicate tag keys found. Please note that Tag keys are case insensitive: {key}"
                )));
            }
            extras.tags.push((key.to_owned(), value.to_owned()));
        }
        if extras.tags.len() > 50 {
            return Err(StsError::Validation(
                "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50".into(),
            ));
        }
    }
    let packed: usize = extras.policy.as_ref().map_or(0, String::len)
        + extras.policy_arns.iter().map(String::len).sum::<usize>()
        + extras
            .tags
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    if packed > 0 {
        let percent = (packed * 100).div_ceil(MAX_SESSION_POLICY);
        if percent > 100 {
            return Err(StsError::PackedPolicyTooLarge(format!(
                "Packed size of consolidated session policies and session tags exceeds {percent}%."
            )));
        }
        extras.packed_percent = u32::try_from(percent).ok();
    }
    Ok(extras)
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
