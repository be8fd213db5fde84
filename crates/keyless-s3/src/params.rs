//! Request parameters as s3s reads them, for the checks that look at a request before or
//! beside s3s (the authorizer, the presigned-URL limits, the error bodies): query-string
//! components decoded the same way, and what the query and headers say of how a request was
//! signed (`s3:authType`, `s3:signatureversion`).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use std::borrow::Cow;

use crate::actions::AuthType;

/// A query string component decoded the way s3s decodes it (form encoding), borrowed when
/// there is nothing to decode: a session token is hundreds of bytes, decoded on every request.
pub(crate) use keyless_types::encoding::form_decode as decode_component;

/// The first value of the query parameter `name`, decoded as s3s decodes it.
pub(crate) fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

/// What the access check reads from a query string: the session token and the parameters
/// that tell how the request was signed. Names are decoded (an encoded name must not hide a
/// parameter); of the values only the token's is, so that a presigned URL costs little more
/// than a signed header.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct QueryAuth {
    /// `X-Amz-Security-Token`, decoded.
    pub(crate) token: Option<String>,
    /// `X-Amz-Algorithm` is present: SigV4 in the query.
    pub(crate) algorithm: bool,
    /// `Signature` is present: SigV2 in the query.
    pub(crate) signature: bool,
}

impl QueryAuth {
    pub(crate) fn read(query: Option<&str>) -> Self {
        let mut found = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_component(name);
            if name.eq_ignore_ascii_case("X-Amz-Security-Token") {
                if found.token.is_none() {
                    found.token = Some(decode_component(value).into_owned());
                }
            } else if name.eq_ignore_ascii_case("X-Amz-Algorithm") {
                found.algorithm = true;
            } else if name.eq_ignore_ascii_case("Signature") {
                found.signature = true;
            }
        }
        found
    }

    /// How the request was signed, as `s3:authType` and `s3:signatureversion` say it.
    pub(crate) fn signing(
        &self,
        headers: &http::HeaderMap,
    ) -> (Option<AuthType>, Option<&'static str>) {
        match headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(a) if a.starts_with("AWS4-HMAC-SHA256") => {
                (Some(AuthType::Header), Some("AWS4-HMAC-SHA256"))
            }
            Some(a) if a.starts_with("AWS ") => (Some(AuthType::Header), Some("AWS")),
            _ if self.algorithm => (Some(AuthType::QueryString), Some("AWS4-HMAC-SHA256")),
            _ if self.signature => (Some(AuthType::QueryString), Some("AWS")),
            _ => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_and_the_token_are_decoded_like_s3s_does() {
        // Regression: an encoded name once hid a parameter from the check.
        let read = QueryAuth::read(Some(
            "X-Amz-%41lgorithm=AWS4-HMAC-SHA256&a+b=c+d&x-amz-security-token=ab%2Bc%3D%3D+",
        ));
        assert_eq!(
            read,
            QueryAuth {
                token: Some("ab+c== ".into()),
                algorithm: true,
                signature: false,
            }
        );
        let headers = http::HeaderMap::new();
        assert_eq!(
            read.signing(&headers),
            (Some(AuthType::QueryString), Some("AWS4-HMAC-SHA256"))
        );
        let v2 = QueryAuth::read(Some("AWSAccessKeyId=AKIA&Signature=x%2By&Expires=1"));
        assert_eq!(
            v2.signing(&headers),
            (Some(AuthType::QueryString), Some("AWS"))
        );
        assert_eq!(QueryAuth::read(None), QueryAuth::default());
        assert_eq!(decode_component("plain"), Cow::Borrowed("plain"));
        // The same answers as the percent-encoding crate s3s decodes with.
        for raw in [
            "a%2Fb+c",
            "%",
            "%4",
            "%zz%41",
            "%C3%A9t%C3%A9",
            "%FF%FE+",
            "100%25",
        ] {
            let expected = percent_encoding::percent_decode_str(&raw.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            assert_eq!(decode_component(raw), expected, "{raw}");
        }
    }
}
