//! The `Condition` element: operators, their typed values, and how they compare with the
//! request context.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html>
//!
//! The rules, as AWS documents them:
//! - a key absent from the request fails a positive operator and satisfies a negated one
//!   (`StringNotEquals`, `NotIpAddress`, ...); `...IfExists` makes an absent key satisfy any
//!   operator; `Null` tests presence itself;
//! - several values for one key are ORed (NORed for a negated operator);
//! - `ForAllValues:` holds when every request value matches (and when there are none),
//!   `ForAnyValue:` when at least one does; without a set operator, a multivalued key does not
//!   match a positive operator;
//! - a policy variable with no value is null: positive operators do not match it, negated do.

use base64::Engine as _;
use std::net::IpAddr;

use crate::arn_pattern::ArnPattern;
use crate::context::Context;
use crate::date::{self, Millis};
use crate::ip::Cidr;
use crate::pattern::{Pattern, Syntax};

/// Set operator prefix of a condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Self::Eq => request == policy,
            Self::Lt => request < policy,
            Self::Le => request <= policy,
            Self::Gt => request > policy,
            Self::Ge => request >= policy,
        }
    }
}

/// The comparison an operator makes, with the policy's values compiled for it.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// `String(Not)Equals` (wildcards are text) and `String(Not)Like` (wildcards are wildcards):
    /// the difference is made when the values are compiled.
    Str(Vec<Pattern>),
    StrIgnoreCase(Vec<Pattern>),
    Num(Cmp, Vec<f64>),
    Date(Cmp, Vec<Millis>),
    Bool(Vec<bool>),
    Binary(Vec<Vec<u8>>),
    Ip(Vec<Cidr>),
    Arn(Vec<ArnPattern>),
    Null(bool),
}

/// The base operator families, before `IfExists` and set prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Str,
    StrIgnoreCase,
    Like,
    Num(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

/// `(name, family, negated)` for every base operator AWS defines.
const OPERATORS: &[(&str, Family, bool)] = &[
    ("StringEquals", Family::Str, false),
    ("StringNotEquals", Family::Str, true),
    ("StringEqualsIgnoreCase", Family::StrIgnoreCase, false),
    ("StringNotEqualsIgnoreCase", Family::StrIgnoreCase, true),
    ("StringLike", Family::Like, false),
    ("StringNotLike", Family::Like, true),
    ("NumericEquals", Family::Num(Cmp::Eq), false),
    ("NumericNotEquals", Family::Num(Cmp::Eq), true),
    ("NumericLessThan", Family::Num(Cmp::Lt), false),
    ("NumericLessThanEquals", Family::Num(Cmp::Le), false),
    ("NumericGreaterThan", Family::Num(Cmp::Gt), false),
    ("NumericGreaterThanEquals", Family::Num(Cmp::Ge), false),
    ("DateEquals", Family::Date(Cmp::Eq), false),
    ("DateNotEquals", Family::Date(Cmp::Eq), true),
    ("DateLessThan", Family::Date(Cmp::Lt), false),
    ("DateLessThanEquals", Family::Date(Cmp::Le), false),
    ("DateGreaterThan", Family::Date(Cmp::Gt), false),
    ("DateGreaterThanEquals", Family::Date(Cmp::Ge), false),
    ("Bool", Family::Bool, false),
    ("BinaryEquals", Family::Binary, false),
    ("IpAddress", Family::Ip, false),
    ("NotIpAddress", Family::Ip, true),
    ("ArnEquals", Family::Arn, false),
    ("ArnLike", Family::Arn, false),
    ("ArnNotEquals", Family::Arn, true),
    ("ArnNotLike", Family::Arn, true),
    ("Null", Family::Null, false),
];

/// A parsed operator name such as `ForAnyValue:StringLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operator {
    family: Family,
    negated: bool,
    if_exists: bool,
    set: SetOp,
}

impl Operator {
    /// Parses an operator name; `None` for names AWS does not define.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let (set, rest) = if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (SetOp::ForAllValues, rest)
        } else if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (SetOp::ForAnyValue, rest)
        } else {
            (SetOp::Single, name)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let &(_, family, negated) = OPERATORS.iter().find(|(n, _, _)| *n == base)?;
        if family == Family::Null && (if_exists || set != SetOp::Single) {
            return None;
        }
        Some(Self {
            family,
            negated,
            if_exists,
            set,
        })
    }

    /// What a value of this operator must be, for error messages.
    pub(crate) fn value_kind(&self) -> &'static str {
        match self.family {
            Family::Str | Family::StrIgnoreCase | Family::Like => "string",
            Family::Num(_) => "number",
            Family::Date(_) => "date (ISO 8601 or epoch seconds)",
            Family::Bool | Family::Null => "boolean (`true` or `false`)",
            Family::Binary => "base64 value",
            Family::Ip => "IP address or CIDR block",
            Family::Arn => "ARN",
        }
    }
}

/// One key test of a condition block: `"StringLike": {"s3:prefix": ["home/*"]}` holds one per key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// The operator as written, for explanations.
    pub(crate) operator: Box<str>,
    /// The key as written.
    pub(crate) key: Box<str>,
    key_lower: Box<str>,
    op: Operator,
    test: Test,
}

/// Why a condition value was refused: the offending value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BadValue(pub(crate) String);

impl Condition {
    /// Compiles the values of one key. `variables` is whether the policy version has them.
    pub(crate) fn compile(
        operator: &str,
        op: Operator,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Result<Self, BadValue> {
        let strings = |wildcards: bool| {
            let syntax = Syntax {
                wildcards,
                variables,
                ignore_ascii_case: false,
            };
            values
                .iter()
                .map(|v| Pattern::parse(v, syntax).map_err(|_| BadValue(v.clone())))
                .collect::<Result<Vec<_>, _>>()
        };
        let test = match op.family {
            Family::Str => Test::Str(strings(false)?),
            Family::StrIgnoreCase => Test::StrIgnoreCase(strings(false)?),
            Family::Like => Test::Str(strings(true)?),
            Family::Num(cmp) => Test::Num(cmp, each(values, parse_number)?),
            Family::Date(cmp) => Test::Date(cmp, each(values, date::parse)?),
            Family::Bool => Test::Bool(each(values, parse_bool)?),
            Family::Binary => Test::Binary(each(values, |v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
            })?),
            Family::Ip => Test::Ip(each(values, Cidr::parse)?),
            Family::Arn => Test::Arn(each(values, |v| ArnPattern::parse(v, variables).ok())?),
            Family::Null => {
                let flags = each(values, parse_bool)?;
                match flags.as_slice() {
                    [one] => Test::Null(*one),
                    _ => return Err(BadValue(values.join(", "))),
                }
            }
        };
        Ok(Self {
            operator: operator.into(),
            key: key.into(),
            key_lower: key.to_lowercase().into(),
            op,
            test,
        })
    }

    /// Evaluates the condition. Keys the request lacks (the condition's own, or those of policy
    /// variables in its values) are added to `missing`.
    pub(crate) fn eval<'p>(&'p self, ctx: &Context, missing: &mut Vec<&'p str>) -> bool {
        let supplied = ctx.entry(&self.key_lower);
        // A key supplied with no values is absent for every operator.
        let present = supplied.filter(|v| !v.values.is_empty());
        if let Test::Null(expect_absent) = self.test {
            return present.is_none() == expect_absent;
        }
        let Some(entry) = present else {
            if supplied.is_none() {
                missing.push(&self.key);
            }
            return self.op.if_exists
                || match self.op.set {
                    SetOp::ForAllValues => true,
                    SetOp::ForAnyValue => false,
                    SetOp::Single => self.op.negated,
                };
        };
        let negated = self.op.negated;
        let mut hit = |v: &str| self.matches_value(v, ctx, missing) != negated;
        match self.op.set {
            SetOp::ForAllValues => entry.values.iter().all(|v| hit(v)),
            SetOp::ForAnyValue => entry.values.iter().any(|v| hit(v)),
            SetOp::Single => match entry.values {
                [one] if !entry.multi => hit(one),
                // A multivalued key compared without a set operator matches no value.
                _ => negated,
            },
        }
    }

    /// Whether one request value equals (or is like, or compares with) any of the policy's values.
    fn matches_value<'p>(&'p self, value: &str, ctx: &Context, missing: &mut Vec<&'p str>) -> bool {
        match &self.test {
            Test::Str(ps) => any_resolved(
                ps,
                ctx,
                missing,
                |p| p.matches(value, ctx),
                Pattern::unresolved_keys,
            ),
            Test::StrIgnoreCase(ps) => any_resolved(
                ps,
                ctx,
                missing,
                |p| p.render(ctx).map(|text| eq_ignore_case(&text, value)),
                Pattern::unresolved_keys,
            ),
            Test::Arn(ps) => any_resolved(
                ps,
                ctx,
                missing,
                |p| p.matches(value, ctx),
                ArnPattern::unresolved_keys,
            ),
            Test::Num(cmp, ns) => {
                parse_number(value).is_some_and(|v| ns.iter().any(|n| cmp.holds(v, *n)))
            }
            Test::Date(cmp, ds) => {
                date::parse(value).is_some_and(|v| ds.iter().any(|d| cmp.holds(v, *d)))
            }
            Test::Bool(bs) => parse_bool(value).is_some_and(|v| bs.contains(&v)),
            Test::Binary(bs) => base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .is_ok_and(|v| bs.contains(&v)),
            Test::Ip(nets) => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| n.contains(ip))),
            // `eval` answers `Null` before comparing values.
            Test::Null(_) => false,
        }
    }
}

/// Whether any policy value matches. A value whose variables have no value in the request
/// matches nothing (it is null), and its keys are reported missing.
fn any_resolved<'p, T>(
    items: &'p [T],
    ctx: &Context,
    missing: &mut Vec<&'p str>,
    test: impl Fn(&'p T) -> Option<bool>,
    unresolved: impl Fn(&'p T, &Context) -> Vec<&'p str>,
) -> bool {
    items.iter().any(|item| match test(item) {
        Some(m) => m,
        None => {
            missing.extend(unresolved(item, ctx));
            false
        }
    })
}

/// Parses every value with `parse`, naming the first that fails.
fn each<T>(values: &[String], parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, BadValue> {
    values
        .iter()
        .map(|v| parse(v).ok_or_else(|| BadValue(v.clone())))
        .collect()
}

fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    ok.then(|| text.parse::<f64>().ok())
        .flatten()
        .filter(|n| n.is_finite())
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        Condition::compile(op, Operator::parse(op).unwrap(), key, &values, true).unwrap()
    }

    fn eval(c: &Condition, ctx: &Context) -> bool {
        c.eval(ctx, &mut Vec::new())
    }

    #[test]
    fn operator_names() {
        assert!(Operator::parse("StringEquals").is_some());
        assert!(Operator::parse("ForAnyValue:StringLikeIfExists").is_some());
        assert!(Operator::parse("Null").is_some());
        assert!(Operator::parse("NullIfExists").is_none());
        assert!(Operator::parse("ForAllValues:Null").is_none());
        assert!(Operator::parse("stringEquals").is_none());
        assert!(Operator::parse("StringEqualz").is_none());
        assert!(Operator::parse("ForSomeValues:StringEquals").is_none());
    }

    #[test]
    fn absent_keys() {
        let empty = Context::new();
        assert!(!eval(&cond("StringEquals", "k", &["a"]), &empty));
        assert!(eval(&cond("StringNotEquals", "k", &["a"]), &empty));
        assert!(eval(&cond("StringEqualsIfExists", "k", &["a"]), &empty));
        assert!(eval(
            &cond("ForAllValues:StringEquals", "k", &["a"]),
            &empty
        ));
        assert!(!eval(
            &cond("ForAnyValue:StringEquals", "k", &["a"]),
            &empty
        ));
        assert!(eval(&cond("Null", "k", &["true"]), &empty));
        assert!(!eval(&cond("Null", "k", &["false"]), &empty));
        let mut missing = Vec::new();
        let c = cond("StringEquals", "Aws:UserName", &["a"]);
        c.eval(&empty, &mut missing);
        assert_eq!(missing, ["Aws:UserName"]);
    }

    #[test]
    fn negated_operators_nor_their_values() {
        let mut ctx = Context::new();
        ctx.insert("k", "b");
        assert!(!eval(&cond("StringNotEquals", "k", &["a", "b"]), &ctx));
        assert!(eval(&cond("StringNotEquals", "k", &["a", "c"]), &ctx));
        assert!(eval(&cond("StringEquals", "K", &["a", "b"]), &ctx));
    }

    #[test]
    fn set_operators() {
        let mut ctx = Context::new();
        ctx.insert_multi("aws:TagKeys", ["env", "team"]);
        assert!(eval(
            &cond(
                "ForAllValues:StringEquals",
                "aws:TagKeys",
                &["env", "team", "x"]
            ),
            &ctx
        ));
        assert!(!eval(
            &cond("ForAllValues:StringEquals", "aws:TagKeys", &["env"]),
            &ctx
        ));
        assert!(eval(
            &cond("ForAnyValue:StringEquals", "aws:TagKeys", &["env"]),
            &ctx
        ));
        assert!(!eval(
            &cond("ForAnyValue:StringEquals", "aws:TagKeys", &["x"]),
            &ctx
        ));
        assert!(eval(
            &cond("ForAnyValue:StringNotEquals", "aws:TagKeys", &["env"]),
            &ctx
        ));
        assert!(!eval(
            &cond("ForAllValues:StringNotEquals", "aws:TagKeys", &["env"]),
            &ctx
        ));
        // Without a set operator a multivalued key matches no value.
        assert!(!eval(
            &cond("StringEquals", "aws:TagKeys", &["env", "team"]),
            &ctx
        ));
        let mut empty = Context::new();
        empty.insert_multi("aws:TagKeys", Vec::<String>::new());
        assert!(eval(
            &cond("ForAllValues:StringEquals", "aws:TagKeys", &["env"]),
            &empty
        ));
        assert!(!eval(
            &cond("ForAnyValue:StringEquals", "aws:TagKeys", &["env"]),
            &empty
        ));
        assert!(eval(&cond("Null", "aws:TagKeys", &["true"]), &empty));
    }

    #[test]
    fn typed_operators() {
        let mut ctx = Context::new();
        ctx.insert("s3:max-keys", "10")
            .insert("aws:CurrentTime", "2020-06-01T00:00:00Z")
            .insert("aws:SecureTransport", "TRUE")
            .insert("aws:SourceIp", "203.0.113.9")
            .insert("bin", "aGVsbG8=")
            .insert("aws:PrincipalArn", "arn:aws:iam::111122223333:role/gitlab");
        assert!(eval(
            &cond("NumericLessThanEquals", "s3:max-keys", &["10"]),
            &ctx
        ));
        assert!(!eval(
            &cond("NumericLessThan", "s3:max-keys", &["10"]),
            &ctx
        ));
        assert!(eval(
            &cond("NumericNotEquals", "s3:max-keys", &["11"]),
            &ctx
        ));
        assert!(eval(&cond("NumericEquals", "s3:max-keys", &["10.0"]), &ctx));
        assert!(eval(
            &cond("DateGreaterThan", "aws:CurrentTime", &["2020-01-01"]),
            &ctx
        ));
        assert!(eval(
            &cond("DateLessThan", "aws:CurrentTime", &["1600000000"]),
            &ctx
        ));
        assert!(eval(&cond("Bool", "aws:SecureTransport", &["true"]), &ctx));
        assert!(eval(
            &cond("IpAddress", "aws:SourceIp", &["203.0.113.0/24"]),
            &ctx
        ));
        assert!(!eval(
            &cond("NotIpAddress", "aws:SourceIp", &["203.0.113.0/24"]),
            &ctx
        ));
        assert!(eval(&cond("BinaryEquals", "bin", &["aGVsbG8="]), &ctx));
        assert!(eval(
            &cond("ArnLike", "aws:PrincipalArn", &["arn:aws:iam::*:role/git*"]),
            &ctx
        ));
        assert!(eval(
            &cond(
                "ArnEquals",
                "aws:PrincipalArn",
                &["arn:aws:iam::111122223333:role/gitlab"]
            ),
            &ctx
        ));
        assert!(!eval(
            &cond("ArnNotLike", "aws:PrincipalArn", &["arn:aws:iam::*:role/*"]),
            &ctx
        ));
    }

    #[test]
    fn unparseable_request_values_do_not_match() {
        let mut ctx = Context::new();
        ctx.insert("n", "ten")
            .insert("ip", "not-an-ip")
            .insert("d", "soon");
        assert!(!eval(&cond("NumericEquals", "n", &["10"]), &ctx));
        assert!(!eval(&cond("IpAddress", "ip", &["0.0.0.0/0"]), &ctx));
        assert!(!eval(&cond("DateLessThan", "d", &["2030-01-01"]), &ctx));
    }

    #[test]
    fn unresolved_variables_are_null() {
        let mut ctx = Context::new();
        ctx.insert("s3:prefix", "home/alice/");
        let like = cond("StringLike", "s3:prefix", &["home/${aws:username}/*"]);
        let not_like = cond("StringNotLike", "s3:prefix", &["home/${aws:username}/*"]);
        let mut missing = Vec::new();
        assert!(!like.eval(&ctx, &mut missing));
        assert_eq!(missing, ["aws:username"]);
        assert!(not_like.eval(&ctx, &mut Vec::new()));
        ctx.insert("aws:username", "alice");
        assert!(like.eval(&ctx, &mut Vec::new()));
        assert!(!not_like.eval(&ctx, &mut Vec::new()));
    }

    #[test]
    fn ignore_case_is_unicode_aware() {
        let mut ctx = Context::new();
        ctx.insert("k", "ÉTÉ");
        assert!(eval(&cond("StringEqualsIgnoreCase", "k", &["été"]), &ctx));
        assert!(!eval(
            &cond("StringNotEqualsIgnoreCase", "k", &["été"]),
            &ctx
        ));
    }

    #[test]
    fn bad_values() {
        for (op, v) in [
            ("NumericEquals", "ten"),
            ("DateLessThan", "tomorrow"),
            ("Bool", "yes"),
            ("IpAddress", "10.0.0.0/40"),
            ("BinaryEquals", "***"),
            ("ArnLike", "bucket"),
            ("StringEquals", "${unterminated"),
        ] {
            let parsed = Operator::parse(op).unwrap();
            assert_eq!(
                Condition::compile(op, parsed, "k", &[v.to_string()], true),
                Err(BadValue(v.to_string())),
                "{op} {v}"
            );
        }
    }
}
