//! Tests of role resolution: names and ARNs, default roles, session names and external ids,
//! and the namespace rules of kube2iam (`allowed-roles` globs) and kiam (`permitted` regexes).

use super::*;
use crate::pods::tests::{namespace, pod};

const ACCOUNT: &str = "123456789012";

fn resolver(default_role: Option<&str>, restrict: bool) -> RoleResolver {
    RoleResolver::new(RoleConfig {
        default_role: default_role.map(str::to_owned),
        restrict_namespaces: restrict,
        ..RoleConfig::new(AccountId::parse(ACCOUNT).unwrap())
    })
    .unwrap()
}

fn role_of(resolution: Resolution) -> RoleTarget {
    match resolution {
        Resolution::Role(role) => role,
        other => panic!("expected a role, got {other:?}"),
    }
}

fn reason_of(resolution: Resolution) -> String {
    match resolution {
        Resolution::Forbidden { reason, .. } => reason,
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[test]
fn a_pods_session_is_tagged_with_its_namespace_service_account_name_and_uid() {
    let p = pod(
        "u-1",
        "10.0.0.1",
        "shop",
        "web-0",
        &[(ROLE_ANNOTATION, "reader")],
    );
    let role = role_of(resolver(None, false).resolve(&p, None));
    let tag = |k: &str| {
        role.tags
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(tag("kubernetes-namespace"), Some("shop"));
    assert_eq!(
        tag("kubernetes-service-account"),
        Some(p.service_account.as_str())
    );
    assert_eq!(tag("kubernetes-pod-name"), Some("web-0"));
    assert_eq!(tag("kubernetes-pod-uid"), Some("u-1"));
    assert_eq!(tag("eks-cluster-name"), None);
    // With a cluster name, that too; and the cache key carries them to STS.
    let named = RoleResolver::new(RoleConfig {
        cluster_name: Some("main".into()),
        ..RoleConfig::new(AccountId::parse(ACCOUNT).unwrap())
    })
    .unwrap();
    let role = role_of(named.resolve(&p, None));
    assert_eq!(role.tags[0], ("eks-cluster-name".into(), "main".into()));
    assert_eq!(role.tags.len(), 5);
    // Turned off, none (EKS Pod Identity's disableSessionTags).
    let untagged = RoleResolver::new(RoleConfig {
        session_tags: false,
        ..RoleConfig::new(AccountId::parse(ACCOUNT).unwrap())
    })
    .unwrap();
    assert!(role_of(untagged.resolve(&p, None)).tags.is_empty());
}

#[test]
fn a_role_name_becomes_an_arn_of_the_account() {
    let r = resolver(None, false);
    let p = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web-0",
        &[(ROLE_ANNOTATION, " shop-reader ")],
    );
    let role = role_of(r.resolve(&p, None));
    assert_eq!(role.arn, "arn:aws:iam::123456789012:role/shop-reader");
    assert_eq!(role.name, "shop-reader");
    assert_eq!(role.session_name, "shop.web-0");
    assert_eq!(role.external_id, None);
    let p = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web-0",
        &[(ROLE_ANNOTATION, "team/a/app")],
    );
    let role = role_of(r.resolve(&p, None));
    assert_eq!(role.arn, "arn:aws:iam::123456789012:role/team/a/app");
    assert_eq!(role.name, "app");
}

#[test]
fn a_full_arn_is_kept_and_named_by_its_last_part() {
    let r = resolver(None, false);
    let arn = "arn:aws-cn:iam::210987654321:role/path/cross";
    let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, arn)]);
    let role = role_of(r.resolve(&p, None));
    assert_eq!((role.arn.as_str(), role.name.as_str()), (arn, "cross"));
}

#[test]
fn malformed_roles_are_forbidden() {
    let r = resolver(None, false);
    for bad in [
        "arn:aws:iam::123456789012:user/bob",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::12:role/x",
        "has space",
        "a//b",
        "trailing/",
        &"x".repeat(65),
    ] {
        let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, bad)]);
        assert!(
            matches!(r.resolve(&p, None), Resolution::Forbidden { role, .. } if role == bad.trim()),
            "{bad}"
        );
    }
}

#[test]
fn no_annotation_gives_the_default_role_or_none() {
    let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, "  ")]);
    assert_eq!(resolver(None, false).resolve(&p, None), Resolution::NoRole);
    // The default role is allowed even where namespaces allow nothing.
    let r = resolver(Some("node-default"), true);
    let role = role_of(r.resolve(&p, None));
    assert_eq!(role.arn, "arn:aws:iam::123456789012:role/node-default");
    let strict = namespace("shop", &[(PERMITTED_ANNOTATION, "nothing")]);
    assert_eq!(role_of(r.resolve(&p, Some(&strict))).name, "node-default");
    // Also when a pod names it.
    let named = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web",
        &[(ROLE_ANNOTATION, "node-default")],
    );
    assert_eq!(
        role_of(r.resolve(&named, Some(&strict))).name,
        "node-default"
    );
}

#[test]
fn a_bad_default_role_is_a_configuration_error() {
    let config = RoleConfig {
        default_role: Some("arn:aws:iam::123456789012:user/x".into()),
        ..RoleConfig::new(AccountId::parse(ACCOUNT).unwrap())
    };
    let error = RoleResolver::new(config).unwrap_err().to_string();
    assert!(error.contains("default role"), "{error}");
    let config = RoleConfig {
        partition: "AWS CN".into(),
        ..RoleConfig::new(AccountId::parse(ACCOUNT).unwrap())
    };
    assert!(RoleResolver::new(config).is_err());
}

#[test]
fn allowed_roles_globs_match_the_arn() {
    let r = resolver(None, false);
    let ns = namespace(
        "shop",
        &[(
            ALLOWED_ROLES_ANNOTATION,
            r#"["shop-*", "arn:aws:iam::210987654321:role/exact", "team/*"]"#,
        )],
    );
    for ok in [
        "shop-reader",
        "arn:aws:iam::123456789012:role/shop-writer",
        "arn:aws:iam::210987654321:role/exact",
        "team/a/app",
    ] {
        let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, ok)]);
        assert!(
            matches!(r.resolve(&p, Some(&ns)), Resolution::Role(_)),
            "{ok}"
        );
    }
    for refused in [
        "admin",
        "arn:aws:iam::210987654321:role/shop-reader",
        "arn:aws:iam::210987654321:role/exact2",
    ] {
        let p = pod(
            "u",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, refused)],
        );
        let reason = reason_of(r.resolve(&p, Some(&ns)));
        assert!(
            reason.contains("is not in `iam.amazonaws.com/allowed-roles`"),
            "{reason}"
        );
    }
    let broken = namespace("shop", &[(ALLOWED_ROLES_ANNOTATION, "shop-*")]);
    let p = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web",
        &[(ROLE_ANNOTATION, "shop-reader")],
    );
    assert!(reason_of(r.resolve(&p, Some(&broken))).contains("not a JSON list"));
}

#[test]
fn permitted_is_a_fully_anchored_regex_on_the_role_as_written() {
    let r = resolver(None, false);
    let ns = namespace("shop", &[(PERMITTED_ANNOTATION, "shop-.*")]);
    let check = |written: &str| {
        let p = pod(
            "u",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, written)],
        );
        r.resolve(&p, Some(&ns))
    };
    assert!(matches!(check("shop-reader"), Resolution::Role(_)));
    assert!(reason_of(check("my-shop-reader")).contains("does not match"));
    assert!(
        reason_of(check("arn:aws:iam::123456789012:role/shop-reader")).contains("does not match")
    );
    // Anchoring holds against alternations, too.
    let ns = namespace("shop", &[(PERMITTED_ANNOTATION, "a|b")]);
    let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, "ab")]);
    assert!(matches!(
        r.resolve(&p, Some(&ns)),
        Resolution::Forbidden { .. }
    ));
    let bad = namespace("shop", &[(PERMITTED_ANNOTATION, "(")]);
    let p = pod("u", "10.0.0.1", "shop", "web", &[(ROLE_ANNOTATION, "a")]);
    assert!(reason_of(r.resolve(&p, Some(&bad))).contains("not a regular expression"));
    // Compiled once, also when it does not compile.
    assert!(matches!(
        r.resolve(&p, Some(&bad)),
        Resolution::Forbidden { .. }
    ));
    assert_eq!(r.regexes.lock().unwrap().len(), 3);
}

#[test]
fn with_both_annotations_a_role_passes_both() {
    let r = resolver(None, false);
    let ns = namespace(
        "shop",
        &[
            (ALLOWED_ROLES_ANNOTATION, r#"["shop-*"]"#),
            (PERMITTED_ANNOTATION, ".*-reader"),
        ],
    );
    let check = |written: &str| {
        let p = pod(
            "u",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, written)],
        );
        matches!(r.resolve(&p, Some(&ns)), Resolution::Role(_))
    };
    assert!(check("shop-reader"));
    assert!(!check("shop-writer"));
    assert!(!check("other-reader"));
}

#[test]
fn restricted_namespaces_allow_nothing_unless_annotated() {
    let r = resolver(None, true);
    let p = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web",
        &[(ROLE_ANNOTATION, "shop-reader")],
    );
    assert!(reason_of(r.resolve(&p, None)).contains("not known"));
    let bare = namespace("shop", &[]);
    assert!(reason_of(r.resolve(&p, Some(&bare))).contains("allows no role"));
    let open = namespace("shop", &[(PERMITTED_ANNOTATION, ".*")]);
    assert!(matches!(r.resolve(&p, Some(&open)), Resolution::Role(_)));
    // Unrestricted, a bare or unknown namespace allows any role.
    let r = resolver(None, false);
    assert!(matches!(r.resolve(&p, Some(&bare)), Resolution::Role(_)));
    assert!(matches!(r.resolve(&p, None), Resolution::Role(_)));
}

#[test]
fn session_names_and_external_ids() {
    let r = resolver(None, false);
    let p = pod(
        "u",
        "10.0.0.1",
        "shop",
        "web",
        &[
            (ROLE_ANNOTATION, "app"),
            (SESSION_NAME_ANNOTATION, "ci@build=7"),
            (EXTERNAL_ID_ANNOTATION, "urn:partner:42/x"),
        ],
    );
    let role = role_of(r.resolve(&p, None));
    assert_eq!(role.session_name, "ci@build=7");
    assert_eq!(role.external_id.as_deref(), Some("urn:partner:42/x"));
    for (key, value) in [
        (SESSION_NAME_ANNOTATION, "a"),
        (SESSION_NAME_ANNOTATION, "has space"),
        (EXTERNAL_ID_ANNOTATION, "x"),
        (EXTERNAL_ID_ANNOTATION, "no spaces please"),
    ] {
        let p = pod(
            "u",
            "10.0.0.1",
            "shop",
            "web",
            &[(ROLE_ANNOTATION, "app"), (key, value)],
        );
        assert!(
            matches!(r.resolve(&p, None), Resolution::Forbidden { .. }),
            "{key}={value}"
        );
    }
}

#[test]
fn default_session_names_are_valid_and_identify_the_pod() {
    assert_eq!(default_session_name("shop", "web-0"), "shop.web-0");
    let long = default_session_name("a-namespace", &"p".repeat(200));
    assert_eq!(long.len(), 64);
    assert!(is_session_name(&long));
    assert_ne!(long, default_session_name("a-namespace", &"p".repeat(201)));
    assert!(is_session_name(&default_session_name("", "")));
    assert!(is_session_name(&default_session_name("ns", "ünïcode pod")));
}

#[test]
fn globs() {
    assert!(glob_match("*", ""));
    assert!(glob_match("a*c", "abbbc"));
    assert!(glob_match("a*b*c", "a-b-b-c"));
    assert!(!glob_match("a*c", "abcd"));
    assert!(glob_match("abc", "abc"));
    assert!(!glob_match("abc", "abcd"));
    assert!(!glob_match("", "a"));
}
