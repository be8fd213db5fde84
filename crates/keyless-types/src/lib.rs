//! Keyless's shared vocabulary: ARNs, account ids, request ids and the clock that is injected into every
//! library (libraries never read the system clock themselves).
#![warn(missing_docs, unreachable_pub)]

mod arn;
mod clock;
mod request_id;
mod request_log;
mod secret;
pub mod time;

pub use arn::{AccountId, Arn, ArnError};
#[allow(clippy::disallowed_types)] // its home
pub use clock::SystemClock;
pub use clock::{Clock, FixedClock};
pub use request_id::RequestId;
pub use request_log::{RequestFields, RequestLog};
pub use secret::Secret;
