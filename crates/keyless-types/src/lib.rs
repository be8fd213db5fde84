//! Keyless's shared vocabulary: ARNs, account ids, request ids, provider URLs, secrets, the clock that is
//! injected into every library (libraries never read the system clock themselves), and the
//! small encodings and rules more than one crate needs, each written once: hex,
//! percent-encoding, XML and the query protocol of IAM and STS, loopback hosts, the shared credentials file and secret files' modes.
#![warn(missing_docs, unreachable_pub)]

mod arn;
pub mod audit;
mod chain;
mod clock;
pub mod encoding;
pub mod hex;
pub mod net;
pub mod pod_tags;
mod provider_url;
pub mod query;
mod request_id;
mod request_log;
mod secret;
pub mod shared_credentials;
pub mod time;
pub mod xml;

pub use arn::{AccountId, Arn, ArnError};
pub use chain::error_chain;
#[allow(clippy::disallowed_types)] // its home
pub use clock::SystemClock;
pub use clock::{Clock, FixedClock};
pub use provider_url::{MAX_PROVIDER_URL_LEN, ProviderUrl, ProviderUrlError};
pub use request_id::RequestId;
pub use request_log::{RequestFields, RequestLog};
pub use secret::{
    SHARED_MODE_BITS, Secret, SecretFileError, SecretFilePlace, check_secret_file_mode,
    constant_time_eq,
};
