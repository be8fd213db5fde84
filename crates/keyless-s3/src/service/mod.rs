//! The S3 protocol on top of an [`ObjectStore`]: s3s parses requests, checks signatures and
//! writes XML; these handlers, split by operation family, do the rest. This file holds the
//! service and its settings; `dispatch.rs` routes each operation of s3s's [`s3s::S3`] trait to
//! its handler.

mod acl;
mod bucket;
mod checksum;
mod dispatch;
mod encryption;
mod headers;
mod list;
mod multipart;
mod object;
mod object_lock;

pub(crate) use object_lock::millis;
mod parts;
mod probes;
mod tagging;
mod versioning;

use std::sync::Arc;
use std::time::Duration;

/// A browser form's fields that S3 reads as PutObject's headers (`acl`,
/// `x-amz-server-side-encryption` and the SSE-C and KMS ones), refused as the headers would
/// be: what Keyless does not implement is never ignored.
pub(crate) fn refuse_form_fields(
    input: &s3s::dto::PostObjectInput,
    acl: Option<&str>,
    owner_id: &str,
) -> s3s::S3Result<()> {
    let mut headers = http::HeaderMap::new();
    let mut put = |name: &'static str, value: Option<&str>| {
        if let Some(v) = value.and_then(|v| http::HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    };
    put("x-amz-acl", acl.or(input.acl.as_ref().map(|a| a.as_str())));
    put(
        "x-amz-server-side-encryption",
        input.server_side_encryption.as_ref().map(|s| s.as_str()),
    );
    put(
        "x-amz-server-side-encryption-customer-algorithm",
        input.sse_customer_algorithm.as_deref(),
    );
    put(
        "x-amz-server-side-encryption-customer-key",
        input.sse_customer_key.as_deref(),
    );
    put(
        "x-amz-server-side-encryption-aws-kms-key-id",
        input.ssekms_key_id.as_deref(),
    );
    acl::refuse_acl_headers(&headers, acl::AclOf::Object, owner_id)?;
    encryption::refuse_unimplemented(&headers, encryption::Carries::Method)
}

use keyless_types::Clock;

use crate::store::ObjectStore;

/// How long a request body may go without a byte before the request fails with
/// `RequestTimeout` (S3 closes idle uploads too); without it a stalled client would hold its
/// connection and temporary file forever.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 service over a store.
pub struct KeylessS3<S> {
    store: Arc<S>,
    region: String,
    owner_id: String,
    body_idle_timeout: Duration,
    /// What "now" is, for Object Lock's dates.
    clock: Arc<dyn Clock>,
}

impl<S: ObjectStore> KeylessS3<S> {
    /// Serves `store`, reporting `region` as every bucket's location and `owner_id` (the
    /// account id) as every bucket's owner, with Object Lock's dates read from `clock` (the
    /// store's).
    pub fn new(
        store: Arc<S>,
        region: impl Into<String>,
        owner_id: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            region: region.into(),
            owner_id: owner_id.into(),
            body_idle_timeout: BODY_IDLE_TIMEOUT,
            clock,
        }
    }

    /// How long an upload's body may stall before the request fails (60 s by default).
    #[must_use]
    pub fn with_body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle_timeout = idle;
        self
    }
}
