//! Tests of the STS client against a small HTTP (or HTTPS, with the certificates of
//! `testdata/`) server on 127.0.0.1 that checks the signature with `keyless_sigv4::verify` and
//! answers canned XML.

use std::convert::Infallible;
use std::sync::Mutex;

use http::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use keyless_types::FixedClock;
use tokio::net::TcpListener;

use super::*;

const CA: &[u8] = include_bytes!("../testdata/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("../testdata/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../testdata/server.pk8.pem");
const OTHER_CERT: &[u8] = include_bytes!("../testdata/other.pem");
const OTHER_KEY: &[u8] = include_bytes!("../testdata/other.pk8.pem");

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
    serve_on(status, body, Vec::new()).await
}

/// A TLS acceptor with the certificate `cert` and key `key` (PEM).
fn acceptor(cert: &[u8], key: &[u8]) -> tokio_rustls::TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// One TLS acceptor (one server configuration, whose session cache resumes sessions) that
/// presents the nth certificate at its nth full handshake: a certificate rotated in place.
fn rotating_acceptor(pairs: &[(&[u8], &[u8])]) -> tokio_rustls::TlsAcceptor {
    #[derive(Debug)]
    struct Rotating(
        Vec<Arc<rustls::sign::CertifiedKey>>,
        std::sync::atomic::AtomicUsize,
    );
    impl rustls::server::ResolvesServerCert for Rotating {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            let n = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.get(n.min(self.0.len() - 1)).cloned()
        }
    }
    let keys = pairs
        .iter()
        .map(|(cert, key)| {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key).unwrap();
            let signing = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
            Arc::new(rustls::sign::CertifiedKey::new(certs, signing))
        })
        .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Rotating(keys, Default::default())));
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// As [`serve`], over HTTPS when `tls` holds acceptors: the nth connection is accepted with
/// the nth (the last one for the connections after): a certificate rotated between calls.
async fn serve_on(
    status: u16,
    body: String,
    tls: Vec<tokio_rustls::TlsAcceptor>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_empty() { "http" } else { "https" };
    let url = format!("{scheme}://{}/sts", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = tls.get(accepted.min(tls.len().saturating_sub(1))).cloned();
            accepted += 1;
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
            match acceptor {
                None => {
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
                Some(tls) => {
                    tokio::spawn(async move {
                        // A client that refuses the certificate ends the handshake here.
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    });
    (url, seen)
}

fn assumer(endpoint: &str, timeout: Duration) -> StsAssumer {
    assumer_with(endpoint, timeout, None)
}

fn assumer_with(endpoint: &str, timeout: Duration, tls: Option<StsTls>) -> StsAssumer {
    StsAssumer::new(
        StsClientConfig {
            endpoint: endpoint.into(),
            tls,
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
        tags: vec![
            ("kubernetes-namespace".into(), "shop".into()),
            ("kubernetes-pod-name".into(), "web-0".into()),
        ],
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
        "Action=AssumeRole&DurationSeconds=3600&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=shop.web-0&Version=2011-06-15&ExternalId=ext%3A1&Tags.member.1.Key=kubernetes-namespace&Tags.member.1.Value=shop&Tags.member.2.Key=kubernetes-pod-name&Tags.member.2.Value=web-0"
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
fn endpoints_must_be_https_or_http() {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::at_unix(NOW));
    let config = |endpoint: &str| StsClientConfig {
        endpoint: endpoint.into(),
        tls: None,
        region: "us-east-1".into(),
        access_key_id: "AKID".into(),
        secret_access_key: Secret::new("s"),
        session_token: None,
        timeout: DEFAULT_STS_TIMEOUT,
    };
    for bad in [
        "ftp://sts.example/",
        "HTTPS//sts.example",
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
    let https = StsAssumer::new(config("https://sts.example/sts"), clock.clone()).unwrap();
    assert_eq!(
        (https.host.as_str(), https.port, https.path.as_str()),
        ("sts.example", 443, "/sts")
    );
    assert!(https.tls.is_some() && ok.tls.is_none());
    let no_region = StsClientConfig {
        region: String::new(),
        ..config("http://h")
    };
    assert!(StsAssumer::new(no_region, clock).is_err());
}

#[test]
fn signing_time() {
    assert_eq!(
        keyless_types::time::amz_date(NOW as i64),
        "20261126T010000Z"
    );
}

#[tokio::test]
async fn https_with_a_ca_bundle_checks_the_servers_name() {
    let bundle = || Some(StsTls::bundle(CA, "ca.pem").unwrap());
    let (url, seen) = serve_on(200, OK.into(), vec![acceptor(SERVER_CERT, SERVER_KEY)]).await;
    // By IP address and by name: the certificate carries both.
    for url in [url.clone(), url.replace("127.0.0.1", "localhost")] {
        let creds = assumer_with(&url, DEFAULT_STS_TIMEOUT, bundle())
            .assume(&request(None))
            .await
            .unwrap();
        assert_eq!(creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    // The request went over TLS signed as over HTTP: the host is the endpoint's.
    let host = seen.lock().unwrap()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone());
    assert_eq!(
        host.as_deref(),
        url.strip_prefix("https://")
            .and_then(|u| u.strip_suffix("/sts"))
    );

    // The platform's authorities do not know the test CA.
    let error = assumer_with(&url, DEFAULT_STS_TIMEOUT, Some(StsTls::platform()))
        .assume(&request(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AssumeError::Unavailable(m) if m.contains("tls handshake") && m.contains("platform")),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let (url, seen) = serve_on(200, OK.into(), vec![acceptor(OTHER_CERT, OTHER_KEY)]).await;
    let error = assumer_with(
        &url,
        DEFAULT_STS_TIMEOUT,
        Some(StsTls::bundle(CA, "ca.pem").unwrap()),
    )
    .assume(&request(None))
    .await
    .unwrap_err();
    assert!(error.is_transient(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("not valid for name") && message.contains("127.0.0.1"),
        "{message}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing is sent to a server refused"
    );
}

#[tokio::test]
async fn each_call_checks_the_certificate_the_server_has_now() {
    // The second connection meets a certificate for another name: a resumed session would
    // show none and pass.
    let (url, seen) = serve_on(
        200,
        OK.into(),
        vec![rotating_acceptor(&[
            (SERVER_CERT, SERVER_KEY),
            (OTHER_CERT, OTHER_KEY),
        ])],
    )
    .await;
    let client = assumer_with(
        &url,
        DEFAULT_STS_TIMEOUT,
        Some(StsTls::bundle(CA, "ca.pem").unwrap()),
    );
    client.assume(&request(None)).await.unwrap();
    let error = client.assume(&request(None)).await.unwrap_err();
    assert!(error.to_string().contains("not valid for name"), "{error}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn ca_bundles_must_hold_certificates() {
    assert!(StsTls::bundle(CA, "ca.pem").is_ok());
    for bad in [&b"nothing"[..], SERVER_KEY, b""] {
        let error = StsTls::bundle(bad, "x.pem").unwrap_err();
        assert!(error.to_string().contains("`x.pem`"), "{error}");
    }
}
