//! The fixtures of `testdata/webhook/*.yaml`, in the manner of AWS's webhook's
//! `pkg/handler/testdata`: each file gives the service accounts the webhook knows, the
//! namespaces, the flags, the associations and the pod in, and `expected:` the exact JSON Patch,
//! warnings and outcome. Beyond the exact answer, each case checks that the patch applies (with
//! the `json-patch` crate, RFC 6902), that it only adds (every value of the pod in is still in
//! the pod out, unknown fields included), and that the mutated pod gets no patch.
//!
//! `KEYLESS_FIXTURES_ACTUAL=DIR` writes each case's actual answer to `DIR/<name>.json`, for
//! `scripts/bless-webhook-fixtures` to append to a new fixture (and for a person to review).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use keyless_imds::{RoleConfig, RoleResolver};
use keyless_types::AccountId;
use keyless_webhook::{
    Associations, CaBundle, Directory, ServiceAccount, Settings, mutate, parse_association,
};
use serde_json::{Value, json};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/webhook");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn settings(case: &Value) -> Settings {
    let s = &case["settings"];
    let text = |key: &str| s[key].as_str().map(str::to_owned);
    let mut settings = Settings {
        region: text("region"),
        regional_sts: s["stsRegionalEndpoints"].as_bool().unwrap_or(false),
        sts_endpoint: text("stsEndpoint"),
        s3_endpoint: text("s3Endpoint"),
        token_fs_group: s["tokenFsGroup"].as_bool().unwrap_or(false),
        ..Settings::default()
    };
    if let Some(seconds) = s["tokenExpiration"].as_i64() {
        settings.token_expiration = seconds;
    }
    if let Some(audience) = text("audience") {
        settings.audience = audience;
    }
    if let Some(ca) = text("caBundleConfigMap") {
        let (config_map, key) = ca.split_once(':').unwrap_or((&ca, "ca.crt"));
        settings.ca_bundle = Some(CaBundle {
            config_map: config_map.into(),
            key: key.into(),
        });
    }
    settings
}

fn roles(case: &Value) -> RoleResolver {
    let s = &case["settings"];
    let account = s["accountId"].as_str().unwrap_or("000000000000");
    let mut config = RoleConfig::new(AccountId::parse(account).unwrap());
    config.restrict_namespaces = s["namespaceRestrictions"].as_bool().unwrap_or(false);
    RoleResolver::new(config).unwrap()
}

fn list(case: &Value, key: &str) -> Vec<Value> {
    case[key].as_array().cloned().unwrap_or_default()
}

/// The answer for `pod`, as a JSON document.
fn answer(case: &Value, directory: &Directory, pod: &Value) -> Value {
    let namespace = case["namespace"]
        .as_str()
        .or(pod["metadata"]["namespace"].as_str())
        .unwrap_or("default");
    let account_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let associations = Associations::new(
        list(case, "associations")
            .iter()
            .map(|a| parse_association(a.as_str().unwrap()).unwrap()),
    );
    let account = directory.service_account(namespace, account_name);
    let ns = directory.namespace(namespace);
    let mutation = mutate(
        &settings(case),
        &roles(case),
        &associations,
        namespace,
        pod,
        account.as_deref(),
        ns.as_deref(),
    );
    json!({"patch": mutation.patch, "warnings": mutation.warnings, "outcome": mutation.outcome.as_str()})
}

/// Every leaf of `before` is in `after` at the same place (array items by position, since the
/// patch only appends).
fn only_adds(before: &Value, after: &Value, at: &str) -> Result<(), String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => b.iter().try_for_each(|(k, v)| {
            only_adds(
                v,
                a.get(k).ok_or(format!("{at}/{k} is gone"))?,
                &format!("{at}/{k}"),
            )
        }),
        (Value::Array(b), Value::Array(a)) => b.iter().enumerate().try_for_each(|(i, v)| {
            only_adds(
                v,
                a.get(i).ok_or(format!("{at}/{i} is gone"))?,
                &format!("{at}/{i}"),
            )
        }),
        (b, a) if b == a => Ok(()),
        (b, a) => Err(format!("{at}: {b} became {a}")),
    }
}

#[test]
fn every_fixture_gets_exactly_its_patch() {
    let files = fixtures();
    assert!(files.len() >= 12, "only {} fixtures", files.len());
    #[allow(clippy::disallowed_methods)]
    // the test's own switch, for scripts/bless-webhook-fixtures
    let actual_dir = std::env::var_os("KEYLESS_FIXTURES_ACTUAL").map(PathBuf::from);
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let case: Value = serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The cache and what a GET on a miss finds: the handler's lookup; the GET itself is
        // tested against a fake API server (keyless-k8s's tests).
        let directory = Directory::new();
        for item in list(&case, "serviceAccounts")
            .iter()
            .chain(&list(&case, "apiServer"))
        {
            directory.upsert_account(ServiceAccount::from_object(item).unwrap());
        }
        let (_, namespaces) = keyless_webhook::parse_list(
            json!({"kind": "NamespaceList", "items": list(&case, "namespaces")})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        directory.replace_namespaces(namespaces);
        let pod = &case["pod"];
        let got = answer(&case, &directory, pod);
        if let Some(dir) = &actual_dir {
            std::fs::write(
                dir.join(format!("{name}.json")),
                serde_json::to_string_pretty(&got).unwrap(),
            )
            .unwrap();
        }
        let expected = &case["expected"];
        if expected.is_null() {
            failures.push(format!(
                "{name}: no `expected:` (run scripts/bless-webhook-fixtures)"
            ));
            continue;
        }
        for key in ["patch", "warnings", "outcome"] {
            let want = if key == "outcome" {
                expected[key].clone()
            } else if expected[key].is_null() {
                json!([])
            } else {
                expected[key].clone()
            };
            if got[key] != want {
                failures.push(format!("{name}: {key}\n  want {want}\n  got  {}", got[key]));
            }
        }
        let patch: json_patch::Patch = serde_json::from_value(got["patch"].clone()).unwrap();
        let mut mutated = pod.clone();
        if let Err(e) = json_patch::patch(&mut mutated, &patch) {
            failures.push(format!("{name}: the patch does not apply: {e}"));
            continue;
        }
        if let Err(e) = only_adds(pod, &mutated, "") {
            failures.push(format!("{name}: the patch changes the pod: {e}"));
        }
        let again = answer(&case, &directory, &mutated);
        if again["patch"] != json!([]) {
            failures.push(format!(
                "{name}: the mutated pod gets another patch: {}",
                again["patch"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
