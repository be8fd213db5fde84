//! S3 semantics for Keyless: every S3 operation mapped to the IAM action, resource and condition
//! keys that authorize it.
#![warn(missing_docs, unreachable_pub)]

mod authz;

pub mod store;

pub use authz::{ALL_OPS, AuthType, RequestFacts, S3Op, Scope, bucket_arn, object_arn};
