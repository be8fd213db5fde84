//! One test per setup in `testdata/`: a folder holding `values.yaml` and the storage secrets
//! (any other file), checked as `keyless gitlab check` would check them.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;

use keyless_gitlab::{Component, Mode, Report, SecretFile, Severity, check};

fn fixture(name: &str) -> Report {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let values = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
    let mut secrets: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "values.yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    secrets.sort();
    let files: Vec<SecretFile<'_>> = secrets
        .iter()
        .map(|(name, text)| SecretFile { name, text })
        .collect();
    check(&values, &files).unwrap()
}

/// The codes of the general findings, then of each component's, with their severity.
fn codes(report: &Report) -> Vec<(String, &'static str, Severity)> {
    let general = report
        .general
        .iter()
        .map(|f| ("general".to_owned(), f.code, f.severity));
    let components = report.components.iter().flat_map(|c| {
        c.findings
            .iter()
            .map(|f| (c.component.name().to_owned(), f.code, f.severity))
    });
    general.chain(components).collect()
}

fn component(report: &Report, c: Component) -> &keyless_gitlab::ComponentReport {
    report.components.iter().find(|r| r.component == c).unwrap()
}

use Severity::{Error, Warning};

fn expect(name: &str, mode: Mode, expected: &[(&str, &'static str, Severity)]) -> Report {
    let report = fixture(name);
    assert_eq!(report.mode, mode, "{report}");
    let expected: Vec<(String, &'static str, Severity)> = expected
        .iter()
        .map(|(c, code, s)| ((*c).to_owned(), *code, *s))
        .collect();
    assert_eq!(codes(&report), expected, "{report}");
    report
}

#[test]
fn annotation_good() {
    let report = expect("annotation-good", Mode::Annotation, &[]);
    assert_eq!(report.exit_code(), 0);
    let toolbox = component(&report, Component::Toolbox);
    assert!(
        toolbox.auth.contains("gitlab.task-runner.annotations"),
        "{}",
        toolbox.auth
    );
    assert!(
        toolbox
            .auth
            .contains("arn:aws:iam::123456789012:role/gitlab-backups")
    );
}

#[test]
fn irsa_good() {
    let report = expect("irsa-good", Mode::Irsa, &[]);
    let registry = component(&report, Component::Registry);
    assert_eq!(
        registry.auth,
        "role `arn:aws:iam::123456789012:role/gitlab-s3` through web identity (IRSA), \
         service account `gitlab-sa`"
    );
}

#[test]
fn irsa_as_documented_leaves_backups_to_s3cmd() {
    // GitLab's page leaves backups to s3cmd, which cannot use the IRSA token: the one warning.
    let report = expect(
        "irsa-as-documented",
        Mode::Irsa,
        &[("toolbox", "backups-without-awscli", Warning)],
    );
    let toolbox = component(&report, Component::Toolbox);
    assert!(
        toolbox.findings[0].message.contains("s3cmd#1075"),
        "{report}"
    );
}

#[test]
fn static_keys() {
    let report = expect(
        "static-keys",
        Mode::Annotation,
        &[
            ("registry", "static-keys", Error),
            ("webservice", "static-keys", Error),
            ("sidekiq", "static-keys", Error),
            ("toolbox", "static-keys", Error),
        ],
    );
    let registry = component(&report, Component::Registry);
    assert!(
        registry
            .auth
            .starts_with("static keys from `registry-storage.yaml`")
    );
    assert!(
        registry.findings[0]
            .message
            .contains("accesskey and secretkey")
    );
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn fog_no_iam_profile() {
    let report = expect(
        "fog-no-iam-profile",
        Mode::Annotation,
        &[
            ("webservice", "fog-no-iam-profile", Error),
            ("sidekiq", "fog-no-iam-profile", Error),
        ],
    );
    let fix = &component(&report, Component::Sidekiq).findings[0].fix;
    assert_eq!(fix, "add `use_iam_profile: true` to `object-storage.yaml`");
}

#[test]
fn annotation_missing() {
    let report = expect(
        "annotation-missing",
        Mode::Annotation,
        &[("sidekiq", "role-annotation-missing", Error)],
    );
    let f = &component(&report, Component::Sidekiq).findings[0];
    assert_eq!(
        f.fix,
        r#"--set gitlab.sidekiq.annotations."iam\.amazonaws\.com/role"=ROLE"#
    );
}

#[test]
fn irsa_role_missing() {
    let report = expect(
        "irsa-role-missing",
        Mode::Irsa,
        &[("general", "irsa-role-missing", Error)],
    );
    assert!(report.general[0].fix.contains("global.platform.eksRoleArn"));
}

#[test]
fn service_account_created_by_chart() {
    let report = expect(
        "service-account-created-by-chart",
        Mode::Irsa,
        &[
            ("general", "service-account-created-by-chart", Error),
            ("toolbox", "backups-without-awscli", Warning),
        ],
    );
    assert_eq!(
        report.general[0].fix,
        "set `global.serviceAccount.create: false` (enabled but not created, as GitLab documents)"
    );
}

#[test]
fn arn_number() {
    let report = expect(
        "arn-number",
        Mode::Irsa,
        &[("general", "role-not-a-string", Error)],
    );
    assert!(
        report.general[0]
            .message
            .contains("a number (123456789012)")
    );
    assert!(report.general[0].fix.contains("quote"));
}

#[test]
fn arn_map() {
    let report = expect(
        "arn-map",
        Mode::Irsa,
        &[("general", "role-not-a-string", Error)],
    );
    assert!(report.general[0].message.contains("a map (keys: arn)"));
}

#[test]
fn arn_cut_by_comment() {
    let report = expect(
        "arn-cut-by-comment",
        Mode::Irsa,
        &[("general", "role-cut-by-comment", Error)],
    );
    assert!(report.general[0].message.contains("#gitlab-s3"), "{report}");
}

#[test]
fn arn_placeholder() {
    let report = expect(
        "arn-placeholder",
        Mode::Irsa,
        &[("general", "role-placeholder", Error)],
    );
    assert!(report.general[0].message.contains("<AWS IAM ARN>"));
}

#[test]
fn annotation_key_split() {
    let report = expect(
        "annotation-key-split",
        Mode::Annotation,
        &[("registry", "annotation-key-split", Error)],
    );
    let f = &component(&report, Component::Registry).findings[0];
    assert!(
        f.fix
            .contains(r"registry.annotations.iam\.amazonaws\.com/role"),
        "{}",
        f.fix
    );
}

#[test]
fn irsa_annotation_split() {
    let report = expect(
        "irsa-annotation-split",
        Mode::Irsa,
        &[("general", "annotation-key-split", Error)],
    );
    assert!(
        report.general[0]
            .fix
            .contains(r"eks\.amazonaws\.com/role-arn")
    );
}

#[test]
fn region_mismatch() {
    let report = expect(
        "region-mismatch",
        Mode::Annotation,
        &[("general", "region-mismatch", Warning)],
    );
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.general[0]
            .message
            .contains("`s3cmd.config` says EU (eu-west-1)"),
        "{report}"
    );
}

#[test]
fn region_missing() {
    let report = expect(
        "region-missing",
        Mode::Annotation,
        &[("registry", "region-missing", Error)],
    );
    assert!(
        component(&report, Component::Registry).findings[0]
            .message
            .contains("s3.region")
    );
}
