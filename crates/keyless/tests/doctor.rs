//! `keyless doctor` against `keyless serve`, run as a child process with an environment of its
//! own (no AWS_* of the parent, HOME in a scratch folder): a healthy IRSA setup, keys that
//! shadow the role, an expired token, a trust policy that names another service account, and a
//! role without `s3:PutObject`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Beside `common::CONFIG`: a policy like `registry-rw` without `s3:PutObject`.
const NO_PUT: &str = r#"
[[policies]]
name = "registry-no-put"
document = '''{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::registry"},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"],
   "Resource": "arn:aws:s3:::registry/*"}]}'''
"#;

/// The exit code and stdout of `keyless doctor ARGS` in an environment of exactly `env`, HOME,
/// and IMDS at a closed loopback port.
#[allow(clippy::disallowed_methods)] // reads the test's environment only to clear it
fn doctor(home: &Path, env: &[(&str, &OsStr)], args: &[&str]) -> (i32, String) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyless"));
    command.arg("doctor").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied());
    let started = std::time::Instant::now();
    let out = command.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "doctor took {:?}:\n{stdout}",
        started.elapsed()
    );
    eprintln!(
        "doctor {args:?}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

/// The line of `step`'s check.
fn line<'a>(out: &'a str, step: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(step)))
        .unwrap_or_else(|| panic!("no `{step}` line in:\n{out}"))
}

/// A token with the claims of `keyless token`'s but expired an hour ago (its signature is junk:
/// doctor reads claims without verifying, and STS refuses it either way).
fn expired_token(real: &Path, file: &Path) {
    let text = std::fs::read_to_string(real).unwrap();
    let payload = text.trim().split('.').nth(1).unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let exp = claims["iat"].as_i64().unwrap() - 3600;
    claims["exp"] = exp.into();
    claims["nbf"] = (exp - 600).into();
    claims["iat"] = (exp - 600).into();
    let header = text.split('.').next().unwrap();
    let forged = format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"junk")
    );
    std::fs::write(file, forged).unwrap();
}

#[test]
fn doctor_walks_the_chain_and_proves_the_bucket() {
    let config = common::scratch("doctor.toml");
    std::fs::write(&config, format!("{}{NO_PUT}", common::CONFIG)).unwrap();
    let server = common::start(&["--config".as_ref(), config.as_os_str()]);
    let registry = common::service_account(&server, "registry", "registry-rw");
    let no_put = common::service_account(&server, "no-put", "registry-no-put");

    // HOME with an operator profile that may read roles, for the trust policy check.
    let home: PathBuf = common::scratch("doctor-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[operator]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.key.0, server.key.1
        ),
    )
    .unwrap();
    let registry_token = common::scratch("doctor-registry-token");
    common::token(&server, "registry", &registry_token);
    let no_put_token = common::scratch("doctor-no-put-token");
    common::token(&server, "no-put", &no_put_token);

    let endpoint = OsStr::new(&server.endpoint);
    let irsa = |role: &str, file: &Path| -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("AWS_ROLE_ARN", role.into()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file.into()),
            ("AWS_ROLE_SESSION_NAME", "doctor".into()),
            ("AWS_ENDPOINT_URL_STS", endpoint.into()),
            ("AWS_ENDPOINT_URL_S3", endpoint.into()),
        ]
    };
    let run = |env: &[(&'static str, std::ffi::OsString)], args: &[&str]| {
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        doctor(&home, &env, args)
    };

    // Healthy: the role's token, its trust policy admits it, and the bucket works.
    let healthy = irsa(&registry, &registry_token);
    let (code, out) = run(
        &healthy,
        &["--bucket", "registry", "--iam-profile", "operator"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "keys").starts_with("ok"), "{out}");
    assert!(line(&out, "web-identity token").contains("sub system:serviceaccount:gitlab:registry"));
    assert!(line(&out, "trust policy").starts_with("ok"), "{out}");
    assert!(line(&out, "imds").starts_with("info"), "{out}");
    assert!(line(&out, "credentials").contains("web identity"), "{out}");
    assert!(
        line(&out, "sts").contains("assumed-role/keyless-gitlab-registry/doctor"),
        "{out}"
    );
    for op in ["list", "write", "read", "delete"] {
        assert!(
            line(&out, &format!("{op} s3://registry")).starts_with("ok"),
            "{out}"
        );
    }
    assert!(out.ends_with("works (exit 0)\n"), "{out}");
    assert!(!out.contains(&server.key.1), "a secret was printed:\n{out}");

    // Keys in the environment win over the role: a warning that names them.
    let mut shadowed = healthy.clone();
    shadowed.push(("AWS_ACCESS_KEY_ID", server.key.0.clone().into()));
    shadowed.push(("AWS_SECRET_ACCESS_KEY", server.key.1.clone().into()));
    let (code, out) = run(&shadowed, &["--bucket", "registry"]);
    assert_eq!(code, 1, "{out}");
    let keys = line(&out, "keys");
    assert!(keys.starts_with("warn"), "{out}");
    assert!(
        keys.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{keys}"
    );
    assert!(keys.contains("role is ignored"), "{keys}");
    assert!(
        line(&out, "sts").contains("arn:aws:iam::000000000000:root"),
        "{out}"
    );
    assert!(!out.contains(&server.key.1), "a secret was printed:\n{out}");

    // An expired token: broken, and the token step says so.
    let expired = common::scratch("doctor-expired-token");
    expired_token(&registry_token, &expired);
    let (code, out) = run(&irsa(&registry, &expired), &["--bucket", "registry"]);
    assert_eq!(code, 2, "{out}");
    let step = line(&out, "web-identity token");
    assert!(
        step.starts_with("FAIL") && step.contains("expired at"),
        "{out}"
    );
    assert!(line(&out, "credentials").starts_with("FAIL"), "{out}");

    // A trust policy for another service account: AWS's refusal, and which condition differs.
    let (code, out) = run(
        &irsa(&no_put, &registry_token),
        &["--iam-profile", "operator"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        line(&out, "credentials")
            .contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        "{out}"
    );
    assert!(line(&out, "trust policy").starts_with("FAIL"), "{out}");
    assert!(
        out.contains("expects sub system:serviceaccount:gitlab:no-put"),
        "{out}"
    );

    // A role without s3:PutObject: broken, naming the permission; as JSON too.
    let lacking = irsa(&no_put, &no_put_token);
    let (code, out) = run(&lacking, &["--bucket", "registry"]);
    assert_eq!(code, 2, "{out}");
    assert!(line(&out, "list s3://registry").starts_with("ok"), "{out}");
    let write = line(&out, "write s3://registry");
    assert!(
        write.starts_with("FAIL") && write.contains("s3:PutObject"),
        "{out}"
    );
    assert!(
        write.contains("assumed-role/keyless-gitlab-no-put"),
        "{write}"
    );
    assert!(
        line(&out, "read s3://registry").starts_with("skip"),
        "{out}"
    );

    let (code, out) = run(&lacking, &["--bucket", "registry", "--json"]);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"], "broken");
    let write = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "write s3://registry")
        .unwrap();
    assert_eq!(write["status"], "fail");
    assert_eq!(write["details"]["permission"], "s3:PutObject");
    let (code, out) = run(&healthy, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"], "works");

    let _ = std::fs::remove_dir_all(home);
    for file in [config, registry_token, no_put_token, expired] {
        let _ = std::fs::remove_file(file);
    }
}

/// Regression: GetRole's answer streamed in one-byte chunks by a proxy, for a role whose
/// description has letters of two bytes in UTF-8 (each split across chunks). The hand-written
/// client read the raw response as a string and sliced chunks at byte counts: a split character
/// made the read fail, or the slice panic. `create-service-account` goes through the proxy too.
#[test]
fn doctor_reads_a_role_whose_chunks_split_utf8_characters() {
    let config = common::scratch("doctor-utf8.toml");
    std::fs::write(&config, common::CONFIG).unwrap();
    let server = common::start(&["--config".as_ref(), config.as_os_str()]);
    let proxy = common::one_byte_chunks(&server.endpoint);
    let yaml = common::keyless(&[
        "iam".as_ref(),
        "create-service-account".as_ref(),
        "--namespace".as_ref(),
        "gitlab".as_ref(),
        "--name".as_ref(),
        "registry".as_ref(),
        "--attach-policy-arn".as_ref(),
        "arn:aws:iam::000000000000:policy/registry-rw".as_ref(),
        "--endpoint-url".as_ref(),
        proxy.as_ref(),
        "--data-dir".as_ref(),
        server.dir.as_os_str(),
    ]);
    let role = "arn:aws:iam::000000000000:role/keyless-gitlab-registry";
    assert!(
        yaml.contains(&format!("eks.amazonaws.com/role-arn: \"{role}\"")),
        "{yaml}"
    );

    // A description of Latin-1 letters, as IAM allows them.
    let description = "Rôle du registre GitLab, für die Grüße";
    let iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(&server.endpoint)
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                &server.key.0,
                &server.key.1,
                None,
                None,
                "keyless-test",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        iam.update_role()
            .role_name("keyless-gitlab-registry")
            .description(description)
            .send()
            .await
            .unwrap();
        let got = iam
            .get_role()
            .role_name("keyless-gitlab-registry")
            .send()
            .await
            .unwrap();
        assert_eq!(got.role.unwrap().description(), Some(description));
    });

    let home: PathBuf = common::scratch("doctor-utf8-home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[operator]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.key.0, server.key.1
        ),
    )
    .unwrap();
    let token = common::scratch("doctor-utf8-token");
    common::token(&server, "registry", &token);
    let endpoint = OsStr::new(&server.endpoint);
    let env: [(&str, &OsStr); 6] = [
        ("AWS_ROLE_ARN", role.as_ref()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_os_str()),
        ("AWS_ROLE_SESSION_NAME", "doctor".as_ref()),
        ("AWS_ENDPOINT_URL_STS", endpoint),
        ("AWS_ENDPOINT_URL_S3", endpoint),
        ("AWS_ENDPOINT_URL_IAM", proxy.as_ref()),
    ];
    let (code, out) = doctor(&home, &env, &["--iam-profile", "operator"]);
    assert!(line(&out, "trust policy").starts_with("ok"), "{out}");
    assert_eq!(code, 0, "{out}");

    let _ = std::fs::remove_dir_all(home);
    for file in [config, token] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn doctor_help_explains_the_exit_codes() {
    let out = common::keyless(&["doctor".as_ref(), "--help".as_ref()]);
    assert!(
        out.contains("Exit codes: 0 works; 1 works, with warnings"),
        "{out}"
    );
    assert!(out.contains("--bucket <BUCKET>"), "{out}");
    assert!(out.contains("--s3cmd-config <FILE>"), "{out}");
    assert!(out.contains("--sts-endpoint <URL>"), "{out}");
}
