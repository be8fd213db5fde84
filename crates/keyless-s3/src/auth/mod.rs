//! Authentication and authorization of S3 requests: one [`Authorizer`], which s3s calls as its
//! `S3Auth` (the secret of an access key) and its `S3Access` (the decision on each request).
//! `authenticate.rs` settles who signed a request; `authorize.rs` decides it with the policy
//! engine, from the IAM action, resource and condition keys of [`crate::actions`], before it
//! reaches storage.

mod authenticate;
mod authorize;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keyless_iam::Keyring;
use keyless_policy::Policy;
use keyless_types::Clock;
use s3s::s3_error;

use crate::store::ObjectStore;

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

fn access_denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
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
}
