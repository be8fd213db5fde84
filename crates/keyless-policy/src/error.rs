//! Why a policy document was refused. Every message names the place in the document
//! (`Statement[2].Condition.StringLike`), so a user can find and fix it.

/// A policy document that is not valid IAM policy language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("policy is not valid JSON: {message} at line {line} column {column}")]
    Json {
        /// The parser's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An element the grammar does not define (element names are case-sensitive).
    #[error("{path}: unknown element `{element}`")]
    UnknownElement {
        /// Where.
        path: String,
        /// The element's name as written.
        element: String,
    },
    /// A required element is absent.
    #[error("{path}: missing {element}")]
    Missing {
        /// Where.
        path: String,
        /// What is missing.
        element: &'static str,
    },
    /// An element's value has the wrong JSON type.
    #[error("{path}: expected {expected}")]
    Type {
        /// Where.
        path: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An element that must have content is empty.
    #[error("{path}: must not be empty")]
    Empty {
        /// Where.
        path: String,
    },
    /// Two elements that exclude each other, such as `Action` and `NotAction`.
    #[error("{path}: `{first}` and `{second}` cannot be used together")]
    Conflict {
        /// Where.
        path: String,
        /// One element.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// An element that this kind of policy may not carry (`Principal` in an identity policy).
    #[error("{path}: `{element}` is not allowed in {kind}")]
    NotAllowed {
        /// Where.
        path: String,
        /// The element.
        element: &'static str,
        /// The kind of policy.
        kind: &'static str,
    },
    /// A value that the element does not accept.
    #[error("{path}: invalid value `{value}`: expected {expected}")]
    Value {
        /// Where.
        path: String,
        /// The value as written.
        value: String,
        /// What the element accepts.
        expected: &'static str,
    },
    /// A condition operator AWS does not define.
    #[error("{path}: unknown condition operator `{operator}`")]
    Operator {
        /// Where.
        path: String,
        /// The operator as written.
        operator: String,
    },
    /// The document is longer than IAM accepts.
    #[error("policy is {len} bytes long; the limit is {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key that appears twice in one object: JSON parsers keep the last, a reader may see the
    /// first, so neither is taken.
    #[error("{path}: duplicate key: a key may appear only once in an object")]
    DuplicateKey {
        /// Where, the repeated key last (`Statement[0].Effect`).
        path: String,
    },
    /// Two statements with the same `Sid`.
    #[error("{path}: duplicate Sid `{sid}`: statement ids must be unique within a policy")]
    DuplicateSid {
        /// Where.
        path: String,
        /// The repeated id.
        sid: String,
    },
}
