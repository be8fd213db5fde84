//! The front end to end: s3s with the authorizer over a memory store, driven with requests
//! signed here (the signatures are checked by s3s's own code).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyless_iam::session::{SessionClaims, SessionSubject, SessionTokens, TokenProblem};
use keyless_iam::{EmbeddedIam, IamState, IamStore, Keyring, RootKey};
use keyless_sigv4::{canonical_request, signature, signing_key, string_to_sign};
use keyless_types::encoding::uri_encode;
use keyless_types::{Clock, FixedClock, RequestId, Secret};
use s3s::Body;
use s3s::service::S3ServiceBuilder;

use super::*;
use crate::auth::Authorizer;
use crate::service::KeylessS3;
use crate::store::{MemoryStore, ObjectStore as _};

const ACCOUNT: &str = "111122223333";
const HOST: &str = "127.0.0.1:9000";
const ROOT_KEY: &str = "AKIAROOTROOTROOTROOT";
const ROOT_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_KEY: &str = "ASIASESSIONSESSION00";
const SESSION_SECRET: &str = "c2Vzc2lvbiBzZWNyZXQgZm9yIHRoZSB0ZXN0cw00";
const SESSION_TOKEN: &str = "the-session-token";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How long the test session lives.
const SESSION_SECONDS: i64 = 900;

/// One role session, issued at the test's start: the in-memory double of the session codec.
struct OneSession {
    claims: SessionClaims,
}

impl SessionTokens for OneSession {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (access_key_id == SESSION_KEY).then(|| Secret::new(SESSION_SECRET))
    }

    fn open(&self, access_key_id: &str, token: &str) -> Result<SessionClaims, TokenProblem> {
        match (access_key_id, token) {
            (SESSION_KEY, SESSION_TOKEN) => Ok(self.claims.clone()),
            _ => Err(TokenProblem::Invalid),
        }
    }
}

struct Harness {
    front: S3Front,
    /// The authorizer's clock (s3s reads the system clock for signature dates).
    clock: Arc<FixedClock>,
    /// When the test started, seconds since the epoch.
    now: i64,
}

#[allow(clippy::disallowed_methods)] // s3s checks signature dates against the system clock
fn system_now() -> SystemTime {
    SystemTime::now()
}

async fn harness() -> Harness {
    let clock = Arc::new(FixedClock::new(system_now()));
    let now = clock.unix_seconds();
    let iam = EmbeddedIam::in_memory(ACCOUNT, IamState::default()).unwrap();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
    let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::bkt","arn:aws:s3:::bkt/*"]}]}"#;
    iam.update(&mut |s| {
        let new = keyless_iam::roles::NewRole {
            name: "reader",
            path: "/",
            assume_role_policy: trust,
            ..Default::default()
        };
        s.create_role(ACCOUNT, new, "AROAREADER".into(), 0)?;
        s.put_role_policy("reader", "read", read)
    })
    .unwrap();
    let claims = SessionClaims {
        subject: SessionSubject::Role {
            arn: format!("arn:aws:iam::{ACCOUNT}:role/reader"),
            session_name: "test".into(),
        },
        issued: now,
        expires: now + SESSION_SECONDS,
        policy: None,
        policy_arns: Vec::new(),
        tags: Vec::new(),
        source_identity: None,
        web_identity: None,
    };
    let root = RootKey {
        access_key_id: ROOT_KEY.into(),
        secret: Secret::new(ROOT_SECRET),
    };
    let keys = Keyring::new(root, Arc::new(iam) as Arc<dyn IamStore>)
        .with_sessions(Arc::new(OneSession { claims }));
    let store = Arc::new(MemoryStore::new(Arc::clone(&clock) as Arc<dyn Clock>));
    store.create_bucket("bkt").await.unwrap();
    let mut builder = S3ServiceBuilder::new(KeylessS3::new(
        Arc::clone(&store),
        "us-east-1",
        ACCOUNT,
        Arc::clone(&clock) as Arc<dyn Clock>,
    ));
    let authorizer = Authorizer::new(store, keys, Arc::clone(&clock) as Arc<dyn Clock>);
    builder.set_auth(authorizer.clone());
    builder.set_access(authorizer);
    Harness {
        front: S3Front::new(builder.build(), None),
        clock,
        now,
    }
}

fn amz_date(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = keyless_types::time::civil_from_unix(unix);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// A request with its id in its extensions, as the listener makes it.
fn request(method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", HOST);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    req.extensions_mut().insert(keyless_iam::ids::request_id());
    req
}

/// `method path` signed in the `Authorization` header with `secret`, as S3 clients sign.
fn signed(h: &Harness, method: &str, path: &str, secret: &str) -> http::Request<Body> {
    let date = amz_date(h.now);
    let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
    let headers = [
        ("host", HOST),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", date.as_str()),
    ];
    let names: Vec<String> = headers.iter().map(|(k, _)| (*k).to_owned()).collect();
    let canonical = canonical_request(method, path, "", &headers, &names, EMPTY_SHA256, true);
    let key = signing_key(secret, &date[..8], "us-east-1", "s3");
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={ROOT_KEY}/{scope}, SignedHeaders={}, Signature={}",
        names.join(";"),
        signature(&key, &string_to_sign(&date, &scope, &canonical))
    );
    request(
        method,
        path,
        &[
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", &date),
            ("authorization", &authorization),
        ],
    )
}

/// `GET path` presigned for `expires` seconds by `key` (with `token`, for a session).
fn presigned(
    h: &Harness,
    path: &str,
    (key, secret, token): (&str, &str, Option<&str>),
    expires: &str,
) -> String {
    let date = amz_date(h.now);
    let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
    let mut query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host",
        uri_encode(&format!("{key}/{scope}"), false)
    );
    if let Some(token) = token {
        query.push_str(&format!(
            "&X-Amz-Security-Token={}",
            uri_encode(token, false)
        ));
    }
    let canonical = canonical_request(
        "GET",
        path,
        &query,
        &[("host", HOST)],
        &["host".to_owned()],
        "UNSIGNED-PAYLOAD",
        true,
    );
    let key = signing_key(secret, &date[..8], "us-east-1", "s3");
    let signature = signature(&key, &string_to_sign(&date, &scope, &canonical));
    format!("{path}?{query}&X-Amz-Signature={signature}")
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
    id: Option<RequestId>,
}

impl Answer {
    fn element(&self, name: &str) -> Option<String> {
        let fields = errors::parse(self.body.as_bytes())?;
        fields.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(h: &Harness, req: http::Request<Body>) -> Answer {
    let given = req.extensions().get::<RequestId>().cloned();
    let response = h.front.serve(req).await.unwrap();
    let id = response.extensions().get::<RequestId>().cloned();
    assert_eq!(id, given, "the response carries the request's own id");
    let (parts, body) = response.into_parts();
    let bytes = http_body_util_collect(body).await;
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8(bytes).unwrap(),
        id,
    }
}

async fn http_body_util_collect(mut body: Body) -> Vec<u8> {
    body.store_all_limited(1 << 20).await.unwrap().to_vec()
}

#[tokio::test]
async fn every_response_carries_its_request_id() {
    let h = harness().await;
    let ok = send(&h, signed(&h, "GET", "/", ROOT_SECRET)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let id = ok.id.clone().unwrap();
    assert_eq!(ok.header(REQUEST_ID), Some(id.as_str()));
    assert_eq!(ok.header(HOST_ID), Some(host_id(&id).as_str()));

    let refused = send(&h, request("GET", "/bkt/k", &[])).await;
    assert_eq!(refused.status, 403);
    let id = refused.id.clone().unwrap();
    assert_ne!(Some(id.as_str()), ok.header(REQUEST_ID));
    assert_eq!(refused.header(REQUEST_ID), Some(id.as_str()));
    assert_eq!(refused.element("RequestId").as_deref(), Some(id.as_str()));
    assert_eq!(refused.element("HostId"), Some(host_id(&id)));
    assert_eq!(refused.element("Code").as_deref(), Some("AccessDenied"));
    assert_eq!(refused.element("Message").as_deref(), Some("Access Denied"));
    assert_eq!(
        refused.header("content-type"),
        Some("application/xml"),
        "botocore reads the body as XML"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_told_what_the_server_signed() {
    let h = harness().await;
    let wrong = "not the secret".repeat(3);
    let req = signed(&h, "GET", "/bkt", &wrong);
    let authorization = req.headers()["authorization"].to_str().unwrap().to_owned();
    let sent_signature = authorization.rsplit('=').next().unwrap().to_owned();
    let answer = send(&h, req).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(
        answer.element("Message").as_deref(),
        Some(
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        )
    );
    assert_eq!(answer.element("AWSAccessKeyId").as_deref(), Some(ROOT_KEY));
    let date = amz_date(h.now);
    let headers = [
        ("host", HOST),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", date.as_str()),
    ];
    let signed_names: Vec<String> = headers.iter().map(|(k, _)| (*k).to_owned()).collect();
    let canonical = canonical_request(
        "GET",
        "/bkt",
        "",
        &headers,
        &signed_names,
        EMPTY_SHA256,
        true,
    );
    let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
    let to_sign = string_to_sign(&date, &scope, &canonical);
    assert_eq!(answer.element("CanonicalRequest"), Some(canonical.clone()));
    assert_eq!(answer.element("StringToSign"), Some(to_sign.clone()));
    let spaced = |t: &str| {
        t.bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(answer.element("StringToSignBytes"), Some(spaced(&to_sign)));
    assert_eq!(
        answer.element("CanonicalRequestBytes"),
        Some(spaced(&canonical))
    );
    assert!(!answer.body.contains(&sent_signature), "{}", answer.body);
    assert!(!answer.body.contains(&wrong) && !answer.body.contains(ROOT_SECRET));
}

#[tokio::test]
async fn presigned_urls_within_s3s_limits() {
    let h = harness().await;
    let root = (ROOT_KEY, ROOT_SECRET, None);
    let ok = send(
        &h,
        request("GET", &presigned(&h, "/bkt", root, "3600"), &[]),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let week = send(
        &h,
        request("GET", &presigned(&h, "/bkt", root, "604800"), &[]),
    )
    .await;
    assert_eq!(week.status, 200, "{}", week.body);

    let year = send(
        &h,
        request("GET", &presigned(&h, "/bkt", root, "31536000"), &[]),
    )
    .await;
    assert_eq!(year.status, 400, "{}", year.body);
    assert_eq!(
        year.element("Code").as_deref(),
        Some("AuthorizationQueryParametersError")
    );
    assert_eq!(
        year.element("Message").as_deref(),
        Some(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds"
        )
    );
    assert_eq!(year.element("RequestId"), year.id.map(|i| i.to_string()));

    let url = presigned(&h, "/bkt", root, "3600");
    let (unsigned, _) = url.split_once("X-Amz-Signature=").unwrap();
    let short = format!("{unsigned}X-Amz-Signature=deadbeef");
    let answer = send(&h, request("GET", &short, &[])).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(
        answer.element("Code").as_deref(),
        Some("SignatureDoesNotMatch")
    );
    let canonical = answer.element("CanonicalRequest").unwrap();
    assert!(
        canonical.starts_with("GET\n/bkt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&"),
        "{canonical}"
    );
    assert!(
        canonical.ends_with("\nhost:127.0.0.1:9000\n\nhost\nUNSIGNED-PAYLOAD"),
        "{canonical}"
    );
    assert!(!answer.body.contains("deadbeef"), "{}", answer.body);
}

#[tokio::test]
async fn a_presigned_url_lives_no_longer_than_its_session() {
    let h = harness().await;
    // Signed for an hour with a session that has 15 minutes left: served while the session
    // lives (as S3 does), refused once it has expired.
    let session = (SESSION_KEY, SESSION_SECRET, Some(SESSION_TOKEN));
    let url = presigned(&h, "/bkt", session, "3600");
    let served = send(&h, request("GET", &url, &[])).await;
    assert_eq!(served.status, 200, "{}", served.body);
    h.clock
        .advance(Duration::from_secs(SESSION_SECONDS as u64 - 1));
    assert_eq!(send(&h, request("GET", &url, &[])).await.status, 200);
    h.clock.advance(Duration::from_secs(1));
    let refused = send(&h, request("GET", &url, &[])).await;
    // S3 answers an expired token with 400.
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.element("Code").as_deref(), Some("ExpiredToken"));
    assert_eq!(
        refused.element("Message").as_deref(),
        Some("The provided token has expired.")
    );
    assert!(!refused.body.contains(SESSION_TOKEN), "{}", refused.body);
}

#[tokio::test]
async fn buckets_and_keys_are_named() {
    let h = harness().await;
    let invalid = send(&h, signed(&h, "PUT", "/Not_Valid", ROOT_SECRET)).await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert_eq!(
        invalid.element("Code").as_deref(),
        Some("InvalidBucketName")
    );
    assert_eq!(
        invalid.element("Message").as_deref(),
        Some("The specified bucket is not valid.")
    );
    assert_eq!(invalid.element("BucketName").as_deref(), Some("Not_Valid"));
    let missing = send(&h, signed(&h, "GET", "/bkt/no%20such", ROOT_SECRET)).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.element("Key").as_deref(), Some("no such"));
    let bucket = send(&h, signed(&h, "GET", "/nope", ROOT_SECRET)).await;
    assert_eq!(bucket.element("Code").as_deref(), Some("NoSuchBucket"));
    assert_eq!(bucket.element("BucketName").as_deref(), Some("nope"));
    let date = amz_date(h.now);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIANOBODY/{}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
        &date[..8],
        "0".repeat(64)
    );
    let headers = [
        ("authorization", authorization.as_str()),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", date.as_str()),
    ];
    let unknown = send(&h, request("GET", "/bkt", &headers)).await;
    assert_eq!(
        unknown.element("Code").as_deref(),
        Some("InvalidAccessKeyId")
    );
    assert_eq!(
        unknown.element("AWSAccessKeyId").as_deref(),
        Some("AKIANOBODY")
    );
}

#[tokio::test]
async fn refusals_before_s3s_are_completed_too() {
    let h = harness().await;
    let req = request("POST", "/bkt", &[]);
    let id = req.extensions().get::<RequestId>().cloned().unwrap();
    let response = h.front.refuse(
        &req,
        S3Error::with_message(
            s3s::S3ErrorCode::NotImplemented,
            "POST uploads from browser forms are not supported.",
        ),
    );
    assert_eq!(response.status(), 501);
    assert_eq!(response.headers()[REQUEST_ID], id.as_str());
    let body = String::from_utf8(response.into_body().bytes().unwrap().to_vec()).unwrap();
    assert!(
        body.contains(
            "<Message>POST uploads from browser forms are not supported.</Message><RequestId>"
        ),
        "{body}"
    );
}

#[test]
fn audit_parameters_keep_what_s3_records_and_no_secret() {
    let req = request(
        "PUT",
        "/uploads/path/upload.sh?X-Amz-Signature=abc&X-Amz-Security-Token=tok&partNumber=2",
        &[
            ("content-type", "text/html"),
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-server-side-encryption-customer-key", "c2VjcmV0"),
            ("x-amz-server-side-encryption-customer-key-md5", "bWQ1"),
        ],
    );
    let kept = Kept::of(&req);
    let got = audit_parameters(&kept, Some("uploads"), Some("path/upload.sh"));
    let want = serde_json::json!({
        "bucketName": "uploads",
        "Host": "127.0.0.1:9000",
        "key": "path/upload.sh",
        "x-amz-server-side-encryption": "AES256",
        "x-amz-server-side-encryption-customer-key-MD5": "bWQ1",
        "partNumber": "2",
    });
    assert_eq!(serde_json::Value::Object(got), want);
}
