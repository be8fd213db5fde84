//! OpenID Connect for service-account tokens: verification of JWTs against an issuer's JWKS
//! (what STS `AssumeRoleWithWebIdentity` does), and Keyless's own issuer, which publishes
//! discovery and key documents and mints Kubernetes-style service-account tokens.
//!
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html>
//!
//! The library reads no clock: every check takes `now`, in unix seconds. Verifying a token:
//!
//! 1. [`unverified_issuer`] reads `iss`, to find the IAM provider
//!    ([`keyless_types::ProviderUrl::key`]) — not trusted yet;
//! 2. [`KeyChain::verify`] asks its [`KeySource`]s in turn for that issuer's keys (Keyless's
//!    own issuer's in memory, [`StaticKeys`] from JWKS files, [`JwksCache`] from the issuer's
//!    discovery document); the first that serves the issuer decides, [`verify`] checks
//!    signature and claims, and on [`OidcError::UnknownKey`] the keys are fetched again once.
//!    Each step is recorded in [`Attempts`].
#![warn(missing_docs, unreachable_pub)]

mod chain;
mod error;
mod fetch;
mod issuer;
mod jwks;
mod jwt;
mod keys;
mod remote;
mod url;
mod verify;

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod testkit;

pub use chain::{Attempt, Attempts, Checked, KeyChain, KeySource, StaticKeys, Step};
pub use error::OidcError;
pub use fetch::{FETCH_TIMEOUT, Fetch, HttpFetch, MAX_FETCH_BYTES, MemoryFetch, origin};
pub use issuer::{Issuer, MAX_TOKEN_SECONDS, MIN_TOKEN_SECONDS, Pod, ServiceAccountClaims};
pub use jwks::{KeySet, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
pub use jwt::{Alg, MAX_TOKEN_BYTES};
pub use keys::{IssuerKeys, SigningKey};
pub use remote::{JWKS_TTL_SECONDS, JwksCache, MAX_STALE_SECONDS, MIN_REFRESH_SECONDS};
pub use url::{
    DISCOVERY_PATH, JWKS_PATH, check_own_issuer_url, discovery_url, is_plain_http_off_loopback,
    jwks_url,
};
pub use verify::{
    DEFAULT_LEEWAY_SECONDS, Expectations, KubernetesClaims, VerifiedToken, unverified_issuer,
    verify,
};
