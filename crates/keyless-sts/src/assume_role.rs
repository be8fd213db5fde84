//! AssumeRole, GetSessionToken and GetCallerIdentity: the signed calls. A role is assumed when
//! its trust policy and the caller's identity policies allow `sts:AssumeRole`, by the same
//! evaluation logic as every other request.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html>

use keyless_iam::session::{SessionClaims, SessionSubject};
use keyless_iam::{Caller, RoleIdentity, SessionKind};
use keyless_policy::{DeniedBy, Source, SourceKind};
use keyless_types::audit::Outcome;
use keyless_types::pod_tags::POD_UID_TAG;
use keyless_types::xml::Xml;

use crate::params::{
    MAX_CHAINED_DURATION, MIN_DURATION, SessionExtras, duration, session_extras, session_name,
};
use crate::service::{StsRequest, credentials, request_context, response_element, role_resource};
use crate::{Sts, StsError};

/// The longest session of an IAM user (36 hours).
const MAX_USER_SESSION: i64 = 129_600;
/// The longest session of the root user.
const MAX_ROOT_SESSION: i64 = 3600;

/// `<AssumedRoleUser>` of a role session, told to the audit trail too.
pub(crate) fn assumed_role_user(
    out: &mut Xml,
    account_id: &str,
    role: &RoleIdentity,
    session: &str,
    audit: &mut Outcome,
) {
    let id = format!("{}:{session}", role.role_id);
    let arn = format!(
        "arn:aws:sts::{account_id}:assumed-role/{}/{session}",
        role.name
    );
    out.open("AssumedRoleUser")
        .text("AssumedRoleId", &id)
        .text("Arn", &arn)
        .close("AssumedRoleUser");
    response_element(
        audit,
        "assumedRoleUser",
        serde_json::json!({"assumedRoleId": id, "arn": arn}),
    );
}

impl Sts {
    /// A new session of `role` lasting `(from, seconds)`: its claims sealed into credentials,
    /// written with the `<AssumedRoleUser>` and `<PackedPolicySize>` every role session answers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn role_session(
        &self,
        out: &mut Xml,
        role: &RoleIdentity,
        session: &str,
        (from, seconds): (i64, i64),
        extras: SessionExtras,
        source_identity: Option<String>,
        web_identity: Option<(String, String, String)>,
        audit: &mut Outcome,
    ) -> Result<SessionClaims, StsError> {
        let claims = SessionClaims {
            subject: SessionSubject::Role {
                arn: role.arn.clone(),
                session_name: session.to_owned(),
            },
            issued: from,
            expires: from + seconds,
            policy: extras.policy,
            policy_arns: extras.policy_arns,
            tags: extras.tags,
            source_identity,
            web_identity,
        };
        credentials(out, &self.key, &claims, audit)?;
        assumed_role_user(out, self.account_id(), role, session, audit);
        if let Some(percent) = extras.packed_percent {
            out.value("PackedPolicySize", percent);
        }
        Ok(claims)
    }

    pub(crate) fn get_caller_identity(&self, caller: &Caller) -> String {
        let account = self.account_id();
        let mut out = Xml::new();
        out.text("Arn", &caller.arn(account))
            .text("UserId", &caller.user_id(account))
            .text("Account", account);
        out.finish()
    }

    pub(crate) fn assume_role(
        &self,
        req: &StsRequest<'_>,
        caller: &Caller,
        audit: &mut Outcome,
    ) -> Result<String, StsError> {
        let params = req.params;
        let account = self.account_id();
        let role_arn = params.required("RoleArn")?;
        let session = session_name(params)?;
        if caller.is_root() {
            return Err(StsError::AccessDenied(
                "Roles may not be assumed by root accounts.".into(),
            ));
        }
        if params.mentions("SerialNumber") || params.mentions("TokenCode") {
            return Err(StsError::AccessDenied(
                "MultiFactorAuthentication failed: this endpoint has no MFA devices".into(),
            ));
        }
        let denied_action = |action: &str, by: Option<DeniedBy>| {
            let mut message = format!(
                "User: {} is not authorized to perform: {action} on resource: {role_arn}",
                caller.arn(account)
            );
            // As STS words it: the caller's own policies are named; a trust policy is not.
            if let Some(by) = by.filter(|by| {
                !matches!(
                    by,
                    DeniedBy::Explicit(SourceKind::Resource)
                        | DeniedBy::Implicit(SourceKind::Resource)
                )
            }) {
                message.push(' ');
                message.push_str(&by.phrase(action));
            }
            StsError::AccessDenied(message)
        };
        let denied = |by: Option<DeniedBy>| denied_action("sts:AssumeRole", by);
        let snapshot = self.store.snapshot();
        let role = snapshot.directory.role_by_arn(role_arn).ok_or_else(|| {
            audit.denial = Some("implicitDeny: no such role".into());
            denied(None)
        })?;
        audit.resources.push(role_resource(role));
        let chained =
            matches!(caller, Caller::Session(s) if matches!(s.kind, SessionKind::Role(_)));
        let max = if chained {
            MAX_CHAINED_DURATION
        } else {
            i64::from(role.max_session_duration)
        };
        let seconds = self.clamp(duration(
            params,
            max,
            if chained {
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
            } else {
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            },
        )?);
        let extras = session_extras(params, self.store.as_ref(), true)?;
        let source_identity = params.get("SourceIdentity").map(str::to_owned);
        let mut ctx = request_context(req);
        if let Some(external_id) = params.get("ExternalId") {
            ctx.insert("sts:ExternalId", external_id.to_owned());
        }
        ctx.insert("sts:RoleSessionName", session.clone());
        if let Some(source) = &source_identity {
            ctx.insert("sts:SourceIdentity", source.clone());
        }
        extras.insert_request_tags(&mut ctx);
        let decided = caller.authorize(
            account,
            "sts:AssumeRole",
            &role.arn,
            &mut ctx,
            Some(Source::new("trust policy", &role.trust)),
        );
        decided.verdict.tally(&mut audit.decisions);
        if !decided.verdict.is_allowed() {
            audit.denial = Some(decided.text);
            return Err(denied(decided.denied_by));
        }
        // Passing session tags is its own permission, as on AWS: without it anyone the role
        // trusts could name themselves another namespace's pod.
        if !extras.tags.is_empty() {
            let decided = caller.authorize(
                account,
                "sts:TagSession",
                &role.arn,
                &mut ctx,
                Some(Source::new("trust policy", &role.trust)),
            );
            decided.verdict.tally(&mut audit.decisions);
            if !decided.verdict.is_allowed() {
                audit.denial = Some(format!("sts:TagSession: {}", decided.text));
                return Err(denied_action("sts:TagSession", decided.denied_by));
            }
        }
        // The limits, once the call is allowed (a refused one spends no one's bucket): per
        // caller, or for a call on a pod's behalf that may tag the session, per pod.
        let mut limit_key = caller.arn(account);
        if let Some((_, uid)) = extras.tags.iter().find(|(k, _)| k == POD_UID_TAG) {
            limit_key = format!("{limit_key}/{uid}");
        }
        self.limiter.admit(&limit_key, Some(&role.arn), req.now)?;
        let mut out = Xml::new();
        let claims = self.role_session(
            &mut out,
            role,
            &session,
            (req.now, seconds),
            extras,
            source_identity.clone(),
            None,
            audit,
        )?;
        if let Some(source) = &source_identity {
            out.text("SourceIdentity", source);
        }
        tracing::info!(caller = %caller.arn(account), role = %role.arn, session = %session, expires = claims.expires, "role assumed");
        Ok(out.finish())
    }

    pub(crate) fn get_session_token(
        &self,
        req: &StsRequest<'_>,
        caller: &Caller,
        audit: &mut Outcome,
    ) -> Result<String, StsError> {
        let (subject, max) = match caller {
            Caller::Root => (SessionSubject::Root, MAX_ROOT_SESSION),
            Caller::User(user) => (SessionSubject::User(user.name.clone()), MAX_USER_SESSION),
            Caller::Session(_) => {
                return Err(StsError::AccessDenied(
                    "Cannot call GetSessionToken with session credentials".into(),
                ));
            }
        };
        self.limiter
            .admit(&caller.arn(self.account_id()), None, req.now)?;
        let seconds = match req.params.get("DurationSeconds") {
            None => (12 * 3600).min(max),
            Some(_) => duration(
                req.params,
                max.max(MIN_DURATION),
                "The requested DurationSeconds exceeds the session limit for this caller.",
            )
            .or_else(|e| match e {
                // Users may ask for up to 36 hours, past a role's 12.
                StsError::Validation(_) if max > 43_200 => {
                    let value: i64 = req
                        .params
                        .get("DurationSeconds")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if (MIN_DURATION..=max).contains(&value) {
                        Ok(value)
                    } else {
                        Err(e)
                    }
                }
                other => Err(other),
            })?,
        };
        let seconds = self.clamp(seconds);
        let claims = SessionClaims {
            subject,
            issued: req.now,
            expires: req.now + seconds,
            policy: None,
            policy_arns: Vec::new(),
            tags: Vec::new(),
            source_identity: None,
            web_identity: None,
        };
        let mut out = Xml::new();
        credentials(&mut out, &self.key, &claims, audit)?;
        Ok(out.finish())
    }
}
