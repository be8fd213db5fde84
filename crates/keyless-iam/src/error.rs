//! Errors of IAM operations. The IAM query API maps them to AWS error codes in one place.

/// Why an IAM operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    /// A parameter is missing, malformed or out of range (AWS code `InvalidInput`).
    #[error("{0}")]
    InvalidInput(String),
    /// A policy document is not valid (AWS code `MalformedPolicyDocument`).
    #[error("{which}: {error}")]
    MalformedPolicy {
        /// Which document, such as `PolicyInputList.1`.
        which: String,
        /// What is wrong with it.
        error: keyless_policy::PolicyError,
    },
    /// A policy ARN names no policy (AWS code `NoSuchEntity`).
    #[error("policy `{0}` does not exist or is not attachable")]
    NoSuchPolicy(String),
}

impl IamError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::MalformedPolicy { .. } => "MalformedPolicyDocument",
            Self::NoSuchPolicy(_) => "NoSuchEntity",
        }
    }
}
