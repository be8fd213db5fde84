//! AWS Signature Version 4, as a server checks it: the canonical request, the string to sign,
//! the signing key and a constant-time comparison, with no IO and no clock (the caller says what
//! time it is).
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
//!
//! s3s checks the signatures of S3 requests; this crate checks the others (IAM and STS query
//! APIs), and is tested against AWS's own signer, the `aws-sigv4` crate. It also signs, for
//! Keyless's own clients of those APIs.
#![warn(missing_docs, unreachable_pub)]

mod canonical;
mod sign;
mod verify;

pub use canonical::canonical_request;
pub use sign::{Signer, sign, sign_payload};
pub use verify::{
    Authorization, Credential, Request, SigV4Error, Verified, signature, signing_key,
    string_to_sign, verify,
};
