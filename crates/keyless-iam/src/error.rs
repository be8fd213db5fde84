//! Errors of IAM operations. The IAM query API maps them to AWS error codes and HTTP statuses in
//! one place ([`IamError::code`] and the API's error module).
//!
//! Variants that reach IAM API clients carry IAM's own message text, which awscli prints.

impl From<keyless_types::query::ValidationError> for IamError {
    fn from(e: keyless_types::query::ValidationError) -> Self {
        Self::Validation(e.0)
    }
}

/// Why an IAM operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    /// A parameter is missing, malformed or out of range (AWS code `InvalidInput`).
    #[error("{0}")]
    InvalidInput(String),
    /// A parameter fails its pattern or length (AWS code `ValidationError`).
    #[error("{0}")]
    Validation(String),
    /// A policy document is not valid (AWS code `MalformedPolicyDocument`).
    #[error("{which}: {error}")]
    MalformedPolicy {
        /// Which document, such as `PolicyInputList.1`.
        which: String,
        /// What is wrong with it.
        error: keyless_policy::PolicyError,
    },
    /// A role's trust policy breaks one of IAM's rules for trust policies; the text is IAM's
    /// (AWS code `MalformedPolicyDocument`).
    #[error("{0}")]
    MalformedTrustPolicy(String),
    /// A policy ARN names no attachable policy (AWS code `NoSuchEntity`).
    #[error("policy `{0}` does not exist or is not attachable")]
    NoSuchPolicy(String),
    /// A user, key or policy does not exist (AWS code `NoSuchEntity`).
    #[error("{0}")]
    NoSuchEntity(String),
    /// The name is taken (AWS code `EntityAlreadyExists`).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The entity is still in use (AWS code `DeleteConflict`).
    #[error("{0}")]
    DeleteConflict(String),
    /// A quota is reached (AWS code `LimitExceeded`).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store failed; the cause goes to the log (AWS code `ServiceFailure`).
    #[error("iam store: {0}")]
    Storage(String),
    /// The store is out of reach for now (a database down); retryable (AWS code
    /// `ServiceUnavailable`, 503). The cause goes to the log.
    #[error("iam store unavailable: {0}")]
    Unavailable(String),
}

impl IamError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::Validation(_) => "ValidationError",
            Self::MalformedPolicy { .. } | Self::MalformedTrustPolicy(_) => {
                "MalformedPolicyDocument"
            }
            Self::NoSuchPolicy(_) | Self::NoSuchEntity(_) => "NoSuchEntity",
            Self::EntityAlreadyExists(_) => "EntityAlreadyExists",
            Self::DeleteConflict(_) => "DeleteConflict",
            Self::LimitExceeded(_) => "LimitExceeded",
            Self::Storage(_) => "ServiceFailure",
            Self::Unavailable(_) => "ServiceUnavailable",
        }
    }
}
