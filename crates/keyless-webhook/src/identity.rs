//! [`identity`]: what a pod's service account asks for, the one rule the mutation and the
//! report of unmutated pods share.
//!
//! An association wins over the `eks.amazonaws.com/role-arn` annotation, as on EKS. The
//! token's lifetime is the pod's `eks.amazonaws.com/token-expiration`, else the service
//! account's, else the flag's, and at least 600 seconds (a value that is not a number is
//! passed over, with a warning); regional STS is the service account's
//! `eks.amazonaws.com/sts-regional-endpoints` (`true`/`false`), else the flag's.

use std::collections::BTreeMap;

use crate::directory::annotation;
use crate::{
    AUDIENCE, Associations, MAX_TOKEN_EXPIRATION, MIN_TOKEN_EXPIRATION, POD_IDENTITY_AUDIENCE,
    ROLE_ARN, STS_REGIONAL_ENDPOINTS, ServiceAccount, Settings, TOKEN_EXPIRATION,
};

/// How the pod gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A web-identity token and `AWS_ROLE_ARN` (IRSA).
    WebIdentity,
    /// A token for the container credentials endpoint (EKS Pod Identity).
    PodIdentity,
}

/// What a pod of a service account is to get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// How.
    pub kind: IdentityKind,
    /// The role: the ARN of the annotation, or the association's role (for logs).
    pub role: String,
    /// The token's audience.
    pub audience: String,
    /// The token's lifetime, in seconds.
    pub expiration: i64,
    /// Whether `AWS_STS_REGIONAL_ENDPOINTS=regional` is set.
    pub regional_sts: bool,
    /// What was passed over, for the admission warnings.
    pub warnings: Vec<String>,
}

impl IdentityKind {
    /// The token volume's name.
    pub fn volume(self) -> &'static str {
        match self {
            Self::WebIdentity => crate::IRSA_VOLUME,
            Self::PodIdentity => crate::POD_IDENTITY_VOLUME,
        }
    }
}

/// What a pod with `pod_annotations` in `namespace`, running as `account` (`None` when it is
/// not known), is to get; `None` when nothing.
pub fn identity(
    settings: &Settings,
    namespace: &str,
    account_name: &str,
    account: Option<&ServiceAccount>,
    pod_annotations: &BTreeMap<String, String>,
    associations: &Associations,
) -> Option<Identity> {
    let none = BTreeMap::new();
    let account_annotations = account.map_or(&none, |a| &a.annotations);
    let (kind, role, audience) = match associations.role(namespace, account_name) {
        Some(role) => (
            IdentityKind::PodIdentity,
            role.to_owned(),
            POD_IDENTITY_AUDIENCE.to_owned(),
        ),
        None => {
            let role = annotation(account_annotations, ROLE_ARN)?;
            let audience = annotation(account_annotations, AUDIENCE).unwrap_or(&settings.audience);
            (
                IdentityKind::WebIdentity,
                role.to_owned(),
                audience.to_owned(),
            )
        }
    };
    let mut warnings = Vec::new();
    let mut expiration = settings.token_expiration;
    for (annotations, whose) in [
        (account_annotations, "service account"),
        (pod_annotations, "pod"),
    ] {
        if let Some(text) = annotation(annotations, TOKEN_EXPIRATION) {
            match text.parse::<i64>() {
                Ok(seconds) if seconds > MAX_TOKEN_EXPIRATION => warnings.push(format!(
                    "the {whose}'s {TOKEN_EXPIRATION} `{text}` is more than the API server allows ({MAX_TOKEN_EXPIRATION} s); it is ignored"
                )),
                Ok(seconds) => expiration = seconds,
                Err(_) => warnings.push(format!(
                    "the {whose}'s {TOKEN_EXPIRATION} `{text}` is not a number of seconds; it is ignored"
                )),
            }
        }
    }
    let expiration = expiration.clamp(MIN_TOKEN_EXPIRATION, MAX_TOKEN_EXPIRATION);
    let regional_sts = match annotation(account_annotations, STS_REGIONAL_ENDPOINTS) {
        Some(text) => match parse_bool(text) {
            Some(value) => value,
            None => {
                warnings.push(format!(
                    "the service account's {STS_REGIONAL_ENDPOINTS} `{text}` is not true or false; it is ignored"
                ));
                settings.regional_sts
            }
        },
        None => settings.regional_sts,
    };
    Some(Identity {
        kind,
        role,
        audience,
        expiration,
        regional_sts,
        warnings,
    })
}

/// Go's `strconv.ParseBool`, which AWS's webhook reads the annotation with.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
