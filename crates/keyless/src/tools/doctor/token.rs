//! The web-identity token and the role it is for: the token's claims read without verifying
//! (STS verifies), its expiry, the role ARN, and whether the role's trust policy admits the
//! token, decided by the same policy engine STS uses for `AssumeRoleWithWebIdentity`.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html>

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyless_policy::{PolicyKind, PolicySet, Principal, Request, Source};
use keyless_types::time::iso8601;
use serde_json::{Map, Value};

use super::report::{Check, Status};

/// What a JWT's payload says, unverified.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Vec<String>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    /// Every claim, for the trust policy's condition keys.
    pub(crate) all: Map<String, Value>,
}

/// Decodes the payload of a JWT (`header.payload.signature`) without checking its signature.
pub(crate) fn decode_claims(token: &str) -> Result<Claims, String> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "it is not a JWT: {} dot-separated parts, not 3",
            token.split('.').count()
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("its payload is not base64url: {e}"))?;
    let all: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("its payload is not a JSON object: {e}"))?;
    let text = |name: &str| all.get(name).and_then(Value::as_str).map(str::to_owned);
    let number = |name: &str| all.get(name).and_then(Value::as_i64);
    let aud = match all.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Claims {
        iss: text("iss"),
        sub: text("sub"),
        aud,
        exp: number("exp"),
        nbf: number("nbf"),
        all,
    })
}

/// `in 42 min`, `3 h ago`.
pub(crate) fn relative(seconds: i64) -> String {
    let n = seconds.unsigned_abs();
    let amount = if n < 120 {
        format!("{n} s")
    } else if n < 2 * 3600 {
        format!("{} min", n / 60)
    } else if n < 2 * 86_400 {
        format!("{} h", n / 3600)
    } else {
        format!("{} days", n / 86_400)
    };
    if seconds < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// The token step: its claims, and whether it is still valid at `now`.
pub(crate) fn token_check(file: &str, claims: &Claims, now: i64) -> Check {
    const STEP: &str = "web-identity token";
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
    let aud = if claims.aud.is_empty() {
        "(none)".to_owned()
    } else {
        claims.aud.join(", ")
    };
    let mut check = Check::new(STEP, Status::Ok, "")
        .detail("file", file)
        .detail("iss", shown(&claims.iss))
        .detail("sub", shown(&claims.sub))
        .detail("aud", aud.clone());
    let what = format!(
        "iss {}, sub {}, aud {aud}",
        shown(&claims.iss),
        shown(&claims.sub)
    );
    let Some(exp) = claims.exp else {
        check.status = Status::Fail;
        check.message = format!("{what}; no `exp` claim");
        return check.hint("STS refuses a token without an expiry; use a projected service-account token (or `keyless token`)");
    };
    check = check.detail("exp", iso8601(exp));
    if exp <= now {
        check.status = Status::Fail;
        check.message = format!(
            "expired at {} ({}); {what}",
            iso8601(exp),
            relative(exp - now)
        );
        return check.hint(format!(
            "the kubelet rewrites a projected token well before it expires: an expired one is a copy, \
             or a token nothing refreshes; mount the projected token (eks.amazonaws.com/role-arn on the \
             service account) or write a fresh one to {file} (`keyless token`, `kubectl create token`)"
        ));
    }
    if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now + 60) {
        check.status = Status::Fail;
        check.message = format!(
            "not valid before {} ({}); {what}",
            iso8601(nbf),
            relative(nbf - now)
        );
        return check.hint("this machine's clock or the issuer's is wrong");
    }
    if claims.iss.is_none() || claims.sub.is_none() || claims.aud.is_empty() {
        check.status = Status::Fail;
        check.message = format!("{what}; STS needs all three");
        return check.hint("use a projected service-account token (or `keyless token`)");
    }
    check.message = format!("{what}; expires {} ({})", iso8601(exp), relative(exp - now));
    check
}

/// The role step: AWS_ROLE_ARN must name an IAM role.
pub(crate) fn role_arn_check(role_arn: &str) -> Check {
    const STEP: &str = "role";
    match keyless_types::Arn::parse(role_arn) {
        Ok(arn) if arn.service() == "iam" && arn.resource().starts_with("role/") => {
            Check::new(STEP, Status::Ok, format!("AWS_ROLE_ARN is {role_arn}"))
        }
        _ => Check::new(
            STEP,
            Status::Fail,
            format!("AWS_ROLE_ARN `{role_arn}` is not a role ARN"),
        )
        .hint("a role ARN looks like arn:aws:iam::123456789012:role/NAME (the service account's eks.amazonaws.com/role-arn annotation)"),
    }
}

/// What the trust policy is checked with.
#[derive(Debug)]
pub(crate) struct Trust<'a> {
    pub(crate) role_arn: &'a str,
    /// The trust policy's JSON text.
    pub(crate) document: &'a str,
    pub(crate) claims: &'a Claims,
    /// AWS_ROLE_SESSION_NAME, when set.
    pub(crate) session_name: Option<&'a str>,
    /// Whether STS is reached over https (`aws:SecureTransport`).
    pub(crate) secure_transport: bool,
    pub(crate) now: i64,
}

/// Whether the role's trust policy admits the token, decided as STS decides it: principal
/// `Federated` = the issuer's OIDC provider, the token's string claims as `PROVIDER:claim`
/// condition keys, `PROVIDER:aud` one audience at a time.
pub(crate) fn trust_check(t: &Trust<'_>) -> Check {
    const STEP: &str = "trust policy";
    let policy = match keyless_policy::Policy::parse_as(t.document, PolicyKind::Trust) {
        Ok(policy) => policy,
        Err(e) => {
            return Check::new(
                STEP,
                Status::Fail,
                format!("the role's trust policy does not parse: {e}"),
            );
        }
    };
    let Some(iss) = t.claims.iss.as_deref() else {
        return Check::new(STEP, Status::Skip, "not checked: the token has no `iss`");
    };
    let provider = match keyless_types::ProviderUrl::parse(iss) {
        Ok(provider) => provider,
        Err(e) => {
            return Check::new(
                STEP,
                Status::Fail,
                format!("the token's `iss` `{iss}` names no OIDC provider IAM could have: {e}"),
            );
        }
    };
    let key = provider.key();
    let account = keyless_types::Arn::parse(t.role_arn)
        .map(|a| a.account().to_owned())
        .unwrap_or_default();
    let provider_arn = provider.arn(&account);
    let principal = Principal::Federated(provider_arn.clone());
    let source = Source::new("trust policy", &policy);
    let set = PolicySet {
        resource: Some(source),
        ..Default::default()
    };
    let sub = t.claims.sub.clone().unwrap_or_default();
    let audiences: Vec<&str> = if t.claims.aud.is_empty() {
        vec![""]
    } else {
        t.claims.aud.iter().map(String::as_str).collect()
    };
    let mut last = None;
    for aud in &audiences {
        let mut ctx = keyless_iam::request_context(None, t.secure_transport, t.now);
        for (name, values) in string_claims(&t.claims.all) {
            let ckey = format!("{key}:{name}");
            match values.as_slice() {
                [one] => ctx.insert(ckey, one.clone()),
                many => ctx.insert_multi(ckey, many.iter().cloned()),
            };
        }
        ctx.insert(format!("{key}:aud"), (*aud).to_owned());
        ctx.insert("aws:FederatedProvider", provider_arn.clone());
        if let Some(name) = t.session_name {
            ctx.insert("sts:RoleSessionName", name.to_owned());
        }
        let request =
            Request::new("sts:AssumeRoleWithWebIdentity", t.role_arn, &ctx).by(&principal);
        let decision = keyless_policy::authorize(&set, &request);
        if decision.verdict.is_allowed() {
            return Check::new(
                STEP,
                Status::Ok,
                format!(
                    "{} admits sub {sub}, aud {aud} from {provider_arn} ({decision})",
                    t.role_arn
                ),
            );
        }
        last = Some((
            decision.to_string(),
            decision
                .missing_context
                .iter()
                .map(|k| (*k).to_owned())
                .collect::<Vec<_>>(),
        ));
    }
    let (why, missing) = last.unwrap_or_default();
    let expected = Expected::of(t.document);
    let mut hints = Vec::new();
    if !expected.federated.is_empty()
        && !expected.federated.iter().any(|p| matches(p, &provider_arn))
    {
        hints.push(format!(
            "it trusts {}, not this token's issuer {provider_arn}",
            expected.federated.join(", ")
        ));
    }
    if !expected.sub.is_empty() && !expected.sub.iter().any(|p| matches(p, &sub)) {
        hints.push(format!(
            "it expects sub {}; the token's is {sub} (the pod's namespace and service account)",
            expected.sub.join(" or ")
        ));
    }
    if !expected.aud.is_empty()
        && !audiences
            .iter()
            .any(|a| expected.aud.iter().any(|p| matches(p, a)))
    {
        hints.push(format!(
            "it expects aud {}; the token's is {} (the projected token's audience)",
            expected.aud.join(" or "),
            audiences.join(", ")
        ));
    }
    if !missing.is_empty() {
        hints.push(format!(
            "it also tests keys this check does not know: {}",
            missing.join(", ")
        ));
    }
    if hints.is_empty() {
        hints.push(
            "compare its Principal.Federated and its :sub and :aud conditions with the token"
                .to_owned(),
        );
    }
    Check::new(
        STEP,
        Status::Fail,
        format!(
            "{} does not admit sub {sub}, aud {} from {provider_arn} ({why})",
            t.role_arn,
            audiences.join(", ")
        ),
    )
    .detail("trust_policy", t.document)
    .hint(hints.join("\n"))
}

/// `StringEquals` or `StringLike`: equal, or matching as a wildcard pattern.
fn matches(pattern: &str, value: &str) -> bool {
    pattern == value || keyless_policy::wildcard_match(pattern, value)
}

/// The token's claims with string values (one or a list), as STS makes condition keys of them.
fn string_claims(claims: &Map<String, Value>) -> Vec<(String, Vec<String>)> {
    claims
        .iter()
        .filter_map(|(name, value)| {
            let values: Vec<String> = match value {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                }
                _ => return None,
            };
            (name != "aud").then(|| (name.clone(), values))
        })
        .collect()
}

/// What an allowing statement of a trust policy names, for the explanation only (the engine
/// decides).
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    federated: Vec<String>,
    sub: Vec<String>,
    aud: Vec<String>,
}

impl Expected {
    fn of(document: &str) -> Self {
        let mut out = Self::default();
        let Ok(doc) = serde_json::from_str::<Value>(document) else {
            return out;
        };
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one) => vec![one.clone()],
            None => Vec::new(),
        };
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        for st in statements
            .iter()
            .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
        {
            if let Some(fed) = st.get("Principal").and_then(|p| p.get("Federated")) {
                out.federated.extend(strings(fed));
            }
            let Some(conditions) = st.get("Condition").and_then(Value::as_object) else {
                continue;
            };
            for keys in conditions.values().filter_map(Value::as_object) {
                for (k, v) in keys {
                    let k = k.to_ascii_lowercase();
                    if k.ends_with(":sub") {
                        out.sub.extend(strings(v));
                    } else if k.ends_with(":aud") {
                        out.aud.extend(strings(v));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    const NOW: i64 = 1_800_000_000;
    const ROLE: &str = "arn:aws:iam::000000000000:role/gitlab-registry";

    fn sa_claims(sub: &str, aud: &str) -> Claims {
        decode_claims(&jwt(&serde_json::json!({
            "iss": "https://oidc.example.com/cluster", "sub": sub, "aud": [aud],
            "exp": NOW + 3600, "iat": NOW - 60, "nbf": NOW - 60,
            "kubernetes.io": {"namespace": "gitlab"}
        })))
        .unwrap()
    }

    fn trust(sub: &str) -> String {
        crate::tools::iam::trust_policy(
            "arn:aws:iam::000000000000:oidc-provider/oidc.example.com/cluster",
            "oidc.example.com/cluster",
            "gitlab",
            sub,
            "sts.amazonaws.com",
        )
    }

    #[test]
    fn claims_are_read_from_the_payload_without_a_key() {
        let claims = sa_claims("system:serviceaccount:gitlab:registry", "sts.amazonaws.com");
        assert_eq!(
            claims.iss.as_deref(),
            Some("https://oidc.example.com/cluster")
        );
        assert_eq!(
            claims.sub.as_deref(),
            Some("system:serviceaccount:gitlab:registry")
        );
        assert_eq!(claims.aud, ["sts.amazonaws.com"]);
        assert_eq!(claims.exp, Some(NOW + 3600));
        let one = decode_claims(&jwt(&serde_json::json!({"aud": "x"}))).unwrap();
        assert_eq!(one.aud, ["x"]);
        assert!(
            decode_claims("not-a-jwt")
                .unwrap_err()
                .contains("1 dot-separated")
        );
        assert!(decode_claims("a.%%%.c").unwrap_err().contains("base64url"));
        assert!(
            decode_claims("a.bm90IGpzb24.c")
                .unwrap_err()
                .contains("JSON")
        );
    }

    #[test]
    fn an_expired_token_fails_and_says_when_it_expired() {
        let mut claims = sa_claims("system:serviceaccount:gitlab:registry", "sts.amazonaws.com");
        let ok = token_check("/token", &claims, NOW);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.message.contains("in 60 min"), "{}", ok.message);
        claims.exp = Some(NOW - 7200);
        let expired = token_check("/token", &claims, NOW);
        assert_eq!(expired.status, Status::Fail);
        assert!(
            expired.message.starts_with("expired at"),
            "{}",
            expired.message
        );
        assert!(expired.message.contains("2 h ago"), "{}", expired.message);
        claims.exp = None;
        assert_eq!(token_check("/token", &claims, NOW).status, Status::Fail);
    }

    #[test]
    fn role_arns_must_name_an_iam_role() {
        assert_eq!(role_arn_check(ROLE).status, Status::Ok);
        assert_eq!(role_arn_check("gitlab-registry").status, Status::Fail);
        assert_eq!(
            role_arn_check("arn:aws:iam::000000000000:user/x").status,
            Status::Fail
        );
    }

    #[test]
    fn the_trust_policy_is_decided_by_the_engine_and_a_mismatch_is_named() {
        let claims = sa_claims("system:serviceaccount:gitlab:registry", "sts.amazonaws.com");
        let admits = trust("registry");
        let t = Trust {
            role_arn: ROLE,
            document: &admits,
            claims: &claims,
            session_name: None,
            secure_transport: true,
            now: NOW,
        };
        let check = trust_check(&t);
        assert_eq!(check.status, Status::Ok, "{check:?}");

        let other = trust("toolbox");
        let check = trust_check(&Trust {
            document: &other,
            ..t
        });
        assert_eq!(check.status, Status::Fail);
        let hint = check.hint.unwrap();
        assert!(
            hint.contains("expects sub system:serviceaccount:gitlab:toolbox"),
            "{hint}"
        );
        assert!(!hint.contains("expects aud"), "{hint}");

        let wrong_aud = sa_claims("system:serviceaccount:gitlab:registry", "gitlab");
        let check = trust_check(&Trust {
            claims: &wrong_aud,
            ..t
        });
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .hint
                .unwrap()
                .contains("expects aud sts.amazonaws.com")
        );

        let elsewhere = admits.replace(
            "oidc-provider/oidc.example.com",
            "oidc-provider/other.example.com",
        );
        let check = trust_check(&Trust {
            document: &elsewhere,
            ..t
        });
        assert_eq!(check.status, Status::Fail);
        assert!(check.hint.unwrap().contains("not this token's issuer"));
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(30), "in 30 s");
        assert_eq!(relative(-600), "10 min ago");
        assert_eq!(relative(3 * 3600), "in 3 h");
        assert_eq!(relative(-3 * 86_400), "3 days ago");
    }
}
