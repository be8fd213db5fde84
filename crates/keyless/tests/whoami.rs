//! `keyless whoami` against `keyless serve` under each credential source of the SDK's default
//! chain: keys in the environment, a profile, web identity (IRSA, through the environment's STS
//! endpoint or `--endpoint`), the instance metadata service (kube2iam style, `--imds-listen`)
//! and container credentials (EKS Pod Identity style); and keys winning over a role.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// `keyless whoami --json ARGS` in an environment of exactly `env` (HOME at `home`, no IMDS
/// unless `env` names one); its JSON, or the error it printed.
#[allow(clippy::disallowed_methods)] // reads the test's environment only to clear it
fn whoami(home: &Path, env: &[(&str, &OsStr)], args: &[&str]) -> Result<serde_json::Value, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyless"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .args(["whoami", "--json"])
        .args(args);
    let out = command.output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn whoami_names_the_caller_and_the_source_of_its_credentials() {
    let server = common::start_with_pods("whoami");
    let home = common::scratch("whoami-home");
    std::fs::create_dir_all(&home).unwrap();
    let endpoint = OsStr::new(&server.endpoint);
    let endpoints = [("AWS_ENDPOINT_URL", endpoint)];
    let root = "arn:aws:iam::000000000000:root";

    // Keys in the environment.
    let keys = [
        ("AWS_ACCESS_KEY_ID", OsStr::new(&server.key.0)),
        ("AWS_SECRET_ACCESS_KEY", OsStr::new(&server.key.1)),
    ];
    let id = whoami(&home, &[&endpoints[..], &keys[..]].concat(), &[]).unwrap();
    assert_eq!(id["Arn"], root);
    assert_eq!(id["Account"], "000000000000");
    assert_eq!(id["AccessKeyId"], server.key.0.as_str());
    assert_eq!(id["Source"]["kind"], "environment");

    // A profile: the server's root credentials file is an AWS shared credentials file.
    let credentials = server.dir.join("root-credentials");
    let profile = [("AWS_SHARED_CREDENTIALS_FILE", credentials.as_os_str())];
    let id = whoami(&home, &[&endpoints[..], &profile[..]].concat(), &[]).unwrap();
    assert_eq!(id["Arn"], root);
    assert_eq!(id["Source"]["kind"], "profile");
    assert_eq!(id["Source"]["details"]["profile"], "default");

    // Web identity, through the STS of the environment.
    let role_arn = common::service_account(&server, "registry", "registry-rw");
    let token_file = common::scratch("whoami-token");
    common::token(&server, "registry", &token_file);
    let irsa = [
        ("AWS_ROLE_ARN", OsStr::new(&role_arn)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_os_str()),
        ("AWS_ROLE_SESSION_NAME", OsStr::new("gitlab")),
    ];
    let assumed = "arn:aws:sts::000000000000:assumed-role/keyless-gitlab-registry/gitlab";
    let id = whoami(&home, &[&endpoints[..], &irsa[..]].concat(), &[]).unwrap();
    assert_eq!(id["Arn"], assumed);
    assert!(id["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert!(id["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(id["Source"]["kind"], "web identity");
    assert_eq!(id["Source"]["details"]["role"], role_arn.as_str());
    assert_eq!(
        id["Source"]["details"]["token_file"],
        token_file.to_str().unwrap()
    );

    // Web identity with the endpoint on the command line only: the exchange goes there too.
    let id = whoami(&home, &irsa, &["--endpoint", &server.endpoint]).unwrap();
    assert_eq!(id["Arn"], assumed);
    assert_eq!(id["Source"]["kind"], "web identity");

    // An explicit key pair wins over the role.
    let id = whoami(&home, &[&endpoints[..], &irsa[..], &keys[..]].concat(), &[]).unwrap();
    assert_eq!(id["Arn"], root);
    assert_eq!(id["Source"]["kind"], "environment");

    // A role whose trust policy does not name this service account: AWS's words.
    let other = role_arn.replace("registry", "toolbox");
    common::service_account(&server, "toolbox", "registry-rw");
    let refused = [
        ("AWS_ROLE_ARN", OsStr::new(&other)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_os_str()),
    ];
    let error = whoami(&home, &[&endpoints[..], &refused[..]].concat(), &[]).unwrap_err();
    assert!(
        error.contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        "{error}"
    );

    // The instance metadata service, which knows this process's pod by its address.
    let imds = server.imds.clone().unwrap();
    let metadata = [
        ("AWS_EC2_METADATA_DISABLED", OsStr::new("false")),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", OsStr::new(&imds)),
    ];
    let id = whoami(&home, &[&endpoints[..], &metadata[..]].concat(), &[]).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::000000000000:assumed-role/gitlab-registry/gitlab.registry-0"
    );
    assert_eq!(id["Source"]["kind"], "instance metadata (IMDS)");
    assert_eq!(id["Source"]["details"]["endpoint"], imds.as_str());

    // Container credentials with a pod-bound service-account token.
    let pod_token = common::keyless(&[
        "token".as_ref(),
        "--namespace".as_ref(),
        "gitlab".as_ref(),
        "--service-account".as_ref(),
        "toolbox".as_ref(),
        "--audience".as_ref(),
        "pods.eks.amazonaws.com".as_ref(),
        "--pod-name".as_ref(),
        "toolbox-0".as_ref(),
        "--pod-uid".as_ref(),
        "7a1e-toolbox-0".as_ref(),
        "--data-dir".as_ref(),
        server.dir.as_os_str(),
    ]);
    let pod_token_file = common::scratch("whoami-pod-token");
    std::fs::write(&pod_token_file, pod_token.trim()).unwrap();
    let uri = format!("{imds}/v1/credentials");
    let container = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", OsStr::new(&uri)),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            pod_token_file.as_os_str(),
        ),
    ];
    let id = whoami(&home, &[&endpoints[..], &container[..]].concat(), &[]).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::000000000000:assumed-role/gitlab-toolbox/gitlab.toolbox-0"
    );
    assert_eq!(id["Source"]["kind"], "container endpoint");
    assert_eq!(id["Source"]["details"]["endpoint"], uri.as_str());

    // No source at all: a clear error, not a hang.
    let error = whoami(&home, &endpoints, &[]).unwrap_err();
    assert!(error.contains("no credentials were found"), "{error}");

    for file in [token_file, pod_token_file] {
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_dir_all(home);
}
