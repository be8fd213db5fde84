//! Who signed an S3 request. s3s checks the signature with the secret [`S3Auth`] looks up
//! here; then the caller is settled: the account's root user, an IAM user, a session of a role
//! or user (temporary keys whose session token is checked on every request), or an anonymous
//! caller. A SigV2 header signature's date is checked against the clock, and the caller is kept
//! in the request's extensions for the authorizer's later hooks.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html>

use keyless_iam::{Caller, KeyProblem};
use keyless_types::RequestLog;
use keyless_types::audit::UserIdentity;
use s3s::access::S3AccessContext;
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use super::{Authorizer, access_denied};
use crate::actions::AuthType;
use crate::params::QueryAuth;
use crate::store::ObjectStore;

/// Who signed a request, settled by the access check and kept in the request's extensions for
/// the hooks that decide later (listings, deletes, copies). `None` is an anonymous caller.
#[derive(Debug, Clone)]
struct Resolved(Option<Caller>);

/// How far a signed request's date may be from the server's clock, either way.
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// Who signed a request and how, as the authorizer decides with it.
pub(super) struct Signed {
    /// The caller; `None` is an anonymous caller.
    pub(super) caller: Option<Caller>,
    /// `s3:authType`.
    pub(super) auth_type: Option<AuthType>,
    /// `s3:signatureversion`.
    pub(super) version: Option<&'static str>,
}

impl<S: ObjectStore> Authorizer<S> {
    /// Settles who signed the request of `cx` (s3s has checked the signature) and keeps the
    /// caller in its extensions; the operation, key id, bucket and key go to its log line.
    pub(super) fn authenticate(&self, cx: &mut S3AccessContext<'_>) -> S3Result<Signed> {
        let query = QueryAuth::read(cx.uri().query());
        let (auth_type, version) = query.signing(cx.headers());
        let token = match cx.headers().get("x-amz-security-token") {
            Some(header) => header.to_str().ok().map(str::to_owned),
            None => query.token.or_else(|| {
                cx.extensions_mut()
                    .get::<crate::extensions::FormFields>()
                    .and_then(|f| f.token.get().cloned())
            }),
        };
        // A browser form is signed with its POST policy (s3s has checked it).
        let (auth_type, version) = match (auth_type, cx.s3_op().name()) {
            (None, "PostObject") => (Some(AuthType::Post), Some("AWS4-HMAC-SHA256")),
            _ => (auth_type, version),
        };
        if let (Some(AuthType::Header), Some("AWS")) = (auth_type, version) {
            self.check_v2_date(cx.headers())?;
        }
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        if access_key.is_none() && token.is_some() {
            return Err(s3_error!(
                InvalidToken,
                "The provided token is malformed or otherwise invalid."
            ));
        }
        if let Some(log) = cx.extensions_mut().get::<RequestLog>().cloned() {
            let (operation, path) = (cx.s3_op().name(), cx.s3_path());
            log.update(|f| {
                f.operation = Some(operation.to_owned());
                f.access_key_id.clone_from(&access_key);
                (f.bucket, f.key) = match path {
                    S3Path::Root => (None, None),
                    S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
                    S3Path::Object { bucket, key } => {
                        (Some(bucket.to_string()), Some(key.to_string()))
                    }
                };
            });
        }
        let caller = self.resolve(access_key.as_deref(), token.as_deref())?;
        if let Some(log) = cx.extensions_mut().get::<RequestLog>() {
            let account = &self.inner.account_id;
            let identity = match &caller {
                Some(caller) => caller.user_identity(account, access_key.as_deref()),
                // CloudTrail's words for an anonymous S3 caller.
                None => UserIdentity {
                    kind: "AWSAccount".into(),
                    principal_id: Some(String::new()),
                    account_id: Some("anonymous".into()),
                    ..UserIdentity::default()
                },
            };
            let arn = caller.as_ref().map(|c| c.arn(account));
            log.update(|f| {
                f.principal = arn;
                f.identity = Some(identity);
                if caller.is_some() {
                    let method = match auth_type {
                        Some(AuthType::QueryString) => "QueryString",
                        Some(AuthType::Post) => "PostObject",
                        _ => "AuthHeader",
                    };
                    let signature = if version == Some("AWS") {
                        "SigV2"
                    } else {
                        "SigV4"
                    };
                    f.additional
                        .insert("SignatureVersion".into(), signature.into());
                    f.additional
                        .insert("AuthenticationMethod".into(), method.into());
                }
            });
        }
        cx.extensions_mut().insert(Resolved(caller.clone()));
        Ok(Signed {
            caller,
            auth_type,
            version,
        })
    }

    /// The caller of a request signed by `access_key` with session token `token`.
    fn resolve(&self, access_key: Option<&str>, token: Option<&str>) -> S3Result<Option<Caller>> {
        let Some(key) = access_key else {
            return Ok(None);
        };
        let now = self.inner.clock.unix_seconds();
        match self.inner.keys.resolve(key, token, now) {
            Ok(caller) => Ok(Some(caller)),
            Err(KeyProblem::UnknownKey) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Err(KeyProblem::InvalidToken) => Err(s3_error!(
                InvalidToken,
                "The provided token is malformed or otherwise invalid."
            )),
            Err(KeyProblem::ExpiredToken) => {
                Err(s3_error!(ExpiredToken, "The provided token has expired."))
            }
        }
    }

    /// The caller the access check settled.
    pub(super) fn settled(extensions: &http::Extensions) -> S3Result<Option<Caller>> {
        match extensions.get::<Resolved>() {
            Some(Resolved(caller)) => Ok(caller.clone()),
            None => Err(access_denied()),
        }
    }

    /// A SigV2 header signature covers the request's date but s3s does not check it: as S3
    /// does, a date more than 15 minutes from the server's clock is refused, so that a captured
    /// request cannot be replayed later.
    fn check_v2_date(&self, headers: &http::HeaderMap) -> S3Result<()> {
        // `x-amz-date` replaces `Date` in the string to sign when both are sent.
        let date = headers
            .get("x-amz-date")
            .or_else(|| headers.get(http::header::DATE))
            .and_then(|v| v.to_str().ok())
            .and_then(keyless_types::time::parse_http_date)
            .ok_or_else(|| {
                s3_error!(
                    AccessDenied,
                    "AWS authentication requires a valid Date or x-amz-date header"
                )
            })?;
        let now = self.inner.clock.unix_seconds();
        if (now - date).abs() > MAX_SKEW_SECONDS {
            return Err(s3_error!(
                RequestTimeTooSkewed,
                "The difference between the request time and the current time is too large."
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> S3Auth for Authorizer<S> {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.inner.keys.secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.expose())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}
