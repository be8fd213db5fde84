//! The rules of `keyless webhook`, the pod-identity admission webhook: which pods of which
//! service accounts get credentials injected, and exactly what they get, as AWS's
//! amazon-eks-pod-identity-webhook gives it, plus what that webhook cannot give because it
//! assumes AWS (Keyless's endpoints, a private CA, a token non-root containers can read).
//!
//! <https://github.com/aws/amazon-eks-pod-identity-webhook>,
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
//!
//! The parts:
//!
//! 1. [`Directory`] holds the service accounts and namespaces, stripped to the annotations the
//!    webhook reads; a watch, a file or a direct GET fills it.
//! 2. [`identity`] decides what a pod's service account asks for ([`Identity`]): a web
//!    identity (IRSA), container credentials (an [`Associations`] entry, which wins), or
//!    nothing. The report of pods created without their token ([`PodRecord::missed`]) asks the
//!    same question.
//! 3. [`mutate`] computes the JSON Patch on the raw pod JSON, operation by operation, never
//!    re-serializing a container (fields this crate does not know survive), and only what is
//!    missing (a mutated pod gets no patch).
//! 4. [`review`] reads an `admission.k8s.io/v1` AdmissionReview and writes the answer.
//!
//! Pure: no IO, no clock, no environment.
#![warn(missing_docs, unreachable_pub)]

mod associations;
mod config;
mod directory;
mod error;
mod identity;
mod mutate;
mod names;
mod record;
pub mod review;

pub use associations::{Association, Associations, parse_association};
pub use config::{ConfigOptions, FailurePolicy, webhook_configuration, webhook_name};
pub use directory::{Directory, ServiceAccount, namespace, parse_list};
pub use error::WebhookError;
pub use identity::{Identity, IdentityKind, identity};
pub use mutate::{CaBundle, Mutation, Outcome, Settings, mutate, service_account_name};
pub use names::*;
pub use record::PodRecord;
