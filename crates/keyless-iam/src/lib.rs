//! IAM: the account's users, access keys and managed policies (`IamState` and the `IamStore`
//! that keeps it), who signed a request (`Keyring`), the AWS managed policies users attach by
//! ARN, the policy simulator, and the IAM query API.
#![warn(missing_docs, unreachable_pub)]

pub mod api;
mod directory;
mod error;
pub mod ids;
mod keyring;
pub mod managed;
pub mod simulate;
pub mod state;
mod store;

pub use directory::{Credential, Directory, Identity, PolicySpec, UserSpec, apply_specs};
pub use error::IamError;
pub use keyring::{Caller, Keyring, RootKey, constant_time_eq};
pub use state::IamState;
pub use store::{EmbeddedIam, IamStore, Snapshot};
