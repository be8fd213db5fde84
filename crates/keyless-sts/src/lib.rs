//! STS: temporary credentials for roles and users. AssumeRoleWithWebIdentity (a Kubernetes
//! service-account token for a role's credentials), AssumeRole, GetSessionToken and
//! GetCallerIdentity, with AWS's XML and error texts, over session tokens that are sealed and
//! need no session table.
#![warn(missing_docs, unreachable_pub)]

mod assume_role;
mod error;
mod limit;
mod params;
mod seal;
mod service;
mod verify;
mod web_identity;

pub use error::StsError;
pub use limit::{Limits, Rate};
pub use seal::{MAX_TOKEN_LEN, SessionKey};
pub use service::{
    ACTIONS, STS_NAMESPACE, Sts, StsRequest, StsResponse, action_name, error_response,
    is_unsigned_action,
};
pub use verify::{TokenVerifier, WebToken, session_tags};
