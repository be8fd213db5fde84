//! The AWS IAM policy language, as a pure library: parse and compile policy documents once,
//! then decide requests against them many times, with decisions that say which statements
//! matched and which context keys were missing.
//!
//! ```
//! use keyless_policy::{authorize, Context, Policy, PolicySet, Request, Source, Verdict};
//!
//! let policy = Policy::parse(r#"{
//!   "Version": "2012-10-17",
//!   "Statement": [{
//!     "Sid": "HomeFolder",
//!     "Effect": "Allow",
//!     "Action": ["s3:GetObject", "s3:PutObject"],
//!     "Resource": "arn:aws:s3:::gitlab-uploads/home/${aws:username}/*"
//!   }]
//! }"#).unwrap();
//! let identity = [Source::new("home", &policy)];
//! let set = PolicySet { identity: &identity, ..Default::default() };
//!
//! let mut ctx = Context::new();
//! ctx.insert("aws:username", "alice");
//! let req = Request::new("s3:GetObject", "arn:aws:s3:::gitlab-uploads/home/alice/a.txt", &ctx);
//! let decision = authorize(&set, &req);
//! assert_eq!(decision.verdict, Verdict::Allowed);
//! assert_eq!(decision.to_string(), "allowed by home (HomeFolder)");
//! ```
//!
//! No IO, no clock, no async: the caller supplies every context key, `aws:CurrentTime`
//! included.
#![warn(missing_docs, unreachable_pub)]

mod arn_pattern;
mod condition;
mod context;
mod date;
mod error;
mod evaluate;
mod ip;
mod json;
mod pattern;
mod policy;
mod principal;
mod span;

pub use context::{Context, Values};
pub use error::PolicyError;
pub use evaluate::{
    Decision, DeniedBy, Explanation, Matched, PolicySet, Request, Source, SourceKind, Verdict,
    authorize,
};
pub use policy::{Effect, Policy, PolicyKind, Statement, Version};
pub use principal::{Principal, PrincipalMatch};
pub use span::{Position, Span};

/// Parses a policy document's JSON text as [`Policy::parse_as`] reads it: a key repeated in one
/// object, at any depth, is refused with its path (`Statement[0].Effect: duplicate key: ...`),
/// where a plain JSON parser would keep the last one. For callers that look at a document's
/// JSON before compiling it.
pub fn parse_json(text: &str) -> Result<serde_json::Value, PolicyError> {
    json::parse(text)
}

/// Milliseconds since the Unix epoch of a date as the `Date*` condition operators read it
/// (ISO 8601 or epoch seconds); `None` when it is neither.
pub fn parse_date(text: &str) -> Option<i64> {
    date::parse(text)
}

/// Whether `text` matches the IAM wildcard `pattern` (`*` any run of characters, `?` one
/// character), case-sensitively and without policy variables. The same matcher decides
/// `Resource` and `StringLike`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let syntax = pattern::Syntax {
        wildcards: true,
        variables: false,
        ignore_ascii_case: false,
    };
    pattern::Pattern::parse(pattern, syntax)
        .ok()
        .and_then(|p| p.matches(text, &Context::new()))
        .unwrap_or(false)
}
