//! Role references in chart values: a role ARN (`eksRoleArn`, `eks.amazonaws.com/role-arn`) or
//! a role name or ARN (kube2iam's `iam.amazonaws.com/role`), and the ways YAML mangles them.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html> and
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html> (role names:
//! up to 64 characters of letters, digits and `+=,.@_-`; paths: `/` separated).

use crate::report::Finding;
use crate::yaml::{Node, comment_cut_line};

/// The AWS partitions whose IAM ARNs are accepted.
const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// Why `s` is not a role ARN, `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
pub(crate) fn role_arn_problem(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Some("it does not have the six `:`-separated parts of an ARN".to_owned());
    };
    if *arn != "arn" {
        return Some("it does not start with `arn:`".to_owned());
    }
    if !PARTITIONS.contains(partition) {
        return Some(format!("`{partition}` is not an AWS partition"));
    }
    if *service != "iam" {
        return Some(format!("the service is `{service}`, not `iam`"));
    }
    if !region.is_empty() {
        return Some("IAM ARNs have no region (`iam::ACCOUNT`)".to_owned());
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("the account `{account}` is not 12 digits"));
    }
    let Some(path_name) = resource.strip_prefix("role/") else {
        return Some(format!("`{resource}` is not `role/NAME`"));
    };
    role_name_problem(path_name)
}

/// Why `s` is not a role name with an optional path (`NAME` or `PATH/NAME`).
pub(crate) fn role_name_problem(s: &str) -> Option<String> {
    let name = s.rsplit('/').next().unwrap_or(s);
    if name.is_empty() {
        return Some("the role name is empty".to_owned());
    }
    if name.len() > 64 {
        return Some(format!(
            "the role name `{name}` is longer than 64 characters"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if let Some(bad) = s.chars().find(|&c| c != '/' && !allowed(c)) {
        return Some(format!("`{bad}` may not appear in a role name or path"));
    }
    None
}

/// A template placeholder left in place: `<AWS IAM ARN>`, `${ROLE_ARN}`, `{{ .Values.x }}`.
pub(crate) fn is_placeholder(s: &str) -> bool {
    s.contains('<') || s.contains('>') || s.contains("${") || s.contains("{{")
}

/// What a role reference in the values came to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RoleValue {
    /// Not given (absent, null or empty).
    Absent,
    /// A usable role: an ARN, or a name where names are allowed.
    Valid(String),
    /// Given, but not usable; the finding says why and how to fix it.
    Bad(Finding),
}

/// Where a role reference sits in the values and what it may be.
pub(crate) struct RoleRef<'a> {
    /// The values path, for messages (`global.platform.eksRoleArn`).
    pub(crate) path: String,
    /// The key as written in the YAML (`eksRoleArn`, `iam.amazonaws.com/role`).
    pub(crate) key: &'a str,
    /// Whether a bare role name is accepted (kube2iam prefixes it with its base ARN).
    pub(crate) name_allowed: bool,
}

impl RoleRef<'_> {
    /// Judges `node`, the value found at this reference; `raw` is the values file's text.
    pub(crate) fn judge(&self, node: &Node, raw: &str) -> RoleValue {
        let path = &self.path;
        let key = self.key;
        let example = if self.name_allowed {
            "ROLE-NAME"
        } else {
            "arn:aws:iam::ACCOUNT:role/NAME"
        };
        let quote_fix = format!(
            "quote the whole value in values.yaml (`{key}: \"{example}\"`), or pass it with --set-string"
        );
        let cut = comment_cut_line(raw, key);
        let text = match node {
            Node::Null => None,
            Node::Str(s) if s.trim().is_empty() => None,
            Node::Str(s) => Some(s.as_str()),
            other => {
                return RoleValue::Bad(Finding::error(
                    "role-not-a-string",
                    format!(
                        "`{path}` parsed as {}, not as a string holding a role",
                        other.describe()
                    ),
                    quote_fix,
                ));
            }
        };
        let Some(text) = text else {
            return match cut {
                Some(line) => RoleValue::Bad(Finding::error(
                    "role-cut-by-comment",
                    format!("`{path}` is empty: YAML read the rest of `{line}` as a comment"),
                    quote_fix,
                )),
                None => RoleValue::Absent,
            };
        };
        if is_placeholder(text) {
            return RoleValue::Bad(Finding::error(
                "role-placeholder",
                format!("`{path}` is the placeholder `{text}`, not a role"),
                format!("put the real role there, quoted: `{key}: \"{example}\"`"),
            ));
        }
        let problem = if text.starts_with("arn:") || !self.name_allowed {
            role_arn_problem(text)
        } else {
            role_name_problem(text)
        };
        match (problem, cut) {
            (None, _) => RoleValue::Valid(text.to_owned()),
            (Some(_), Some(line)) => RoleValue::Bad(Finding::error(
                "role-cut-by-comment",
                format!(
                    "`{path}` is `{text}`: YAML cut `{line}` at ` #` and read the rest as a comment"
                ),
                quote_fix,
            )),
            (Some(why), None) => RoleValue::Bad(Finding::error(
                "role-invalid",
                format!("`{path}` is `{text}`, not a valid role: {why}"),
                quote_fix,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn accepts_role_arns_of_every_partition_and_with_paths() {
        for arn in [
            "arn:aws:iam::123456789012:role/gitlab",
            "arn:aws-cn:iam::123456789012:role/service/gitlab-s3",
            "arn:aws-us-gov:iam::000000000000:role/a+b=c,d.e@f_g-h",
        ] {
            assert_eq!(role_arn_problem(arn), None, "{arn}");
        }
    }

    #[test]
    fn names_what_is_wrong_with_an_arn() {
        let cases = [
            ("arn:aws:iam::12345678901:role/x", "not 12 digits"),
            ("arn:aws:iam::123456789012:user/x", "is not `role/NAME`"),
            ("arn:aws:s3:::bucket", "not `iam`"),
            ("arn:azure:iam::123456789012:role/x", "not an AWS partition"),
            ("arn:aws:iam:us-east-1:123456789012:role/x", "no region"),
            ("arn:aws:iam::123456789012:role/", "empty"),
            ("arn:aws:iam::123456789012:role/a b", "may not appear"),
            ("arn:aws:iam::123456789012", "six"),
        ];
        for (arn, why) in cases {
            let problem = role_arn_problem(arn).unwrap_or_default();
            assert!(problem.contains(why), "{arn}: {problem}");
        }
    }

    fn judge(yaml: &str, name_allowed: bool) -> RoleValue {
        let node = parse("v.yaml", yaml).unwrap();
        let value = node.get("k").cloned().unwrap_or(Node::Null);
        let r = RoleRef {
            path: "k".to_owned(),
            key: "k",
            name_allowed,
        };
        r.judge(&value, yaml)
    }

    fn code(v: RoleValue) -> &'static str {
        match v {
            RoleValue::Bad(f) => f.code,
            RoleValue::Absent => "absent",
            RoleValue::Valid(_) => "valid",
        }
    }

    #[test]
    fn judges_what_yaml_made_of_a_role() {
        assert_eq!(
            judge("k: \"arn:aws:iam::123456789012:role/x\"\n", false),
            RoleValue::Valid("arn:aws:iam::123456789012:role/x".into())
        );
        assert_eq!(code(judge("k: gitlab-s3\n", true)), "valid");
        assert_eq!(code(judge("k: gitlab-s3\n", false)), "role-invalid");
        assert_eq!(code(judge("k: 123456789012\n", false)), "role-not-a-string");
        assert_eq!(code(judge("k: {a: 1}\n", false)), "role-not-a-string");
        assert_eq!(code(judge("k: true\n", true)), "role-not-a-string");
        assert_eq!(code(judge("k: <AWS IAM ARN>\n", false)), "role-placeholder");
        assert_eq!(code(judge("k: \"\"\n", false)), "absent");
        assert_eq!(
            code(judge("k: # arn:aws:iam::1:role/x\n", false)),
            "role-cut-by-comment"
        );
        assert_eq!(
            code(judge("k: arn:aws:iam::123456789012:role/ #gitlab\n", false)),
            "role-cut-by-comment"
        );
        // A comment after a whole ARN is harmless.
        assert_eq!(
            code(judge("k: arn:aws:iam::123456789012:role/x # ok\n", false)),
            "valid"
        );
    }
}
