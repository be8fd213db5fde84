//! `keyless webhook` in process against the fake Kubernetes API server of keyless-k8s's tests:
//! an AdmissionReview posted over HTTPS as the API server posts it, for a pod whose service
//! account the watch has not delivered yet (read by a GET before answering: AWS's issue #174);
//! and a running pod created without its token, reported with a Warning Event and a note on
//! `/readyz`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use keyless_server::{Webhook, WebhookListeners, WebhookOptions, options, shutdown_channel};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../../keyless-k8s/tests/fake_api/mod.rs"]
mod fake_api;
use fake_api::{FakeApi, until};

fn account(ns: &str, name: &str, role: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": name,
           "annotations": {"eks.amazonaws.com/role-arn": role}}})
}

/// Posts `body` to `/mutate` over TLS (trusting `ca`) and returns the status and body.
async fn post(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(
            ServerName::try_from("keyless-webhook.keyless.svc").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: keyless-webhook.keyless.svc:443\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, answer[split..].to_vec())
}

async fn readyz(admin: SocketAddr) -> String {
    let mut socket = TcpStream::connect(admin).await.unwrap();
    socket
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn reviews_over_tls_read_a_missing_service_account_and_unmutated_pods_are_reported() {
    let api = FakeApi::start().await;
    api.event(
        "serviceaccounts",
        "ADDED",
        account(
            "gitlab",
            "gitlab-webservice",
            "arn:aws:iam::123456789012:role/web",
        ),
    );
    api.event(
        "namespaces",
        "ADDED",
        json!({"metadata": {"name": "gitlab"}}),
    );
    api.event("pods", "ADDED", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "gitlab", "name": "webservice-0", "uid": "u-old"},
        "spec": {"serviceAccountName": "gitlab-webservice", "containers": [{"name": "webservice", "image": "x"}]},
        "status": {"phase": "Running"}}));
    // In kube-system, which the configuration leaves out: never mutated, so never reported.
    api.event(
        "serviceaccounts",
        "ADDED",
        account(
            "kube-system",
            "external-dns",
            "arn:aws:iam::123456789012:role/dns",
        ),
    );
    api.event(
        "pods",
        "ADDED",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "kube-system", "name": "external-dns-0", "uid": "u-system"},
        "spec": {"serviceAccountName": "external-dns", "containers": [{"name": "dns", "image": "x"}]},
        "status": {"phase": "Running"}}),
    );
    // Created just before the pod below: the watch has not told yet.
    api.hidden_service_account(account(
        "gitlab",
        "gitlab-toolbox",
        "arn:aws:iam::123456789012:role/toolbox",
    ));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(dir.path(), &api);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["keyless-webhook.keyless.svc".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let words = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--report-every",
        "100ms",
        "--sts-endpoint",
        "https://keyless.keyless.svc:9000",
    ];
    let options: WebhookOptions = options::parse(&words).unwrap();
    let listeners = WebhookListeners::bind(&options).await.unwrap();
    let addr = listeners.webhook.local_addr().unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let webhook = Webhook::open(options, listeners).await.unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let run = tokio::spawn(webhook.run(shutdown));

    // The running pod without its token: one Event, once, and the count on /readyz.
    until("the Event", || !api.events().is_empty()).await;
    let event = &api.events()[0];
    assert_eq!(event["involvedObject"]["name"], "webservice-0");
    assert_eq!(event["reason"], "PodIdentityNotInjected");
    assert!(
        event["message"].as_str().unwrap().contains("restart it"),
        "{event}"
    );
    let ready = readyz(admin).await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.contains("without the credentials their service account asks for: 1"),
        "{ready}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(api.events().len(), 1, "told once per pod");

    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "3f1c2b6e-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE", "namespace": "gitlab",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "toolbox-"},
                   "spec": {"serviceAccountName": "gitlab-toolbox", "containers": [{"name": "toolbox", "image": "x"}]}}}});
    let (status, body) = post(
        addr,
        &cert.der().clone(),
        "application/json",
        review.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["response"]["uid"],
        "3f1c2b6e-0000-4000-8000-000000000001"
    );
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().unwrap().contains(
            &json!({"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/toolbox"})
        ),
        "{env}"
    );
    assert!(
        env.as_array().unwrap().contains(
            &json!({"name": "AWS_ENDPOINT_URL_STS", "value": "https://keyless.keyless.svc:9000"})
        ),
        "{env}"
    );
    assert!(
        api.requests()
            .iter()
            .any(|r| r == "/api/v1/namespaces/gitlab/serviceaccounts/gitlab-toolbox")
    );

    // Not an AdmissionReview: 400, saying so; not JSON: 415.
    let (status, body) = post(
        addr,
        &cert.der().clone(),
        "application/json",
        b"{\"kind\": \"Pod\"}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not an AdmissionReview"));
    let (status, _) = post(addr, &cert.der().clone(), "text/plain", b"x").await;
    assert_eq!(status, 415);

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn kubeconfig(dir: &std::path::Path, api: &FakeApi) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\nusers: [{{name: fake, user: {{token: not-a-secret}}}}]\n",
        api.url
    )).unwrap();
    path
}

/// A `--self-signed` replica: its webhook and admin addresses, and its run.
async fn self_signed_replica(
    kubeconfig: &std::path::Path,
    configuration: &str,
) -> (
    SocketAddr,
    SocketAddr,
    keyless_server::ShutdownTrigger,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let words = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--self-signed",
        "--service-name",
        "keyless-webhook",
        "--namespace",
        "keyless",
        "--webhook-configuration",
        configuration,
        "--kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    let options: WebhookOptions = options::parse(&words).unwrap();
    let listeners = WebhookListeners::bind(&options).await.unwrap();
    let addr = listeners.webhook.local_addr().unwrap();
    let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
    let webhook = Webhook::open(options, listeners).await.unwrap();
    let (trigger, shutdown) = shutdown_channel();
    (addr, admin, trigger, tokio::spawn(webhook.run(shutdown)))
}

#[tokio::test]
async fn self_signed_replicas_share_one_ca_and_put_it_in_the_ca_bundle() {
    let api = FakeApi::start().await;
    api.event(
        "mutatingwebhookconfigurations",
        "ADDED",
        keyless_webhook::webhook_configuration(&keyless_webhook::ConfigOptions {
            name: "keyless-webhook".into(),
            namespace: "keyless".into(),
            service_name: "keyless-webhook".into(),
            port: 443,
            ca_bundle: None,
            failure_policy: keyless_webhook::FailurePolicy::Ignore,
            timeout_seconds: 10,
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(dir.path(), &api);

    // Two replicas starting together: one makes the Secret, the other uses it (409 or GET).
    let ((a, admin_a, stop_a, run_a), (b, admin_b, stop_b, run_b)) = tokio::join!(
        self_signed_replica(&kubeconfig, "keyless-webhook"),
        self_signed_replica(&kubeconfig, "keyless-webhook"),
    );
    for admin in [admin_a, admin_b] {
        for _ in 0..500 {
            if readyz(admin).await.starts_with("HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = readyz(admin).await;
        assert!(
            ready.starts_with("HTTP/1.1 200"),
            "{ready}\n{:#?}",
            api.requests()
        );
    }
    let secret = api
        .object("secrets", "keyless/keyless-webhook-self-signed-tls")
        .expect("the Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(secret["data"][key].is_string(), "{key} in {secret}");
    }
    let creations = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /api/v1/namespaces/keyless/secrets"))
        .count();
    assert!((1..=2).contains(&creations), "{:?}", api.requests());

    // The caBundle the API server would use: the CA, which both replicas' certificates chain to.
    let configuration = api
        .object("mutatingwebhookconfigurations", "/keyless-webhook")
        .unwrap();
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(
            configuration["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .expect("caBundle set"),
        )
        .unwrap();
    let ca_secret = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(ca_pem, ca_secret);
    use rustls_pki_types::pem::PemObject as _;
    let ca = CertificateDer::from_pem_slice(&ca_pem).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "namespace": "default", "object": {"metadata": {}, "spec": {"containers": [{"name": "c"}]}}}});
    for addr in [a, b] {
        // `post` verifies the chain to `ca` and the name keyless-webhook.keyless.svc.
        let (status, body) =
            post(addr, &ca, "application/json", review.to_string().as_bytes()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    // Without its configuration a replica holds a certificate but is not ready, and says why.
    let (_, admin_c, stop_c, run_c) = self_signed_replica(&kubeconfig, "missing").await;
    until("a try", || {
        api.requests()
            .iter()
            .any(|r| r.contains("mutatingwebhookconfigurations/missing"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = readyz(admin_c).await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("cannot set the caBundle of the MutatingWebhookConfiguration missing"),
        "{ready}"
    );

    for (stop, run) in [(stop_a, run_a), (stop_b, run_b), (stop_c, run_c)] {
        stop.trigger();
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
