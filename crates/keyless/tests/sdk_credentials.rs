//! The AWS Rust SDK's default credential chain (`aws-config`), unmodified, against
//! `keyless serve`, with no keys anywhere, set up the three ways a pod gets a role: IRSA
//! (`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`), the instance metadata service
//! (`--imds-listen`, kube2iam style), and container credentials (EKS Pod Identity style).
//!
//! The SDK reads its environment itself, and a test may not change its own (that takes
//! `unsafe`), so each case runs this test binary again as a child process with the
//! environment an application would have; the child is the ignored test `sdk_in_child`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::keyless;

use std::ffi::OsStr;
use std::process::Command;

use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;

/// Set in the child's environment; the child test does nothing without it.
const CHILD: &str = "KEYLESS_SDK_CHILD";

/// Runs `sdk_in_child` with `env` on top of an environment cleared of every other AWS setting
/// (no keys, no profile files, no IMDS), and returns what it printed.
#[allow(clippy::disallowed_methods)] // reads the test's environment only to clear it
fn child(env: &[(&str, &OsStr)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        "sdk_in_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let nowhere = common::scratch("no-such-file");
    command
        .env(CHILD, "1")
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true") // unless a case sets it to false
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied());
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value the child printed as `name=value` (the first line follows libtest's
/// `test sdk_in_child ... `).
fn line<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .map(|l| l.rsplit_once(" ... ").map_or(l, |(_, printed)| printed))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in:\n{output}"))
}

#[test]
fn default_chain_assumes_the_role_of_a_web_identity_token() {
    let config = common::scratch("sdk-sts.toml");
    std::fs::write(&config, common::CONFIG).unwrap();
    let server = common::start(&["--config".as_ref(), config.as_os_str()]);

    // The role as eksctl would make it, and the token as the kubelet would project it.
    let role_arn = common::service_account(&server, "registry", "registry-rw");
    let token_file = common::scratch("sdk-token");
    common::token(&server, "registry", &token_file);

    let endpoint = OsStr::new(&server.endpoint);
    let irsa = [
        ("AWS_ROLE_ARN", OsStr::new(&role_arn)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_os_str()),
        ("AWS_ROLE_SESSION_NAME", OsStr::new("gitlab")),
        ("AWS_ENDPOINT_URL_STS", endpoint),
        ("AWS_ENDPOINT_URL_S3", endpoint),
    ];
    let out = child(&irsa);
    let role = role_arn.rsplit('/').next().unwrap();
    assert_eq!(
        line(&out, "caller"),
        format!("arn:aws:sts::000000000000:assumed-role/{role}/gitlab")
    );
    assert_eq!(line(&out, "key"), "ASIA");
    assert_eq!(line(&out, "registry"), "read, write, list");
    assert_eq!(line(&out, "other"), "AccessDenied");

    // An explicit key pair wins over the role, as everywhere in the SDKs.
    let keys = [
        ("AWS_ACCESS_KEY_ID", OsStr::new(&server.key.0)),
        ("AWS_SECRET_ACCESS_KEY", OsStr::new(&server.key.1)),
    ];
    let out = child(&[&irsa[..], &keys[..]].concat());
    assert_eq!(line(&out, "caller"), "arn:aws:iam::000000000000:root");
    assert_eq!(line(&out, "key"), &server.key.0[..4]);
    assert_eq!(line(&out, "other"), "allowed");

    // A role whose trust policy names another service account refuses the token, in AWS's words.
    common::service_account(&server, "toolbox", "registry-rw");
    let toolbox = role_arn.replace("registry", "toolbox");
    let out = child(&[&[("AWS_ROLE_ARN", OsStr::new(&toolbox))], &irsa[1..]].concat());
    let refused = line(&out, "refused");
    assert!(
        refused.contains("AccessDenied")
            && refused.contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        "{refused}"
    );

    let _ = std::fs::remove_file(config);
    let _ = std::fs::remove_file(token_file);
}

#[test]
fn default_chain_takes_a_pods_role_from_the_metadata_service_and_container_credentials() {
    let server = common::start_with_pods("sdk");
    let imds = server.imds.clone().unwrap();
    let endpoint = OsStr::new(&server.endpoint);
    let endpoints = [
        ("AWS_ENDPOINT_URL_STS", endpoint),
        ("AWS_ENDPOINT_URL_S3", endpoint),
    ];

    // kube2iam style: IMDSv2 at the metadata endpoint, which knows this pod by its address.
    let metadata = [
        ("AWS_EC2_METADATA_DISABLED", OsStr::new("false")),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", OsStr::new(&imds)),
    ];
    let out = child(&[&endpoints[..], &metadata[..]].concat());
    assert_eq!(
        line(&out, "caller"),
        "arn:aws:sts::000000000000:assumed-role/gitlab-registry/gitlab.registry-0"
    );
    assert_eq!(line(&out, "key"), "ASIA");
    assert_eq!(line(&out, "registry"), "read, write, list");
    assert_eq!(line(&out, "other"), "AccessDenied");

    // EKS Pod Identity style: the pod's service-account token, verified against the server's
    // issuer and bound to the pod, names the role through the association.
    let pod_token = |account: &str, pod: Option<(&str, &str)>| {
        let mut args: Vec<&OsStr> = vec![
            "token".as_ref(),
            "--namespace".as_ref(),
            "gitlab".as_ref(),
            "--service-account".as_ref(),
            account.as_ref(),
            "--audience".as_ref(),
            "pods.eks.amazonaws.com".as_ref(),
            "--data-dir".as_ref(),
            server.dir.as_os_str(),
        ];
        if let Some((name, uid)) = pod {
            args.extend::<[&OsStr; 4]>([
                "--pod-name".as_ref(),
                name.as_ref(),
                "--pod-uid".as_ref(),
                uid.as_ref(),
            ]);
        }
        // The kubelet writes the token without a newline, and the SDK sends the file as is.
        keyless(&args).trim().to_owned()
    };
    let token_file = common::scratch("sdk-pod-identity-token");
    let uri = format!("{imds}/v1/credentials");
    let container = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", OsStr::new(&uri)),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.as_os_str(),
        ),
    ];
    let with_token = |token: String| {
        std::fs::write(&token_file, token).unwrap();
        child(&[&endpoints[..], &container[..]].concat())
    };
    let out = with_token(pod_token("toolbox", Some(("toolbox-0", "7a1e-toolbox-0"))));
    assert_eq!(
        line(&out, "caller"),
        "arn:aws:sts::000000000000:assumed-role/gitlab-toolbox/gitlab.toolbox-0"
    );
    assert_eq!(line(&out, "registry"), "read, write, list");

    // A service account without an association gets nothing; a token bound to no pod, or to
    // a pod the agent knows under another service account, is not accepted.
    let out = with_token(pod_token("webservice", Some(("web-0", "9c2d-web-0"))));
    assert!(line(&out, "refused").contains("StatusCode(403)"), "{out}");
    let out = with_token(pod_token("toolbox", None));
    assert!(line(&out, "refused").contains("StatusCode(401)"), "{out}");
    let out = with_token(pod_token(
        "toolbox",
        Some(("registry-0", "3f0c-registry-0")),
    ));
    assert!(line(&out, "refused").contains("StatusCode(401)"), "{out}");

    let _ = std::fs::remove_file(token_file);
}

/// The application: the SDK's defaults, path-style S3 (as for any custom endpoint), and
/// the caller, key kind and S3 outcomes printed for the parent to check.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // the child's environment is what this test is about
#[ignore = "run by the tests above, each in its own environment"]
async fn sdk_in_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&config);
    let caller = match sts.get_caller_identity().send().await {
        Ok(caller) => caller,
        Err(e) => {
            // The whole error chain: the credential provider's failure is in its sources.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            println!("refused={text}");
            return;
        }
    };
    println!("caller={}", caller.arn().unwrap());
    let credentials = aws_credential_types::provider::ProvideCredentials::provide_credentials(
        config.credentials_provider().unwrap().as_ref(),
    )
    .await
    .unwrap();
    println!("key={}", &credentials.access_key_id()[..4]);

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let body = b"layer from the Rust SDK";
    s3.put_object()
        .bucket("registry")
        .key("docker/layer")
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("registry")
        .key("docker/layer")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body
    );
    let listed = s3
        .list_objects_v2()
        .bucket("registry")
        .prefix("docker/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1);
    println!("registry=read, write, list");

    let other = s3
        .put_object()
        .bucket("other")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    match other {
        Ok(_) => println!("other=allowed"),
        Err(e) => println!(
            "other={}",
            aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("?")
        ),
    }
}
