//! Who may do what: s3s checks the signature with the secret [`Authorizer`] looks up, then
//! every request is decided by the policy engine before it reaches storage.
//!
//! Today the principals are the account's root user (its own key pair: everything in the
//! account, as on AWS) and anonymous callers (only what a bucket policy grants them). IAM users,
//! roles and their policies plug in here next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use keyless_policy::{Policy, PolicyKind, PolicySet, Principal, Request, Source, authorize};
use keyless_types::Clock;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, DeleteObjectsInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use crate::authz::{RequestFacts, S3Op, object_arn};
use crate::store::{ObjectStore, StoreError};

/// The client's address, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Whether the connection is TLS, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport(pub bool);

/// The root user's long-term key pair. `Debug` does not show the secret.
#[derive(Clone)]
pub struct RootKey {
    /// `AKIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

struct Inner<S> {
    store: Arc<S>,
    root: RootKey,
    account_id: String,
    clock: Arc<dyn Clock>,
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

/// Compares without leaking, through timing, where two strings first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn access_denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

impl<S: ObjectStore> Authorizer<S> {
    /// An authorizer for the account `account_id` whose root user holds `root`.
    pub fn new(
        store: Arc<S>,
        root: RootKey,
        account_id: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                root,
                account_id: account_id.into(),
                clock,
            }),
        }
    }

    fn is_root(&self, access_key: &str) -> bool {
        constant_time_eq(
            access_key.as_bytes(),
            self.inner.root.access_key_id.as_bytes(),
        )
    }

    /// Decides an anonymous request by the bucket's policy.
    async fn anonymous(
        &self,
        op: S3Op,
        bucket: &str,
        resource: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let text = match self.inner.store.bucket_policy(bucket).await {
            Ok(Some(text)) => text,
            // A missing bucket is not revealed to a caller who may not see it.
            Ok(None) | Err(StoreError::NoSuchBucket(_)) => return Err(access_denied()),
            Err(e) => return Err(crate::service::store_error(e)),
        };
        let policy = Policy::parse_as(&text, PolicyKind::Resource).map_err(|e| {
            tracing::error!(bucket, error = %e, "stored bucket policy does not parse");
            access_denied()
        })?;
        let ctx = facts.context();
        let principal = Principal::Anonymous;
        let set = PolicySet {
            resource: Some(Source::new("bucket policy", &policy)),
            resource_account: Some(&self.inner.account_id),
            ..Default::default()
        };
        let request = Request::new(op.action(), resource, &ctx).by(&principal);
        let decision = authorize(&set, &request);
        tracing::debug!(principal = "anonymous", action = op.action(), resource, %decision, "authorization");
        if decision.verdict.is_allowed() {
            Ok(())
        } else {
            Err(access_denied())
        }
    }

    /// A copy also reads its source: `s3:GetObject` on it.
    async fn copy_source(
        &self,
        source: &CopySource,
        extensions: &http::Extensions,
    ) -> S3Result<()> {
        let CopySource::Bucket { bucket, key, .. } = source else {
            return Err(access_denied());
        };
        let facts = self.facts(extensions);
        self.anonymous(S3Op::GetObject, bucket, &object_arn(bucket, key), &facts)
            .await
    }

    /// What the listener and the clock say of an anonymous request.
    fn facts(&self, extensions: &http::Extensions) -> RequestFacts<'static> {
        let epoch_seconds = self
            .inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        RequestFacts {
            source_ip: extensions.get::<ClientAddr>().map(|a| a.0.ip()),
            secure_transport: extensions.get::<SecureTransport>().is_some_and(|t| t.0),
            epoch_seconds,
            principal_type: Some("Anonymous"),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> S3Auth for Authorizer<S> {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if self.is_root(access_key) {
            Ok(SecretKey::from(self.inner.root.secret_access_key.as_str()))
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> S3Access for Authorizer<S> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let query = cx.uri().query().map(str::to_owned);
        // Temporary credentials come with STS; until then no token is valid.
        if cx.headers().contains_key("x-amz-security-token")
            || query_param(query.as_deref(), "X-Amz-Security-Token").is_some()
        {
            return Err(s3_error!(
                InvalidToken,
                "The provided token is malformed or otherwise invalid."
            ));
        }
        if let Some(credentials) = cx.credentials() {
            return if self.is_root(&credentials.access_key) {
                Ok(())
            } else {
                Err(access_denied())
            };
        }
        let Some(op) = S3Op::from_name(cx.s3_op().name()) else {
            return Err(access_denied());
        };
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => return Err(access_denied()),
            S3Path::Bucket { bucket } => (bucket.to_string(), String::new()),
            S3Path::Object { bucket, key } => (bucket.to_string(), key.to_string()),
        };
        // Deleting many keys is decided key by key, in `delete_objects` below.
        if op == S3Op::DeleteObjects {
            return Ok(());
        }
        let prefix = query_param(query.as_deref(), "prefix");
        let delimiter = query_param(query.as_deref(), "delimiter");
        let max_keys = query_param(query.as_deref(), "max-keys").and_then(|m| m.parse().ok());
        let mut facts = self.facts(cx.extensions_mut());
        if matches!(op, S3Op::ListObjects | S3Op::ListObjectsV2) {
            facts.prefix = Some(prefix.as_deref().unwrap_or(""));
            facts.delimiter = delimiter.as_deref();
            facts.max_keys = Some(max_keys.unwrap_or(1000));
        }
        self.anonymous(op, &bucket, &op.resource(&bucket, &key), &facts)
            .await
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        if req.credentials.is_some() {
            return Ok(());
        }
        let facts = self.facts(&req.extensions);
        for object in &req.input.delete.objects {
            let resource = object_arn(&req.input.bucket, &object.key);
            self.anonymous(S3Op::DeleteObject, &req.input.bucket, &resource, &facts)
                .await?;
        }
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        if req.credentials.is_some() {
            return Ok(());
        }
        self.copy_source(&req.input.copy_source, &req.extensions)
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        if req.credentials.is_some() {
            return Ok(());
        }
        self.copy_source(&req.input.copy_source, &req.extensions)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = Some("list-type=2&prefix=home%2Falice%2F&delimiter=%2F&X-Amz-Security-Token=abc");
        assert_eq!(query_param(q, "prefix").as_deref(), Some("home/alice/"));
        assert_eq!(query_param(q, "delimiter").as_deref(), Some("/"));
        assert_eq!(
            query_param(q, "X-Amz-Security-Token").as_deref(),
            Some("abc")
        );
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "prefix"), None);
    }

    #[test]
    fn secrets_are_redacted_and_compared_in_constant_time() {
        let key = RootKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
        };
        assert!(!format!("{key:?}").contains("wJalr"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
