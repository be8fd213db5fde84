//! AWS's own signer (the `aws-sigv4` crate) signs many generated requests; the verifier must
//! accept every one of them, and refuse each once anything signed is changed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use keyless_sigv4::{Authorization, Request, SigV4Error, verify};
use keyless_types::encoding::uri_encode;
use keyless_types::hex;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const NOW: u64 = 1_795_608_000;

#[derive(Debug, Clone)]
struct Case {
    service: &'static str,
    method: &'static str,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What a server receives: method, raw path, raw query, headers (with Host), body.
struct Sent {
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

fn sign_with_aws(case: &Case) -> Sent {
    let s3 = case.service == "s3";
    // The URI as a client sends it: already percent-encoded.
    let path = format!(
        "/{}",
        case.segments
            .iter()
            .map(|s| uri_encode(s, false))
            .collect::<Vec<_>>()
            .join("/")
    );
    let query = case
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let uri = if query.is_empty() {
        format!("https://example.test{path}")
    } else {
        format!("https://example.test{path}?{query}")
    };
    let identity = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "oracle").into();
    let mut settings = SigningSettings::default();
    if s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(case.service)
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        case.method,
        uri.clone(),
        case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&case.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut headers = case.headers.clone();
    headers.push(("Host".to_owned(), "example.test".to_owned()));
    headers.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Sent {
        path,
        query,
        headers,
    }
}

fn check(case: &Case, sent: &Sent, secret: &str, body: &[u8]) -> Result<(), SigV4Error> {
    let headers: Vec<(&str, &str)> = sent
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let auth = Authorization::parse(
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .unwrap()
            .1,
    )?;
    let payload = hex::encode(&Sha256::digest(body));
    let request = Request {
        method: case.method,
        path: &sent.path,
        query: &sent.query,
        headers: &headers,
        payload_hash: &payload,
    };
    verify(&request, &auth, secret, NOW as i64, 900).map(|_| ())
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("Z"),
            Just("0"),
            Just(" "),
            Just("+"),
            Just("="),
            Just("&"),
            Just("/"),
            Just("%"),
            Just("~"),
            Just("."),
            Just("-"),
            Just("_"),
            Just("ü"),
            Just("日"),
            Just("*"),
            Just("'"),
            Just("!")
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

fn segment() -> impl Strategy<Value = String> {
    text().prop_filter("no empty or dot segments", |s| {
        !s.is_empty() && s != "." && s != ".." && !s.contains('/')
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(vec!["s3", "iam", "sts"]),
        proptest::sample::select(vec!["GET", "PUT", "POST", "DELETE", "HEAD"]),
        proptest::collection::vec(segment(), 0..4),
        proptest::collection::vec(
            (text().prop_filter("a name", |k| !k.is_empty()), text()),
            0..4,
        ),
        proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "X-Amz-Meta-Owner",
                    "x-custom",
                    "Content-Type",
                    "X-Amz-Target",
                ]),
                proptest::sample::select(vec![
                    "plain",
                    "  padded  ",
                    "inner   spaces",
                    "UPPER lower",
                    "a,b",
                ]),
            ),
            0..3,
        ),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(service, method, segments, query, headers, body)| Case {
            service,
            method,
            segments,
            query,
            headers: {
                // One value per header name: repeated names are joined differently by clients.
                let mut seen = std::collections::HashSet::new();
                headers
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.to_ascii_lowercase()))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            },
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn accepts_what_aws_signs(case in case()) {
        let sent = sign_with_aws(&case);
        prop_assert_eq!(check(&case, &sent, SECRET, &case.body), Ok(()), "{:?}", case);
    }

    #[test]
    fn refuses_any_change(case in case(), which in 0..4usize) {
        let sent = sign_with_aws(&case);
        let refused = match which {
            0 => check(&case, &sent, "another secret", &case.body),
            1 => {
                let mut body = case.body.clone();
                body.push(b'!');
                check(&case, &sent, SECRET, &body)
            }
            2 => {
                let moved = Sent { path: format!("{}x", sent.path), query: sent.query.clone(), headers: sent.headers.clone() };
                check(&case, &moved, SECRET, &case.body)
            }
            _ => {
                let other = Case { method: if case.method == "GET" { "POST" } else { "GET" }, ..case.clone() };
                check(&other, &sent, SECRET, &case.body)
            }
        };
        prop_assert!(matches!(refused, Err(SigV4Error::SignatureDoesNotMatch { .. })), "{:?} {:?}", which, refused);
    }
}
