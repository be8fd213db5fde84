//! AssumeRoleWithWebIdentity: a service-account token (an OIDC JWT) exchanged for a role's
//! temporary credentials. The token's issuer must be a registered OIDC provider, its signature
//! must check out against the issuer's keys, its audience must be one of the provider's client
//! ids, and the role's trust policy must allow `sts:AssumeRoleWithWebIdentity` to the provider
//! with the token's claims as condition keys (`ISSUER:sub`, `ISSUER:aud`, ...).
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif>

use keyless_policy::{PolicySet, Principal, Request, Source, authorize};
use keyless_types::ProviderUrl;
use keyless_types::audit::{Outcome, UserIdentity};
use keyless_types::xml::Xml;

use crate::params::{duration, session_extras, session_name};
use crate::service::{StsRequest, request_context, response_element, role_resource};
use crate::{Sts, StsError};

/// The longest web identity token accepted, in characters (AWS's limit).
pub(crate) const MAX_WEB_IDENTITY_TOKEN: usize = 20_000;

impl Sts {
    pub(crate) async fn assume_role_with_web_identity(
        &self,
        req: &StsRequest<'_>,
        audit: &mut Outcome,
    ) -> Result<String, StsError> {
        const ACTION: &str = "AssumeRoleWithWebIdentity";
        let params = req.params;
        let role_arn = params.required("RoleArn")?;
        let session = session_name(params)?;
        let token = params
            .required("WebIdentityToken")?
            // `--web-identity-token file://token` sends the file as is, with the newline that
            // `kubectl create token > token` (or `keyless token > token`) leaves at its end.
            .trim_ascii();
        if token.len() < 4 || token.len() > MAX_WEB_IDENTITY_TOKEN {
            return Err(StsError::Validation(format!(
                "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and {MAX_WEB_IDENTITY_TOKEN}"
            )));
        }
        // Read before any key is known, only to find the provider whose keys will check it.
        let issuer = keyless_oidc::unverified_issuer(token).map_err(|_| {
            StsError::InvalidIdentityToken(
                "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)".into(),
            )
        })?;
        let snapshot = self.store.snapshot();
        let provider = ProviderUrl::read(&issuer)
            .ok()
            .and_then(|url| snapshot.directory.oidc_provider(&url))
            .ok_or_else(|| {
                StsError::InvalidIdentityToken(format!(
                    "No OpenIDConnect provider found in your account for {issuer}"
                ))
            })?;
        let web = self.verifier.verify(token, provider, req.now).await?;
        // Who asked, once the token is known to be the provider's (CloudTrail's
        // `WebIdentityUser`); a token that does not check out names nobody.
        audit.identity = Some(UserIdentity {
            kind: "WebIdentityUser".into(),
            principal_id: Some(format!("{}:{}:{}", provider.arn, web.audience, web.subject)),
            user_name: Some(web.subject.clone()),
            identity_provider: Some(provider.arn.clone()),
            ..UserIdentity::default()
        });
        let role = snapshot.directory.role_by_arn(role_arn).ok_or_else(|| {
            audit.denial = Some("implicitDeny: no such role".into());
            StsError::not_authorized(ACTION)
        })?;
        audit.resources.push(role_resource(role));
        let seconds = duration(
            params,
            i64::from(role.max_session_duration),
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )?;
        let mut extras = session_extras(params, self.store.as_ref(), false)?;
        extras.set_web_tags(web.session_tags.clone(), web.pod_tags.clone())?;
        if !extras.tags.is_empty() {
            // As CloudTrail records a web identity's tags.
            let tags: serde_json::Map<String, serde_json::Value> = (extras.tags.iter())
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect();
            audit
                .request_parameters
                .insert("principalTags".into(), tags.into());
        }

        let mut ctx = request_context(req);
        for (claim, values) in &web.claims {
            let key = format!("{}:{claim}", provider.url.key());
            match values.as_slice() {
                [one] => ctx.insert(key, one.clone()),
                many => ctx.insert_multi(key, many.iter().cloned()),
            };
        }
        // `aud` is the audience that matched, as IAM sets it (the full list is `oaud`'s).
        ctx.insert(format!("{}:aud", provider.url.key()), web.audience.clone());
        ctx.insert("aws:FederatedProvider", provider.arn.clone());
        ctx.insert("sts:RoleSessionName", session.clone());
        extras.insert_request_tags(&mut ctx);
        let principal = Principal::Federated(provider.arn.clone());
        let trust = Source::new("trust policy", &role.trust);
        let set = PolicySet {
            resource: Some(trust),
            ..Default::default()
        };
        let decision = authorize(
            &set,
            &Request::new("sts:AssumeRoleWithWebIdentity", &role.arn, &ctx).by(&principal),
        );
        tracing::debug!(provider = %provider.arn, sub = %web.subject, role = %role.arn, %decision, "web identity trust decision");
        decision.verdict.tally(&mut audit.decisions);
        if !decision.verdict.is_allowed() {
            audit.denial = Some(decision.to_string());
            return Err(StsError::not_authorized(ACTION));
        }
        // The limits, once the call is allowed: per provider and subject (one service
        // account), and per role.
        let limit_key = format!("{}:{}", provider.arn, web.subject);
        self.limiter.admit(&limit_key, Some(&role.arn), req.now)?;
        let seconds = self.clamp(seconds);
        let mut out = Xml::new();
        let claims = self.role_session(
            &mut out,
            role,
            &session,
            (req.now, seconds),
            extras,
            None,
            Some((
                provider.arn.clone(),
                web.subject.clone(),
                web.audience.clone(),
            )),
            audit,
        )?;
        out.text("SubjectFromWebIdentityToken", &web.subject)
            .text("Provider", &provider.arn)
            .text("Audience", &web.audience);
        response_element(audit, "provider", provider.arn.clone().into());
        response_element(
            audit,
            "subjectFromWebIdentityToken",
            web.subject.clone().into(),
        );
        response_element(audit, "audience", web.audience.clone().into());
        tracing::info!(provider = %provider.arn, sub = %web.subject, role = %role.arn, session = %session, expires = claims.expires, "role assumed with web identity");
        Ok(out.finish())
    }
}
