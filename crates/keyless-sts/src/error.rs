//! STS's errors and their wire form (code, HTTP status, message), mapped in this one place.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html#API_AssumeRoleWithWebIdentity_Errors>

/// Why an STS call failed. Messages are the ones AWS sends, since clients print them as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// `AccessDenied` (403).
    #[error("{0}")]
    AccessDenied(String),
    /// `ValidationError` (400): a parameter out of range or of the wrong shape.
    #[error("{0}")]
    Validation(String),
    /// `InvalidIdentityToken` (400): the web identity token cannot be trusted.
    #[error("{0}")]
    InvalidIdentityToken(String),
    /// `ExpiredTokenException` (400): the web identity token has expired.
    #[error("{0}")]
    ExpiredToken(String),
    /// `IDPRejectedClaim` (403): the token is well formed but its claims are refused.
    #[error("{0}")]
    IdpRejectedClaim(String),
    /// `IDPCommunicationError` (400): the issuer's keys could not be fetched.
    #[error("{0}")]
    IdpCommunication(String),
    /// `MalformedPolicyDocument` (400): a session policy that does not parse.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// `PackedPolicyTooLarge` (400): session policies and tags over the packed limit.
    #[error("{0}")]
    PackedPolicyTooLarge(String),
    /// `InvalidAction` (400).
    #[error("{0}")]
    InvalidAction(String),
    /// `Throttling` (400): an issuance limit is spent; the SDKs retry with backoff.
    #[error("{0}")]
    Throttling(String),
    /// `InternalFailure` (500); the cause is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl StsError {
    /// The AWS error code and HTTP status.
    pub fn wire(&self) -> (&'static str, u16) {
        match self {
            Self::AccessDenied(_) => ("AccessDenied", 403),
            Self::Validation(_) => ("ValidationError", 400),
            Self::InvalidIdentityToken(_) => ("InvalidIdentityToken", 400),
            Self::ExpiredToken(_) => ("ExpiredTokenException", 400),
            Self::IdpRejectedClaim(_) => ("IDPRejectedClaim", 403),
            Self::IdpCommunication(_) => ("IDPCommunicationError", 400),
            Self::MalformedPolicyDocument(_) => ("MalformedPolicyDocument", 400),
            Self::PackedPolicyTooLarge(_) => ("PackedPolicyTooLarge", 400),
            Self::InvalidAction(_) => ("InvalidAction", 400),
            Self::Throttling(_) => ("Throttling", 400),
            Self::Internal(_) => ("InternalFailure", 500),
        }
    }

    /// The message the client sees: internal causes stay in the log.
    pub fn message(&self) -> String {
        match self {
            Self::Internal(_) => "An internal error occurred.".into(),
            Self::InvalidAction(action) => {
                format!("Could not find operation {action} for version 2011-06-15")
            }
            other => other.to_string(),
        }
    }

    /// The answer to a web-identity call its role's trust policy does not allow.
    pub fn not_authorized(action: &str) -> Self {
        Self::AccessDenied(format!("Not authorized to perform sts:{action}"))
    }
}

impl From<keyless_iam::IamError> for StsError {
    fn from(e: keyless_iam::IamError) -> Self {
        use keyless_iam::IamError as E;
        match e {
            E::Validation(m) | E::InvalidInput(m) => Self::Validation(m),
            E::MalformedPolicy { error, .. } => Self::MalformedPolicyDocument(error.to_string()),
            E::Storage(m) => Self::Internal(m),
            other => Self::Validation(other.to_string()),
        }
    }
}

impl From<keyless_types::query::ValidationError> for StsError {
    fn from(e: keyless_types::query::ValidationError) -> Self {
        Self::Validation(e.0)
    }
}

/// A refused web identity token, in STS's words: an expired one answers
/// `ExpiredTokenException`, keys that could not be had `IDPCommunicationError`, anything else
/// `InvalidIdentityToken`.
impl From<&keyless_oidc::OidcError> for StsError {
    fn from(e: &keyless_oidc::OidcError) -> Self {
        use keyless_oidc::OidcError as E;
        let message = e.aws_message();
        match e {
            E::Expired { .. } => Self::ExpiredToken(message),
            E::Fetch { .. } | E::Discovery { .. } | E::Jwks { .. } | E::NoKeySource { .. } => {
                Self::IdpCommunication(message)
            }
            _ => Self::InvalidIdentityToken(message),
        }
    }
}
