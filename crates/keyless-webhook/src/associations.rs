//! EKS Pod Identity associations: a service account (namespace and name) given a role, whose
//! pods get container credentials instead of a web identity.
//!
//! <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-association.html>
//!
//! Written `NAMESPACE/SERVICE-ACCOUNT=ROLE`, on the command line (`--association`) or one per
//! line in a file (blank lines and `#` comments ignored, spaces around the parts trimmed), the
//! shape in which a ConfigMap mounted as a file gives them.

use std::collections::HashMap;

use crate::WebhookError;

/// One association: `((namespace, service account), role)`.
pub type Association = ((String, String), String);

/// `NAMESPACE/SERVICE-ACCOUNT=ROLE` → `((namespace, service account), role)`.
pub fn parse_association(text: &str) -> Result<Association, WebhookError> {
    let bad = || WebhookError::Association(text.to_owned());
    let (subject, role) = text.split_once('=').ok_or_else(bad)?;
    let (namespace, account) = subject.split_once('/').ok_or_else(bad)?;
    let (namespace, account, role) = (namespace.trim(), account.trim(), role.trim());
    if [namespace, account, role].iter().any(|s| s.is_empty()) || account.contains('/') {
        return Err(bad());
    }
    Ok(((namespace.to_owned(), account.to_owned()), role.to_owned()))
}

/// Service accounts and their roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Associations(HashMap<String, HashMap<String, String>>);

impl Associations {
    /// The associations of these pairs.
    pub fn new(pairs: impl IntoIterator<Item = Association>) -> Self {
        let mut map: HashMap<String, HashMap<String, String>> = HashMap::new();
        for ((namespace, account), role) in pairs {
            map.entry(namespace).or_default().insert(account, role);
        }
        Self(map)
    }

    /// The associations of a file's text: one per line.
    pub fn parse(text: &str) -> Result<Vec<Association>, WebhookError> {
        text.lines()
            .map(|line| {
                line.split_once('#')
                    .map_or(line, |(before, _)| before)
                    .trim()
            })
            .filter(|line| !line.is_empty())
            .map(parse_association)
            .collect()
    }

    /// The role of service account `account` of `namespace`, if it has one.
    pub fn role(&self, namespace: &str, account: &str) -> Option<&str> {
        self.0.get(namespace)?.get(account).map(String::as_str)
    }

    /// How many service accounts have a role.
    pub fn len(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_are_read_strictly() {
        assert_eq!(
            parse_association(" gitlab / toolbox = gitlab-toolbox "),
            Ok((("gitlab".into(), "toolbox".into()), "gitlab-toolbox".into()))
        );
        for bad in [
            "gitlab/toolbox",
            "gitlab=role",
            "/toolbox=role",
            "gitlab/=role",
            "a/b=",
            "a/b/c=r",
        ] {
            assert!(parse_association(bad).is_err(), "{bad}");
        }
        let pairs = Associations::parse("# roles\n\ngitlab/toolbox=backup # the toolbox\nshop/web = arn:aws:iam::123456789012:role/web\n").unwrap();
        let associations = Associations::new(pairs);
        assert_eq!(associations.role("gitlab", "toolbox"), Some("backup"));
        assert_eq!(
            associations.role("shop", "web"),
            Some("arn:aws:iam::123456789012:role/web")
        );
        assert_eq!(associations.role("shop", "toolbox"), None);
        assert_eq!(associations.len(), 2);
        assert!(Associations::parse("gitlab/toolbox").is_err());
    }
}
