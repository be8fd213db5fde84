//! The AWS query protocol on the S3 port: `POST /` with a form body (`Action=CreateUser&...`)
//! or `GET /?Action=...`, signed with SigV4 for service `iam` or `sts`, or unsigned for
//! AssumeRoleWithWebIdentity. This side reads the body (bounded), checks the signature with
//! `keyless-sigv4`, resolves the caller (long-term key or session token) and hands the action
//! to the IAM API or to STS; transport errors are mapped to AWS's codes here, in one place.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/CommonParameters.html>
//! <https://docs.aws.amazon.com/STS/latest/APIReference/CommonParameters.html>

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use keyless_iam::api::{self, ApiRequest, IAM_NAMESPACE};
use keyless_iam::{Caller, KeyProblem, Keyring, ids};
use keyless_sigv4::{Authorization, SigV4Error};
use keyless_sts::{STS_NAMESPACE, Sts, StsRequest, is_unsigned_action};
use keyless_types::query::{self, Params};
use keyless_types::{Clock, RequestId, RequestLog, Secret};
use sha2::{Digest as _, Sha256};

/// The largest form body read: IAM's largest inputs are simulations of several policies.
const MAX_BODY: usize = 1024 * 1024;

/// The largest unsigned body read: a web identity token (20,000 characters) and a session
/// policy, encoded.
const MAX_UNSIGNED_BODY: usize = 64 * 1024;

/// How long a client has to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The clock skew SigV4 allows either way.
const MAX_SKEW: i64 = 15 * 60;

/// Services whose query-protocol requests this endpoint answers.
const SERVICES: [&str; 2] = ["iam", "sts"];

/// The IAM and STS endpoint.
#[derive(Clone)]
pub(crate) struct QueryApi {
    keys: Keyring,
    clock: Arc<dyn Clock>,
    sts: Sts,
}

/// Why a request was refused before it reached its action.
#[derive(Debug)]
enum QueryError {
    MissingAuthentication,
    IncompleteSignature(String),
    InvalidClientTokenId,
    ExpiredToken,
    SignatureDoesNotMatch(String),
    BodyTooLarge,
    BadBody(String),
    MissingAction,
}

impl QueryError {
    /// The AWS code, HTTP status and message.
    fn wire(&self) -> (&'static str, u16, String) {
        match self {
            Self::MissingAuthentication => (
                "MissingAuthenticationToken",
                403,
                "Request is missing Authentication Token".into(),
            ),
            Self::IncompleteSignature(m) => ("IncompleteSignature", 400, m.clone()),
            Self::InvalidClientTokenId => (
                "InvalidClientTokenId",
                403,
                "The security token included in the request is invalid.".into(),
            ),
            Self::ExpiredToken => (
                "ExpiredToken",
                403,
                "The security token included in the request is expired".into(),
            ),
            Self::SignatureDoesNotMatch(m) => ("SignatureDoesNotMatch", 403, m.clone()),
            Self::BodyTooLarge => (
                "RequestEntityTooLarge",
                413,
                "The request body is too large.".into(),
            ),
            Self::BadBody(m) => ("MalformedQueryString", 400, m.clone()),
            Self::MissingAction => ("MissingAction", 400, "Missing Action".into()),
        }
    }
}

impl From<SigV4Error> for QueryError {
    fn from(e: SigV4Error) -> Self {
        match e {
            SigV4Error::Malformed(m) => Self::IncompleteSignature(m),
            SigV4Error::RequestTimeTooSkewed => {
                Self::SignatureDoesNotMatch("Signature expired: the request time is more than 15 minutes from the server's time.".into())
            }
            SigV4Error::SignatureDoesNotMatch {
                canonical_request,
                string_to_sign,
            } => {
                tracing::debug!(%canonical_request, %string_to_sign, "signature does not match");
                let e = SigV4Error::SignatureDoesNotMatch {
                    canonical_request,
                    string_to_sign,
                };
                Self::SignatureDoesNotMatch(e.to_string())
            }
        }
    }
}

/// The service a request's SigV4 credential scope names (`.../REGION/SERVICE/aws4_request`).
/// Read the way `Authorization::parse` reads it (the `Credential` part, not any text that
/// contains `Credential=`), so that routing and verification agree.
fn signed_service<B>(req: &Request<B>) -> Option<&str> {
    let auth = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let scope = rest
        .split(',')
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    scope.rsplit('/').nth(1)
}

/// Whether the request's `Content-Type` is `mime` (any parameters and case).
pub(crate) fn content_type_is(headers: &hyper::HeaderMap, mime: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with(mime))
}

const FORM: &str = "application/x-www-form-urlencoded";

impl QueryApi {
    pub(crate) fn new(keys: Keyring, clock: Arc<dyn Clock>, sts: Sts) -> Self {
        Self { keys, clock, sts }
    }

    /// Whether a request belongs to the query APIs rather than to S3: signed for one of their
    /// services, or an unsigned request to `/` that is a form POST or names an `Action` in its
    /// query string (neither of which S3 ever receives).
    pub(crate) fn claims<B>(req: &Request<B>) -> bool {
        match signed_service(req) {
            Some(service) => SERVICES.contains(&service),
            None => {
                req.uri().path() == "/"
                    && !req.headers().contains_key(AUTHORIZATION)
                    && ((req.method() == hyper::Method::POST
                        && content_type_is(req.headers(), FORM))
                        || query_names_action(req.uri().query()))
            }
        }
    }

    /// Answers a query-protocol request.
    pub(crate) async fn serve(
        &self,
        req: Request<Incoming>,
        source_ip: Option<IpAddr>,
        secure_transport: bool,
    ) -> Response<s3s::Body> {
        // One id per request, made where it entered the server (S3 uses the same).
        let id = (req.extensions().get::<RequestId>().cloned()).unwrap_or_else(ids::request_id);
        let request_id = id.as_str();
        let (api, namespace) = match signed_service(&req) {
            Some("iam") => ("iam", IAM_NAMESPACE),
            _ => ("sts", STS_NAMESPACE),
        };
        let log = req.extensions().get::<RequestLog>().cloned();
        // The API first: a request refused before its signature is checked still counts as one.
        if let Some(log) = &log {
            log.update(|f| f.api = api);
        }
        let (status, body) = match self.run(req, source_ip, secure_transport, request_id).await {
            Ok(response) => {
                if let Some(log) = &log {
                    log.absorb(response.outcome);
                }
                (response.status, response.body)
            }
            Err(e) => {
                let (code, status, message) = e.wire();
                tracing::debug!(code, %message, "query request refused");
                if let Some(log) = &log {
                    log.update(|f| {
                        f.error_code = Some(code.to_owned());
                        f.error_message = Some(message.clone());
                    });
                }
                (
                    status,
                    query::error_response(namespace, code, &message, status < 500, request_id),
                )
            }
        };
        let mut response = Response::new(s3s::Body::from(body));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-requestid", value);
        }
        response.extensions_mut().insert(id);
        response
    }

    async fn run(
        &self,
        req: Request<Incoming>,
        source_ip: Option<IpAddr>,
        secure_transport: bool,
        request_id: &str,
    ) -> Result<api::ApiResponse, QueryError> {
        let (parts, body) = req.into_parts();
        let now = self.clock.unix_seconds();
        // Who signed is settled before a byte of the body is read.
        let signer = if parts.headers.contains_key(AUTHORIZATION) {
            Some(self.signer(&parts, now)?)
        } else {
            None
        };
        let limit = if signer.is_some() {
            MAX_BODY
        } else {
            MAX_UNSIGNED_BODY
        };
        let limited = http_body_util::Limited::new(body, limit);
        let body = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(QueryError::BodyTooLarge);
            }
            Ok(Err(e)) => return Err(QueryError::BadBody(format!("cannot read the body: {e}"))),
            Err(_) => {
                return Err(QueryError::BadBody(
                    "the body did not arrive in time".into(),
                ));
            }
        };
        if let Some((authorization, secret, _)) = &signer {
            self.verify(&parts, authorization, secret, &body, now)?;
        }
        let mut params = Params::parse_form(parts.uri.query().unwrap_or(""));
        if content_type_is(&parts.headers, FORM) {
            let text = std::str::from_utf8(&body)
                .map_err(|_| QueryError::BadBody("the form body is not UTF-8".into()))?;
            params.extend(Params::parse_form(text));
        }
        let action = params
            .get("Action")
            .ok_or(QueryError::MissingAction)?
            .to_owned();
        if let Some(log) = parts.extensions.get::<RequestLog>() {
            let principal = signer
                .as_ref()
                .map(|(_, _, caller)| caller.arn(self.keys.account_id()));
            let access_key_id = signer
                .as_ref()
                .map(|(a, _, _)| a.credential.access_key_id.clone());
            let identity = signer.as_ref().map(|(_, _, caller)| {
                caller.user_identity(self.keys.account_id(), access_key_id.as_deref())
            });
            let request_parameters = params.for_audit();
            log.update(|f| {
                f.operation = Some(action.clone());
                f.principal = principal;
                f.access_key_id = access_key_id;
                f.identity = identity;
                f.request_parameters = request_parameters;
            });
        }
        let caller = match signer {
            None if is_unsigned_action(&action) => None,
            None => return Err(QueryError::MissingAuthentication),
            Some((authorization, _, caller)) if authorization.credential.service == "sts" => {
                Some(caller)
            }
            Some((_, _, caller)) => {
                return Ok(self
                    .iam(
                        action,
                        params,
                        caller,
                        source_ip,
                        secure_transport,
                        now,
                        request_id,
                    )
                    .await);
            }
        };
        let req = StsRequest {
            action: &action,
            params: &params,
            caller: caller.as_ref(),
            source_ip,
            secure_transport,
            now,
        };
        let span = tracing::debug_span!("sts", action = %action, request_id = %request_id);
        let response =
            tracing::Instrument::instrument(self.sts.handle(&req, request_id), span).await;
        Ok(api::ApiResponse {
            status: response.status,
            body: response.body,
            outcome: response.outcome,
        })
    }

    /// Hands a verified IAM call to the IAM API.
    #[allow(clippy::too_many_arguments)]
    async fn iam(
        &self,
        action: String,
        params: Params,
        caller: Caller,
        source_ip: Option<IpAddr>,
        secure_transport: bool,
        now: i64,
        request_id: &str,
    ) -> api::ApiResponse {
        let store = Arc::clone(self.keys.store());
        let id = request_id.to_owned();
        // Changes commit to disk: off the async threads.
        tokio::task::spawn_blocking(move || {
            let req = ApiRequest {
                action: &action,
                params: &params,
                caller: &caller,
                source_ip,
                secure_transport,
                now,
            };
            let span = tracing::debug_span!("iam", action = %action, request_id = %id);
            let _entered = span.enter();
            api::handle(store.as_ref(), &req, &id)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "iam request panicked");
            api::ApiError::Iam(keyless_iam::IamError::Storage("the request failed".into()))
                .response(IAM_NAMESPACE, request_id)
        })
    }

    /// The signature's claims, the signer's secret and who the signer is, from the headers.
    fn signer(
        &self,
        parts: &hyper::http::request::Parts,
        now: i64,
    ) -> Result<(Authorization, Secret, Caller), QueryError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(auth) = header(AUTHORIZATION.as_str()) else {
            return Err(QueryError::MissingAuthentication);
        };
        let authorization = Authorization::parse(auth)?;
        let service = authorization.credential.service.as_str();
        if !SERVICES.contains(&service) {
            return Err(QueryError::IncompleteSignature(format!(
                "Credential should be scoped to a valid service: `{service}`"
            )));
        }
        let token = header("x-amz-security-token");
        let key = authorization.credential.access_key_id.as_str();
        let caller = self
            .keys
            .resolve(key, token, now)
            .map_err(|problem| match problem {
                KeyProblem::ExpiredToken => QueryError::ExpiredToken,
                KeyProblem::UnknownKey | KeyProblem::InvalidToken => {
                    QueryError::InvalidClientTokenId
                }
            })?;
        let secret = self
            .keys
            .secret(key)
            .ok_or(QueryError::InvalidClientTokenId)?;
        Ok((authorization, secret, caller))
    }

    /// Checks the signature over the request and its body.
    fn verify(
        &self,
        parts: &hyper::http::request::Parts,
        authorization: &Authorization,
        secret: &Secret,
        body: &[u8],
        now: i64,
    ) -> Result<(), QueryError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let body_hash = keyless_types::hex::encode(&Sha256::digest(body));
        if let Some(claimed) = header("x-amz-content-sha256")
            && claimed != body_hash
        {
            return Err(QueryError::SignatureDoesNotMatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into(),
            ));
        }
        let mut headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        // HTTP/2 carries the host as the URI's authority, not as a header.
        let authority = parts.uri.authority().map(|a| a.as_str());
        if let (false, Some(authority)) = (parts.headers.contains_key("host"), authority) {
            headers.push(("host", authority));
        }
        let request = keyless_sigv4::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            payload_hash: &body_hash,
        };
        keyless_sigv4::verify(&request, authorization, secret.expose(), now, MAX_SKEW)?;
        Ok(())
    }
}

/// Whether a query string has an `Action` parameter.
fn query_names_action(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.split('=').next() == Some("Action"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        Request::builder()
            .method("POST")
            .uri("/")
            .header(AUTHORIZATION, value)
            .body(())
            .unwrap()
    }

    #[test]
    fn routes_by_the_credential_part_alone() {
        let iam = "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signed_service(&with_auth(iam)), Some("iam"));
        assert!(QueryApi::claims(&with_auth(iam)));
        // A `Credential=` hidden in another part does not decide the route.
        let smuggled = "AWS4-HMAC-SHA256 SignedHeaders=host;x=Credential=A/d/r/iam/aws4_request, Credential=AKID/20261125/us-east-1/s3/aws4_request, Signature=abc";
        assert_eq!(signed_service(&with_auth(smuggled)), Some("s3"));
        assert!(!QueryApi::claims(&with_auth(smuggled)));
        assert!(!QueryApi::claims(&with_auth("AWS AKID:sig")));
    }
}
