//! The bound on request bodies that are read whole (XML: CompleteMultipartUpload, DeleteObjects,
//! CreateBucket's configuration, ACLs; JSON bucket policies), applied before s3s reads them.
//!
//! s3s 0.14 reads such a body through `http_body_util::Limited` with its
//! `xml_max_body_size` (20 MiB), but only recognizes its own limit error: the `Limited` one
//! becomes a 500 `InternalError`, logged at ERROR. So the front answers what S3 answers for a
//! request that is too big, `MaxMessageLengthExceeded` (400, "Your request was too big."), from
//! the declared `Content-Length`, before a byte is read; and, as S3 does, a body of unknown
//! length (`Transfer-Encoding: chunked`) where one is read whole is `MissingContentLength`.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

use http::{Method, header};
use s3s::{S3Error, S3ErrorCode};

use super::errors::aws_error;
use super::kept::Kept;

/// The largest body read whole: s3s's `xml_max_body_size`, which Keyless keeps at its default
/// (a test holds the two together). The largest real ones, a CompleteMultipartUpload of 10,000
/// parts or a DeleteObjects of 1,000 keys of 1,024 bytes, are near 1 MiB.
pub(crate) const WHOLE_BODY_LIMIT: u64 = 20 * 1024 * 1024;

/// The subresources of an object whose PUT body is XML, not the object's bytes.
const OBJECT_XML_SUBRESOURCES: [&str; 4] = ["acl", "tagging", "retention", "legal-hold"];

/// Whether s3s reads the body of the request whole (see the file's comment). The streamed
/// ones are the object uploads (PutObject, UploadPart; CopyObject has no body) and browser
/// form uploads (POST to a bucket, `multipart/form-data`).
fn read_whole(kept: &Kept, has_key: bool) -> bool {
    let query = kept.uri.query().unwrap_or_default();
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    match kept.method {
        Method::PUT if has_key => OBJECT_XML_SUBRESOURCES.iter().any(|s| has(s)),
        Method::PUT => true,
        Method::POST => has_key || !super::form::is_form(&kept.method, &kept.headers),
        _ => false,
    }
}

/// The refusal of a body too big to be read whole, if it is one.
pub(super) fn check(kept: &Kept, has_key: bool) -> Result<(), S3Error> {
    if !read_whole(kept, has_key) {
        return Ok(());
    }
    let length = kept
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) if n > WHOLE_BODY_LIMIT => Err(aws_error(S3ErrorCode::MaxMessageLengthExceeded)),
        Some(_) => Ok(()),
        None if kept.headers.contains_key(header::TRANSFER_ENCODING) => {
            let mut e = aws_error(S3ErrorCode::MissingContentLength);
            e.set_status_code(http::StatusCode::LENGTH_REQUIRED);
            Err(e)
        }
        None => Ok(()),
    }
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

    fn code(method: &str, uri: &str, has_key: bool, headers: &[(&str, &str)]) -> Option<String> {
        check(&kept(method, uri, headers), has_key)
            .err()
            .map(|e| e.code().as_str().to_owned())
    }

    #[test]
    fn the_limit_is_s3ss() {
        assert_eq!(
            s3s::config::S3Config::default().xml_max_body_size as u64,
            WHOLE_BODY_LIMIT
        );
    }

    #[test]
    fn big_xml_bodies_are_too_big_and_uploads_are_not() {
        let big = [("content-length", "262144000")];
        let fine = [("content-length", "20971520")];
        for (method, uri, has_key) in [
            ("POST", "/b/k?uploadId=x", true),
            ("POST", "/b?delete", false),
            ("PUT", "/b", false),
            ("PUT", "/b?policy", false),
            ("PUT", "/b/k?tagging", true),
            ("PUT", "/b/k?acl=", true),
        ] {
            assert_eq!(
                code(method, uri, has_key, &big).as_deref(),
                Some("MaxMessageLengthExceeded"),
                "{method} {uri}"
            );
            assert_eq!(code(method, uri, has_key, &fine), None, "{method} {uri}");
        }
        for (method, uri, has_key) in [
            ("PUT", "/b/k", true),
            ("PUT", "/b/k?partNumber=1&uploadId=x", true),
            ("GET", "/b/k", true),
        ] {
            assert_eq!(code(method, uri, has_key, &big), None, "{method} {uri}");
        }
        let form = [
            ("content-length", "262144000"),
            ("content-type", "multipart/form-data; boundary=x"),
        ];
        assert_eq!(code("POST", "/b", false, &form), None);
    }

    #[test]
    fn a_whole_body_of_unknown_length_is_refused() {
        let chunked = [("transfer-encoding", "chunked")];
        let e = check(&kept("POST", "/b/k?uploadId=x", &chunked), true).unwrap_err();
        assert_eq!(e.code().as_str(), "MissingContentLength");
        assert_eq!(e.status_code(), Some(http::StatusCode::LENGTH_REQUIRED));
        assert_eq!(code("PUT", "/b/k", true, &chunked), None);
        assert_eq!(code("POST", "/b/k?uploadId=x", true, &[]), None);
    }
}
