//! The canonical request: method, URI, query, headers, signed header names and payload hash,
//! each in the one spelling both sides agree on.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html#create-canonical-request>

use keyless_types::encoding::{percent_decode, uri_encode};

/// The canonical URI. Services other than S3 normalize the path (`.`/`..` segments, empty
/// segments) and encode the already-encoded path once more; S3 encodes the decoded path once.
fn canonical_uri(raw_path: &str, s3: bool) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    if s3 {
        return uri_encode(&percent_decode(path), true);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(&normalized, true)
}

/// The canonical query string: every parameter decoded, encoded again, sorted by name then
/// value. `X-Amz-Signature` (of a presigned URL) is left out.
fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .filter(|(k, _)| k != "X-Amz-Signature")
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A header value with its ends trimmed and inner runs of spaces folded to one.
fn trim_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request of `method raw_path?raw_query` with `headers` (name and value, in any
/// case and order, repeated names allowed), `signed_headers` (lowercase, sorted) and the hex
/// `payload_hash` (or `UNSIGNED-PAYLOAD`).
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(&str, &str)],
    signed_headers: &[String],
    payload_hash: &str,
    s3: bool,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(raw_path, s3));
    out.push('\n');
    out.push_str(&canonical_query(raw_query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_value(v))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(canonical_uri("", false), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/", false), "/a/c/d/");
        assert_eq!(canonical_uri("/a%20b", false), "/a%2520b");
        assert_eq!(canonical_uri("/a%20b", true), "/a%20b");
        assert_eq!(canonical_uri("/a b", true), "/a%20b");
    }

    #[test]
    fn queries_are_sorted_and_reencoded() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("x=a+b&y=%7e"), "x=a%2Bb&y=~");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&X-Amz-Date=1"),
            "X-Amz-Date=1"
        );
    }

    /// The worked example of the AWS General Reference ("Example: GET request" of the IAM
    /// ListUsers call signed on 2015-08-30).
    #[test]
    fn aws_documentation_example() {
        let headers = [
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let signed = [
            "content-type".to_owned(),
            "host".to_owned(),
            "x-amz-date".to_owned(),
        ];
        let canonical = canonical_request(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            &headers,
            &signed,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            false,
        );
        assert_eq!(
            canonical,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
