//! Who made a request, in CloudTrail's words: the `userIdentity` of a record (the type, the
//! principal id, the ARN, the access key, and for temporary credentials the session's issuer
//! and web identity). IAM builds one from the caller that signed; STS from the web identity it
//! verified; the audit trail writes it as it is. Data only: no secret ever goes in (an access
//! key id is not one).
//!
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>

use serde::{Deserialize, Serialize};

/// A record's `userIdentity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// `Root`, `IAMUser`, `AssumedRole`, `WebIdentityUser` (the STS call itself) or
    /// `AWSAccount` (an anonymous S3 caller).
    #[serde(rename = "type")]
    pub kind: String,
    /// The user's id, `ROLEID:SESSION` for a role session, the account id for root; empty for
    /// an anonymous caller; `PROVIDER:AUDIENCE:SUBJECT` for a web identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The caller's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The caller's account (`anonymous` for an anonymous S3 caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The access key id that signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The user's name (IAM users), the token's subject (web identities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The OIDC provider's ARN, for a web identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    /// For temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_context: Option<SessionContext>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    /// The role (or user) the session is of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_issuer: Option<SessionIssuer>,
    /// The web identity the session was obtained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_id_federation_data: Option<WebIdFederationData>,
    /// When the session was made, and whether with MFA.
    pub attributes: SessionAttributes,
    /// `SourceIdentity`, when the session was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_identity: Option<String>,
    /// The session's tags (`aws:PrincipalTag/*`): for a pod's session, which pod it is.
    /// Keyless's addition; CloudTrail keeps them in the STS call's `requestParameters` alone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub session_tags: std::collections::BTreeMap<String, String>,
}

/// `sessionContext.sessionIssuer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    /// `Role`, or `IAMUser`/`Root` for GetSessionToken sessions.
    #[serde(rename = "type")]
    pub kind: String,
    /// The role's (user's) id.
    pub principal_id: String,
    /// The role's (user's) ARN.
    pub arn: String,
    /// Its account.
    pub account_id: String,
    /// The role's (user's) name.
    pub user_name: String,
}

/// `sessionContext.webIdFederationData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebIdFederationData {
    /// The OIDC provider's ARN.
    pub federated_provider: String,
    /// What the provider said of the caller (empty, as for EKS's IRSA sessions).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// `sessionContext.attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAttributes {
    /// When the session was issued (ISO 8601).
    pub creation_date: String,
    /// `"true"` or `"false"`, as CloudTrail writes it.
    pub mfa_authenticated: String,
}

/// One of a record's `resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource's ARN.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// Its account; CloudTrail leaves it out for S3 objects.
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `AWS::S3::Object`, `AWS::S3::Bucket`, `AWS::IAM::Role`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a handler tells the audit trail beyond its answer: its error, why the policy engine
/// refused, who the caller was when only the handler could tell (a web identity), what it
/// issued, and the resources it acted on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The AWS error code and message of a refusal, as the client read them.
    pub error: Option<(String, String)>,
    /// Why the policy engine refused, in words.
    pub denial: Option<String>,
    /// The caller, when the handler is the one that knows it.
    pub identity: Option<UserIdentity>,
    /// CloudTrail's `responseElements`.
    pub response_elements: Option<serde_json::Value>,
    /// What the handler adds to CloudTrail's `requestParameters` (a web identity's
    /// `principalTags`, from its token).
    pub request_parameters: serde_json::Map<String, serde_json::Value>,
    /// The resources the request acted on.
    pub resources: Vec<Resource>,
    /// The policy decisions it took.
    pub decisions: Decisions,
}

/// How many policy decisions a request took, by result: for the metrics of decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Decisions that allowed.
    pub allowed: u32,
    /// Decisions that a `Deny` statement refused.
    pub explicit_deny: u32,
    /// Decisions that no statement allowed.
    pub implicit_deny: u32,
}

impl Decisions {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Decisions) {
        self.allowed += other.allowed;
        self.explicit_deny += other.explicit_deny;
        self.implicit_deny += other.implicit_deny;
    }
}

/// Whether a request parameter must never be written down: a secret, a token, a signature, a
/// password (whatever its case), or the presigned URL's own `X-Amz-*` fields.
pub fn is_secret_parameter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-amz-")
        || [
            "token",
            "secret",
            "password",
            "signature",
            "assertion",
            "credential",
        ]
        .iter()
        .any(|word| lower.contains(word))
        || lower == "awsaccesskeyid"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_tokens_and_signatures_are_never_parameters_to_keep() {
        for name in [
            "WebIdentityToken",
            "TokenCode",
            "X-Amz-Signature",
            "x-amz-security-token",
            "X-Amz-Credential",
            "Signature",
            "AWSAccessKeyId",
            "SecretAccessKey",
            "Password",
            "SAMLAssertion",
        ] {
            assert!(is_secret_parameter(name), "{name}");
        }
        for name in [
            "RoleArn",
            "RoleSessionName",
            "UserName",
            "PolicyDocument",
            "prefix",
        ] {
            assert!(!is_secret_parameter(name), "{name}");
        }
    }

    #[test]
    fn absent_fields_are_left_out_as_cloudtrail_leaves_them() {
        let identity = UserIdentity {
            kind: "IAMUser".into(),
            arn: Some("arn:aws:iam::111122223333:user/alice".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&identity).unwrap(),
            r#"{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice"}"#
        );
    }
}
