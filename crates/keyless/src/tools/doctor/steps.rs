//! The checks of the sources doctor looks at itself, in words: key pairs (which win over any
//! role), the container endpoint, IMDS, and what a credential error from the chain means.

use super::report::{Check, Status};
use super::sources::{self, Imds, KeyPair};

/// The first step of the chain: key pairs, which win over every role.
pub(super) fn keys_check(
    pairs: &[KeyPair],
    roles: &[String],
    profile: &str,
    half_pair: bool,
) -> Check {
    const STEP: &str = "keys";
    let Some(first) = pairs.first() else {
        if half_pair {
            return Check::new(
                STEP,
                Status::Warn,
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set",
            )
            .hint("unset it, or set both; the SDKs ignore half a key pair or refuse to start");
        }
        return Check::new(
            STEP,
            Status::Ok,
            format!(
                "no access key pair in the environment or profile `{profile}`: the chain goes on to roles"
            ),
        );
    };
    let all: Vec<String> = pairs
        .iter()
        .map(|p| format!("{} (key id {})", p.origin, p.access_key_id))
        .collect();
    let mut check = Check::new(STEP, Status::Info, "")
        .detail("keys", all.join("; "))
        .detail("used", first.origin.clone());
    if roles.is_empty() {
        check.message = format!(
            "a key pair in {}: no role is configured, so these keys are used",
            all.join(" and ")
        );
        return check;
    }
    check.status = Status::Warn;
    check.message = format!(
        "a key pair in {}: the IAM role is ignored ({} is configured)",
        all.join(" and "),
        roles.join(", ")
    );
    check.hint(format!(
        "the SDKs use the first source with credentials, and keys come first: remove {} so that \
         the role is used (GitLab: leave the access and secret keys out of the object storage, \
         registry and s3cmd.config secrets)",
        first.origin
    ))
}

pub(super) fn container_check(container: Option<&sources::Container>) -> Check {
    const STEP: &str = "container endpoint";
    match container {
        None => Check::new(
            STEP,
            Status::Info,
            "not configured (AWS_CONTAINER_CREDENTIALS_FULL_URI and _RELATIVE_URI are unset)",
        ),
        Some(c) => match &c.outcome {
            Ok(id) => Check::new(STEP, Status::Ok, format!("{} gives credentials (access key {id})", c.url)),
            Err(e) => Check::new(STEP, Status::Fail, format!("{}: {e}", c.url)).hint(
                "the endpoint must answer GET with credentials; check AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \
                 and the pod's association with a role",
            ),
        },
    }
}

pub(super) fn imds_check(imds: &Imds) -> Check {
    const STEP: &str = "imds";
    match imds {
        Imds::Disabled => Check::new(STEP, Status::Info, "disabled (AWS_EC2_METADATA_DISABLED)"),
        Imds::Unreachable { endpoint, error } => Check::new(
            STEP,
            Status::Info,
            format!("{endpoint} does not answer ({error}): not on EC2, and no metadata agent"),
        ),
        Imds::Role { endpoint, role: Some(role), v2 } => Check::new(
            STEP,
            Status::Ok,
            format!("{endpoint} offers the role {role} (IMDSv{})", if *v2 { 2 } else { 1 }),
        )
        .detail("role", role.clone()),
        Imds::Role { endpoint, role: None, .. } => Check::new(
            STEP,
            Status::Info,
            format!("{endpoint} answers but offers no role"),
        ),
        Imds::Refused { endpoint, status } => Check::new(
            STEP,
            Status::Warn,
            format!("{endpoint} answers the role listing with HTTP {status}"),
        )
        .hint("a metadata agent (kube2iam, kiam, keyless agent) that does not know this pod or its role answers so"),
    }
}

/// What to check for a credential or STS error, from its message.
pub(super) fn credential_hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("not authorized to perform sts:assumerolewithwebidentity") {
        Some(
            "STS refused to let the token assume the role: check that AWS_ROLE_ARN names the role, \
             that the role's trust policy names the token issuer's OIDC provider as Principal.Federated, \
             and that its :sub condition names system:serviceaccount:NAMESPACE:SERVICE-ACCOUNT and its \
             :aud condition the token's audience (see the trust policy step)",
        )
    } else if m.contains("expiredtoken") || m.contains("expired") {
        Some("the web-identity token has expired: see the token step")
    } else if m.contains("invalididentitytoken") || m.contains("openidconnect provider") {
        Some(
            "STS does not accept the token: is its issuer registered as an OIDC provider \
             (`aws iam list-open-id-connect-providers`), with the token's aud among its client ids?",
        )
    } else if m.contains("dispatch failure")
        || m.contains("connect")
        || m.contains("timed out")
        || m.contains("timeout")
    {
        Some(
            "the endpoint could not be reached: check --endpoint/--sts-endpoint, AWS_ENDPOINT_URL_STS and the network",
        )
    } else if m.contains("no credential")
        || m.contains("no providers in chain")
        || m.contains("not loaded")
    {
        Some(
            "nothing in the chain gave credentials: give the pod a role (IRSA: a service account with \
             eks.amazonaws.com/role-arn; kube2iam: iam.amazonaws.com/role), or keys",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_shadow_a_role_warn_and_name_where_they_are() {
        let env = KeyPair {
            origin: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            access_key_id: "AKIAEXAMPLE".to_owned(),
        };
        let roles = ["web identity for arn:aws:iam::0:role/r".to_owned()];
        let check = keys_check(std::slice::from_ref(&env), &roles, "default", false);
        assert_eq!(check.status, Status::Warn);
        assert!(
            check
                .message
                .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (key id AKIAEXAMPLE)")
        );
        assert!(check.message.contains("the IAM role is ignored"));
        let alone = keys_check(&[env], &[], "default", false);
        assert_eq!(alone.status, Status::Info);
        assert_eq!(keys_check(&[], &roles, "default", false).status, Status::Ok);
        assert_eq!(
            keys_check(&[], &roles, "default", true).status,
            Status::Warn
        );
    }

    #[test]
    fn credential_errors_get_a_hint_about_what_to_check() {
        let denied =
            "dispatch: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity";
        assert!(credential_hint(denied).unwrap().contains("trust policy"));
        assert!(
            credential_hint("ExpiredToken: Token expired")
                .unwrap()
                .contains("expired")
        );
        assert!(
            credential_hint("the credential provider was not enabled: no credential").is_some()
        );
        assert_eq!(credential_hint("something else"), None);
    }
}
