//! Storage errors as S3 answers them: the one place that maps them to codes and statuses, with
//! AWS's messages from [`super::errors`]. Internal failures answer `InternalError` and are
//! logged with their cause; a storage error's details (which bucket, how many bytes) go to the
//! log, and the body names the bucket and key as AWS does.

use s3s::{S3Error, S3ErrorCode, s3_error};

use super::errors::aws_error;
use crate::store::StoreError;

/// The S3 error for a storage error.
pub fn store_error(e: StoreError) -> S3Error {
    if !matches!(
        e,
        StoreError::Io(_)
            | StoreError::Database(_)
            | StoreError::Body(_)
            | StoreError::Sealed(_)
            | StoreError::Unavailable(_)
    ) {
        tracing::debug!(error = %e, "the store refused the request");
    }
    match e {
        StoreError::NoSuchBucket(_) => aws_error(S3ErrorCode::NoSuchBucket),
        StoreError::BucketNotEmpty(_) => aws_error(S3ErrorCode::BucketNotEmpty),
        StoreError::BucketAlreadyExists(_) => aws_error(S3ErrorCode::BucketAlreadyOwnedByYou),
        StoreError::NoSuchKey { .. } => aws_error(S3ErrorCode::NoSuchKey),
        StoreError::ChecksumMismatch(algorithm) => s3_error!(
            BadDigest,
            "The {algorithm} you specified did not match the calculated checksum."
        ),
        StoreError::BadDigest => aws_error(S3ErrorCode::BadDigest),
        StoreError::IncompleteBody { .. } => aws_error(S3ErrorCode::IncompleteBody),
        StoreError::InvalidRange { .. } => aws_error(S3ErrorCode::InvalidRange),
        StoreError::PreconditionFailed => aws_error(S3ErrorCode::PreconditionFailed),
        StoreError::NoSuchVersion { .. } => aws_error(S3ErrorCode::NoSuchVersion),
        StoreError::InvalidVersionId(_) => {
            s3_error!(InvalidArgument, "Invalid version id specified")
        }
        // S3 answers a delete marker with its headers: 404 for the latest version, 405 when
        // the request named it.
        StoreError::DeleteMarker {
            version_id,
            requested,
        } => {
            let mut err = match requested {
                true => aws_error(S3ErrorCode::MethodNotAllowed),
                false => aws_error(S3ErrorCode::NoSuchKey),
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                http::HeaderValue::from_static("true"),
            );
            let id = version_id.as_deref().unwrap_or("null");
            if let Ok(value) = http::HeaderValue::from_str(id) {
                headers.insert("x-amz-version-id", value);
            }
            err.set_headers(headers);
            err
        }
        StoreError::ObjectLocked(_) => s3_error!(
            AccessDenied,
            "Access Denied because object protected by object lock."
        ),
        StoreError::InvalidBucketState(why) => s3_error!(InvalidBucketState, "{why}"),
        StoreError::NoObjectLock(_) => s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ),
        StoreError::NoSuchUpload(_) => aws_error(S3ErrorCode::NoSuchUpload),
        StoreError::InvalidPart(_) => aws_error(S3ErrorCode::InvalidPart),
        StoreError::InvalidPartOrder => aws_error(S3ErrorCode::InvalidPartOrder),
        StoreError::EntityTooSmall { .. } => aws_error(S3ErrorCode::EntityTooSmall),
        // A body that failed while streaming: a bad payload hash or chunk signature (which s3s
        // reports through the stream), or a client that went away.
        StoreError::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            tracing::info!(error = %e, "request body stalled");
            aws_error(S3ErrorCode::RequestTimeout)
        }
        StoreError::Body(e) => {
            tracing::info!(error = %e, "request body failed");
            let mut err = aws_error(S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()));
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        StoreError::Io(e) => {
            tracing::error!(error = %e, "storage IO failed");
            aws_error(S3ErrorCode::InternalError)
        }
        StoreError::Sealed(e) => {
            tracing::error!(error = %e, "sealed object data could not be opened");
            aws_error(S3ErrorCode::InternalError)
        }
        StoreError::Database(e) => {
            tracing::error!(error = %e, "metadata database failed");
            aws_error(S3ErrorCode::InternalError)
        }
        // The upstream's own refusal, as it gave it (its 5xx too: SDKs retry those).
        StoreError::Upstream {
            status,
            code,
            message,
        } => {
            let code = S3ErrorCode::from_bytes(code.as_bytes())
                .unwrap_or_else(|| S3ErrorCode::Custom(code.into()));
            let mut err = match message.is_empty() {
                true => aws_error(code),
                false => S3Error::with_message(code, message),
            };
            if let Ok(status) = http::StatusCode::from_u16(status) {
                err.set_status_code(status);
            }
            err
        }
        StoreError::Unavailable(e) => {
            tracing::warn!(error = %e, "the upstream store is unavailable");
            aws_error(S3ErrorCode::ServiceUnavailable)
        }
    }
}
