//! S3's error texts: AWS's message for every error code Keyless returns, and the elements AWS
//! adds to an error body (`BucketName`, `Key`, `AWSAccessKeyId`, what the server signed for a
//! `SignatureDoesNotMatch`, `RequestId`, `HostId`). One table; every S3 error body leaves
//! through [`complete`], whoever raised the error (s3s's parsers and signature checks, the
//! authorizer, the handlers, the store).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

use std::fmt::Write as _;

use keyless_types::RequestId;
use keyless_types::xml::escape;
use s3s::{S3Error, S3ErrorCode};

use super::kept::Kept;
use crate::params::query_value;

/// An element AWS adds to the body of an error of some code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// `BucketName`: the bucket the request named.
    BucketName,
    /// `Key`: the key the request named.
    Key,
    /// `Resource`: `/bucket/key`.
    Resource,
    /// `AWSAccessKeyId`: the key the request was signed with.
    AccessKeyId,
    /// `AWSAccessKeyId`, `StringToSign`, `StringToSignBytes`, `CanonicalRequest` and
    /// `CanonicalRequestBytes`: what the server signed (never the secret, nor the signature
    /// the client sent).
    Signing,
    /// `UploadId`: the multipart upload the request named.
    UploadId,
    /// `Method`: the request's method.
    Method,
}

/// What AWS says of one error code.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// AWS's message.
    message: &'static str,
    /// Whether a message the error was raised with is kept: for codes whose text on AWS
    /// depends on the cause (`InvalidArgument`, `AccessDenied`'s "Request has expired"). Any
    /// other message is replaced by AWS's (and logged).
    keeps_given: bool,
    /// The elements AWS adds after the message.
    details: &'static [Detail],
}

/// The table: AWS's text and elements for every code Keyless returns (a test checks that
/// every code raised in this crate and by the parts of s3s Keyless uses is here).
fn known(code: &str) -> Option<Known> {
    use Detail::*;
    let (message, keeps_given, details): (&'static str, bool, &'static [Detail]) = match code {
        "AccessControlListNotSupported" => ("The bucket does not allow ACLs", false, &[]),
        // A preflight S3 cannot allow; the message says why (wire/cors.rs).
        "AccessForbidden" => ("CORSResponse: This CORS request is not allowed.", true, &[]),
        "AccessDenied" => ("Access Denied", true, &[]),
        "AuthorizationQueryParametersError" => (
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
            true,
            &[],
        ),
        "BadDigest" => (
            "The Content-MD5 you specified did not match what we received.",
            true,
            &[],
        ),
        "BucketAlreadyOwnedByYou" => (
            "Your previous request to create the named bucket succeeded and you already own it.",
            false,
            &[BucketName],
        ),
        "BucketNotEmpty" => (
            "The bucket you tried to delete is not empty",
            false,
            &[BucketName],
        ),
        "EntityTooLarge" => (
            "Your proposed upload exceeds the maximum allowed size",
            false,
            &[],
        ),
        "EntityTooSmall" => (
            "Your proposed upload is smaller than the minimum allowed size",
            false,
            &[],
        ),
        "ExpiredToken" => ("The provided token has expired.", false, &[]),
        "IncompleteBody" => (
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
            false,
            &[],
        ),
        "InternalError" => (
            "We encountered an internal error. Please try again.",
            false,
            &[],
        ),
        "InvalidAccessKeyId" => (
            "The AWS Access Key Id you provided does not exist in our records.",
            false,
            &[AccessKeyId],
        ),
        "InvalidArgument" => ("Invalid Argument", true, &[]),
        "InvalidBucketName" => ("The specified bucket is not valid.", false, &[BucketName]),
        "InvalidDigest" => ("The Content-MD5 you specified is not valid.", false, &[]),
        "InvalidPart" => (
            "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
            false,
            &[UploadId],
        ),
        "InvalidPartOrder" => (
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
            false,
            &[UploadId],
        ),
        "InvalidPolicyDocument" => (
            "The content of the form does not meet the conditions specified in the policy document.",
            true,
            &[],
        ),
        "InvalidPartNumber" => ("The requested partnumber is not satisfiable", false, &[]),
        "InvalidRange" => ("The requested range is not satisfiable", false, &[]),
        // S3 says which limit the tags broke (tags.rs).
        "InvalidTag" => (
            "The tag provided was not a valid tag. This error can occur if the tag did not pass input validation.",
            true,
            &[],
        ),
        "InvalidRequest" => ("Invalid Request", true, &[]),
        "InvalidToken" => (
            "The provided token is malformed or otherwise invalid.",
            false,
            &[],
        ),
        "InvalidURI" => ("Couldn't parse the specified URI.", false, &[]),
        "KeyTooLongError" => ("Your key is too long", false, &[]),
        "MalformedPolicy" => (
            "Policies must be valid JSON and the first byte must be '{'",
            true,
            &[],
        ),
        "MalformedPOSTRequest" => (
            "The body of your POST request is not well-formed multipart/form-data.",
            false,
            &[],
        ),
        "MalformedXML" => (
            "The XML you provided was not well-formed or did not validate against our published schema",
            false,
            &[],
        ),
        "MaxMessageLengthExceeded" => ("Your request was too big.", false, &[]),
        "MetadataTooLarge" => (
            "Your metadata headers exceed the maximum allowed metadata size.",
            false,
            &[],
        ),
        "MethodNotAllowed" => (
            "The specified method is not allowed against this resource.",
            false,
            &[Method],
        ),
        "MissingContentLength" => (
            "You must provide the Content-Length HTTP header.",
            false,
            &[],
        ),
        "MissingRequestBodyError" => ("Request Body is empty", false, &[]),
        "NoSuchBucket" => ("The specified bucket does not exist", false, &[BucketName]),
        "NoSuchBucketPolicy" => ("The bucket policy does not exist", false, &[BucketName]),
        "NoSuchCORSConfiguration" => (
            "The CORS configuration does not exist",
            false,
            &[BucketName],
        ),
        "NoSuchKey" => ("The specified key does not exist.", false, &[Key, Resource]),
        "NoSuchLifecycleConfiguration" => (
            "The lifecycle configuration does not exist",
            false,
            &[BucketName],
        ),
        "NoSuchPublicAccessBlockConfiguration" => (
            "The public access block configuration was not found",
            false,
            &[BucketName],
        ),
        "NoSuchTagSet" => ("The TagSet does not exist", false, &[BucketName]),
        "NoSuchVersion" => ("The specified version does not exist.", false, &[Key]),
        "NoSuchUpload" => (
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            false,
            &[UploadId],
        ),
        "NoSuchWebsiteConfiguration" => (
            "The specified bucket does not have a website configuration",
            false,
            &[BucketName],
        ),
        "NotImplemented" => (
            "A header you provided implies functionality that is not implemented",
            true,
            &[],
        ),
        "NotModified" => ("Not Modified", false, &[]),
        "PreconditionFailed" => (
            "At least one of the pre-conditions you specified did not hold",
            false,
            &[],
        ),
        "InvalidBucketState" => (
            "The request is not valid with the current state of the bucket.",
            true,
            &[BucketName],
        ),
        "NoSuchObjectLockConfiguration" => (
            "The specified object does not have a ObjectLock configuration",
            false,
            &[],
        ),
        "ObjectLockConfigurationNotFoundError" => (
            "Object Lock configuration does not exist for this bucket",
            false,
            &[BucketName],
        ),
        "ReplicationConfigurationNotFoundError" => (
            "The replication configuration was not found",
            false,
            &[BucketName],
        ),
        "RequestTimeout" => (
            "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
            false,
            &[],
        ),
        "RequestTimeTooSkewed" => (
            "The difference between the request time and the current time is too large.",
            false,
            &[],
        ),
        "ServerSideEncryptionConfigurationNotFoundError" => (
            "The server side encryption configuration was not found",
            false,
            &[BucketName],
        ),
        "SignatureDoesNotMatch" => (
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            false,
            &[Signing],
        ),
        "ServiceUnavailable" => ("Service is unable to handle request.", false, &[]),
        "SlowDown" => ("Please reduce your request rate.", false, &[]),
        "XAmzContentSHA256Mismatch" => (
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            false,
            &[],
        ),
        _ => return None,
    };
    Some(Known {
        message,
        keeps_given,
        details,
    })
}

/// AWS's message for an error code, if Keyless knows the code.
pub fn aws_message(code: &str) -> Option<&'static str> {
    known(code).map(|k| k.message)
}

/// An error of `code` with AWS's message for it.
pub fn aws_error(code: S3ErrorCode) -> S3Error {
    match aws_message(code.as_str()) {
        Some(message) => S3Error::with_message(code, message),
        None => S3Error::new(code),
    }
}

/// The children of an S3 error body (`<Error><Code>..</Code>...</Error>`), in order, with
/// their text; `None` for anything else (another root, nested elements, not XML).
pub(super) fn parse(body: &[u8]) -> Option<Vec<(String, String)>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let (mut depth, mut fields) = (0usize, Vec::new());
    let (mut name, mut text) = (String::new(), String::new());
    let mut closed = false;
    loop {
        match reader.read_event().ok()? {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Start(e) => {
                depth += 1;
                let tag = std::str::from_utf8(e.name().as_ref()).ok()?.to_owned();
                match depth {
                    1 if tag == "Error" && !closed => {}
                    2 => (name, text) = (tag, String::new()),
                    _ => return None,
                }
            }
            Event::Empty(e) if depth == 1 => {
                let tag = std::str::from_utf8(e.name().as_ref()).ok()?.to_owned();
                fields.push((tag, String::new()));
            }
            Event::Empty(_) => return None,
            Event::Text(t) if depth == 2 => text.push_str(&t.decode().ok()?),
            Event::Text(t) if t.decode().ok()?.trim().is_empty() => {}
            Event::CData(t) if depth == 2 => text.push_str(&t.decode().ok()?),
            Event::GeneralRef(r) if depth == 2 => match r.resolve_char_ref().ok()? {
                Some(c) => text.push(c),
                None => text.push_str(quick_xml::escape::resolve_predefined_entity(
                    &r.decode().ok()?,
                )?),
            },
            Event::End(_) => {
                if depth == 2 {
                    fields.push((std::mem::take(&mut name), std::mem::take(&mut text)));
                }
                closed |= depth == 1;
                depth = depth.checked_sub(1)?;
            }
            Event::Eof if closed && depth == 0 => return Some(fields),
            _ => return None,
        }
    }
}

/// Space-separated hex bytes, as AWS writes `StringToSignBytes`.
fn spaced_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for (i, b) in text.bytes().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What the completion knows of the request.
pub(crate) struct Request<'a> {
    /// The request as received.
    pub(crate) kept: &'a Kept,
    /// The bucket and key it names.
    pub(crate) resource: (Option<String>, Option<String>),
    /// Its id.
    pub(crate) id: &'a RequestId,
    /// Its host id (`x-amz-id-2`).
    pub(crate) host_id: &'a str,
}

/// The body of an S3 error completed as AWS writes it: AWS's message for the code (a message
/// given with the error is kept only where AWS's own depends on the cause), the elements AWS
/// adds for that code, and `RequestId` and `HostId`. `None` when `body` is no S3 error body.
pub(crate) fn complete(body: &[u8], request: &Request<'_>) -> Option<String> {
    let fields = parse(body)?;
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let code = field("Code")?;
    let given = field("Message").filter(|m| !m.is_empty());
    let known = known(code);
    let message = match (known, given) {
        (Some(k), Some(given)) if k.keeps_given => given,
        (Some(k), given) => {
            if let Some(given) = given.filter(|g| *g != k.message) {
                tracing::debug!(request_id = %request.id, code, %given, "error message replaced by AWS's");
            }
            k.message
        }
        (None, given) => {
            tracing::warn!(code, "an S3 error code without AWS's text in the table");
            given.unwrap_or_default()
        }
    };
    let mut out = String::with_capacity(256 + body.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
    let mut element = |name: &str, text: &str| {
        let _ = write!(out, "<{name}>{}</{name}>", escape(text));
    };
    element("Code", code);
    element("Message", message);
    let (bucket, key) = &request.resource;
    for detail in known.map_or(&[][..], |k| k.details) {
        match detail {
            Detail::BucketName => {
                if let Some(bucket) = bucket {
                    element("BucketName", bucket);
                }
            }
            Detail::Key => {
                if let Some(key) = key {
                    element("Key", key);
                }
            }
            Detail::Resource => {
                let path = match (bucket, key) {
                    (Some(b), Some(k)) => format!("/{b}/{k}"),
                    (Some(b), None) => format!("/{b}"),
                    _ => "/".to_owned(),
                };
                element("Resource", &path);
            }
            Detail::AccessKeyId => {
                if let Some(key) = super::signing::access_key_id(request.kept) {
                    element("AWSAccessKeyId", &key);
                }
            }
            Detail::Signing => {
                if let Some(key) = super::signing::access_key_id(request.kept) {
                    element("AWSAccessKeyId", &key);
                }
                if let Some(signed) = super::signing::what_was_signed(request.kept) {
                    element("StringToSign", &signed.string_to_sign);
                    element("StringToSignBytes", &spaced_hex(&signed.string_to_sign));
                    element("CanonicalRequest", &signed.canonical_request);
                    element(
                        "CanonicalRequestBytes",
                        &spaced_hex(&signed.canonical_request),
                    );
                }
            }
            Detail::UploadId => {
                if let Some(id) = query_value(request.kept.uri.query(), "uploadId") {
                    element("UploadId", &id);
                }
            }
            Detail::Method => element("Method", request.kept.method.as_str()),
        }
    }
    // Whatever else the error carried, then the ids.
    for (name, text) in &fields {
        if !matches!(name.as_str(), "Code" | "Message" | "RequestId" | "HostId") {
            element(name, text);
        }
    }
    element("RequestId", request.id.as_str());
    element("HostId", request.host_id);
    out.push_str("</Error>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes s3s raises on the paths Keyless uses (request parsing, signature checks,
    /// bodies, the operations it does not implement), from s3s 0.14's source.
    const S3S_CODES: [&str; 22] = [
        "AccessDenied",
        "EntityTooLarge",
        "EntityTooSmall",
        "IncompleteBody",
        "InternalError",
        "InvalidAccessKeyId",
        "InvalidArgument",
        "InvalidBucketName",
        "InvalidPolicyDocument",
        "InvalidRange",
        "InvalidRequest",
        "InvalidURI",
        "KeyTooLongError",
        "MalformedPOSTRequest",
        "MalformedXML",
        "MaxMessageLengthExceeded",
        "MethodNotAllowed",
        "MissingContentLength",
        "MissingRequestBodyError",
        "NotImplemented",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    ];

    /// Every code named in this crate's source (`s3_error!(Code`, `S3ErrorCode::Code`,
    /// `Custom("Code"`).
    fn codes_in_this_crate() -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut sources = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut sources,
        );
        let mut codes = Vec::new();
        for source in &sources {
            // The code itself, without its tests and comments.
            let code_only: String = source
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for marker in ["s3_error!(", "S3ErrorCode::", "Custom(\""] {
                for (at, _) in code_only.match_indices(marker) {
                    let rest = code_only[at + marker.len()..].trim_start();
                    let code: String = rest
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    if code.starts_with(|c: char| c.is_ascii_uppercase()) && code != "Custom" {
                        codes.push(code);
                    }
                }
            }
        }
        codes.sort();
        codes.dedup();
        codes
    }

    #[test]
    fn every_code_keyless_returns_has_aws_text() {
        let mut codes = codes_in_this_crate();
        assert!(codes.iter().any(|c| c == "NoSuchKey"), "{codes:?}");
        codes.extend(S3S_CODES.iter().map(|c| (*c).to_owned()));
        // The code Keyless answers browser-form POSTs with, before s3s.
        codes.push("NotImplemented".into());
        let missing: Vec<&String> = codes.iter().filter(|c| known(c).is_none()).collect();
        assert!(missing.is_empty(), "codes without AWS's text: {missing:?}");
    }

    #[test]
    fn the_table_has_the_texts_clients_print() {
        for (code, message) in [
            (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ),
            ("InvalidBucketName", "The specified bucket is not valid."),
            (
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            ("AccessDenied", "Access Denied"),
            ("NoSuchKey", "The specified key does not exist."),
            ("NoSuchBucket", "The specified bucket does not exist"),
            (
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            ),
        ] {
            assert_eq!(aws_message(code), Some(message), "{code}");
        }
        assert_eq!(
            aws_error(S3ErrorCode::NoSuchKey).message(),
            aws_message("NoSuchKey")
        );
        assert_eq!(aws_message("NoSuchThing"), None);
    }

    #[test]
    fn error_bodies_are_read_as_s3s_writes_them() {
        let mut e = S3Error::with_message(S3ErrorCode::InvalidArgument, "a < b & \"c\" 'd'");
        e.set_request_id("old");
        let body = e.to_http_response().unwrap().into_body().bytes().unwrap();
        assert_eq!(
            parse(&body).unwrap(),
            [
                ("Code".to_owned(), "InvalidArgument".to_owned()),
                ("Message".to_owned(), "a < b & \"c\" 'd'".to_owned()),
                ("RequestId".to_owned(), "old".to_owned()),
            ]
        );
        let bare = S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
        let body = bare
            .to_http_response()
            .unwrap()
            .into_body()
            .bytes()
            .unwrap();
        assert_eq!(
            parse(&body).unwrap(),
            [("Code".to_owned(), "SignatureDoesNotMatch".to_owned())]
        );
        assert_eq!(
            parse(b"<Error>\n  <Code>X&#65;&amp;</Code>\n  <Empty/>\n</Error>\n").unwrap(),
            [
                ("Code".to_owned(), "XA&".to_owned()),
                ("Empty".to_owned(), String::new())
            ]
        );
        // Not an error body: left as it is.
        for other in [
            &b"<ListBucketResult><Name>b</Name></ListBucketResult>"[..],
            b"<Error><Code>A</Code><Nested><X/></Nested></Error>",
            b"<Error><Code>A</Code>",
            b"<Error><Code>A</Code></Error><Error/>",
            b"not xml",
            b"",
        ] {
            assert_eq!(parse(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    fn kept(method: &str, uri: &str, headers: &[(&str, &str)]) -> Kept {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Kept::of(&request.body(()).unwrap())
    }

    fn completed(e: S3Error, kept: &Kept, resource: (Option<&str>, Option<&str>)) -> String {
        let body = e.to_http_response().unwrap().into_body().bytes().unwrap();
        let id = RequestId::new("1f4d2c3b-0000-4000-8000-00000000abcd");
        let request = Request {
            kept,
            resource: (resource.0.map(Into::into), resource.1.map(Into::into)),
            id: &id,
            host_id: "aG9zdA==",
        };
        complete(&body, &request).unwrap()
    }

    #[test]
    fn errors_get_aws_messages_details_and_ids() {
        let get = kept("GET", "/bkt/a%20b", &[("host", "127.0.0.1:9000")]);
        let body = completed(
            s3s::s3_error!(NoSuchKey, "anything"),
            &get,
            (Some("bkt"), Some("a b")),
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>a b</Key><Resource>/bkt/a b</Resource><RequestId>1f4d2c3b-0000-4000-8000-00000000abcd</RequestId><HostId>aG9zdA==</HostId></Error>"
        );
        // s3s's InvalidBucketName has no message at all.
        let bad = kept("PUT", "/Not_Valid", &[]);
        let body = completed(
            S3Error::new(S3ErrorCode::InvalidBucketName),
            &bad,
            (Some("Not_Valid"), None),
        );
        assert!(
            body.contains("<Code>InvalidBucketName</Code><Message>The specified bucket is not valid.</Message><BucketName>Not_Valid</BucketName><RequestId>"),
            "{body}"
        );
        // A message that depends on the cause is kept.
        let body = completed(
            s3s::s3_error!(AccessDenied, "Request has expired"),
            &get,
            (Some("bkt"), Some("a b")),
        );
        assert!(
            body.contains("<Message>Request has expired</Message><RequestId>"),
            "{body}"
        );
        let upload = kept("PUT", "/bkt/k?partNumber=1&uploadId=abc%2Bd", &[]);
        let body = completed(
            S3Error::new(S3ErrorCode::NoSuchUpload),
            &upload,
            (Some("bkt"), Some("k")),
        );
        assert!(body.contains("<UploadId>abc+d</UploadId>"), "{body}");
        let body = completed(
            S3Error::new(S3ErrorCode::MethodNotAllowed),
            &upload,
            (None, None),
        );
        assert!(body.contains("<Method>PUT</Method>"), "{body}");
        // A code outside the table keeps what it had.
        let body = completed(
            S3Error::with_message(S3ErrorCode::Custom("Odd".into()), "odd"),
            &get,
            (None, None),
        );
        assert!(
            body.contains("<Code>Odd</Code><Message>odd</Message>"),
            "{body}"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let signed = kept(
            "GET",
            "/",
            &[(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/20261125/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
            )],
        );
        let body = completed(
            s3s::s3_error!(InvalidAccessKeyId, "x"),
            &signed,
            (None, None),
        );
        assert!(
            body.contains("<Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>AKIAUNKNOWN</AWSAccessKeyId><RequestId>"),
            "{body}"
        );
    }

    #[test]
    fn spaced_hex_is_awss_spelling() {
        assert_eq!(spaced_hex("AWS4\n"), "41 57 53 34 0a");
        assert_eq!(spaced_hex(""), "");
    }
}
