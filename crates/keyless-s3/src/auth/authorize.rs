//! Who may do what: s3s checks the signature with the secret [`Authorizer`] looks up, then
//! every request is decided by the policy engine before it reaches storage.
//!
//! The principals are the account's root user (everything in the account, as on AWS), IAM
//! users (their identity policies and the bucket's policy, by the evaluation logic), and
//! anonymous callers (only what a bucket policy grants them), and sessions of roles and users
//! (temporary keys with their session token, checked on every request).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use keyless_iam::{Caller, KeyProblem, Keyring};
use keyless_policy::{Policy, PolicyKind, PolicySet, Principal, Request, Source, authorize};
use keyless_types::{Clock, RequestLog};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{
    CopyObjectInput, CopySource, DeleteObjectsInput, ListObjectsInput, ListObjectsV2Input,
    UploadPartCopyInput,
};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use crate::authz::{AuthType, RequestFacts, S3Op, object_arn};
use crate::store::{ObjectStore, StoreError};

/// The client's address, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Whether the connection is TLS, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport(pub bool);

/// Whether the caller of a GET or HEAD may list the bucket, which decides whether a missing
/// key answers `NoSuchKey` or `AccessDenied`. Absent for the root user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MayList(pub bool);

/// Keys of a DeleteObjects request that the caller may not delete, set aside by the authorizer
/// for the handler to report.
#[derive(Debug, Clone, Default)]
pub struct DeniedKeys(pub Vec<String>);

struct Inner<S> {
    store: Arc<S>,
    keys: Keyring,
    account_id: String,
    clock: Arc<dyn Clock>,
    /// Bucket policies compiled once, by bucket, with the text they were compiled from.
    compiled: RwLock<HashMap<String, (String, Arc<Policy>)>>,
}

/// Authentication and authorization for the S3 endpoint.
pub struct Authorizer<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Authorizer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Who signed a request, settled by the access check and kept in the request's extensions for
/// the hooks that decide later (listings, deletes, copies). `None` is an anonymous caller.
#[derive(Debug, Clone)]
struct Resolved(Option<Caller>);

/// How far a signed request's date may be from the server's clock, either way.
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// S3's limit on the keys of one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

fn access_denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// A query string component decoded the way s3s decodes it (form encoding: `%XX` escapes, `+`
/// for space, a `%` without two hex digits kept as is, invalid UTF-8 replaced), borrowed when
/// there is nothing to decode. A session token is hundreds of bytes, decoded on every request.
pub(crate) fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    // Plain runs are copied whole; only escapes and `+` are looked at byte by byte.
    while let Some(at) = rest.iter().position(|&b| b == b'%' || b == b'+') {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        let step = match (rest[0], hex(rest.get(1)), hex(rest.get(2))) {
            (b'+', _, _) => {
                out.push(b' ');
                1
            }
            (_, Some(high), Some(low)) => {
                // Two hex digits make one byte.
                out.push((high * 16 + low) as u8);
                3
            }
            _ => {
                out.push(b'%');
                1
            }
        };
        rest = &rest[step..];
    }
    out.extend_from_slice(rest);
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// What the access check reads from a query string: the session token and the parameters
/// that tell how the request was signed. Names are decoded (an encoded name must not hide a
/// parameter); of the values only the token's is, so that a presigned URL costs little more
/// than a signed header.
#[derive(Debug, Default, PartialEq)]
struct QueryAuth {
    /// `X-Amz-Security-Token`, decoded.
    token: Option<String>,
    /// `X-Amz-Algorithm` is present: SigV4 in the query.
    algorithm: bool,
    /// `Signature` is present: SigV2 in the query.
    signature: bool,
}

impl QueryAuth {
    fn read(query: Option<&str>) -> Self {
        let mut found = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_component(name);
            if name.eq_ignore_ascii_case("X-Amz-Security-Token") {
                if found.token.is_none() {
                    found.token = Some(decode_component(value).into_owned());
                }
            } else if name.eq_ignore_ascii_case("X-Amz-Algorithm") {
                found.algorithm = true;
            } else if name.eq_ignore_ascii_case("Signature") {
                found.signature = true;
            }
        }
        found
    }

    /// How the request was signed, as `s3:authType` and `s3:signatureversion` say it.
    fn signing(&self, headers: &http::HeaderMap) -> (Option<AuthType>, Option<&'static str>) {
        match headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(a) if a.starts_with("AWS4-HMAC-SHA256") => {
                (Some(AuthType::Header), Some("AWS4-HMAC-SHA256"))
            }
            Some(a) if a.starts_with("AWS ") => (Some(AuthType::Header), Some("AWS")),
            _ if self.algorithm => (Some(AuthType::QueryString), Some("AWS4-HMAC-SHA256")),
            _ if self.signature => (Some(AuthType::QueryString), Some("AWS")),
            _ => (None, None),
        }
    }
}

impl<S: ObjectStore> Authorizer<S> {
    /// An authorizer for the account whose keys `keys` holds.
    pub fn new(store: Arc<S>, keys: Keyring, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                account_id: keys.account_id().to_owned(),
                keys,
                clock,
                compiled: RwLock::new(HashMap::new()),
            }),
        }
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
    fn settled(extensions: &http::Extensions) -> S3Result<Option<Caller>> {
        match extensions.get::<Resolved>() {
            Some(Resolved(caller)) => Ok(caller.clone()),
            None => Err(access_denied()),
        }
    }

    /// Decides `action` on `resource` (in `bucket`, whose policy applies) for `caller`.
    async fn decide(
        &self,
        caller: Option<&Caller>,
        action: &str,
        bucket: &str,
        resource: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        if caller.is_some_and(Caller::is_root) {
            return Ok(());
        }
        let bucket_policy = if bucket.is_empty() {
            None
        } else {
            match self.inner.store.bucket_policy(bucket).await {
                Ok(text) => text,
                // A caller who may not see the bucket does not learn that it is missing.
                Err(StoreError::NoSuchBucket(_)) if caller.is_none() => {
                    return Err(access_denied());
                }
                Err(StoreError::NoSuchBucket(_)) => None,
                Err(e) => return Err(crate::service::store_error(e)),
            }
        };
        let bucket_policy = bucket_policy
            .map(|text| self.compiled_policy(bucket, text))
            .transpose()?;
        let resource_policy = bucket_policy
            .as_ref()
            .map(|p| Source::new("bucket policy", p));
        let account = self.inner.account_id.as_str();
        let mut ctx = facts.context();
        let verdict = match caller {
            Some(caller) => caller.authorize(account, action, resource, &mut ctx, resource_policy),
            None => {
                let set = PolicySet {
                    resource: resource_policy,
                    resource_account: Some(account),
                    ..Default::default()
                };
                let request = Request::new(action, resource, &ctx).by(&Principal::Anonymous);
                let decision = authorize(&set, &request);
                tracing::debug!(principal = "anonymous", action, resource, %decision, "authorization");
                decision.verdict
            }
        };
        if verdict.is_allowed() {
            Ok(())
        } else {
            Err(access_denied())
        }
    }

    /// The compiled form of a bucket's policy text, compiled once per text.
    fn compiled_policy(&self, bucket: &str, text: String) -> S3Result<Arc<Policy>> {
        let cached = self
            .inner
            .compiled
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((source, policy)) = cached.get(bucket)
            && *source == text
        {
            return Ok(Arc::clone(policy));
        }
        drop(cached);
        let policy = Arc::new(Policy::parse_as(&text, PolicyKind::Resource).map_err(|e| {
            tracing::error!(bucket, error = %e, "stored bucket policy does not parse");
            access_denied()
        })?);
        let mut cache = self
            .inner
            .compiled
            .write()
            .unwrap_or_else(|e| e.into_inner());
        cache.insert(bucket.to_owned(), (text, Arc::clone(&policy)));
        Ok(policy)
    }

    /// What the listener and the clock say of a request (the caller's own keys are added
    /// when it is decided).
    fn facts(
        &self,
        caller: Option<&Caller>,
        extensions: &http::Extensions,
    ) -> RequestFacts<'static> {
        RequestFacts {
            source_ip: extensions.get::<ClientAddr>().map(|a| a.0.ip()),
            secure_transport: extensions.get::<SecureTransport>().is_some_and(|t| t.0),
            epoch_seconds: self.inner.clock.unix_seconds(),
            principal_type: caller.is_none().then_some("Anonymous"),
            ..Default::default()
        }
    }

    /// A listing, decided with the `s3:prefix`, `s3:delimiter` and `s3:max-keys` the handler
    /// will use.
    async fn list<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        max_keys: Option<i32>,
    ) -> S3Result<()> {
        let (headers, uri, extensions) = (&req.headers, &req.uri, &req.extensions);
        let caller = Self::settled(extensions)?;
        if caller.as_ref().is_some_and(Caller::is_root) {
            return Ok(());
        }
        let (auth_type, version) = QueryAuth::read(uri.query()).signing(headers);
        let mut facts = self.facts(caller.as_ref(), extensions);
        facts.auth_type = auth_type;
        facts.signature_version = version;
        facts.prefix = Some(prefix.unwrap_or(""));
        facts.delimiter = delimiter;
        facts.max_keys = Some(i64::from(max_keys.unwrap_or(1000)));
        let op = S3Op::ListObjectsV2;
        self.decide(
            caller.as_ref(),
            op.action(),
            bucket,
            &op.resource(bucket, ""),
            &facts,
        )
        .await
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

    /// A copy also reads its source: `s3:GetObject` on it.
    async fn copy_source(
        &self,
        source: &CopySource,
        extensions: &http::Extensions,
    ) -> S3Result<()> {
        let caller = Self::settled(extensions)?;
        let CopySource::Bucket { bucket, key, .. } = source else {
            return Err(access_denied());
        };
        let facts = self.facts(caller.as_ref(), extensions);
        self.decide(
            caller.as_ref(),
            S3Op::GetObject.action(),
            bucket,
            &object_arn(bucket, key),
            &facts,
        )
        .await
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

#[async_trait::async_trait]
impl<S: ObjectStore> S3Access for Authorizer<S> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let query = QueryAuth::read(cx.uri().query());
        let (auth_type, version) = query.signing(cx.headers());
        let token = match cx.headers().get("x-amz-security-token") {
            Some(header) => header.to_str().ok().map(str::to_owned),
            None => query.token,
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
        if let (Some(log), Some(caller)) = (cx.extensions_mut().get::<RequestLog>(), &caller) {
            let arn = caller.arn(&self.inner.account_id);
            log.update(|f| f.principal = Some(arn));
        }
        cx.extensions_mut().insert(Resolved(caller.clone()));
        if caller.as_ref().is_some_and(Caller::is_root) {
            return Ok(());
        }
        let Some(op) = S3Op::from_name(cx.s3_op().name()) else {
            return Err(access_denied());
        };
        // These are decided in their own hooks below, from the request as s3s parsed it:
        // deleting many keys key by key, listings with their `s3:prefix` and friends.
        if matches!(
            op,
            S3Op::DeleteObjects | S3Op::ListObjects | S3Op::ListObjectsV2
        ) {
            return Ok(());
        }
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (String::new(), String::new()),
            S3Path::Bucket { bucket } => (bucket.to_string(), String::new()),
            S3Path::Object { bucket, key } => (bucket.to_string(), key.to_string()),
        };
        let content_sha256 = cx
            .headers()
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut facts = self.facts(caller.as_ref(), cx.extensions_mut());
        facts.auth_type = auth_type;
        facts.signature_version = version;
        facts.content_sha256 = content_sha256.as_deref();
        self.decide(
            caller.as_ref(),
            op.action(),
            &bucket,
            &op.resource(&bucket, &key),
            &facts,
        )
        .await?;
        if matches!(op, S3Op::GetObject | S3Op::HeadObject) {
            // As on S3: a missing key is a 404 only to a caller who may list the bucket.
            let list = S3Op::ListObjectsV2;
            let may_list = self
                .decide(
                    caller.as_ref(),
                    list.action(),
                    &bucket,
                    &list.resource(&bucket, ""),
                    &facts,
                )
                .await
                .is_ok();
            cx.extensions_mut().insert(MayList(may_list));
        }
        Ok(())
    }

    async fn list_objects(&self, req: &mut S3Request<ListObjectsInput>) -> S3Result<()> {
        let i = &req.input;
        self.list(
            req,
            &i.bucket,
            i.prefix.as_deref(),
            i.delimiter.as_deref(),
            i.max_keys,
        )
        .await
    }

    async fn list_objects_v2(&self, req: &mut S3Request<ListObjectsV2Input>) -> S3Result<()> {
        let i = &req.input;
        self.list(
            req,
            &i.bucket,
            i.prefix.as_deref(),
            i.delimiter.as_deref(),
            i.max_keys,
        )
        .await
    }

    /// Each key is decided on its own; as S3 does, keys the caller may not delete are reported
    /// as `AccessDenied` in the response's errors (see [`DeniedKeys`]) while the rest go.
    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        if req.input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema: at most 1000 keys may be deleted at once."
            ));
        }
        let caller = Self::settled(&req.extensions)?;
        if caller.is_none()
            && matches!(
                self.inner.store.bucket_policy(&req.input.bucket).await,
                Err(StoreError::NoSuchBucket(_))
            )
        {
            return Err(access_denied());
        }
        let facts = self.facts(caller.as_ref(), &req.extensions);
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for object in std::mem::take(&mut req.input.delete.objects) {
            let resource = object_arn(&req.input.bucket, &object.key);
            match self
                .decide(
                    caller.as_ref(),
                    S3Op::DeleteObject.action(),
                    &req.input.bucket,
                    &resource,
                    &facts,
                )
                .await
            {
                Ok(()) => allowed.push(object),
                Err(_) => denied.push(object.key),
            }
        }
        req.input.delete.objects = allowed;
        req.extensions.insert(DeniedKeys(denied));
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.copy_source(&req.input.copy_source, &req.extensions)
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.copy_source(&req.input.copy_source, &req.extensions)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_and_the_token_are_decoded_like_s3s_does() {
        // Regression: an encoded name once hid a parameter from the check.
        let read = QueryAuth::read(Some(
            "X-Amz-%41lgorithm=AWS4-HMAC-SHA256&a+b=c+d&x-amz-security-token=ab%2Bc%3D%3D+",
        ));
        assert_eq!(
            read,
            QueryAuth {
                token: Some("ab+c== ".into()),
                algorithm: true,
                signature: false,
            }
        );
        let headers = http::HeaderMap::new();
        assert_eq!(
            read.signing(&headers),
            (Some(AuthType::QueryString), Some("AWS4-HMAC-SHA256"))
        );
        let v2 = QueryAuth::read(Some("AWSAccessKeyId=AKIA&Signature=x%2By&Expires=1"));
        assert_eq!(
            v2.signing(&headers),
            (Some(AuthType::QueryString), Some("AWS"))
        );
        assert_eq!(QueryAuth::read(None), QueryAuth::default());
        assert_eq!(decode_component("plain"), Cow::Borrowed("plain"));
        // The same answers as the percent-encoding crate s3s decodes with.
        for raw in [
            "a%2Fb+c",
            "%",
            "%4",
            "%zz%41",
            "%C3%A9t%C3%A9",
            "%FF%FE+",
            "100%25",
        ] {
            let expected = percent_encoding::percent_decode_str(&raw.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            assert_eq!(decode_component(raw), expected, "{raw}");
        }
    }
}
