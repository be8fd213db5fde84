//! Presigned URLs (SigV4 in the query string), checked before s3s sees them, as S3 checks them:
//! the six parameters, a well-formed credential and date, an expiry of one second to a week,
//! and a signature of 64 lowercase hex digits. What passes is verified by s3s; a URL signed
//! with temporary credentials then lives no longer than they do (the session token is checked
//! on every request).
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

use std::borrow::Cow;

use s3s::{S3Error, S3ErrorCode};

use crate::params::decode_component;

/// The longest a presigned URL may be valid: a week, in seconds.
pub const MAX_EXPIRES: u64 = 7 * 24 * 60 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parameters of a presigned URL, as S3 names them in its errors.
const PARAMETERS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
];

/// The first value of each presigned-URL parameter in `query`, names and values decoded as
/// s3s decodes them.
fn parameters(query: &str) -> [Option<Cow<'_, str>>; 6] {
    let mut found: [Option<Cow<'_, str>>; 6] = Default::default();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name);
        if let Some(i) = PARAMETERS.iter().position(|p| *p == name)
            && found[i].is_none()
        {
            found[i] = Some(decode_component(value));
        }
    }
    found
}

fn query_error(message: &'static str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AuthorizationQueryParametersError, message)
}

/// Refuses a SigV4 presigned URL that S3 would refuse before checking its signature: missing
/// parameters, a malformed credential or date, an expiry that is not a number, negative, zero
/// (expired at once) or over a week, and a signature that cannot be one. A query that is not a
/// SigV4 presigned URL (no `X-Amz-Algorithm=AWS4-HMAC-SHA256` and no `X-Amz-Signature`) is
/// left to s3s, and so is everything S3 checks later (expiry against the clock, the key, the
/// signature itself).
pub fn check(query: Option<&str>) -> Result<(), S3Error> {
    let Some(query) = query else { return Ok(()) };
    let [
        algorithm,
        credential,
        signature,
        date,
        signed_headers,
        expires,
    ] = parameters(query);
    match algorithm.as_deref() {
        Some(ALGORITHM) => {}
        None if signature.is_some() => {}
        _ => return Ok(()),
    }
    let (Some(_), Some(credential), Some(signature), Some(date), Some(_), Some(expires)) = (
        algorithm,
        credential,
        signature,
        date,
        signed_headers,
        expires,
    ) else {
        return Err(query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    if keyless_sigv4::Credential::parse(&credential).is_err() {
        return Err(query_error(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        ));
    }
    if keyless_types::time::parse_amz_date(&date).is_none() {
        return Err(query_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    check_expires(&expires)?;
    if !is_signature(&signature) {
        // S3 computes the signature and finds that it differs; the body says what it signed.
        return Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch));
    }
    Ok(())
}

/// `X-Amz-Expires`: whole seconds, from 1 to a week.
fn check_expires(expires: &str) -> Result<(), S3Error> {
    let (negative, digits) = match expires.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, expires),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(query_error("X-Amz-Expires should be a number"));
    }
    let zero = digits.bytes().all(|b| b == b'0');
    if negative && !zero {
        return Err(query_error("X-Amz-Expires must be non-negative"));
    }
    if zero {
        // Valid for no time at all: expired when it arrives.
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Request has expired",
        ));
    }
    // Digits past u64 are more than a week too.
    if digits.parse::<u64>().map_or(true, |n| n > MAX_EXPIRES) {
        return Err(query_error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds",
        ));
    }
    Ok(())
}

/// A SigV4 signature: 64 lowercase hex digits.
fn is_signature(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &str = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn url(expires: &str, signature: &str) -> String {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
        )
    }

    fn refusal(query: &str) -> (String, Option<String>, u16) {
        let e = check(Some(query)).expect_err(query);
        (
            e.code().as_str().to_owned(),
            e.message().map(str::to_owned),
            e.status_code().map_or(0, |s| s.as_u16()),
        )
    }

    #[test]
    fn the_s3_documentation_example_passes() {
        // "Authenticating Requests: Using Query Parameters", the GET of test.txt.
        assert!(check(Some(&url("86400", SIGNATURE))).is_ok());
        assert!(check(Some(&url("604800", SIGNATURE))).is_ok());
        assert!(check(Some(&url("1", SIGNATURE))).is_ok());
    }

    #[test]
    fn other_queries_are_left_to_s3s() {
        assert!(check(None).is_ok());
        assert!(check(Some("list-type=2&prefix=a")).is_ok());
        // SigV2 presigned URLs and other algorithms are s3s's to refuse or verify.
        assert!(check(Some("AWSAccessKeyId=AKIA&Expires=1&Signature=abc")).is_ok());
        assert!(
            check(Some(
                "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Expires=9999999"
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_week_at_most() {
        let week = (
            "AuthorizationQueryParametersError".to_owned(),
            Some("X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds".to_owned()),
            400,
        );
        assert_eq!(refusal(&url("604801", SIGNATURE)), week);
        assert_eq!(refusal(&url("31536000", SIGNATURE)), week);
        assert_eq!(refusal(&url("99999999999999999999999", SIGNATURE)), week);
    }

    #[test]
    fn expiry_that_is_not_a_positive_number() {
        let number = |m: &str| {
            (
                "AuthorizationQueryParametersError".to_owned(),
                Some(m.to_owned()),
                400,
            )
        };
        for bad in ["", "abc", "1.5", "+5", "1e3", "-", "-x"] {
            assert_eq!(
                refusal(&url(bad, SIGNATURE)),
                number("X-Amz-Expires should be a number"),
                "{bad:?}"
            );
        }
        assert_eq!(
            refusal(&url("-1", SIGNATURE)),
            number("X-Amz-Expires must be non-negative")
        );
        for zero in ["0", "000", "-0"] {
            assert_eq!(
                refusal(&url(zero, SIGNATURE)),
                (
                    "AccessDenied".to_owned(),
                    Some("Request has expired".to_owned()),
                    403
                )
            );
        }
    }

    #[test]
    fn a_signature_that_cannot_be_one_does_not_match() {
        for bad in [
            "deadbeef",
            &SIGNATURE.to_ascii_uppercase(),
            &format!("{SIGNATURE}0"),
            &SIGNATURE.replace('a', "g"),
            "",
        ] {
            assert_eq!(
                refusal(&url("3600", bad)),
                ("SignatureDoesNotMatch".to_owned(), None, 403),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parameters_and_their_shapes() {
        let all = url("3600", SIGNATURE);
        let missing = "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.";
        for name in &PARAMETERS[1..] {
            let without: Vec<&str> = all
                .split('&')
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .collect();
            let (code, message, status) = refusal(&without.join("&"));
            assert_eq!(
                (code.as_str(), message.as_deref(), status),
                ("AuthorizationQueryParametersError", Some(missing), 400),
                "{name}"
            );
        }
        // A signature without the algorithm is a presigned URL missing a parameter.
        let no_algorithm = all.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256&", "");
        assert_eq!(refusal(&no_algorithm).1.as_deref(), Some(missing));
        let credential = all.replace("%2Fus-east-1", "");
        assert_eq!(
            refusal(&credential).1.as_deref(),
            Some(
                "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."
            )
        );
        let date = all.replace("20130524T000000Z", "2013-05-24");
        assert_eq!(
            refusal(&date).1.as_deref(),
            Some("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        );
        // Names are decoded, as s3s decodes them: an encoded name is the same parameter.
        let encoded = url("31536000", SIGNATURE).replace("X-Amz-Expires", "X-Amz-%45xpires");
        assert_eq!(refusal(&encoded).0, "AuthorizationQueryParametersError");
    }
}
