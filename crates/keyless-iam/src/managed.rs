//! AWS managed policies that users attach by their real ARNs, with their real documents
//! (current default versions), laid out as IAM returns them so that statement positions agree.
//!
//! <https://docs.aws.amazon.com/aws-managed-policy/latest/reference/policy-list.html>

use std::sync::LazyLock;

use keyless_policy::{Policy, PolicyKind};

/// An AWS managed policy.
#[derive(Debug)]
pub struct ManagedPolicy {
    /// The policy name, such as `AmazonS3FullAccess`.
    pub name: &'static str,
    /// `arn:aws:iam::aws:policy/NAME`.
    pub arn: &'static str,
    /// The default version's id.
    pub version_id: &'static str,
    /// What the policy is for, as AWS describes it.
    pub description: &'static str,
    /// The default version's document.
    pub document: &'static str,
    compiled: LazyLock<Policy>,
}

impl ManagedPolicy {
    /// The compiled document (compiled once, on first use).
    pub fn policy(&self) -> &Policy {
        &self.compiled
    }
}

macro_rules! managed {
    ($name:literal, $version:literal, $description:literal, $document:literal) => {
        ManagedPolicy {
            name: $name,
            arn: concat!("arn:aws:iam::aws:policy/", $name),
            version_id: $version,
            description: $description,
            document: $document,
            compiled: LazyLock::new(|| {
                // The documents are constants checked by the tests below.
                #[allow(clippy::expect_used)]
                Policy::parse_as($document, PolicyKind::Identity).expect("managed policy parses")
            }),
        }
    };
}

static POLICIES: [ManagedPolicy; 4] = [
    managed!(
        "AdministratorAccess",
        "v1",
        "Provides full access to AWS services and resources.",
        r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": "*",
      "Resource": "*"
    }
  ]
}"#
    ),
    managed!(
        "AmazonS3FullAccess",
        "v2",
        "Provides full access to all buckets via the AWS Management Console.",
        r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:*", "s3-object-lambda:*"],
      "Resource": "*"
    }
  ]
}"#
    ),
    managed!(
        "AmazonS3ReadOnlyAccess",
        "v3",
        "Provides read only access to all buckets via the AWS Management Console.",
        r#"{
 "Version": "2012-10-17",
 "Statement": [
  {
   "Effect": "Allow",
   "Action": [
    "s3:Get*",
    "s3:List*",
    "s3:Describe*",
    "s3-object-lambda:Get*",
    "s3-object-lambda:List*"
   ],
   "Resource": "*"
  }
 ]
}"#
    ),
    managed!(
        "IAMReadOnlyAccess",
        "v4",
        "Provides read only access to IAM via the AWS Management Console.",
        r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "iam:GenerateCredentialReport",
        "iam:GenerateServiceLastAccessedDetails",
        "iam:Get*",
        "iam:List*",
        "iam:SimulateCustomPolicy",
        "iam:SimulatePrincipalPolicy"
      ],
      "Resource": "*"
    }
  ]
}"#
    ),
];

/// Every managed policy Keyless knows.
pub fn all() -> &'static [ManagedPolicy] {
    &POLICIES
}

/// The managed policy with this ARN (`arn:aws:iam::aws:policy/AmazonS3FullAccess`), if known.
pub fn by_arn(arn: &str) -> Option<&'static ManagedPolicy> {
    POLICIES.iter().find(|p| p.arn == arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyless_policy::{Context, PolicySet, Request, Source, Verdict, authorize};

    fn decide(arn: &str, action: &str, resource: &str) -> Verdict {
        let policy = by_arn(arn).unwrap().policy();
        let identity = [Source::new(arn, policy)];
        let set = PolicySet {
            identity: &identity,
            ..Default::default()
        };
        authorize(&set, &Request::new(action, resource, &Context::new())).verdict
    }

    #[test]
    fn every_document_compiles() {
        for p in all() {
            assert!(!p.policy().statements().is_empty(), "{}", p.name);
            assert_eq!(p.arn, format!("arn:aws:iam::aws:policy/{}", p.name));
        }
    }

    #[test]
    fn s3_full_and_read_only() {
        let full = "arn:aws:iam::aws:policy/AmazonS3FullAccess";
        let ro = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
        assert_eq!(
            decide(full, "s3:PutObject", "arn:aws:s3:::any/key"),
            Verdict::Allowed
        );
        assert_eq!(decide(full, "iam:CreateUser", "*"), Verdict::ImplicitDeny);
        assert_eq!(
            decide(ro, "s3:GetObject", "arn:aws:s3:::any/key"),
            Verdict::Allowed
        );
        assert_eq!(
            decide(ro, "s3:ListBucket", "arn:aws:s3:::any"),
            Verdict::Allowed
        );
        assert_eq!(
            decide(ro, "s3:PutObject", "arn:aws:s3:::any/key"),
            Verdict::ImplicitDeny
        );
        assert!(by_arn("arn:aws:iam::aws:policy/NoSuchPolicy").is_none());
    }

    #[test]
    fn positions_match_what_iam_reports() {
        // Reported by IAM's simulator for these managed policies.
        let span = |name: &str| {
            let p = all().iter().find(|p| p.name == name).unwrap();
            let s = p.policy().statements()[0].span().unwrap();
            (s.start.line, s.start.column, s.end.line, s.end.column)
        };
        assert_eq!(span("AdministratorAccess"), (3, 17, 8, 6));
        assert_eq!(span("AmazonS3FullAccess"), (3, 17, 8, 6));
        assert_eq!(span("AmazonS3ReadOnlyAccess"), (3, 16, 14, 4));
    }
}
