//! `ImdsError`, what can go wrong building the metadata service and reading its pod source;
//! and `AssumeError`, the error of the [`crate::RoleAssumer`] seam.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html> (which STS codes
//! are the caller's fault and which are worth retrying).
//!
//! They are two enums, not one, because they cross different seams: `AssumeError` is returned by
//! implementations of a trait (other crates' too), is shared by every request waiting on one STS
//! call (so it is `Clone`), and decides whether cached credentials may still be served. Nothing
//! of the pods file or the configuration belongs in it.

/// Why the metadata service could not be built, or its pod source not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdsError {
    /// A setting is out of range or malformed.
    #[error("invalid imds configuration: {0}")]
    Config(String),
    /// The pods file is not JSON, or not a list of pods and namespaces.
    #[error("pods file: {0}")]
    Source(String),
    /// One item of the pods file is malformed; `item` names it (index, kind, namespace/name).
    #[error("pods file: item {item}: {reason}")]
    Item {
        /// Which item: its index and, when they can be read, its kind and name.
        item: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pods file could not be read.
    #[error("cannot read pods file `{path}`: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        reason: String,
    },
    /// The system's random number generator failed.
    #[error("no randomness for the session token key")]
    Random,
}

/// Why STS gave no credentials for a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssumeError {
    /// STS answered and refused this request (`AccessDenied`, `ValidationError`, ...): asking
    /// again will not help, and cached credentials of the role are no longer handed out.
    #[error("sts refused: {code}: {message}")]
    Denied {
        /// The STS error code.
        code: String,
        /// The STS message.
        message: String,
    },
    /// STS could not be reached, timed out, was throttling or failing (5xx), or refused the
    /// agent's own credentials: cached credentials are served until they expire.
    #[error("sts unavailable: {0}")]
    Unavailable(String),
    /// STS answered 200 with a document that is not an `AssumeRoleResponse`.
    #[error("unexpected sts answer: {0}")]
    BadResponse(String),
}

impl AssumeError {
    /// Whether the failure says nothing about the role itself, so that credentials already
    /// cached for it may still be served until they expire.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_is_permanent() {
        let denied = AssumeError::Denied {
            code: "AccessDenied".into(),
            message: "no".into(),
        };
        assert!(!denied.is_transient());
        assert!(AssumeError::Unavailable("timeout".into()).is_transient());
        assert!(AssumeError::BadResponse("no xml".into()).is_transient());
        assert_eq!(denied.to_string(), "sts refused: AccessDenied: no");
    }
}
