//! Temporary credentials as every endpoint sees them: what a session token says (the role or
//! user it stands for, when it was issued, when it expires, the session policies that narrow
//! it), and the seam through which a token is opened. The codec that seals and opens tokens
//! belongs to STS; S3, IAM and STS all open them through [`SessionTokens`], so that they agree.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp.html>

use keyless_types::Secret;
use serde::{Deserialize, Serialize};

/// What a session token carries. Sealed into the token by STS, so that any replica holding the
/// same key can check it without shared session state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Whose session this is.
    #[serde(rename = "s")]
    pub subject: SessionSubject,
    /// When it was issued (seconds since the epoch): `aws:TokenIssueTime`.
    #[serde(rename = "i")]
    pub issued: i64,
    /// When it stops working.
    #[serde(rename = "e")]
    pub expires: i64,
    /// The inline session policy (the `Policy` parameter), if one was passed.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Managed session policies (the `PolicyArns` parameter).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub policy_arns: Vec<String>,
    /// Session tags: `aws:PrincipalTag/KEY` on later requests.
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// `SourceIdentity`, if one was set.
    #[serde(rename = "si", default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// The web identity the session was obtained with: `(provider ARN, sub, aud)`.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub web_identity: Option<(String, String, String)>,
}

/// Who a session stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionSubject {
    /// A session of a role (AssumeRole, AssumeRoleWithWebIdentity).
    #[serde(rename = "r")]
    Role {
        /// The role's ARN.
        arn: String,
        /// `RoleSessionName`.
        session_name: String,
    },
    /// An IAM user's session (GetSessionToken), by user name.
    #[serde(rename = "u")]
    User(String),
    /// The root user's session (GetSessionToken).
    #[serde(rename = "root")]
    Root,
}

/// Why a session token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not a token this server sealed, altered, or sealed for another access key.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// The seam to the session token codec.
pub trait SessionTokens: Send + Sync + 'static {
    /// The secret access key of a temporary access key id, or `None` when the id is not one
    /// this codec issues. Secrets are derived from the id, so that an endpoint that sees only
    /// the id (S3's signature check) can find it.
    fn secret(&self, access_key_id: &str) -> Option<Secret>;

    /// Opens `token`, which must have been sealed for `access_key_id`. Expiry is the caller's
    /// to check.
    fn open(&self, access_key_id: &str, token: &str) -> Result<SessionClaims, TokenProblem>;
}

/// Whether an access key id is a temporary one (`ASIA...`).
pub fn is_temporary_key(access_key_id: &str) -> bool {
    access_key_id.starts_with("ASIA")
}
