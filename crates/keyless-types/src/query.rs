//! The AWS query protocol that IAM and STS speak: parameters as form fields
//! (`Action=CreateUser&UserName=bob`, lists as `Name.member.N`, structures as
//! `Name.member.N.Field`), AWS's validation texts for them, and the XML envelopes of answers
//! (`<ActionResponse><ActionResult>...`) and errors (`<ErrorResponse>`), in the namespace of
//! the service that answers.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html>
//! <https://smithy.io/2.0/aws/protocols/aws-query-protocol.html>

use std::fmt::Write as _;

/// A parameter that fails its constraint, with AWS's `1 validation error detected: ...` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    /// A required parameter is missing: `Value null at 'userName' ...`, named as AWS names it
    /// (`UserName` becomes `userName`).
    pub fn null(name: &str) -> Self {
        Self(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            camel(name)
        ))
    }
}

/// A request's parameters, decoded, in the order received.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Wraps decoded name and value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Decodes `application/x-www-form-urlencoded` text (a body or a query string).
    pub fn parse_form(text: &str) -> Self {
        let decode = |s: &str| crate::encoding::form_decode(s).into_owned();
        Self(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// Every name and value, in the order received.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Adds the pairs of `other` after these.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` or any of its members (`name.member.1`, `name.Key`) was given.
    pub fn mentions(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| {
            k.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// The value of a required parameter.
    pub fn required(&self, name: &str) -> Result<&str, ValidationError> {
        self.get(name).ok_or_else(|| ValidationError::null(name))
    }

    /// The members of list `name` (`name.member.1`, `name.member.2`, ...), in index order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| match member(k)? {
                (list, n, None) if list == name => Some((n, v.as_str())),
                _ => None,
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The structures of list `name`: for each index, its fields (`name.member.N.Field`).
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let mut items: std::collections::BTreeMap<u32, Vec<(String, String)>> = Default::default();
        for (k, v) in &self.0 {
            if let Some((list, n, Some(field))) = member(k)
                && list == name
            {
                items
                    .entry(n)
                    .or_default()
                    .push((field.to_owned(), v.clone()));
            }
        }
        items.into_values().map(Params).collect()
    }

    /// A boolean parameter, `false` when absent.
    pub fn flag(&self, name: &str) -> Result<bool, ValidationError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ValidationError(format!(
                "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must be a boolean",
                camel(name)
            ))),
        }
    }

    /// `MaxItems` (1 to 1000, 100 when absent) and `Marker`.
    pub fn page(&self) -> Result<Page<'_>, ValidationError> {
        let max_items = match self.get("MaxItems") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ValidationError(format!(
                        "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
                    ))
                })?,
        };
        Ok(Page {
            marker: self.get("Marker"),
            max_items,
        })
    }
}

impl Params {
    /// The parameters as CloudTrail's `requestParameters` writes them: names in lower camel
    /// case (`roleArn`, `durationSeconds`), durations as numbers, without `Action` and
    /// `Version`, and without any secret, token or signature
    /// ([`crate::audit::is_secret_parameter`]).
    pub fn for_audit(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut out = serde_json::Map::new();
        // `Tags.member.2.Key` and `PolicyArns.member.1.arn` as CloudTrail writes them:
        // `"tags": [{"key": ...}]`, `"policyArns": [{"arn": ...}]`; `X.member.N`: `"x": [...]`.
        // The first value of a name wins, as `get`, `list` and `structs` read them.
        let mut lists: std::collections::BTreeMap<String, std::collections::BTreeMap<u32, Value>> =
            std::collections::BTreeMap::new();
        for (name, value) in &self.0 {
            if name == "Action" || name == "Version" || crate::audit::is_secret_parameter(name) {
                continue;
            }
            if let Some((list, n, field)) = member(name) {
                let item = lists.entry(camel(list)).or_default().entry(n);
                match field {
                    Some(field) => {
                        let fields = item.or_insert_with(|| Value::Object(Default::default()));
                        if let Value::Object(fields) = fields {
                            fields
                                .entry(camel(field))
                                .or_insert_with(|| Value::from(value.as_str()));
                        }
                    }
                    None => {
                        item.or_insert_with(|| Value::from(value.as_str()));
                    }
                }
                continue;
            }
            let numeric = name.ends_with("Seconds") || name == "MaxSessionDuration";
            let value = match value.parse::<i64>() {
                Ok(n) if numeric => Value::from(n),
                _ => Value::from(value.as_str()),
            };
            out.entry(camel(name)).or_insert(value);
        }
        for (list, items) in lists {
            out.entry(list)
                .or_insert_with(|| Value::Array(items.into_values().collect()));
        }
        out
    }
}

/// A list member's name read: `Tags.member.2.Key` is `("Tags", 2, Some("Key"))`,
/// `List.member.1` is `("List", 1, None)`; any other name, `None`.
fn member(name: &str) -> Option<(&str, u32, Option<&str>)> {
    let mut parts = name.splitn(4, '.');
    let (list, "member", n) = (parts.next()?, parts.next()?, parts.next()?) else {
        return None;
    };
    Some((list, n.parse().ok()?, parts.next()))
}

/// `UserName` as AWS's validation messages name it: `userName`.
pub fn camel(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Where a listing starts and how long it may be.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The key of the first item to return, from the previous page's `Marker`.
    pub marker: Option<&'a str>,
    /// How many items at most.
    pub max_items: usize,
}

impl Page<'_> {
    /// The page of `items`, in the order of `key`, and the marker of the next page, if any.
    pub fn take<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        items.sort_by_cached_key(&key);
        let mut rest: Vec<T> = match self.marker {
            Some(marker) => items
                .into_iter()
                .skip_while(|i| key(i).as_str() < marker)
                .collect(),
            None => items,
        };
        let next = rest.get(self.max_items).map(&key);
        rest.truncate(self.max_items);
        (rest, next)
    }
}

/// A whole success response: `result` is the content of `<ActionResult>`, or `None` for
/// actions that return nothing.
pub fn response(namespace: &str, action: &str, result: Option<&str>, request_id: &str) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{namespace}\">"
    );
    if let Some(result) = result {
        let _ = write!(out, "<{action}Result>{result}</{action}Result>");
    }
    let _ = writeln!(
        out,
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    );
    out
}

/// A whole error response. `sender` says whether the client (`Sender`) or the service
/// (`Receiver`) is at fault.
pub fn error_response(
    namespace: &str,
    code: &str,
    message: &str,
    sender: bool,
    request_id: &str,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>\n",
        if sender { "Sender" } else { "Receiver" },
        crate::xml::escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_parameters_leave_out_the_token_and_the_signature() {
        let params = Params::parse_form(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&RoleSessionName=s&DurationSeconds=900&WebIdentityToken=eyJ.x.y&X-Amz-Signature=abc&X-Amz-Security-Token=t",
        );
        let audited = serde_json::Value::Object(params.for_audit());
        assert_eq!(
            audited,
            serde_json::json!({"roleArn": "arn:aws:iam::1:role/r", "roleSessionName": "s", "durationSeconds": 900})
        );
    }

    #[test]
    fn audited_lists_are_written_as_cloudtrail_writes_them() {
        let params = Params::parse_form(
            "Action=AssumeRole&RoleArn=r&Tags.member.2.Key=b&Tags.member.1.Key=a&Tags.member.1.Value=x&Tags.member.2.Value=y&PolicyArns.member.1.arn=p&TransitiveTagKeys.member.1=a",
        );
        assert_eq!(
            serde_json::Value::Object(params.for_audit()),
            serde_json::json!({
                "roleArn": "r",
                "tags": [{"key": "a", "value": "x"}, {"key": "b", "value": "y"}],
                "policyArns": [{"arn": "p"}],
                "transitiveTagKeys": ["a"]
            })
        );
        // The first value of a repeated name is the one STS used, and the one recorded.
        let repeated = Params::parse_form(
            "Tags.member.1.Key=a&Tags.member.1.Key=b&List.member.1=x&List.member.1=y",
        );
        assert_eq!(
            serde_json::Value::Object(repeated.for_audit()),
            serde_json::json!({"tags": [{"key": "a"}], "list": ["x"]})
        );
        assert_eq!(repeated.structs("Tags")[0].get("Key"), Some("a"));
    }

    #[test]
    fn reads_form_fields_lists_and_structures() {
        let p = Params::parse_form(
            "Action=AssumeRole&RoleArn=arn%3Aaws&Tags.member.2.Key=b&Tags.member.1.Key=a&Tags.member.1.Value=x+y&PolicyArns.member.1.arn=p&List.member.2=two&List.member.1=one",
        );
        assert_eq!(p.get("RoleArn"), Some("arn:aws"));
        assert_eq!(p.list("List"), ["one", "two"]);
        let tags = p.structs("Tags");
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].get("Key"), Some("a"));
        assert_eq!(tags[0].get("Value"), Some("x y"));
        assert_eq!(tags[1].get("Value"), None);
        assert!(p.mentions("Tags") && !p.mentions("Tag"));
        assert_eq!(
            p.required("RoleSessionName").unwrap_err().to_string(),
            "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"
        );
        assert!(Params::parse_form("Flag=maybe").flag("Flag").is_err());
        assert!(Params::parse_form("MaxItems=0").page().is_err());
    }

    #[test]
    fn writes_answers_and_errors_in_the_service_namespace() {
        let ns = "https://sts.amazonaws.com/doc/2011-06-15/";
        let body = response(ns, "GetCallerIdentity", Some("<Account>1</Account>"), "rid");
        assert!(body.contains("<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Account>1</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></GetCallerIdentityResponse>"), "{body}");
        assert!(response(ns, "DeleteUser", None, "rid").contains("<DeleteUserResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><ResponseMetadata><RequestId>rid</RequestId>"));
        let err = error_response(ns, "NoSuchEntity", "no <user>", true, "rid");
        assert!(err.contains("<Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no &lt;user&gt;</Message></Error><RequestId>rid</RequestId>"), "{err}");
        assert!(
            error_response(ns, "InternalFailure", "x", false, "rid")
                .contains("<Type>Receiver</Type>")
        );
    }
}
