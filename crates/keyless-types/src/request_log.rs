//! `RequestLog`: what one request was, for its one log line. The server puts an empty record
//! in the request's extensions where the request enters; each layer writes what only it learns
//! (the protocol, the operation, who signed, the bucket and key, the error code), and the
//! server logs the record with the status and duration once the answer is made. Nothing
//! secret goes in: no key secret, token, signature or query string.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The shared record of one request. Cheap to clone; clones share the one record.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<RequestFields>>);

/// The fields of a [`RequestLog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
