//! `keyless policy ...` as a user runs it: the real binary, its output and exit codes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn keyless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn prints_what_awscli_prints_for_its_documented_example() {
    let o = keyless(&[
        "policy",
        "simulate",
        "--cli-input-json",
        "file://examples/simulate/awscli-example-1.json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // awscli's simulate-custom-policy example 1, with the SourcePolicyType that IAM now sends.
    let expected = r#"{
    "EvaluationResults": [
        {
            "EvalActionName": "dynamodb:CreateBackup",
            "EvalResourceName": "*",
            "EvalDecision": "allowed",
            "MatchedStatements": [
                {
                    "SourcePolicyId": "PolicyInputList.1",
                    "SourcePolicyType": "IAM Policy",
                    "StartPosition": {
                        "Line": 1,
                        "Column": 38
                    },
                    "EndPosition": {
                        "Line": 1,
                        "Column": 167
                    }
                }
            ],
            "MissingContextValues": []
        }
    ]
}
"#;
    assert_eq!(stdout(&o), expected);
}

#[test]
fn flags_give_an_explained_answer() {
    let o = keyless(&[
        "policy",
        "simulate",
        "--policy",
        "examples/policies/gitlab-registry-role.json",
        "--action",
        "s3:PutObject",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::gitlab-registry/docker/x",
        "--resource",
        "arn:aws:s3:::gitlab-lfs/x",
        "--context",
        "aws:SourceIp=ip:10.1.2.3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("allowed       s3:PutObject on arn:aws:s3:::gitlab-registry/docker/x"),
        "{out}"
    );
    assert!(
        out.contains(
            "allowed by PolicyInputList.1, statement `ReadWriteRegistryObjects` (line 9, column 6)"
        ),
        "{out}"
    );
    assert!(
        out.contains("implicitDeny  s3:GetObject on arn:aws:s3:::gitlab-lfs/x"),
        "{out}"
    );
    assert!(out.contains("no identity-based policy allows it"), "{out}");

    let o = keyless(&[
        "policy",
        "simulate",
        "--policy",
        "examples/policies/gitlab-registry-role.json",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::gitlab-registry/docker/x",
    ]);
    let out = stdout(&o);
    assert!(out.contains("explicitDeny  s3:GetObject"), "{out}");
    assert!(
        out.contains("denied by PolicyInputList.1, statement `OnlyFromTheCluster`"),
        "{out}"
    );
    assert!(out.contains("missing context: aws:SourceIp"), "{out}");
}

#[test]
fn managed_policies_resolve_by_their_arns() {
    let o = keyless(&[
        "policy",
        "simulate",
        "--policy-arn",
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        "--action",
        "s3:GetObject",
        "--action",
        "s3:PutObject",
        "--resource",
        "arn:aws:s3:::gitlab-backups/x",
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["EvaluationResults"][0]["EvalDecision"], "allowed");
    assert_eq!(
        v["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"],
        "AmazonS3ReadOnlyAccess"
    );
    assert_eq!(v["EvaluationResults"][1]["EvalDecision"], "implicitDeny");

    let err = refused(&[
        "policy",
        "simulate",
        "--policy-arn",
        "arn:aws:iam::aws:policy/Nope",
        "--action",
        "s3:GetObject",
    ]);
    assert!(
        err.contains("unknown managed policy `arn:aws:iam::aws:policy/Nope`"),
        "{err}"
    );

    let o = keyless(&["policy", "managed"]);
    assert!(stdout(&o).contains("arn:aws:iam::aws:policy/AmazonS3FullAccess"));
    let o = keyless(&["policy", "managed", "AmazonS3FullAccess"]);
    assert!(stdout(&o).contains(r#""Action": ["s3:*", "s3-object-lambda:*"]"#));
}

/// Runs keyless expecting a refusal (exit status 2) and returns what it printed on stderr.
fn refused(args: &[&str]) -> String {
    let o = keyless(args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should be refused: {}",
        stdout(&o)
    );
    stderr(&o)
}

#[test]
fn bad_input_is_refused_with_the_place_and_exit_code_2() {
    let role = "examples/policies/gitlab-registry-role.json";
    let bad_condition = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringLike":{"s3:prefix":{}}}}]}"#;
    let trailing_comma = r#"{"PolicyInputList": ["{}"], "ActionNames": ["s3:GetObject"],}"#;
    let cases: [(&[&str], &str); 5] = [
        (
            &["--cli-input-json", trailing_comma],
            "trailing comma at line 1 column 61",
        ),
        (
            &["--policy", bad_condition, "--action", "s3:ListBucket"],
            "keyless: error: PolicyInputList.1: Statement[0].Condition.StringLike.s3:prefix: expected a string, number or boolean",
        ),
        (
            &["--cli-input-json", "file://does/not/exist.json"],
            "cannot read `does/not/exist.json`",
        ),
        (
            &[
                "--policy",
                role,
                "--action",
                "s3:GetObject",
                "--context",
                "aws:SourceIp",
            ],
            "expected KEY=VALUE or KEY=TYPE:VALUE",
        ),
        (
            &[
                "--policy",
                role,
                "--action",
                "s3:GetObject",
                "--context",
                "aws:SourceIp=ip:not-an-ip",
            ],
            "`not-an-ip` is not a valid ip",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = ["policy", "simulate"].iter().chain(args).copied().collect();
        let err = refused(&args);
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn context_flags_take_types_and_lists() {
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:PutObjectTagging","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["team","env"]},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}}"#;
    let run = |tags: &str| {
        let o = keyless(&[
            "policy",
            "simulate",
            "--policy",
            policy,
            "--action",
            "s3:PutObjectTagging",
            "--context",
            tags,
            "--context",
            "aws:CurrentTime=2026-11-25T00:00:00Z",
            "--output",
            "json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["EvaluationResults"][0]["EvalDecision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(run("aws:TagKeys=stringList:team,env"), "allowed");
    assert_eq!(run("aws:TagKeys=stringList:team,owner"), "implicitDeny");
}

#[test]
fn check_names_the_place_of_each_mistake() {
    let dir = std::env::temp_dir().join(format!("keyless-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"},{"Effect":"allow","Action":"*","Resource":"*"}]}"#).unwrap();
    let o = keyless(&[
        "policy",
        "check",
        "examples/policies/gitlab-registry-role.json",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(
        out.contains("gitlab-registry-role.json: ok, 3 statement(s)"),
        "{out}"
    );
    assert!(
        out.contains(
            "bad.json: Statement[1].Effect: invalid value `allow`: expected `Allow` or `Deny`"
        ),
        "{out}"
    );
    assert!(stderr(&o).contains("1 of 2 policies are not valid"));

    let o = keyless(&[
        "policy",
        "check",
        "--kind",
        "resource",
        "examples/policies/gitlab-registry-role.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("Statement[0]: missing `Principal` or `NotPrincipal`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_instead_of_a_panic() {
    // `keyless policy managed | head -0`: the reader is gone before the first line is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["policy", "managed"])
        .stdout(writer)
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
    assert_eq!(stderr(&o), "");
}
