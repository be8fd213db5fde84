//! The IAM scenario corpus: every `testdata/iam/*.json` file is one test.
//!
//! A scenario file holds policies and requests with their expected decisions:
//!
//! ```json
//! { "source": "where the case comes from (an AWS documentation page)",
//!   "identity": [policy, ...], "boundary": [...], "session": [...],
//!   "resource_policy": policy, "resource_account": "111122223333",
//!   "principal": "arn:aws:iam::111122223333:user/alice" | "anonymous" | {"federated": "..."},
//!   "context": {"aws:SourceIp": "10.0.0.1", "aws:TagKeys": ["a", "b"]},
//!   "requests": [{ "action": "s3:GetObject", "resource": "arn:aws:s3:::b/k",
//!                  "context": {...}, "principal": ..., "decision": "allowed",
//!                  "matched": ["Sid", ...], "missing": ["aws:username"] }] }
//! ```
//!
//! A policy is a JSON object or its text as a string. `matched` lists the Sids (or `#N`, the
//! 1-based statement number) of every statement that applied, in order; `missing`, the context
//! keys reported missing. Files under `invalid/` list policies that must be refused:
//! `{"source", "cases": [{"kind": "identity", "policy": ..., "error": "exact message"}]}`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use keyless_policy::{
    Context, Policy, PolicyKind, PolicySet, Principal, Request, Source, authorize,
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/iam");
    let mut trials = Vec::new();
    for (dir, run) in [
        (
            root.clone(),
            run_scenario as fn(&Path) -> Result<(), Failed>,
        ),
        (root.join("invalid"), run_invalid),
    ] {
        for path in json_files(&dir) {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            trials.push(Trial::test(name, move || run(&path)));
        }
    }
    assert!(
        trials.len() >= 20,
        "the corpus at {} is missing",
        root.display()
    );
    libtest_mimic::run(&args, trials).exit();
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn load(path: &Path) -> Result<Value, Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn policy_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn policies(
    v: Option<&Value>,
    kind: PolicyKind,
    label: &str,
) -> Result<Vec<(String, Policy)>, Failed> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = match v {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let id = format!("{label}.{}", i + 1);
            Policy::parse_as(&policy_text(p), kind)
                .map(|policy| (id.clone(), policy))
                .map_err(|e| format!("{id} does not parse: {e}").into())
        })
        .collect()
}

fn context(base: Option<&Value>, extra: Option<&Value>) -> Result<Context, Failed> {
    let mut ctx = Context::new();
    for map in [base, extra].into_iter().flatten() {
        let map = map.as_object().ok_or("context must be an object")?;
        for (key, value) in map {
            match value {
                Value::Array(items) => {
                    ctx.insert_multi(key.clone(), items.iter().map(scalar));
                }
                v => {
                    ctx.insert(key.clone(), scalar(v));
                }
            }
        }
    }
    Ok(ctx)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn principal(v: &Value) -> Result<Principal, Failed> {
    match v {
        Value::String(s) if s == "anonymous" => Ok(Principal::Anonymous),
        Value::String(arn) => Principal::from_arn(arn)
            .ok_or_else(|| format!("principal `{arn}` is not a user or role ARN").into()),
        Value::Object(m) => match (m.get("federated"), m.get("service")) {
            (Some(f), _) => Ok(Principal::Federated(scalar(f))),
            (_, Some(s)) => Ok(Principal::Service(scalar(s))),
            _ => Err("principal object needs `federated` or `service`".into()),
        },
        _ => Err("bad principal".into()),
    }
}

fn sources(list: &[(String, Policy)]) -> Vec<Source<'_>> {
    list.iter().map(|(id, p)| Source::new(id, p)).collect()
}

fn run_scenario(path: &Path) -> Result<(), Failed> {
    let doc = load(path)?;
    if doc
        .get("source")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("every scenario names its `source`".into());
    }
    let trust = doc.get("trust").and_then(Value::as_bool).unwrap_or(false);
    let identity_kind = if trust {
        PolicyKind::Trust
    } else {
        PolicyKind::Identity
    };
    let identity = policies(doc.get("identity"), identity_kind, "identity")?;
    let boundary = policies(doc.get("boundary"), PolicyKind::Identity, "boundary")?;
    let session = policies(doc.get("session"), PolicyKind::Identity, "session")?;
    let resource = policies(doc.get("resource_policy"), PolicyKind::Resource, "resource")?;
    let (identity_src, boundary_src, session_src) =
        (sources(&identity), sources(&boundary), sources(&session));
    let set = PolicySet {
        identity: &identity_src,
        boundary: doc.get("boundary").map(|_| &boundary_src[..]),
        session: doc.get("session").map(|_| &session_src[..]),
        resource: resource.first().map(|(id, p)| Source::new(id, p)),
        resource_account: doc.get("resource_account").and_then(Value::as_str),
    };
    let default_principal = doc.get("principal").map(principal).transpose()?;
    let requests = doc
        .get("requests")
        .and_then(Value::as_array)
        .ok_or("no `requests`")?;
    let mut failures = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let ctx = context(doc.get("context"), r.get("context"))?;
        let who = r.get("principal").map(principal).transpose()?;
        let mut req = Request::new(field("action"), field("resource"), &ctx);
        req.principal = who.as_ref().or(default_principal.as_ref());
        let d = authorize(&set, &req);
        let label = format!("requests[{i}] {} on {}", field("action"), field("resource"));
        if d.verdict.as_str() != field("decision") {
            failures.push(format!("{label}: expected {}, got {d}", field("decision")));
        }
        if let Some(want) = r.get("matched").and_then(Value::as_array) {
            let got: Vec<String> = d
                .matched
                .iter()
                .map(|m| {
                    m.statement
                        .sid()
                        .map_or_else(|| format!("#{}", m.statement.index() + 1), str::to_owned)
                })
                .collect();
            let want: Vec<String> = want.iter().map(scalar).collect();
            if got != want {
                failures.push(format!("{label}: expected matched {want:?}, got {got:?}"));
            }
        }
        if let Some(want) = r.get("missing").and_then(Value::as_array) {
            let want: Vec<String> = want.iter().map(scalar).collect();
            if d.missing_context != want {
                failures.push(format!(
                    "{label}: expected missing {want:?}, got {:?}",
                    d.missing_context
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

fn run_invalid(path: &Path) -> Result<(), Failed> {
    let doc = load(path)?;
    let cases = doc
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("no `cases`")?;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let kind = match case
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("identity")
        {
            "identity" => PolicyKind::Identity,
            "resource" => PolicyKind::Resource,
            "trust" => PolicyKind::Trust,
            _ => PolicyKind::Any,
        };
        let text = policy_text(case.get("policy").ok_or("case without `policy`")?);
        let want = case
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match Policy::parse_as(&text, kind) {
            Ok(_) => failures.push(format!("cases[{i}]: accepted, expected `{want}`")),
            Err(e) if e.to_string() != want => {
                failures.push(format!("cases[{i}]: expected `{want}`, got `{e}`"))
            }
            Err(_) => {}
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}
