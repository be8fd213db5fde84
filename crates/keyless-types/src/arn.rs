//! Amazon Resource Names and account ids.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html>

use std::fmt;
use std::str::FromStr;

/// Why a string is not an ARN or an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// The text does not have the six colon-separated parts of an ARN.
    #[error("malformed ARN `{0}`: expected arn:partition:service:region:account:resource")]
    Malformed(String),
    /// The account part is neither empty nor twelve digits (nor `aws`, for managed policies).
    #[error("invalid account id `{0}`: expected 12 digits")]
    Account(String),
}

/// A twelve-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// Parses a twelve-digit account id.
    pub fn parse(s: &str) -> Result<Self, ArnError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ArnError::Account(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ARN of the account's root principal, `arn:aws:iam::ID:root`.
    pub fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.0)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A parsed ARN: `arn:partition:service:region:account:resource`. The resource part may itself
/// contain colons and slashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    text: String,
    /// Byte offsets of the five separating colons.
    colons: [usize; 5],
}

impl Arn {
    /// Parses an ARN without wildcards or variables.
    pub fn parse(s: &str) -> Result<Self, ArnError> {
        let mut colons = [0usize; 5];
        let mut found = 0;
        for (i, b) in s.bytes().enumerate() {
            if b == b':' {
                colons[found] = i;
                found += 1;
                if found == 5 {
                    break;
                }
            }
        }
        if found < 5 || &s[..colons[0]] != "arn" || colons[1] == colons[0] + 1 {
            return Err(ArnError::Malformed(s.to_owned()));
        }
        let arn = Self {
            text: s.to_owned(),
            colons,
        };
        if arn.service().is_empty() {
            return Err(ArnError::Malformed(s.to_owned()));
        }
        Ok(arn)
    }

    fn part(&self, i: usize) -> &str {
        let start = self.colons[i] + 1;
        let end = if i + 1 < 5 {
            self.colons[i + 1]
        } else {
            self.text.len()
        };
        &self.text[start..end]
    }

    /// The partition, `aws` on AWS.
    pub fn partition(&self) -> &str {
        self.part(0)
    }

    /// The service namespace, such as `s3` or `iam`.
    pub fn service(&self) -> &str {
        self.part(1)
    }

    /// The region; empty for global services.
    pub fn region(&self) -> &str {
        self.part(2)
    }

    /// The account part; empty for S3 buckets, `aws` for AWS managed policies.
    pub fn account(&self) -> &str {
        self.part(3)
    }

    /// Everything after the fifth colon.
    pub fn resource(&self) -> &str {
        self.part(4)
    }

    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Arn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_six_parts() {
        let arn = Arn::parse("arn:aws:s3:::bucket/key:with:colons").unwrap();
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.service(), "s3");
        assert_eq!(arn.region(), "");
        assert_eq!(arn.account(), "");
        assert_eq!(arn.resource(), "bucket/key:with:colons");
        let role = Arn::parse("arn:aws:iam::123456789012:role/gitlab").unwrap();
        assert_eq!(role.account(), "123456789012");
        assert_eq!(role.resource(), "role/gitlab");
    }

    #[test]
    fn refuses_what_is_not_an_arn() {
        for bad in [
            "",
            "arn",
            "arn:aws:s3::",
            "urn:aws:s3:::b",
            "arn::s3:::b",
            "arn:aws::::b",
        ] {
            assert!(Arn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(AccountId::parse("123456789012").is_ok());
        assert!(AccountId::parse("12345678901").is_err());
        assert!(AccountId::parse("12345678901x").is_err());
        assert_eq!(
            AccountId::parse("123456789012").unwrap().root_arn(),
            "arn:aws:iam::123456789012:root"
        );
    }
}
