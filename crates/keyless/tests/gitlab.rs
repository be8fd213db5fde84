//! `keyless gitlab check` and `keyless gitlab render` as a user runs them: the real binary on
//! the fixtures of `crates/keyless-gitlab/testdata`, its output and exit codes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../keyless-gitlab/testdata")
        .join(case)
}

fn keyless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `keyless gitlab check` on a folder's values.yaml and every other file as a secret.
fn check_dir(dir: &Path, extra: &[&str]) -> Output {
    let mut secrets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "values.yaml"))
        .collect();
    secrets.sort();
    let values = dir.join("values.yaml");
    let mut args = vec![
        "gitlab".to_owned(),
        "check".to_owned(),
        "--values".to_owned(),
        values.display().to_string(),
    ];
    for s in secrets {
        args.push("--secret".to_owned());
        args.push(s.display().to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    keyless(&args)
}

fn check(case: &str) -> Output {
    check_dir(&testdata(case), &[])
}

#[test]
fn good_setups_pass_with_exit_code_0() {
    for case in ["annotation-good", "irsa-good"] {
        let o = check(case);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{case}: {out}");
        assert!(out.ends_with("\nno findings\n"), "{out}");
    }
    let out = stdout(&check("irsa-good"));
    assert!(out.starts_with("GitLab chart: IRSA mode"), "{out}");
    assert!(
        out.contains(
            "\nregistry: role `arn:aws:iam::123456789012:role/gitlab-s3` through web identity \
             (IRSA), service account `gitlab-sa`\n"
        ),
        "{out}"
    );
}

#[test]
fn errors_exit_2_with_the_fix() {
    let o = check("static-keys");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("registry: static keys from `"), "{out}");
    assert!(out.contains("error: `"), "{out}");
    assert!(out.contains("[static-keys]\n    fix: remove accesskey and secretkey from `"));
    assert!(out.ends_with("4 errors, 0 warnings\n"), "{out}");

    let out = stdout(&check("arn-number"));
    assert!(
        out.contains(
            "error: `global.platform.eksRoleArn` parsed as a number (123456789012), not as a \
             string holding a role [role-not-a-string]"
        ),
        "{out}"
    );

    let out = stdout(&check("annotation-key-split"));
    assert!(
        out.contains(
            r#"escape the dots: --set 'registry.annotations.iam\.amazonaws\.com/role=...'"#
        ),
        "{out}"
    );
}

#[test]
fn warnings_only_exit_1() {
    let o = check("region-mismatch");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("warning: the regions disagree: "), "{out}");
}

#[test]
fn every_fixture_exits_as_its_worst_finding() {
    let expected = [
        ("annotation-missing", 2),
        ("arn-cut-by-comment", 2),
        ("arn-map", 2),
        ("arn-placeholder", 2),
        ("fog-no-iam-profile", 2),
        ("irsa-annotation-split", 2),
        ("irsa-role-missing", 2),
        ("region-missing", 2),
        ("service-account-created-by-chart", 2),
    ];
    for (case, code) in expected {
        let o = check(case);
        assert_eq!(o.status.code(), Some(code), "{case}: {}", stdout(&o));
    }
}

#[test]
fn json_for_scripts() {
    let o = check_dir(&testdata("fog-no-iam-profile"), &["--json"]);
    assert_eq!(o.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["mode"], "annotation");
    let web = &json["components"][1];
    assert_eq!(web["component"], "webservice");
    assert_eq!(web["findings"][0]["code"], "fog-no-iam-profile");
    assert_eq!(web["findings"][0]["severity"], "error");
}

#[test]
fn unreadable_input_is_an_error_with_exit_2() {
    let o = keyless(&["gitlab", "check", "--values", "/nonexistent/values.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("cannot read `/nonexistent/values.yaml`"),
        "{err}"
    );
    let values = testdata("annotation-good").join("values.yaml");
    let o = keyless(&[
        "gitlab",
        "check",
        "--values",
        values.to_str().unwrap(),
        "--secret",
        values.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("is neither a registry storage config"),
        "{err}"
    );
}

/// `render`'s output, split at its headers into a fresh folder, passes `check`.
fn round_trip(mode: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["gitlab", "render", "--mode", mode, "--role", role];
    args.extend_from_slice(extra);
    let o = keyless(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    let dir = std::env::temp_dir().join(format!("keyless-gitlab-{mode}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut current: Option<std::fs::File> = None;
    let mut names = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(name) = line
            .trim_end()
            .strip_prefix("# ---- file: ")
            .and_then(|l| l.strip_suffix(" ----"))
        {
            names.push(name.to_owned());
            current = Some(std::fs::File::create(dir.join(name)).unwrap());
        } else if let Some(f) = current.as_mut() {
            std::io::Write::write_all(f, line.as_bytes()).unwrap();
        }
    }
    assert_eq!(
        names,
        [
            "values.yaml",
            "registry-storage.yaml",
            "object-storage.yaml",
            "s3cmd.config"
        ]
    );
    let o = check_dir(&dir, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}\n{out}");
    text
}

#[test]
fn rendered_annotation_setup_passes_check() {
    let text = round_trip(
        "annotation",
        "gitlab-s3",
        &["--registry-bucket", "registry"],
    );
    assert!(
        text.contains("iam.amazonaws.com/role: \"gitlab-s3\""),
        "{text}"
    );
}

#[test]
fn rendered_irsa_setup_passes_check() {
    let arn = "arn:aws-us-gov:iam::123456789012:role/gitlab/s3";
    let text = round_trip(
        "irsa",
        arn,
        &[
            "--region",
            "us-gov-west-1",
            "--endpoint",
            "https://s3.example.internal",
            "--service-account",
            "gitlab-sa",
        ],
    );
    assert!(text.contains(&format!("eksRoleArn: \"{arn}\"")), "{text}");
    assert!(text.contains("name: gitlab-sa\n"), "{text}");
}

#[test]
fn render_refuses_a_role_name_for_irsa() {
    let o = keyless(&["gitlab", "render", "--mode", "irsa", "--role", "gitlab-s3"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("invalid role `gitlab-s3`"), "{err}");
}
