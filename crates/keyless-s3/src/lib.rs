//! S3 for Keyless: every S3 operation mapped to the IAM action, resource and condition keys that
//! authorize it; the storage seam and its backends; the S3 protocol service over a store; and
//! what goes on the wire around s3s (request ids, AWS's error texts, presigned-URL checks).
#![warn(missing_docs, unreachable_pub)]

pub mod access;
mod authz;
pub mod service;
pub mod store;
pub mod wire;

pub use authz::{ALL_OPS, AuthType, RequestFacts, S3Op, Scope, bucket_arn, object_arn};
