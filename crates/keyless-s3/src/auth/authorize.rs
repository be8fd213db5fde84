//! What a caller may do: every S3 request is decided by the policy engine before it reaches
//! storage, with the IAM action, resource and condition keys [`crate::actions`] gives its
//! operation. The root user may do everything in the account, as on AWS; IAM users and
//! sessions by their identity policies and the bucket's policy, by the evaluation logic;
//! anonymous callers only what a bucket policy grants them. Listings, deletes of many keys and
//! copies are decided in their own hooks, from the request as s3s parsed it.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>

use std::sync::Arc;

use keyless_iam::Caller;
use keyless_policy::{
    Explanation, Policy, PolicyKind, PolicySet, Principal, Request, Source, authorize,
};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{
    CopyObjectInput, CopySource, DeleteObjectsInput, ListObjectVersionsInput, ListObjectsInput,
    ListObjectsV2Input, PostObjectInput, PutObjectLegalHoldInput, PutObjectRetentionInput,
    PutObjectTaggingInput, Timestamp, TimestampFormat, UploadPartCopyInput,
};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use super::authenticate::Signed;
use super::{Authorizer, access_denied};
use crate::actions::{AuthType, BYPASS_GOVERNANCE, LockAsks, RequestFacts, S3Op, object_arn};
use crate::extensions::{ClientAddr, DeniedKeys, MayBypassGovernance, MayList, SecureTransport};
use crate::object_lock::remaining_days;
use crate::params::QueryAuth;
use crate::service::millis;
use crate::store::{ObjectStore, StoreError};
use crate::wire::store_error;

/// S3's limit on the keys of one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

impl<S: ObjectStore> Authorizer<S> {
    /// Decides `action` on `resource` (in `bucket`, whose policy applies) for `caller`, and
    /// refuses with S3's AccessDenied if it is not allowed: AWS's detailed message for a caller
    /// of this account, the bare `Access Denied` for anyone else. Why goes to the request's
    /// record, for the audit trail.
    async fn decide(
        &self,
        caller: Option<&Caller>,
        action: &str,
        bucket: &str,
        resource: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let decided = self
            .explain(caller, action, bucket, resource, facts)
            .await?;
        // The root user's actions are not the policy engine's decisions: not counted.
        let root = caller.is_some_and(Caller::is_root);
        if let Some(log) = &facts.log {
            log.update(|f| {
                if !root {
                    decided.verdict.tally(&mut f.decisions);
                }
                if !decided.verdict.is_allowed() {
                    f.denial = Some(format!("{action} on {resource}: {}", decided.text));
                }
            });
        }
        if decided.verdict.is_allowed() {
            return Ok(());
        }
        match (caller, decided.denied_by) {
            (Some(caller), Some(by)) if !decided.cross_account => Err(s3_error!(
                AccessDenied,
                "User: {} is not authorized to perform: {action} on resource: \"{resource}\" {}",
                caller.arn(&self.inner.account_id),
                by.phrase(action)
            )),
            _ => Err(access_denied()),
        }
    }

    /// The decision on `action` on `resource` (in `bucket`, whose policy applies) for `caller`.
    async fn explain(
        &self,
        caller: Option<&Caller>,
        action: &str,
        bucket: &str,
        resource: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<Explanation> {
        if caller.is_some_and(Caller::is_root) {
            return Ok(Explanation::root());
        }
        let bucket_policy = if bucket.is_empty() {
            None
        } else {
            match self.inner.store.bucket_policy(bucket).await {
                Ok(text) => text,
                // A caller who may not see the bucket does not learn that it is missing.
                Err(StoreError::NoSuchBucket(_)) if caller.is_none() => {
                    if let Some(log) = &facts.log {
                        log.update(|f| f.denial = Some(format!("{action} on {resource}: implicitDeny: no such bucket, to an anonymous caller")));
                    }
                    return Err(access_denied());
                }
                Err(StoreError::NoSuchBucket(_)) => None,
                Err(e) => return Err(store_error(e)),
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
        let decided = match caller {
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
                decision.explain()
            }
        };
        Ok(decided)
    }

    /// Whether `caller` may bypass governance retention on `resource`
    /// (`s3:BypassGovernanceRetention`); a request that asks to and may not is not refused, its
    /// governance retention just binds.
    async fn may_bypass(
        &self,
        caller: Option<&Caller>,
        bucket: &str,
        resource: &str,
        facts: &RequestFacts<'_>,
    ) -> MayBypassGovernance {
        let decided = self
            .explain(caller, BYPASS_GOVERNANCE, bucket, resource, facts)
            .await;
        MayBypassGovernance(decided.is_ok_and(|d| d.verdict.is_allowed()))
    }

    /// The object's tags for `s3:ExistingObjectTag/<key>`, read only when the bucket's policy or
    /// one of the caller's tests such a key (most never do, and then nothing is read). An
    /// object that is not there has none; the operation answers for it.
    async fn existing_tags(
        &self,
        caller: Option<&Caller>,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<Vec<(String, String)>> {
        const PREFIX: &str = "s3:ExistingObjectTag/";
        let by_bucket = match self.inner.store.bucket_policy(bucket).await {
            Ok(Some(text)) => self
                .compiled_policy(bucket, text)?
                .mentions_key_prefix(PREFIX),
            Ok(None) | Err(_) => false,
        };
        if !by_bucket && !caller.is_some_and(|c| c.policies_mention(PREFIX)) {
            return Ok(Vec::new());
        }
        match self.inner.store.tagged_object(bucket, key, version).await {
            Ok(info) => Ok(info.tags),
            Err(_) => Ok(Vec::new()),
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
            log: extensions.get::<keyless_types::RequestLog>().cloned(),
            ..Default::default()
        }
    }

    /// A listing, decided with the `s3:prefix`, `s3:delimiter` and `s3:max-keys` the handler
    /// will use.
    async fn list<T>(
        &self,
        op: S3Op,
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
        self.decide(
            caller.as_ref(),
            op.action(),
            bucket,
            &op.resource(bucket, ""),
            &facts,
        )
        .await
    }

    /// A copy also reads its source: `s3:GetObject` on it (`s3:GetObjectVersion` when the
    /// source names a version).
    async fn copy_source(
        &self,
        source: &CopySource,
        extensions: &http::Extensions,
    ) -> S3Result<()> {
        let caller = Self::settled(extensions)?;
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(access_denied());
        };
        let facts = self.facts(caller.as_ref(), extensions);
        self.decide(
            caller.as_ref(),
            S3Op::GetObject.action_for(version_id.as_deref()),
            bucket,
            &object_arn(bucket, key),
            &facts,
        )
        .await
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> S3Access for Authorizer<S> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Signed {
            caller,
            auth_type,
            version,
        } = self.authenticate(cx)?;
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
            S3Op::DeleteObjects
                | S3Op::ListObjects
                | S3Op::ListObjectsV2
                | S3Op::ListObjectVersions
                | S3Op::PutObjectTagging
                | S3Op::PutObjectRetention
                | S3Op::PutObjectLegalHold
                | S3Op::PostObject
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
        let server_side_encryption = cx
            .headers()
            .get("x-amz-server-side-encryption")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Malformed tags are refused by the operation itself, with S3's text.
        let request_tags = crate::tags::header_tags(
            cx.headers()
                .get("x-amz-tagging")
                .and_then(|v| v.to_str().ok()),
        )
        .unwrap_or_default();
        let mut facts = self.facts(caller.as_ref(), cx.extensions_mut());
        facts.request_tags = &request_tags;
        facts.auth_type = auth_type;
        facts.signature_version = version;
        facts.content_sha256 = content_sha256.as_deref();
        facts.server_side_encryption = server_side_encryption.as_deref();
        let version_id = crate::params::query_value(cx.uri().query(), "versionId");
        facts.version_id = version_id.as_deref();
        let header = |name: &str| {
            cx.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (lock_mode, lock_until, legal_hold) = (
            header("x-amz-object-lock-mode"),
            header("x-amz-object-lock-retain-until-date"),
            header("x-amz-object-lock-legal-hold"),
        );
        let asks = LockAsks {
            retention: lock_mode.is_some() || lock_until.is_some(),
            legal_hold: legal_hold.is_some(),
            bucket_lock: header("x-amz-bucket-object-lock-enabled")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        let bypass_asked = header("x-amz-bypass-governance-retention")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        facts.object_lock_mode = lock_mode.as_deref();
        facts.object_lock_retain_until_date = lock_until.as_deref();
        facts.object_lock_remaining_retention_days = lock_until
            .as_deref()
            .and_then(|t| Timestamp::parse(TimestampFormat::DateTime, t).ok())
            .map(|t| remaining_days(millis(&t), self.inner.clock.unix_millis()));
        facts.object_lock_legal_hold = legal_hold.as_deref();
        let existing_tags = match op.sees_existing_tags() {
            true => {
                self.existing_tags(caller.as_ref(), &bucket, &key, version_id.as_deref())
                    .await?
            }
            false => Vec::new(),
        };
        facts.existing_tags = &existing_tags;
        self.decide(
            caller.as_ref(),
            op.action_for(version_id.as_deref()),
            &bucket,
            &op.resource(&bucket, &key),
            &facts,
        )
        .await?;
        for action in op.also_needs(asks) {
            self.decide(
                caller.as_ref(),
                action,
                &bucket,
                &op.resource(&bucket, &key),
                &facts,
            )
            .await?;
        }
        let may_bypass = match bypass_asked && op.may_bypass_governance() {
            true => Some(
                self.may_bypass(
                    caller.as_ref(),
                    &bucket,
                    &op.resource(&bucket, &key),
                    &facts,
                )
                .await,
            ),
            false => None,
        };
        if matches!(
            op,
            S3Op::GetObject | S3Op::HeadObject | S3Op::GetObjectAttributes
        ) {
            // As on S3: a missing key is a 404 only to a caller who may list the bucket. A
            // question, not a decision the request is refused by: it is not counted or recorded.
            let list = S3Op::ListObjectsV2;
            let may_list = self
                .explain(
                    caller.as_ref(),
                    list.action(),
                    &bucket,
                    &list.resource(&bucket, ""),
                    &facts,
                )
                .await
                .is_ok_and(|d| d.verdict.is_allowed());
            cx.extensions_mut().insert(MayList(may_list));
        }
        if let Some(may) = may_bypass {
            cx.extensions_mut().insert(may);
        }
        Ok(())
    }

    async fn list_objects(&self, req: &mut S3Request<ListObjectsInput>) -> S3Result<()> {
        let i = &req.input;
        self.list(
            S3Op::ListObjects,
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
            S3Op::ListObjectsV2,
            req,
            &i.bucket,
            i.prefix.as_deref(),
            i.delimiter.as_deref(),
            i.max_keys,
        )
        .await
    }

    async fn list_object_versions(
        &self,
        req: &mut S3Request<ListObjectVersionsInput>,
    ) -> S3Result<()> {
        let i = &req.input;
        self.list(
            S3Op::ListObjectVersions,
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
        let bypass_asked = req.input.bypass_governance_retention == Some(true);
        let mut may_bypass = true;
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for object in std::mem::take(&mut req.input.delete.objects) {
            let mut facts = self.facts(caller.as_ref(), &req.extensions);
            facts.version_id = object.version_id.as_deref();
            let resource = object_arn(&req.input.bucket, &object.key);
            match self
                .decide(
                    caller.as_ref(),
                    S3Op::DeleteObject.action_for(object.version_id.as_deref()),
                    &req.input.bucket,
                    &resource,
                    &facts,
                )
                .await
            {
                Ok(()) => {
                    if bypass_asked && may_bypass {
                        may_bypass = self
                            .may_bypass(caller.as_ref(), &req.input.bucket, &resource, &facts)
                            .await
                            .0;
                    }
                    allowed.push(object);
                }
                Err(_) => denied.push((object.key, object.version_id)),
            }
        }
        req.input.delete.objects = allowed;
        req.extensions.insert(DeniedKeys(denied));
        if bypass_asked {
            req.extensions.insert(MayBypassGovernance(may_bypass));
        }
        Ok(())
    }

    /// PutObjectTagging is decided with the tags of its body (`s3:RequestObjectTag/<key>`).
    async fn put_object_tagging(&self, req: &mut S3Request<PutObjectTaggingInput>) -> S3Result<()> {
        let caller = Self::settled(&req.extensions)?;
        let tags = crate::tags::body_tags(&req.input.tagging.tag_set).unwrap_or_default();
        let existing = self
            .existing_tags(
                caller.as_ref(),
                &req.input.bucket,
                &req.input.key,
                req.input.version_id.as_deref(),
            )
            .await?;
        let mut facts = self.facts(caller.as_ref(), &req.extensions);
        facts.request_tags = &tags;
        facts.existing_tags = &existing;
        facts.version_id = req.input.version_id.as_deref();
        self.decide(
            caller.as_ref(),
            S3Op::PutObjectTagging.action_for(req.input.version_id.as_deref()),
            &req.input.bucket,
            &object_arn(&req.input.bucket, &req.input.key),
            &facts,
        )
        .await
    }

    /// A browser-form upload is a PutObject of the form's `key`, decided with the form's tags
    /// and encryption as a PUT's headers would be; its ACL and encryption fields are refused as
    /// those headers are.
    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        let form = req
            .extensions
            .get::<crate::extensions::FormFields>()
            .cloned()
            .unwrap_or_default();
        crate::service::refuse_form_fields(
            &req.input,
            form.acl.get().map(String::as_str),
            &self.inner.account_id,
        )?;
        // `${filename}` in the key is the uploaded file's name, as S3 has it.
        if req.input.key.contains("${filename}") {
            let name = form.filename.get().cloned().unwrap_or_default();
            req.input.key = req.input.key.replace("${filename}", &name);
        }
        let caller = Self::settled(&req.extensions)?;
        let tags = crate::tags::header_tags(req.input.tagging.as_deref()).unwrap_or_default();
        let mut facts = self.facts(caller.as_ref(), &req.extensions);
        facts.request_tags = &tags;
        facts.auth_type = Some(AuthType::Post);
        facts.signature_version = Some("AWS4-HMAC-SHA256");
        facts.server_side_encryption = req
            .input
            .server_side_encryption
            .as_ref()
            .map(|s| s.as_str());
        let resource = object_arn(&req.input.bucket, &req.input.key);
        let i = &req.input;
        let asks = LockAsks {
            retention: i.object_lock_mode.is_some() || i.object_lock_retain_until_date.is_some(),
            legal_hold: i.object_lock_legal_hold_status.is_some(),
            bucket_lock: false,
        };
        facts.object_lock_mode = i.object_lock_mode.as_ref().map(|m| m.as_str());
        facts.object_lock_legal_hold = i.object_lock_legal_hold_status.as_ref().map(|h| h.as_str());
        let op = S3Op::PostObject;
        for action in std::iter::once(op.action()).chain(op.also_needs(asks)) {
            self.decide(
                caller.as_ref(),
                action,
                &req.input.bucket,
                &resource,
                &facts,
            )
            .await?;
        }
        Ok(())
    }

    /// PutObjectRetention is decided with the retention of its body
    /// (`s3:object-lock-mode`, `-retain-until-date`, `-remaining-retention-days`), and
    /// `x-amz-bypass-governance-retention` with `s3:BypassGovernanceRetention`.
    async fn put_object_retention(
        &self,
        req: &mut S3Request<PutObjectRetentionInput>,
    ) -> S3Result<()> {
        let caller = Self::settled(&req.extensions)?;
        let retention = req.input.retention.as_ref();
        let mode = retention
            .and_then(|r| r.mode.as_ref())
            .map(|m| m.as_str().to_owned());
        let until = retention.and_then(|r| r.retain_until_date.as_ref());
        let until_text = until.and_then(|t| {
            let mut out = Vec::new();
            t.format(TimestampFormat::DateTime, &mut out).ok()?;
            String::from_utf8(out).ok()
        });
        let mut facts = self.facts(caller.as_ref(), &req.extensions);
        facts.version_id = req.input.version_id.as_deref();
        facts.object_lock_mode = mode.as_deref();
        facts.object_lock_retain_until_date = until_text.as_deref();
        facts.object_lock_remaining_retention_days =
            until.map(|t| remaining_days(millis(t), self.inner.clock.unix_millis()));
        let resource = object_arn(&req.input.bucket, &req.input.key);
        self.decide(
            caller.as_ref(),
            S3Op::PutObjectRetention.action(),
            &req.input.bucket,
            &resource,
            &facts,
        )
        .await?;
        if req.input.bypass_governance_retention == Some(true) {
            let may = self
                .may_bypass(caller.as_ref(), &req.input.bucket, &resource, &facts)
                .await;
            req.extensions.insert(may);
        }
        Ok(())
    }

    /// PutObjectLegalHold is decided with the hold of its body (`s3:object-lock-legal-hold`).
    async fn put_object_legal_hold(
        &self,
        req: &mut S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<()> {
        let caller = Self::settled(&req.extensions)?;
        let status = req
            .input
            .legal_hold
            .as_ref()
            .and_then(|h| h.status.as_ref())
            .map(|s| s.as_str().to_owned());
        let mut facts = self.facts(caller.as_ref(), &req.extensions);
        facts.version_id = req.input.version_id.as_deref();
        facts.object_lock_legal_hold = status.as_deref();
        self.decide(
            caller.as_ref(),
            S3Op::PutObjectLegalHold.action(),
            &req.input.bucket,
            &object_arn(&req.input.bucket, &req.input.key),
            &facts,
        )
        .await
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
