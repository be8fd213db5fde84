//! IAM API errors and their wire form: the one place that maps each to its AWS code, HTTP
//! status and fault side.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html>

use keyless_types::audit::Outcome;
use keyless_types::query::{self, ValidationError};

use super::ApiResponse;
use crate::IamError;

/// Why an IAM API request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The operation itself refused (no such entity, conflict, bad input, ...).
    #[error(transparent)]
    Iam(#[from] IamError),
    /// The caller's policies do not allow the action: the message says which action on which
    /// resource and which kind of policy refused, as IAM does; `why` (the statements) is for
    /// the audit trail alone.
    #[error("{message}")]
    AccessDenied {
        /// IAM's message.
        message: String,
        /// The policy engine's explanation, never sent.
        why: Option<String>,
    },
    /// No such action.
    #[error("Could not find operation {0} for version 2010-05-08")]
    InvalidAction(String),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Iam(e.into())
    }
}

impl ApiError {
    /// The AWS error code, the HTTP status, and whether the client is at fault.
    pub fn wire(&self) -> (&'static str, u16, bool) {
        match self {
            Self::AccessDenied { .. } => ("AccessDenied", 403, true),
            Self::InvalidAction(_) => ("InvalidAction", 400, true),
            Self::Iam(e) => {
                let status = match e {
                    IamError::InvalidInput(_)
                    | IamError::Validation(_)
                    | IamError::MalformedPolicy { .. }
                    | IamError::MalformedTrustPolicy(_) => 400,
                    IamError::NoSuchPolicy(_) | IamError::NoSuchEntity(_) => 404,
                    IamError::EntityAlreadyExists(_)
                    | IamError::DeleteConflict(_)
                    | IamError::LimitExceeded(_) => 409,
                    IamError::Storage(_) => 500,
                    IamError::Unavailable(_) => 503,
                };
                (e.code(), status, status < 500)
            }
        }
    }

    /// The message clients see: IAM's text; an internal failure's cause goes to the log.
    pub fn message(&self) -> String {
        match self {
            Self::Iam(IamError::Storage(cause)) => {
                tracing::error!(%cause, "iam store failed");
                "The request processing has failed because of an unknown error, exception or failure.".into()
            }
            Self::Iam(IamError::Unavailable(cause)) => {
                tracing::warn!(%cause, "iam store unavailable");
                "The request has failed due to a temporary failure of the server.".into()
            }
            Self::Iam(IamError::NoSuchPolicy(arn)) => {
                format!("Policy {arn} does not exist or is not attachable.")
            }
            Self::Iam(IamError::MalformedPolicy { error, .. }) => {
                format!("Syntax errors in policy: {error}")
            }
            other => other.to_string(),
        }
    }

    /// The error response.
    pub fn response(&self, namespace: &str, request_id: &str) -> ApiResponse {
        let (code, status, sender) = self.wire();
        let message = self.message();
        ApiResponse {
            status,
            body: query::error_response(namespace, code, &message, sender, request_id),
            outcome: Outcome {
                error: Some((code.to_owned(), message)),
                denial: match self {
                    Self::AccessDenied { why, .. } => why.clone(),
                    _ => None,
                },
                ..Outcome::default()
            },
        }
    }
}
