//! IAM semantics above the policy language: the AWS managed policies users attach by ARN, and
//! the policy simulator (`SimulateCustomPolicy`).
#![warn(missing_docs, unreachable_pub)]

mod directory;
mod error;
pub mod managed;
pub mod simulate;

pub use directory::{Credential, Directory, IamStore, Identity, PolicySpec, UserSpec};
pub use error::IamError;
