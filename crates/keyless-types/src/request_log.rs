//! `RequestLog`: what one request was, for its one log line. The server puts an empty record
//! in the request's extensions where the request enters; each layer writes what only it learns
//! (the protocol, the operation, who signed, the bucket and key, the error code), and the
//! server logs the record with the status and duration once the answer is made, and writes
//! it to the audit trail. Nothing secret goes in: no key secret, token, signature or query
//! string ([`crate::audit::is_secret_parameter`] keeps them out of the parameters).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::audit::{Outcome, Resource, UserIdentity};

/// The shared record of one request. Cheap to clone; clones share the one record.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<RequestFields>>);

/// The fields of a [`RequestLog`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFields {
    /// `s3`, `iam`, `sts` or `oidc`.
    pub api: &'static str,
    /// The operation, as AWS names it (`GetObject`, `CreateUser`, `AssumeRoleWithWebIdentity`).
    pub operation: Option<String>,
    /// The caller's ARN; none for an anonymous caller or one refused before it was known.
    pub principal: Option<String>,
    /// The access key id that signed (never its secret).
    pub access_key_id: Option<String>,
    /// The bucket, for S3.
    pub bucket: Option<String>,
    /// The object key, for S3.
    pub key: Option<String>,
    /// The AWS error code of a refused request.
    pub error_code: Option<String>,
    /// The error's message, as the client read it.
    pub error_message: Option<String>,
    /// Who made it, in CloudTrail's words.
    pub identity: Option<UserIdentity>,
    /// The request's parameters (CloudTrail's `requestParameters`), secrets left out.
    pub request_parameters: serde_json::Map<String, serde_json::Value>,
    /// What the answer said that CloudTrail keeps (`responseElements`): for STS the
    /// credentials' key id and expiry, never their secret or token.
    pub response_elements: Option<serde_json::Value>,
    /// The resources it acted on, beyond the bucket and key.
    pub resources: Vec<Resource>,
    /// Why the policy engine refused it, in words: for operators, never for the client.
    pub denial: Option<String>,
    /// CloudTrail's `additionalEventData`: how it was signed, and whatever else the layer knows.
    pub additional: serde_json::Map<String, serde_json::Value>,
    /// The policy decisions it took, by result.
    pub decisions: crate::audit::Decisions,
}

impl RequestLog {
    /// A record for a request of `api`.
    pub fn new(api: &'static str) -> Self {
        Self(Arc::new(Mutex::new(RequestFields {
            api,
            ..RequestFields::default()
        })))
    }

    /// Changes the record; `change` must not block.
    pub fn update(&self, change: impl FnOnce(&mut RequestFields)) {
        change(&mut self.lock());
    }

    /// A copy of the record as it stands.
    pub fn fields(&self) -> RequestFields {
        self.lock().clone()
    }

    /// Takes in what a handler said of its request.
    pub fn absorb(&self, outcome: Outcome) {
        self.update(|f| {
            if let Some((code, message)) = outcome.error {
                f.error_code = Some(code);
                f.error_message = Some(message);
            }
            if outcome.denial.is_some() {
                f.denial = outcome.denial;
            }
            if outcome.identity.is_some() {
                f.identity = outcome.identity;
            }
            if outcome.response_elements.is_some() {
                f.response_elements = outcome.response_elements;
            }
            f.request_parameters.extend(outcome.request_parameters);
            f.resources.extend(outcome.resources);
            f.decisions.add(outcome.decisions);
        });
    }

    fn lock(&self) -> MutexGuard<'_, RequestFields> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_record() {
        let log = RequestLog::new("s3");
        let layer = log.clone();
        layer.update(|f| {
            f.operation = Some("GetObject".into());
            f.bucket = Some("b".into());
        });
        let fields = log.fields();
        assert_eq!(fields.api, "s3");
        assert_eq!(fields.operation.as_deref(), Some("GetObject"));
        assert_eq!(fields.bucket.as_deref(), Some("b"));
        assert_eq!(fields.principal, None);
    }
}
