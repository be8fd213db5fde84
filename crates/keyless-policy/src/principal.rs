//! Principals: who makes a request, and the `Principal`/`NotPrincipal` patterns of resource-based
//! and trust policies.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html>

/// The caller of a request, as resource-based and trust policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An unsigned request.
    Anonymous,
    /// An IAM user or an account's root user (`arn:aws:iam::ACCOUNT:root`).
    User {
        /// The user's ARN.
        arn: String,
        /// The user's account.
        account: String,
    },
    /// A session of an assumed role.
    RoleSession {
        /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
        session_arn: String,
        /// `arn:aws:iam::ACCOUNT:role/ROLE`, which is what `aws:PrincipalArn` holds.
        role_arn: String,
        /// The role's account.
        account: String,
    },
    /// A web identity or SAML provider, as trust policies name it in `Principal.Federated`.
    Federated(String),
    /// An AWS service, such as `ec2.amazonaws.com`.
    Service(String),
}

impl Principal {
    /// The principal an ARN names: a user, the root user, or a role session (from either the
    /// session ARN or, for convenience, the role ARN). `None` for other ARNs.
    pub fn from_arn(arn: &str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let account = account.to_owned();
        match (service, resource.split_once('/')) {
            ("iam", None) if resource == "root" => Some(Self::User {
                arn: arn.to_owned(),
                account,
            }),
            ("iam", Some(("user", _))) => Some(Self::User {
                arn: arn.to_owned(),
                account,
            }),
            ("sts", Some(("assumed-role", rest))) => {
                let (role, _session) = rest.split_once('/')?;
                Some(Self::RoleSession {
                    session_arn: arn.to_owned(),
                    role_arn: format!("arn:{partition}:iam::{account}:role/{role}"),
                    account,
                })
            }
            ("iam", Some(("role", rest))) => {
                let role = rest.rsplit('/').next().unwrap_or(rest);
                Some(Self::RoleSession {
                    session_arn: format!(
                        "arn:{partition}:sts::{account}:assumed-role/{role}/session"
                    ),
                    role_arn: arn.to_owned(),
                    account,
                })
            }
            _ => None,
        }
    }

    /// The account the principal belongs to, if it is an AWS principal.
    pub fn account(&self) -> Option<&str> {
        match self {
            Self::User { account, .. } | Self::RoleSession { account, .. } => Some(account),
            _ => None,
        }
    }

    /// The principal's ARN (for a session, the session's ARN).
    pub fn arn(&self) -> Option<&str> {
        match self {
            Self::User { arn, .. } => Some(arn),
            Self::RoleSession { session_arn, .. } => Some(session_arn),
            _ => None,
        }
    }
}

/// How a `Principal` element matched the caller. The evaluation logic treats these differently
/// within one account: a grant to a user or session ARN stands alone, a grant to a role ARN is
/// still limited by boundaries and session policies, and a grant to an account only delegates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrincipalMatch {
    /// The account (`123456789012` or `arn:aws:iam::123456789012:root`): delegation only.
    Account,
    /// The role's ARN, for one of its sessions.
    Role,
    /// The caller itself: its user ARN, session ARN, provider or service, or `*`.
    Direct,
}

/// The principals a statement names.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PrincipalSet {
    pub(crate) everyone: bool,
    pub(crate) accounts: Vec<Box<str>>,
    pub(crate) arns: Vec<Box<str>>,
    /// Roles named by ARN, as (account, role name): a role ARN may carry a path that its
    /// sessions' ARNs do not (`role/ci/gitlab` has sessions `assumed-role/gitlab/...`).
    pub(crate) roles: Vec<(Box<str>, Box<str>)>,
    pub(crate) federated: Vec<Box<str>>,
    pub(crate) services: Vec<Box<str>>,
    pub(crate) canonical_users: Vec<Box<str>>,
}

impl PrincipalSet {
    /// How, if at all, this set names `caller`. `*` names every caller, known or not.
    pub(crate) fn matches(&self, caller: Option<&Principal>) -> Option<PrincipalMatch> {
        if self.everyone {
            return Some(PrincipalMatch::Direct);
        }
        let has = |list: &[Box<str>], s: &str| list.iter().any(|x| &**x == s);
        match caller? {
            Principal::Anonymous => None,
            Principal::User { arn, account } => {
                if has(&self.arns, arn) {
                    Some(PrincipalMatch::Direct)
                } else {
                    has(&self.accounts, account).then_some(PrincipalMatch::Account)
                }
            }
            Principal::RoleSession {
                session_arn,
                role_arn,
                account,
            } => {
                let role_name = role_arn.rsplit('/').next().unwrap_or_default();
                if has(&self.arns, session_arn) {
                    Some(PrincipalMatch::Direct)
                } else if self
                    .roles
                    .iter()
                    .any(|(a, n)| **a == **account && **n == *role_name)
                {
                    Some(PrincipalMatch::Role)
                } else {
                    has(&self.accounts, account).then_some(PrincipalMatch::Account)
                }
            }
            Principal::Federated(p) => has(&self.federated, p).then_some(PrincipalMatch::Direct),
            Principal::Service(s) => has(&self.services, s).then_some(PrincipalMatch::Direct),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_arn() {
        assert_eq!(
            Principal::from_arn("arn:aws:iam::111122223333:user/alice"),
            Some(Principal::User {
                arn: "arn:aws:iam::111122223333:user/alice".into(),
                account: "111122223333".into()
            })
        );
        let session =
            Principal::from_arn("arn:aws:sts::111122223333:assumed-role/gitlab/pod-1").unwrap();
        assert_eq!(session.account(), Some("111122223333"));
        assert!(
            matches!(&session, Principal::RoleSession { role_arn, .. } if role_arn == "arn:aws:iam::111122223333:role/gitlab")
        );
        assert_eq!(Principal::from_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(Principal::from_arn("nonsense"), None);
    }

    #[test]
    fn match_kinds() {
        let set = PrincipalSet {
            accounts: vec!["111122223333".into()],
            roles: vec![("111122223333".into(), "gitlab".into())],
            ..Default::default()
        };
        let session =
            Principal::from_arn("arn:aws:sts::111122223333:assumed-role/gitlab/s").unwrap();
        assert_eq!(set.matches(Some(&session)), Some(PrincipalMatch::Role));
        let user = Principal::from_arn("arn:aws:iam::111122223333:user/bob").unwrap();
        assert_eq!(set.matches(Some(&user)), Some(PrincipalMatch::Account));
        let stranger = Principal::from_arn("arn:aws:iam::444455556666:user/eve").unwrap();
        assert_eq!(set.matches(Some(&stranger)), None);
        assert_eq!(set.matches(Some(&Principal::Anonymous)), None);
        assert_eq!(set.matches(None), None);
        let everyone = PrincipalSet {
            everyone: true,
            ..Default::default()
        };
        assert_eq!(everyone.matches(None), Some(PrincipalMatch::Direct));
    }
}
