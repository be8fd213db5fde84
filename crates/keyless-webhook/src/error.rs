//! The crate's errors.

/// What can go wrong reading the webhook's inputs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// The body is not an AdmissionReview.
    #[error("not an AdmissionReview: {0}")]
    Review(String),
    /// A list of service accounts and namespaces does not parse.
    #[error("not a list of ServiceAccount and Namespace objects: {0}")]
    List(String),
    /// An item of such a list is malformed.
    #[error("item {index}: {reason}")]
    Item {
        /// Its position in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// An association is malformed.
    #[error("`{0}` is not NAMESPACE/SERVICE-ACCOUNT=ROLE")]
    Association(String),
}
