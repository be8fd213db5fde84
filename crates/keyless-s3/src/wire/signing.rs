//! What the server signed, for the body of a `SignatureDoesNotMatch`: the canonical request and
//! the string to sign of a SigV4 request (signed in the `Authorization` header or presigned in
//! the query), computed from the request as received the way s3s computes them before it
//! compares signatures, so that a client can set them beside its own. Neither the secret nor
//! the signature the client sent is part of them.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use keyless_sigv4::{Authorization, Credential, canonical_request, string_to_sign};

use super::kept::Kept;
use crate::params::query_value;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What the server signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    /// The canonical request.
    pub(crate) canonical_request: String,
    /// The string to sign (whose last line is the canonical request's hash).
    pub(crate) string_to_sign: String,
}

fn header<'a>(kept: &'a Kept, name: &str) -> Option<&'a str> {
    kept.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The access key a request was signed with: SigV4 or SigV2, in a header or in the query.
pub(crate) fn access_key_id(kept: &Kept) -> Option<String> {
    if let Some(auth) = header(kept, "authorization") {
        if auth.starts_with(ALGORITHM) {
            return Authorization::parse(auth)
                .ok()
                .map(|a| a.credential.access_key_id);
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split_once(':').map(|(key, _)| key.trim().to_owned());
        }
        return None;
    }
    let query = kept.uri.query();
    match query_value(query, "X-Amz-Credential") {
        Some(credential) => credential.split('/').next().map(str::to_owned),
        None => query_value(query, "AWSAccessKeyId").map(|key| key.into_owned()),
    }
}

/// The canonical request and string to sign of a SigV4 request, as the server computed them;
/// `None` for a request that is not SigV4 or whose signing parameters do not parse.
pub(crate) fn what_was_signed(kept: &Kept) -> Option<Signed> {
    let query = kept.uri.query();
    let (credential, amz_date, mut signed, payload) = match header(kept, "authorization") {
        Some(auth) => {
            let auth = Authorization::parse(auth).ok()?;
            let payload = header(kept, "x-amz-content-sha256")?.trim().to_owned();
            let date = header(kept, "x-amz-date")?.trim().to_owned();
            (auth.credential, date, auth.signed_headers, payload)
        }
        None if query_value(query, "X-Amz-Algorithm").as_deref() == Some(ALGORITHM) => {
            let credential = Credential::parse(&query_value(query, "X-Amz-Credential")?).ok()?;
            let date = query_value(query, "X-Amz-Date")?.into_owned();
            let signed = query_value(query, "X-Amz-SignedHeaders")?
                .split(';')
                .map(str::to_ascii_lowercase)
                .collect();
            (credential, date, signed, "UNSIGNED-PAYLOAD".to_owned())
        }
        None => return None,
    };
    signed.sort();
    signed.dedup();
    let mut headers: Vec<(&str, &str)> = kept
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    // HTTP/2 carries the host as the URI's authority; s3s signs it as `host`.
    if let (false, Some(authority)) = (
        kept.headers.contains_key(http::header::HOST),
        kept.uri.authority(),
    ) {
        headers.push(("host", authority.as_str()));
    }
    let canonical = canonical_request(
        kept.method.as_str(),
        kept.uri.path(),
        query.unwrap_or(""),
        &headers,
        &signed,
        &payload,
        credential.service == "s3",
    );
    let string_to_sign = string_to_sign(&amz_date, &credential.scope(), &canonical);
    Some(Signed {
        canonical_request: canonical,
        string_to_sign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(method: &str, uri: &str, headers: &[(&str, &str)]) -> Kept {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Kept::of(&request.body(()).unwrap())
    }

    /// The S3 API reference's worked example "GET Object" (Signature Version 4, header-based):
    /// its canonical request and string to sign, computed by the server's side.
    #[test]
    fn the_s3_documentation_example_get_object() {
        let request = kept(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                (
                    "x-amz-content-sha256",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ),
                ("x-amz-date", "20130524T000000Z"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                ),
            ],
        );
        let signed = what_was_signed(&request).unwrap();
        assert_eq!(
            signed.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            access_key_id(&request).as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
    }

    /// The S3 API reference's presigned example (GET test.txt for 86400 s): the signature the
    /// client sent is not part of what the server signed.
    #[test]
    fn the_s3_documentation_example_presigned() {
        let request = kept(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
            &[("host", "examplebucket.s3.amazonaws.com")],
        );
        let signed = what_was_signed(&request).unwrap();
        assert_eq!(
            signed.canonical_request,
            "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );
        assert!(!signed.canonical_request.contains("aeeed9bb"));
        assert_eq!(
            access_key_id(&request).as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
    }

    #[test]
    fn other_requests() {
        let v2 = kept("GET", "/b", &[("authorization", "AWS AKIAV2:c2lnbmF0dXJl")]);
        assert_eq!(access_key_id(&v2).as_deref(), Some("AKIAV2"));
        assert_eq!(what_was_signed(&v2), None);
        let v2_query = kept(
            "GET",
            "/b/k?AWSAccessKeyId=AKIAQ&Expires=1&Signature=x",
            &[],
        );
        assert_eq!(access_key_id(&v2_query).as_deref(), Some("AKIAQ"));
        let anonymous = kept("GET", "/b/k", &[]);
        assert_eq!(access_key_id(&anonymous), None);
        assert_eq!(what_was_signed(&anonymous), None);
    }
}
