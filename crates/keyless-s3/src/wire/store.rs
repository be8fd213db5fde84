//! Storage errors as S3 answers them: the one place that maps them to codes and statuses.
//! Internal failures answer `InternalError` and are logged with their cause.

use s3s::{S3Error, S3ErrorCode, s3_error};

use crate::store::StoreError;

/// The S3 error for a storage error.
pub fn store_error(e: StoreError) -> S3Error {
    match e {
        StoreError::NoSuchBucket(b) => {
            s3_error!(NoSuchBucket, "The specified bucket does not exist: {b}")
        }
        StoreError::BucketNotEmpty(b) => {
            s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty: {b}"
            )
        }
        StoreError::BucketAlreadyExists(b) => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it: {b}"
        ),
        StoreError::NoSuchKey { .. } => s3_error!(NoSuchKey, "The specified key does not exist."),
        StoreError::ChecksumMismatch(algorithm) => s3_error!(
            BadDigest,
            "The {algorithm} you specified did not match the calculated checksum."
        ),
        StoreError::BadDigest => s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ),
        StoreError::IncompleteBody { expected, got } => s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header ({got} of {expected})"
        ),
        StoreError::InvalidRange { .. } => {
            s3_error!(InvalidRange, "The requested range is not satisfiable")
        }
        StoreError::NoSuchUpload(_) => s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."
        ),
        StoreError::InvalidPart(_) => s3_error!(
            InvalidPart,
            "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."
        ),
        StoreError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        ),
        StoreError::EntityTooSmall { .. } => s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ),
        // A body that failed while streaming: a bad payload hash or chunk signature (which s3s
        // reports through the stream), or a client that went away.
        StoreError::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            tracing::info!(error = %e, "request body stalled");
            s3_error!(
                RequestTimeout,
                "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed."
            )
        }
        StoreError::Body(e) => {
            tracing::info!(error = %e, "request body failed");
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "The request body could not be read or did not match its signature.",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        StoreError::Io(e) => {
            tracing::error!(error = %e, "storage IO failed");
            S3Error::new(S3ErrorCode::InternalError)
        }
        StoreError::Database(e) => {
            tracing::error!(error = %e, "metadata database failed");
            S3Error::new(S3ErrorCode::InternalError)
        }
    }
}
