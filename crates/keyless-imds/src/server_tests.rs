//! Tests of the HTTP contract of the metadata service: headers, status codes and bodies as EC2
//! answers them, tokens, and pods that come, go and reuse addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use keyless_types::FixedClock;

use super::*;
use crate::AssumeError;
use crate::credentials::MemoryAssumer;
use crate::pods::tests::{namespace, pod};
use crate::roles::{ALLOWED_ROLES_ANNOTATION, ROLE_ANNOTATION};

/// 2026-11-26T01:00:00Z.
const NOW: u64 = 1_795_654_800;
const WEB: &str = "10.0.0.1";
const BARE: &str = "10.0.0.2";
const GREEDY: &str = "10.0.0.3";

struct Fixture {
    clock: Arc<FixedClock>,
    assumer: Arc<MemoryAssumer>,
    imds: Imds,
}

fn fixture(tokens: TokenMode) -> Fixture {
    fixture_waiting(tokens, Duration::from_millis(50))
}

fn fixture_waiting(tokens: TokenMode, unknown_pod_wait: Duration) -> Fixture {
    let clock = Arc::new(FixedClock::at_unix(NOW));
    let assumer = Arc::new(MemoryAssumer::new(clock.clone()));
    let index = PodIndex::new();
    index.replace(
        vec![
            pod(
                "u-web",
                WEB,
                "shop",
                "web-0",
                &[(ROLE_ANNOTATION, "shop-reader")],
            ),
            pod("u-bare", BARE, "shop", "bare", &[]),
            pod(
                "u-greedy",
                GREEDY,
                "shop",
                "greedy",
                &[(ROLE_ANNOTATION, "admin")],
            ),
        ],
        vec![namespace(
            "shop",
            &[(ALLOWED_ROLES_ANNOTATION, r#"["shop-*"]"#)],
        )],
    );
    let config = ImdsConfig {
        tokens,
        unknown_pod_wait,
        ..ImdsConfig::new(AccountId::parse("123456789012").unwrap(), "eu-west-1")
    };
    let imds = Imds::new(
        config,
        index,
        assumer.clone(),
        TokenKey::from_bytes(b"test key"),
        clock.clone(),
    )
    .unwrap();
    Fixture {
        clock,
        assumer,
        imds,
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

async fn call(
    f: &Fixture,
    method: Method,
    peer: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let peer: IpAddr = peer.parse().unwrap();
    let response = f.imds.handle(peer, request.body(()).unwrap()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(f: &Fixture, peer: &str, path: &str) -> Answer {
    call(f, Method::GET, peer, path, &[]).await
}

async fn token(f: &Fixture, peer: &str, ttl: &str) -> Answer {
    call(f, Method::PUT, peer, TOKEN_PATH, &[(TOKEN_TTL_HEADER, ttl)]).await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn every_answer_is_plain_text_from_ec2ws() {
    let f = fixture(TokenMode::Required);
    let cases = [
        (
            call(
                &f,
                Method::PUT,
                WEB,
                TOKEN_PATH,
                &[(TOKEN_TTL_HEADER, "60")],
            )
            .await,
            200,
        ),
        (call(&f, Method::PUT, WEB, TOKEN_PATH, &[]).await, 400),
        (get(&f, WEB, TOKEN_PATH).await, 405),
        (
            call(&f, Method::POST, WEB, "/latest/meta-data/", &[]).await,
            405,
        ),
        (get(&f, WEB, "/latest/meta-data/").await, 401),
        (
            call(&f, Method::GET, WEB, "/nope", &[(TOKEN_HEADER, "bad")]).await,
            401,
        ),
    ];
    for (answer, status) in cases {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(answer.headers["server"], "EC2ws");
        assert_eq!(answer.headers["content-type"], "text/plain");
    }
}

#[tokio::test]
async fn a_session_token_echoes_its_lifetime() {
    let f = fixture(TokenMode::Required);
    let answer = token(&f, WEB, "21600").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers[TOKEN_TTL_HEADER], "21600");
    assert_eq!(answer.body.len(), 55);
    assert_eq!(token(&f, WEB, " 1 ").await.headers[TOKEN_TTL_HEADER], "1");
    for bad in ["0", "21601", "-5", "abc", "", "99999999999999999999"] {
        assert_eq!(token(&f, WEB, bad).await.status, 400, "{bad}");
    }
    // Proxied token requests are refused, as by EC2.
    let proxied = call(
        &f,
        Method::PUT,
        WEB,
        TOKEN_PATH,
        &[(TOKEN_TTL_HEADER, "60"), ("X-Forwarded-For", "1.2.3.4")],
    )
    .await;
    assert_eq!(proxied.status, 403);
}

#[tokio::test]
async fn tokens_when_required() {
    let f = fixture(TokenMode::Required);
    let path = "/latest/meta-data/placement/region";
    assert_eq!(get(&f, WEB, path).await.status, 401);
    let t = token(&f, WEB, "60").await.body;
    let ask = |peer: &'static str, t: String| {
        let f = &f;
        async move { call(f, Method::GET, peer, path, &[(TOKEN_HEADER, t.as_str())]).await }
    };
    let answer = ask(WEB, t.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "eu-west-1"));
    // Another pod cannot use it.
    assert_eq!(ask(BARE, t.clone()).await.status, 401);
    assert_eq!(ask(WEB, "garbage".into()).await.status, 401);
    // Nor can anyone once it expired.
    f.clock.advance(Duration::from_secs(60));
    assert_eq!(ask(WEB, t).await.status, 401);
}

#[tokio::test]
async fn tokens_when_optional() {
    let f = fixture(TokenMode::Optional);
    let path = "/latest/meta-data/placement/availability-zone";
    let answer = get(&f, WEB, path).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "eu-west-1a"));
    let t = token(&f, WEB, "60").await.body;
    assert_eq!(
        call(&f, Method::GET, WEB, path, &[(TOKEN_HEADER, &t)])
            .await
            .status,
        200
    );
    // A token that is sent is checked, even when none is needed.
    assert_eq!(
        call(&f, Method::GET, BARE, path, &[(TOKEN_HEADER, &t)])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_role_is_listed_by_name() {
    let f = fixture(TokenMode::Optional);
    for path in [
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/security-credentials",
    ] {
        let answer = get(&f, WEB, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "shop-reader"),
            "{path}"
        );
        assert_eq!(get(&f, BARE, path).await.status, 404);
        assert_eq!(get(&f, GREEDY, path).await.status, 403);
    }
    assert_eq!(
        get(&f, WEB, "/latest/meta-data/iam/").await.body,
        "info\nsecurity-credentials/"
    );
    assert_eq!(get(&f, BARE, "/latest/meta-data/iam/").await.status, 404);
    assert_eq!(f.assumer.calls(), 0, "listing needs no credentials");
}

#[tokio::test]
async fn credentials_as_ec2_writes_them() {
    let f = fixture(TokenMode::Optional);
    let path = "/latest/meta-data/iam/security-credentials/shop-reader";
    let answer = get(&f, WEB, path).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "text/plain");
    assert_eq!(
        answer.body,
        r#"{"Code":"Success","LastUpdated":"2026-11-26T01:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAMEMORY0000000001","SecretAccessKey":"secret-1","Token":"token-1-shop.web-0","Expiration":"2026-11-26T02:00:00Z"}"#
    );
    let request = &f.assumer.requests()[0];
    assert_eq!(
        request.role_arn,
        "arn:aws:iam::123456789012:role/shop-reader"
    );
    assert_eq!(request.duration_seconds, 3600);
    // Cached: the same again, with no new call.
    f.clock.advance(Duration::from_secs(600));
    assert_eq!(get(&f, WEB, path).await.body, answer.body);
    assert_eq!(f.assumer.calls(), 1);
    // Trailing slash tolerated; other names and deeper paths are not found.
    assert_eq!(get(&f, WEB, &format!("{path}/")).await.status, 200);
    assert_eq!(
        get(&f, WEB, "/latest/meta-data/iam/security-credentials/admin")
            .await
            .status,
        404
    );
    assert_eq!(get(&f, WEB, &format!("{path}/x")).await.status, 404);
    assert_eq!(get(&f, BARE, path).await.status, 404);
}

#[tokio::test]
async fn forbidden_roles_and_sts_failures() {
    let f = fixture(TokenMode::Optional);
    let greedy = get(
        &f,
        GREEDY,
        "/latest/meta-data/iam/security-credentials/admin",
    )
    .await;
    assert_eq!((greedy.status, greedy.body.as_str()), (403, "Forbidden"));
    assert_eq!(
        get(&f, GREEDY, "/latest/meta-data/iam/info").await.status,
        403
    );
    assert_eq!(f.assumer.calls(), 0);
    f.assumer
        .set_failure(Some(AssumeError::Unavailable("connection refused".into())));
    let failed = get(
        &f,
        WEB,
        "/latest/meta-data/iam/security-credentials/shop-reader",
    )
    .await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (500, "Internal Server Error")
    );
    assert!(!failed.body.contains("refused"));
}

#[tokio::test]
async fn iam_info_names_an_instance_profile() {
    let f = fixture(TokenMode::Optional);
    let answer = get(&f, WEB, "/latest/meta-data/iam/info").await;
    assert_eq!(answer.status, 200);
    let info = json(&answer.body);
    assert_eq!(info["Code"], "Success");
    assert_eq!(info["LastUpdated"], "2026-11-26T01:00:00Z");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/shop-reader"
    );
    assert!(
        info["InstanceProfileId"]
            .as_str()
            .unwrap()
            .starts_with("AIPA")
    );
    assert_eq!(
        get(&f, BARE, "/latest/meta-data/iam/info").await.status,
        404
    );
}

#[tokio::test]
async fn instance_facts_and_indexes() {
    let f = fixture(TokenMode::Optional);
    let body = |path: &'static str| {
        let f = &f;
        async move {
            let answer = get(f, WEB, path).await;
            assert_eq!(answer.status, 200, "{path}");
            answer.body
        }
    };
    assert_eq!(body("/").await, "latest");
    assert_eq!(body("/latest/").await, "dynamic\nmeta-data");
    assert_eq!(body("/latest").await, "dynamic\nmeta-data");
    assert!(
        body("/latest/meta-data/")
            .await
            .contains("iam/\ninstance-id")
    );
    assert_eq!(
        body("/latest/meta-data").await,
        body("/latest/meta-data/").await
    );
    assert_eq!(
        body("/latest/meta-data/placement/").await,
        "availability-zone\nregion"
    );
    assert_eq!(body("/latest/meta-data/local-ipv4").await, WEB);
    assert_eq!(body("/latest/meta-data/instance-type").await, "keyless.pod");
    assert_eq!(body("/latest/meta-data/services/partition").await, "aws");
    assert_eq!(
        body("/latest/meta-data/services/domain").await,
        "amazonaws.com"
    );
    assert_eq!(body("/latest/dynamic/").await, "instance-identity/");
    assert_eq!(body("/latest/dynamic/instance-identity/").await, "document");
    let id = body("/latest/meta-data/instance-id").await;
    assert!(id.starts_with("i-") && id.len() == 19, "{id}");
    assert_ne!(
        get(&f, BARE, "/latest/meta-data/instance-id").await.body,
        id
    );
    let doc = json(&body("/latest/dynamic/instance-identity/document").await);
    assert_eq!(doc["region"], "eu-west-1");
    assert_eq!(doc["availabilityZone"], "eu-west-1a");
    assert_eq!(doc["accountId"], "123456789012");
    assert_eq!(doc["instanceId"], id.as_str());
    assert_eq!(doc["instanceType"], "keyless.pod");
    assert_eq!(doc["privateIp"], WEB);
    for missing in [
        "/latest/user-data",
        "/latest/meta-data/ami-id",
        "/latest/meta-data/iam/x",
        "/favicon.ico",
    ] {
        assert_eq!(get(&f, WEB, missing).await.status, 404, "{missing}");
    }
}

#[tokio::test]
async fn unknown_addresses_wait_for_their_pod() {
    let f = fixture(TokenMode::Optional);
    let path = "/latest/meta-data/iam/security-credentials/";
    // Never known: not found once the wait is over; facts that need no pod are still answered.
    assert_eq!(get(&f, "10.9.9.9", path).await.status, 404);
    assert_eq!(
        get(&f, "10.9.9.9", "/latest/meta-data/placement/region")
            .await
            .status,
        200
    );
    // Known during the wait: answered.
    let f = fixture_waiting(TokenMode::Optional, Duration::from_secs(5));
    let index = f.imds.index().clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        index.upsert_pod(pod(
            "u-late",
            "10.0.0.7",
            "shop",
            "late",
            &[(ROLE_ANNOTATION, "shop-late")],
        ));
    });
    let answer = get(&f, "10.0.0.7", path).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "shop-late"));
    late.await.unwrap();
}

#[tokio::test]
async fn a_token_got_before_the_pod_was_known_is_good_once_it_is() {
    let f = fixture(TokenMode::Required);
    let early = token(&f, "10.0.0.7", "60").await;
    assert_eq!(early.status, 200);
    let path = "/latest/meta-data/iam/security-credentials/";
    let with_token = [(TOKEN_HEADER, early.body.as_str())];
    let ask = || call(&f, Method::GET, "10.0.0.7", path, &with_token);
    assert_eq!(ask().await.status, 404);
    f.imds.index().upsert_pod(pod(
        "u-late",
        "10.0.0.7",
        "shop",
        "late",
        &[(ROLE_ANNOTATION, "shop-late")],
    ));
    let answer = ask().await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "shop-late"));
    // Still bound to its address.
    let elsewhere = call(&f, Method::GET, WEB, path, &[(TOKEN_HEADER, &early.body)]).await;
    assert_eq!(elsewhere.status, 401);
}

#[tokio::test]
async fn a_new_pod_on_a_reused_address_gets_nothing_of_the_old_one() {
    let f = fixture(TokenMode::Optional);
    let creds = "/latest/meta-data/iam/security-credentials/";
    let old_token = token(&f, WEB, "21600").await.body;
    let old = json(&get(&f, WEB, &format!("{creds}shop-reader")).await.body);
    // The old pod goes; a new one, of another role, gets its address.
    f.imds.index().remove_pod("u-web");
    f.imds.index().upsert_pod(pod(
        "u-new",
        WEB,
        "shop",
        "new",
        &[(ROLE_ANNOTATION, "shop-writer")],
    ));
    assert_eq!(get(&f, WEB, creds).await.body, "shop-writer");
    assert_eq!(
        get(&f, WEB, &format!("{creds}shop-reader")).await.status,
        404
    );
    let new = json(&get(&f, WEB, &format!("{creds}shop-writer")).await.body);
    assert_ne!(new["AccessKeyId"], old["AccessKeyId"]);
    // Even with the same role, a new pod does not share the old pod's credentials.
    f.imds.index().upsert_pod(pod(
        "u-newer",
        WEB,
        "shop",
        "newer",
        &[(ROLE_ANNOTATION, "shop-reader")],
    ));
    let newer = json(&get(&f, WEB, &format!("{creds}shop-reader")).await.body);
    assert_ne!(newer["AccessKeyId"], old["AccessKeyId"]);
    // The old pod's token is refused.
    let answer = call(&f, Method::GET, WEB, creds, &[(TOKEN_HEADER, &old_token)]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(f.assumer.calls(), 3);
}

#[tokio::test]
async fn ipv4_mapped_peers_are_their_ipv4_address() {
    let f = fixture(TokenMode::Optional);
    let answer = get(
        &f,
        "::ffff:10.0.0.1",
        "/latest/meta-data/iam/security-credentials/",
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "shop-reader"));
}

#[test]
fn the_configuration_is_checked() {
    let clock = Arc::new(FixedClock::at_unix(NOW));
    let assumer = Arc::new(MemoryAssumer::new(clock.clone()));
    let build = |config: ImdsConfig| {
        Imds::new(
            config,
            PodIndex::new(),
            assumer.clone(),
            TokenKey::from_bytes(b"k"),
            clock.clone(),
        )
    };
    let base = ImdsConfig::new(AccountId::parse("123456789012").unwrap(), "us-east-1");
    assert!(build(base.clone()).is_ok());
    assert!(
        build(ImdsConfig {
            region: "US East".into(),
            ..base.clone()
        })
        .is_err()
    );
    let mut short = base.clone();
    short.cache.session_seconds = 60;
    assert!(build(short).is_err());
    let mut bad_default = base;
    bad_default.roles.default_role = Some("not a role".into());
    assert!(build(bad_default).is_err());
}

#[tokio::test]
async fn a_prefetch_is_ready_and_never_outlives_its_pod() {
    let f = fixture(TokenMode::Optional);
    let web = f.imds.inner.index.by_ip(WEB.parse().unwrap()).unwrap();
    f.imds.prefetch(&web);
    for _ in 0..500 {
        if f.imds.inner.cache.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!((f.assumer.calls(), f.imds.inner.cache.len()), (1, 1));

    // A pod removed while its prefetch is under way leaves nothing behind.
    f.assumer.set_delay(Duration::from_millis(50));
    let late = pod(
        "u-late",
        "10.0.0.9",
        "shop",
        "late",
        &[(ROLE_ANNOTATION, "shop-reader")],
    );
    f.imds.inner.index.upsert_pod(late.clone());
    f.imds.prefetch(&late);
    tokio::time::sleep(Duration::from_millis(10)).await;
    f.imds.inner.index.remove_pod("u-late");
    f.imds.inner.cache.forget_pod("u-late");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        f.imds.inner.cache.len(),
        1,
        "only web-0's credentials are kept"
    );
}
