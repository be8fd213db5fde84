//! Tests of the STS client against a small HTTP server on 127.0.0.1 that checks the signature
//! with `keyless_sigv4::verify` and answers canned XML.

use std::convert::Infallible;
use std::sync::Mutex;

use http::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use keyless_types::FixedClock;
use tokio::net::TcpListener;

use super::*;

/// 2026-11-26T01:00:00Z.
const NOW: u64 = 1_795_654_800;
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

const OK: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:shop.web-0</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/app/shop.web-0</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>FwoGZXIvYXdzE&amp;Token+/=</SessionToken>
      <Expiration>2026-11-26T02:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

/// What the server received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Serves `(status, body)` to every request on 127.0.0.1; returns its URL and what it saw.
async fn serve(status: u16, body: String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sts", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, body) = (log.clone(), body.clone());
            let service = service_fn(move |req: http::Request<Incoming>| {
                let (log, body) = (log.clone(), body.clone());
                async move {
                    let path = req.uri().path().to_owned();
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                        .collect();
                    let sent = req.into_body().collect().await.unwrap().to_bytes();
                    let sent = String::from_utf8(sent.to_vec()).unwrap();
                    log.lock().unwrap().push(Seen {
                        path,
                        headers,
                        body: sent,
                    });
                    let response = Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, seen)
}

fn assumer(endpoint: &str, timeout: Duration) -> StsAssumer {
    StsAssumer::new(
        StsClientConfig {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            access_key_id: "AKIDAGENT".into(),
            secret_access_key: Secret::new(SECRET),
            session_token: Some(Secret::new("agent-token")),
            timeout,
        },
        Arc::new(FixedClock::at_unix(NOW)),
    )
    .unwrap()
}

fn request(external_id: Option<&str>) -> AssumeRequest {
    AssumeRequest {
        role_arn: "arn:aws:iam::123456789012:role/app".into(),
        session_name: "shop.web-0".into(),
        external_id: external_id.map(str::to_owned),
        duration_seconds: 3600,
    }
}

#[tokio::test]
async fn assumes_a_role_with_a_signed_request() {
    let (url, seen) = serve(200, OK.into()).await;
    let creds = assumer(&url, DEFAULT_STS_TIMEOUT)
        .assume(&request(Some("ext:1")))
        .await
        .unwrap();
    assert_eq!(creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_eq!(
        creds.secret_access_key.expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    );
    assert_eq!(creds.session_token.expose(), "FwoGZXIvYXdzE&Token+/=");
    assert_eq!(creds.expiration, NOW as i64 + 3600);
    assert_eq!(creds.last_updated, NOW as i64);

    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/sts");
    assert_eq!(
        seen.body,
        "Action=AssumeRole&DurationSeconds=3600&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=shop.web-0&Version=2011-06-15&ExternalId=ext%3A1"
    );
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(header("x-amz-date"), "20261126T010000Z");
    assert_eq!(header("x-amz-security-token"), "agent-token");
    let authorization = header("authorization");
    assert!(
        authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDAGENT/20261126/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
        ),
        "{authorization}"
    );
    // The signature is the one the secret makes for this request.
    let headers: Vec<(&str, &str)> = seen
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, seen.body.as_bytes());
    let payload_hash = keyless_types::hex::encode(digest.as_ref());
    let signed = keyless_sigv4::Request {
        method: "POST",
        path: &seen.path,
        query: "",
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let parsed = keyless_sigv4::Authorization::parse(&authorization).unwrap();
    keyless_sigv4::verify(&signed, &parsed, SECRET, NOW as i64, 900).unwrap();
}

#[tokio::test]
async fn sts_errors_are_told_apart() {
    let cases = [
        (
            403,
            error_xml("AccessDenied", "Not authorized to perform sts:AssumeRole"),
            false,
        ),
        (400, error_xml("ValidationError", "bad session name"), false),
        (400, error_xml("Throttling", "Rate exceeded"), true),
        (
            403,
            error_xml(
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            true,
        ),
        (503, error_xml("ServiceUnavailable", "later"), true),
        (500, "<html>oops</html>".to_owned(), true),
        (200, "<AssumeRoleResponse/>".to_owned(), true),
    ];
    for (status, body, transient) in cases {
        let (url, _) = serve(status, body.clone()).await;
        let error = assumer(&url, DEFAULT_STS_TIMEOUT)
            .assume(&request(None))
            .await
            .unwrap_err();
        assert_eq!(error.is_transient(), transient, "{status} {body}: {error}");
    }
    let (url, _) = serve(403, error_xml("AccessDenied", "a &amp; b")).await;
    let error = assumer(&url, DEFAULT_STS_TIMEOUT)
        .assume(&request(None))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        AssumeError::Denied {
            code: "AccessDenied".into(),
            message: "a & b".into()
        }
    );
}

#[tokio::test]
async fn an_unreachable_or_silent_sts_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let error = assumer(&url, DEFAULT_STS_TIMEOUT)
        .assume(&request(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AssumeError::Unavailable(m) if m.contains("cannot connect")),
        "{error}"
    );

    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let error = assumer(&url, Duration::from_millis(100))
        .assume(&request(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AssumeError::Unavailable(m) if m.contains("within 100 ms")),
        "{error}"
    );
    drop(silent);
}

#[test]
fn endpoints_must_be_plain_http() {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::at_unix(NOW));
    let config = |endpoint: &str| StsClientConfig {
        endpoint: endpoint.into(),
        region: "us-east-1".into(),
        access_key_id: "AKID".into(),
        secret_access_key: Secret::new("s"),
        session_token: None,
        timeout: DEFAULT_STS_TIMEOUT,
    };
    for bad in [
        "https://sts.amazonaws.com/",
        "sts.local",
        "http://u:p@h/",
        "http://h/?a=b",
        "",
    ] {
        assert!(
            StsAssumer::new(config(bad), clock.clone()).is_err(),
            "{bad}"
        );
    }
    let ok = StsAssumer::new(config("http://[::1]:8080"), clock.clone()).unwrap();
    assert_eq!(
        (ok.host.as_str(), ok.port, ok.path.as_str()),
        ("::1", 8080, "/")
    );
    assert!(!format!("{ok:?}").contains("\"s\""));
    let no_region = StsClientConfig {
        region: String::new(),
        ..config("http://h")
    };
    assert!(StsAssumer::new(no_region, clock).is_err());
}

#[test]
fn signing_time() {
    assert_eq!(amz_date(NOW as i64), "20261126T010000Z");
}
