//! Keyless's shared vocabulary: ARNs, account ids, request ids and the clock that is injected into every
//! library (libraries never read the system clock themselves).
#![warn(missing_docs, unreachable_pub)]

mod arn;
mod clock;
mod request_id;
mod secret;
pub mod time;

pub use arn::{AccountId, Arn, ArnError};
pub use clock::{Clock, FixedClock};
pub use request_id::RequestId;
pub use secret::Secret;
