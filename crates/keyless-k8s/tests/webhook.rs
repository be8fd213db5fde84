//! The webhook's side of the API against the fake API server: service accounts and namespaces
//! watched into a directory, the GET of one the watch has not delivered, the pods watched, the
//! Event on a pod, and the `caBundle` patch.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyless_k8s::{
    PodChange, get_service_account, patch_ca_bundle, warn_pod, watch_pods, watch_service_accounts,
};
use keyless_webhook::{Associations, Directory, PodRecord, Settings};
use serde_json::{Value, json};

mod fake_api;
use fake_api::{FakeApi, until};

fn account(ns: &str, name: &str, role: Option<&str>) -> Value {
    let mut annotations = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    if let Some(role) = role {
        annotations["eks.amazonaws.com/role-arn"] = json!(role);
    }
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"namespace": ns, "name": name, "annotations": annotations}})
}

fn pod(uid: &str, account: &str, token: bool) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "gitlab", "name": format!("web-{uid}"), "uid": uid},
        "spec": {"serviceAccountName": account, "containers": [{"name": "web", "image": "x"}]},
        "status": {"phase": "Running"}});
    if token {
        pod["spec"]["volumes"] = json!([{"name": "aws-iam-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]);
    }
    pod
}

#[tokio::test]
async fn service_accounts_are_watched_stripped_and_read_on_a_miss() {
    let api = FakeApi::start().await;
    api.event(
        "serviceaccounts",
        "ADDED",
        account(
            "gitlab",
            "gitlab-webservice",
            Some("arn:aws:iam::123456789012:role/web"),
        ),
    );
    api.event(
        "namespaces",
        "ADDED",
        json!({"metadata": {"name": "gitlab",
        "annotations": {"keyless.dev/s3-endpoint": "https://s3.gitlab.example"}}}),
    );
    let directory = Directory::new();
    let synced = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&synced);
    let watch = tokio::spawn(watch_service_accounts(
        api.client(),
        directory.clone(),
        move || {
            seen.fetch_add(1, Ordering::SeqCst);
        },
    ));
    until("the first listing", || synced.load(Ordering::SeqCst) == 1).await;
    let web = directory
        .service_account("gitlab", "gitlab-webservice")
        .unwrap();
    assert_eq!(
        web.annotations.len(),
        1,
        "only the annotations the webhook reads: {web:?}"
    );
    assert_eq!(
        directory.namespace("gitlab").unwrap().annotations["keyless.dev/s3-endpoint"],
        "https://s3.gitlab.example"
    );

    api.watched("serviceaccounts").await;
    api.event(
        "serviceaccounts",
        "ADDED",
        account(
            "gitlab",
            "gitlab-sidekiq",
            Some("arn:aws:iam::123456789012:role/sidekiq"),
        ),
    );
    until("the added service account", || {
        directory
            .service_account("gitlab", "gitlab-sidekiq")
            .is_some()
    })
    .await;
    api.event(
        "serviceaccounts",
        "DELETED",
        account("gitlab", "gitlab-sidekiq", None),
    );
    until("the deleted service account", || {
        directory
            .service_account("gitlab", "gitlab-sidekiq")
            .is_none()
    })
    .await;

    // AWS's #174: the service account exists, the watch has not told yet; a GET finds it.
    api.hidden_service_account(account(
        "gitlab",
        "gitlab-toolbox",
        Some("arn:aws:iam::123456789012:role/toolbox"),
    ));
    assert!(
        directory
            .service_account("gitlab", "gitlab-toolbox")
            .is_none()
    );
    let found = get_service_account(api.client(), "gitlab", "gitlab-toolbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.annotation("eks.amazonaws.com/role-arn"),
        Some("arn:aws:iam::123456789012:role/toolbox")
    );
    assert_eq!(
        get_service_account(api.client(), "gitlab", "nobody")
            .await
            .unwrap(),
        None
    );
    assert!(
        api.requests()
            .iter()
            .any(|r| r == "/api/v1/namespaces/gitlab/serviceaccounts/gitlab-toolbox")
    );

    // A relist replaces, and tells again.
    api.quietly("serviceaccounts", |objects| objects.clear());
    api.gone("serviceaccounts");
    until("the relisting", || synced.load(Ordering::SeqCst) == 2).await;
    assert!(
        directory
            .service_account("gitlab", "gitlab-webservice")
            .is_none()
    );
    watch.abort();
}

#[tokio::test]
async fn pods_that_missed_their_token_are_found_and_told() {
    let api = FakeApi::start().await;
    api.event("pods", "ADDED", pod("u1", "gitlab-webservice", true));
    api.event("pods", "ADDED", pod("u2", "gitlab-webservice", false));
    api.event("pods", "ADDED", pod("u3", "default", false));
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    let watch = tokio::spawn(watch_pods(api.client(), move |change| {
        seen.lock().unwrap().push(change)
    }));
    until("the listing", || !changes.lock().unwrap().is_empty()).await;
    let PodChange::Listed(pods) = changes.lock().unwrap()[0].clone() else {
        panic!("not a listing first");
    };
    assert_eq!(pods.len(), 3);

    let directory = Directory::new();
    directory.upsert_account(
        keyless_webhook::ServiceAccount::from_object(&account(
            "gitlab",
            "gitlab-webservice",
            Some("arn:aws:iam::123456789012:role/web"),
        ))
        .unwrap(),
    );
    let missed: Vec<(String, String)> = pods
        .iter()
        .filter_map(|p| {
            Some((
                p.uid.clone(),
                p.missed(&Settings::default(), &directory, &Associations::default())?,
            ))
        })
        .collect();
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].0, "u2");
    assert!(missed[0].1.contains("restart it"), "{}", missed[0].1);

    api.watched("pods").await;
    let mut finished = pod("u2", "gitlab-webservice", false);
    finished["status"]["phase"] = json!("Succeeded");
    api.event("pods", "MODIFIED", finished);
    until("the finished pod", || {
        changes
            .lock()
            .unwrap()
            .contains(&PodChange::Removed("u2".into()))
    })
    .await;

    let record = PodRecord::from_object(&pod("u9", "gitlab-webservice", false)).unwrap();
    warn_pod(
        &api.client(),
        &record,
        "PodIdentityNotInjected",
        &missed[0].1,
        "keyless-webhook",
        "2026-12-03T10:00:00Z",
    )
    .await
    .unwrap();
    let events = api.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        event["involvedObject"],
        json!({"apiVersion": "v1", "kind": "Pod", "namespace": "gitlab", "name": "web-u9", "uid": "u9"})
    );
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("PodIdentityNotInjected"))
    );
    assert_eq!(event["metadata"]["namespace"], "gitlab");
    assert!(
        api.requests()
            .contains(&"POST /api/v1/namespaces/gitlab/events".to_owned())
    );
    watch.abort();
}

#[tokio::test]
async fn the_ca_bundle_is_patched_into_every_webhook_once() {
    let api = FakeApi::start().await;
    let config = keyless_webhook::webhook_configuration(&keyless_webhook::ConfigOptions {
        name: "keyless-webhook".into(),
        namespace: "keyless".into(),
        service_name: "keyless-webhook".into(),
        port: 443,
        ca_bundle: None,
        failure_policy: keyless_webhook::FailurePolicy::Ignore,
        timeout_seconds: 10,
    });
    api.event("mutatingwebhookconfigurations", "ADDED", config);
    let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert_eq!(
        patch_ca_bundle(&api.client(), "keyless-webhook", pem)
            .await
            .unwrap()
            .changed,
        1
    );
    let patched = api
        .object("mutatingwebhookconfigurations", "/keyless-webhook")
        .unwrap();
    assert_eq!(
        patched["webhooks"][0]["clientConfig"]["caBundle"],
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
    );
    assert_eq!(
        patched["webhooks"][0]["clientConfig"]["service"]["name"],
        "keyless-webhook"
    );
    assert_eq!(
        patch_ca_bundle(&api.client(), "keyless-webhook", pem)
            .await
            .unwrap()
            .changed,
        0,
        "already there"
    );
    assert!(
        patch_ca_bundle(&api.client(), "nothing", pem)
            .await
            .is_err()
    );
}
