//! `keyless iam create-service-account` against `keyless serve` in an environment of its own
//! (no AWS_* of the parent, HOME in a scratch folder): the SDK's default chain signs, its
//! profile step reading the data folder's root credentials too; with neither, the error says
//! where it looked.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// `keyless iam create-service-account` for `gitlab/NAME` with the root credentials of
/// `data_dir`, in an environment of exactly `env` (HOME at `home`, no IMDS).
#[allow(clippy::disallowed_methods)] // reads the test's environment only to clear it
fn create(
    server: &common::Server,
    name: &str,
    data_dir: &Path,
    home: &Path,
    env: &[(&str, &OsStr)],
    args: &[&str],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyless"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .args(["iam", "create-service-account", "--namespace", "gitlab"])
        .args(["--name", name])
        .args([
            "--attach-policy-arn",
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        ])
        .args(["--endpoint-url", &server.endpoint])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    command.output().unwrap()
}

#[test]
fn create_service_account_signs_with_the_default_chain_and_the_data_folder() {
    let server = common::start(&[]);
    let home = common::scratch("iam-home");
    let empty = common::scratch("iam-empty-data");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let stranger = (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    let credentials = home.join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {0}\naws_secret_access_key = {1}\n\
             [stranger]\naws_access_key_id = {0}\naws_secret_access_key = {1}\n\
             [ops]\naws_access_key_id = {2}\naws_secret_access_key = {3}\n",
            stranger.0, stranger.1, server.key.0, server.key.1
        ),
    )
    .unwrap();
    let file = [("AWS_SHARED_CREDENTIALS_FILE", credentials.as_os_str())];

    // The data folder's root credentials, with nothing else.
    let out = create(&server, "from-data-dir", &server.dir, &home, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains(
            "eks.amazonaws.com/role-arn: \"arn:aws:iam::000000000000:role/keyless-gitlab-from-data-dir\""
        ),
        "{yaml}"
    );
    // Its `[default]` is read after the shared credentials file's, and wins.
    let out = create(&server, "over-default", &server.dir, &home, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A named profile of the chain, with no data folder: its keys sign.
    let out = create(&server, "ops", &empty, &home, &file, &["--profile", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let with_env = [&file[..], &[("AWS_PROFILE", OsStr::new("ops"))][..]].concat();
    let out = create(&server, "ops-env", &empty, &home, &with_env, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // ... and wins over the data folder: an unknown key is refused, though the root's is there.
    let out = create(
        &server,
        "stranger",
        &server.dir,
        &home,
        &file,
        &["--profile", "stranger"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("InvalidClientTokenId"),
        "{}",
        stderr(&out)
    );

    // Keys in the environment sign, and win over the data folder likewise.
    let root_env = [
        ("AWS_ACCESS_KEY_ID", OsStr::new(&server.key.0)),
        ("AWS_SECRET_ACCESS_KEY", OsStr::new(&server.key.1)),
    ];
    let stranger_env = [
        ("AWS_ACCESS_KEY_ID", OsStr::new(stranger.0)),
        ("AWS_SECRET_ACCESS_KEY", OsStr::new(stranger.1)),
    ];
    let out = create(&server, "env-keys", &empty, &home, &root_env, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create(
        &server,
        "env-stranger",
        &server.dir,
        &home,
        &stranger_env,
        &[],
    );
    assert!(
        stderr(&out).contains("InvalidClientTokenId"),
        "{}",
        stderr(&out)
    );

    // Nothing anywhere: the error names the data folder's file it looked for.
    let out = create(&server, "nobody", &empty, &home, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no credentials to call IAM with"), "{err}");
    assert!(
        err.contains(&empty.join("root-credentials").display().to_string()),
        "{err}"
    );

    let _ = std::fs::remove_dir_all(home);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn create_service_account_refuses_an_endpoint_that_is_not_http() {
    let home = common::scratch("iam-ftp-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .env("HOME", &home)
        .args(["iam", "create-service-account", "--namespace", "gitlab"])
        .args([
            "--name",
            "x",
            "--attach-policy-arn",
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        ])
        .args(["--endpoint-url", "ftp://127.0.0.1:21"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    let _ = std::fs::remove_dir_all(home);
}
