//! Property tests: the wildcard matcher against a regex oracle, the laws of the evaluation
//! logic (explicit deny overrides, allows are monotonic), and a parser that never panics.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use keyless_policy::{
    Context, Policy, PolicySet, Request, Source, Verdict, authorize, wildcard_match,
};
use proptest::prelude::*;
use serde_json::json;

/// The oracle: `*` is `.*`, `?` is `.` (one Unicode character), everything else literal.
fn oracle(pattern: &str, text: &str) -> bool {
    let mut re = String::from("(?s)^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap().is_match(text)
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!["a", "b", "/", ":", "é", "*", "?", "ab", "**"]),
        0..10,
    )
    .prop_map(|v| v.concat())
}

fn text_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!["a", "b", "/", ":", "é", "*"]),
        0..14,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn wildcards_agree_with_the_regex_oracle(pattern in pattern_strategy(), text in text_strategy()) {
        prop_assert_eq!(wildcard_match(&pattern, &text), oracle(&pattern, &text), "pattern {:?} text {:?}", pattern, text);
    }

    #[test]
    fn a_pattern_matches_itself_when_it_has_no_wildcards(text in "[a-z/:é]{0,20}") {
        prop_assert!(wildcard_match(&text, &text));
    }
}

/// A statement from small pools of actions and resources, so that overlaps are frequent.
#[derive(Debug, Clone)]
struct Stmt {
    deny: bool,
    action: &'static str,
    resource: &'static str,
}

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:Get*",
    "s3:*",
    "*",
    "s3:PutObject",
    "iam:*",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/k",
    "arn:aws:s3:::c/*",
    "arn:aws:s3:::*",
];
const REQ_ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject", "iam:CreateUser"];
const REQ_RESOURCES: &[&str] = &["arn:aws:s3:::b/k", "arn:aws:s3:::c/x", "arn:aws:s3:::d"];

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        any::<bool>(),
        proptest::sample::select(ACTIONS),
        proptest::sample::select(RESOURCES),
    )
        .prop_map(|(deny, action, resource)| Stmt {
            deny,
            action,
            resource,
        })
}

fn to_policy(stmts: &[Stmt]) -> Policy {
    let statements: Vec<_> = stmts
        .iter()
        .map(|s| json!({"Effect": if s.deny { "Deny" } else { "Allow" }, "Action": s.action, "Resource": s.resource}))
        .collect();
    Policy::parse(&json!({"Version": "2012-10-17", "Statement": statements}).to_string()).unwrap()
}

fn decide(policies: &[Policy], action: &str, resource: &str) -> Verdict {
    let sources: Vec<Source<'_>> = policies.iter().map(|p| Source::new("p", p)).collect();
    let set = PolicySet {
        identity: &sources,
        ..Default::default()
    };
    let ctx = Context::new();
    authorize(&set, &Request::new(action, resource, &ctx)).verdict
}

fn applies(s: &Stmt, action: &str, resource: &str) -> bool {
    (s.action == "*" || wildcard_match(&s.action.to_lowercase(), &action.to_lowercase()))
        && wildcard_match(s.resource, resource)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// The verdict is exactly: any applicable deny => explicitDeny; else any applicable allow =>
    /// allowed; else implicitDeny — whatever the order and grouping of statements.
    #[test]
    fn deny_overrides_allow_overrides_implicit_deny(
        groups in proptest::collection::vec(proptest::collection::vec(stmt(), 1..5), 1..4),
        action in proptest::sample::select(REQ_ACTIONS),
        resource in proptest::sample::select(REQ_RESOURCES),
    ) {
        let policies: Vec<Policy> = groups.iter().map(|g| to_policy(g)).collect();
        let all: Vec<&Stmt> = groups.iter().flatten().collect();
        let expected = if all.iter().any(|s| s.deny && applies(s, action, resource)) {
            Verdict::ExplicitDeny
        } else if all.iter().any(|s| !s.deny && applies(s, action, resource)) {
            Verdict::Allowed
        } else {
            Verdict::ImplicitDeny
        };
        prop_assert_eq!(decide(&policies, action, resource), expected);
    }

    /// Adding a deny that applies always yields explicitDeny; adding an allow never turns an
    /// allowed request into a denied one nor an explicit deny into anything else.
    #[test]
    fn adding_statements_is_monotonic(
        base in proptest::collection::vec(stmt(), 1..6),
        extra in stmt(),
        action in proptest::sample::select(REQ_ACTIONS),
        resource in proptest::sample::select(REQ_RESOURCES),
    ) {
        let before = decide(&[to_policy(&base)], action, resource);
        let after = decide(&[to_policy(&base), to_policy(std::slice::from_ref(&extra))], action, resource);
        if extra.deny && applies(&extra, action, resource) {
            prop_assert_eq!(after, Verdict::ExplicitDeny);
        }
        if !extra.deny {
            match before {
                Verdict::ExplicitDeny => prop_assert_eq!(after, Verdict::ExplicitDeny),
                Verdict::Allowed => prop_assert_eq!(after, Verdict::Allowed),
                Verdict::ImplicitDeny => {}
            }
        }
    }

    /// A permissions boundary never widens: whatever it says, the result is allowed only if
    /// the identity policies alone allow.
    #[test]
    fn a_boundary_never_widens(
        identity in proptest::collection::vec(stmt(), 1..5),
        boundary in proptest::collection::vec(stmt(), 1..5),
        action in proptest::sample::select(REQ_ACTIONS),
        resource in proptest::sample::select(REQ_RESOURCES),
    ) {
        let (ip, bp) = (to_policy(&identity), to_policy(&boundary));
        let ids = [Source::new("identity", &ip)];
        let bs = [Source::new("boundary", &bp)];
        let ctx = Context::new();
        let req = Request::new(action, resource, &ctx);
        let alone = authorize(&PolicySet { identity: &ids, ..Default::default() }, &req).verdict;
        let bounded = authorize(&PolicySet { identity: &ids, boundary: Some(&bs), ..Default::default() }, &req).verdict;
        if bounded == Verdict::Allowed {
            prop_assert_eq!(alone, Verdict::Allowed);
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("Allow"),
            Just("Deny"),
            Just("*"),
            Just("s3:GetObject"),
            Just("arn:aws:s3:::b/*"),
            Just("2012-10-17"),
            Just("${aws:username}"),
            Just("10.0.0.0/8"),
            Just("arn:aws:iam::111122223333:root"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
    ];
    let keys = prop_oneof![
        Just("Version"),
        Just("Statement"),
        Just("Effect"),
        Just("Action"),
        Just("NotAction"),
        Just("Resource"),
        Just("NotResource"),
        Just("Principal"),
        Just("Condition"),
        Just("Sid"),
        Just("AWS"),
        Just("StringLike"),
        Just("ForAnyValue:IpAddressIfExists"),
        Just("Null"),
        Just("aws:SourceIp"),
        Just("DateLessThan")
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any JSON, however odd, is either a policy or an error: never a panic. Whatever parses
    /// can be evaluated.
    #[test]
    fn parsing_never_panics(doc in json_value()) {
        let text = doc.to_string();
        if let Ok(policy) = Policy::parse(&text) {
            let sources = [Source::new("p", &policy)];
            let set = PolicySet { identity: &sources, ..Default::default() };
            let ctx = Context::new();
            let _ = authorize(&set, &Request::new("s3:GetObject", "arn:aws:s3:::b/k", &ctx));
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Policy::parse(&text);
    }
}
