//! IAM: the account's users, access keys, managed policies, roles and OpenID Connect providers
//! (`IamState` and the `IamStore` that keeps it), who signed a request (`Keyring`), the AWS
//! managed policies users attach by ARN, the policy simulator, and the IAM query API.
#![warn(missing_docs, unreachable_pub)]

pub mod api;
mod caller;
mod directory;
mod error;
pub mod ids;
mod keyring;
pub mod managed;
pub mod oidc_providers;
pub mod roles;
pub mod rules;
mod secret_file;
pub mod session;
pub mod simulate;
mod specs;
pub mod state;
mod store;

pub use caller::{Caller, Session, SessionKind, request_context};
pub use directory::{Credential, Directory, Identity, ProviderIdentity, RoleIdentity};
pub use error::IamError;
pub use keyring::{KeyProblem, Keyring, RootKey};
pub use secret_file::check_secret_file;
pub use specs::{OidcProviderSpec, PolicySpec, RoleSpec, UserSpec, apply_specs};
pub use state::IamState;
pub use store::{EmbeddedIam, IamStore, Snapshot};
