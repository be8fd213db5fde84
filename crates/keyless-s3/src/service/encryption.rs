//! Server-side encryption headers Keyless does not implement are refused, never ignored: a
//! client that asked for its object to be encrypted under its own key (SSE-C) or a KMS key
//! (SSE-KMS, DSSE-KMS) must not believe it was. SSE-S3 (`AES256`) is accepted as before.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerSideEncryptionCustomerKeys.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html>
//!
//! The answers: a value S3 does not know is S3's own `InvalidArgument` ("The encryption method
//! specified is not supported", 400). A method S3 knows but Keyless does not implement is
//! `NotImplemented` (501), as MinIO answers SSE-KMS when no KMS is configured (its
//! `ErrKMSNotConfigured`) and S3 answers a header "that implies functionality that is not
//! implemented", with a message that names what is missing. A KMS key id without
//! `aws:kms` is S3's `InvalidArgument` for that case.

use http::HeaderMap;
use s3s::{S3Result, s3_error};

use super::KeylessS3;
use crate::store::{BucketConfig, ObjectStore, Sealing};
use crate::wire::store_error;

/// `x-amz-server-side-encryption`.
const SSE: &str = "x-amz-server-side-encryption";

/// The prefixes of the SSE-C headers (`-algorithm`, `-key`, `-key-MD5`), for the object and
/// for a copy's source.
const SSE_C_PREFIXES: [&str; 2] = [
    "x-amz-server-side-encryption-customer-",
    "x-amz-copy-source-server-side-encryption-customer-",
];

/// The headers that only mean something with SSE-KMS.
const KMS_HEADERS: [&str; 3] = [
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
];

/// What the operation may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carries {
    /// An object is written whole (PutObject, CreateMultipartUpload, CopyObject): the
    /// encryption method and its KMS headers, and SSE-C.
    Method,
    /// Only SSE-C keys (UploadPart, UploadPartCopy, GetObject, HeadObject).
    CustomerKey,
}

/// Refuses the encryption Keyless does not implement (see the file's comment).
pub(super) fn refuse_unimplemented(headers: &HeaderMap, carries: Carries) -> S3Result<()> {
    if let Some(name) = headers
        .keys()
        .map(http::HeaderName::as_str)
        .find(|name| SSE_C_PREFIXES.iter().any(|p| name.starts_with(p)))
    {
        return Err(s3_error!(
            NotImplemented,
            "Keyless does not implement server-side encryption with customer-provided keys (SSE-C): the request's `{name}` was refused, and nothing was stored or read"
        ));
    }
    if carries == Carries::CustomerKey {
        return Ok(());
    }
    let method = headers.get(SSE).map(|v| v.to_str().unwrap_or_default());
    match method {
        None | Some("AES256") => {}
        Some(kms @ ("aws:kms" | "aws:kms:dsse")) => {
            return Err(s3_error!(
                NotImplemented,
                "Keyless does not implement server-side encryption with KMS keys: `{SSE}: {kms}` was refused, and nothing was stored"
            ));
        }
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported"
            ));
        }
    }
    if let Some(name) = KMS_HEADERS.iter().find(|h| headers.contains_key(**h)) {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms (`{name}` was given without it)"
        ));
    }
    Ok(())
}

impl<S: ObjectStore> KeylessS3<S> {
    /// Whether a write to `bucket` asks for SSE-S3: `method` (`x-amz-server-side-encryption`,
    /// or a browser form's field of that name, as s3s read it) is `AES256`, or, where objects
    /// are sealed on request, the bucket has a default encryption.
    pub(super) async fn asks_to_seal(
        &self,
        method: Option<&s3s::dto::ServerSideEncryption>,
        bucket: &str,
    ) -> S3Result<bool> {
        if method.is_some_and(|m| m.as_str() == s3s::dto::ServerSideEncryption::AES256) {
            return Ok(true);
        }
        if self.store.sealing() != Sealing::Requested {
            return Ok(false);
        }
        let config = self
            .store
            .bucket_config(bucket, BucketConfig::Encryption)
            .await
            .map_err(store_error)?;
        Ok(config.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn code(pairs: &[(&'static str, &'static str)], carries: Carries) -> Option<String> {
        refuse_unimplemented(&headers(pairs), carries)
            .err()
            .map(|e| e.code().as_str().to_owned())
    }

    #[test]
    fn sse_s3_and_no_encryption_pass() {
        assert_eq!(code(&[], Carries::Method), None);
        assert_eq!(code(&[(SSE, "AES256")], Carries::Method), None);
        assert_eq!(
            code(&[("x-amz-meta-sse", "aws:kms")], Carries::Method),
            None
        );
        // The method header only matters where an object is written.
        assert_eq!(code(&[(SSE, "aws:kms")], Carries::CustomerKey), None);
    }

    #[test]
    fn kms_is_not_implemented_and_bogus_is_invalid() {
        for kms in ["aws:kms", "aws:kms:dsse"] {
            let e = refuse_unimplemented(&headers(&[(SSE, kms)]), Carries::Method).unwrap_err();
            assert_eq!(e.code().as_str(), "NotImplemented");
            assert!(e.message().unwrap().contains("Keyless does not implement"));
        }
        for bogus in ["bogus", "aes256", ""] {
            assert_eq!(
                code(&[(SSE, bogus)], Carries::Method).as_deref(),
                Some("InvalidArgument"),
                "{bogus:?}"
            );
        }
        assert_eq!(
            code(
                &[("x-amz-server-side-encryption-aws-kms-key-id", "k")],
                Carries::Method
            )
            .as_deref(),
            Some("InvalidArgument")
        );
    }

    #[test]
    fn customer_keys_are_refused_everywhere() {
        for carries in [Carries::Method, Carries::CustomerKey] {
            for name in [
                "x-amz-server-side-encryption-customer-algorithm",
                "x-amz-server-side-encryption-customer-key",
                "x-amz-server-side-encryption-customer-key-md5",
                "x-amz-copy-source-server-side-encryption-customer-key",
            ] {
                let e = refuse_unimplemented(&headers(&[(name, "AES256")]), carries).unwrap_err();
                assert_eq!(e.code().as_str(), "NotImplemented", "{name}");
                assert!(e.message().unwrap().contains(name), "{name}");
            }
        }
    }
}
