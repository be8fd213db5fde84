//! S3 for Keyless: every S3 operation mapped to the IAM action, resource and condition keys that
//! authorize it (`actions`); conditional requests ([`conditions`]); authentication and authorization of each request ([`auth`]); what
//! the layers leave in a request's extensions ([`extensions`]); the storage seam and its
//! backends ([`store`]); the S3 protocol service over a store ([`service`]); and what goes on the
//! wire around s3s (request ids, AWS's error texts, presigned-URL checks: [`wire`]).
#![warn(missing_docs, unreachable_pub)]

mod actions;
pub mod auth;
pub mod conditions;
pub mod cors;
pub mod extensions;
pub mod lifecycle;
pub mod object_lock;
mod params;
pub mod service;
pub mod store;
mod tags;
#[cfg(test)]
mod test_support;
pub mod wire;

pub use actions::{
    ALL_OPS, AuthType, BYPASS_GOVERNANCE, LockAsks, RequestFacts, S3Op, Scope, bucket_arn,
    object_arn,
};
