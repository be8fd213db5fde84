//! GitLab's Helm chart and IAM roles: `check` reads the chart values and the storage secrets
//! the way the chart's components consume them and says how each component will authenticate
//! to S3 and what is wrong; `render` writes a setup that `check` passes.
//!
//! Pure: the caller reads the files and hands over their text.
//! <https://docs.gitlab.com/charts/advanced/external-object-storage/aws-iam-roles.html>
#![warn(missing_docs, unreachable_pub)]

mod arn;
mod check;
mod render;
mod report;
mod secrets;
mod values;
mod yaml;

pub use check::check;
pub use render::{RenderMode, RenderOptions, render, split_files};
pub use report::{Component, ComponentReport, Finding, Mode, Report, Severity};
pub use secrets::SecretFile;

/// Why the files could not be checked, or a setup not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitlabError {
    /// A file is not valid YAML.
    #[error("`{file}` is not valid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// A secret is none of the three kinds.
    #[error(
        "`{file}` is neither a registry storage config (`s3:`), a Fog connection (`provider:`) \
         nor an s3cmd config (`[default]`)"
    )]
    UnknownSecret {
        /// The file.
        file: String,
    },
    /// Two secrets of one kind.
    #[error("`{first}` and `{second}` are both a {kind}; give one")]
    DuplicateSecret {
        /// The kind of secret.
        kind: &'static str,
        /// The first file of that kind.
        first: String,
        /// The second.
        second: String,
    },
    /// A `render` option is not usable.
    #[error("invalid {option} `{value}`: {reason}")]
    Option {
        /// The option (`role`, `region`, ...).
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}
