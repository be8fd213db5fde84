//! The headers S3 stores with an object and returns on GET and HEAD (`Cache-Control`,
//! `Content-Disposition`, `Content-Encoding`, `Content-Language`, `Expires`), and the
//! `response-*` query parameters that override them (and `Content-Type`) in one response.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax>

use s3s::dto::{Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};

use crate::store::ContentHeaders;

/// The stored headers of a PUT, CreateMultipartUpload or copy with `REPLACE`.
pub(super) struct HeadersIn {
    pub(super) cache_control: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) expires: Option<Timestamp>,
}

impl HeadersIn {
    /// The headers as the store keeps them: `Expires` as an HTTP date, `Content-Encoding`
    /// without the `aws-chunked` of a streaming upload (which S3 does not store).
    pub(super) fn stored(self) -> ContentHeaders {
        let encoding = self.content_encoding.and_then(|e| {
            let kept: Vec<&str> = e
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            (!kept.is_empty()).then(|| kept.join(", "))
        });
        ContentHeaders {
            cache_control: self.cache_control,
            content_disposition: self.content_disposition,
            content_encoding: encoding,
            content_language: self.content_language,
            expires: self.expires.as_ref().and_then(http_date),
        }
    }
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// The `response-*` overrides of a GET or HEAD.
#[derive(Default)]
pub(super) struct Overrides {
    pub(super) cache_control: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) expires: Option<Timestamp>,
}

/// What a GET or HEAD answers with: the stored headers, each replaced by its override.
pub(super) struct HeadersOut {
    pub(super) cache_control: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) expires: Option<Timestamp>,
}

impl Overrides {
    fn any(&self) -> bool {
        self.cache_control.is_some()
            || self.content_disposition.is_some()
            || self.content_encoding.is_some()
            || self.content_language.is_some()
            || self.content_type.is_some()
            || self.expires.is_some()
    }

    /// S3 takes overrides only on signed requests (a header or a presigned URL): an anonymous
    /// request with one is refused, so that a public object cannot be served under another
    /// type by whoever writes a link to it.
    pub(super) fn check(&self, anonymous: bool) -> S3Result<()> {
        if anonymous && self.any() {
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        Ok(())
    }

    /// The response's headers for an object with `content_type` and `stored`.
    pub(super) fn apply(self, content_type: Option<&str>, stored: &ContentHeaders) -> HeadersOut {
        HeadersOut {
            cache_control: self.cache_control.or_else(|| stored.cache_control.clone()),
            content_disposition: self
                .content_disposition
                .or_else(|| stored.content_disposition.clone()),
            content_encoding: self
                .content_encoding
                .or_else(|| stored.content_encoding.clone()),
            content_language: self
                .content_language
                .or_else(|| stored.content_language.clone()),
            content_type: self
                .content_type
                .or_else(|| content_type.map(str::to_owned)),
            expires: self.expires.or_else(|| {
                stored
                    .expires
                    .as_deref()
                    .and_then(|e| Timestamp::parse(TimestampFormat::HttpDate, e).ok())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> Timestamp {
        Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT").unwrap()
    }

    #[test]
    fn stored_headers_keep_what_was_sent_but_aws_chunked() {
        let stored = HeadersIn {
            cache_control: Some("max-age=60".into()),
            content_disposition: Some("attachment; filename=\"a.txt\"".into()),
            content_encoding: Some("gzip,aws-chunked".into()),
            content_language: Some("de".into()),
            expires: Some(date()),
        }
        .stored();
        assert_eq!(stored.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(stored.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(
            stored.expires.as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        let only_chunked = HeadersIn {
            cache_control: None,
            content_disposition: None,
            content_encoding: Some("aws-chunked".into()),
            content_language: None,
            expires: None,
        }
        .stored();
        assert!(only_chunked.is_empty());
    }

    #[test]
    fn overrides_replace_stored_headers_and_need_a_signature() {
        let stored = ContentHeaders {
            cache_control: Some("no-cache".into()),
            content_language: Some("de".into()),
            expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..Default::default()
        };
        let none = Overrides::default();
        assert!(none.check(true).is_ok());
        let out = none.apply(Some("text/plain"), &stored);
        assert_eq!(out.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(out.content_type.as_deref(), Some("text/plain"));
        assert_eq!(out.expires, Some(date()));

        let overrides = Overrides {
            content_type: Some("image/png".into()),
            content_language: Some("fr".into()),
            ..Default::default()
        };
        assert_eq!(
            overrides.check(true).unwrap_err().code().as_str(),
            "InvalidRequest"
        );
        assert!(overrides.check(false).is_ok());
        let out = overrides.apply(Some("text/plain"), &stored);
        assert_eq!(out.content_type.as_deref(), Some("image/png"));
        assert_eq!(out.content_language.as_deref(), Some("fr"));
        assert_eq!(out.cache_control.as_deref(), Some("no-cache"));
    }
}
