//! Percent-encoding: SigV4's `UriEncode` (RFC 3986's unreserved characters kept, every other
//! byte `%XX` in upper case), and the decoding of `%XX` escapes, plain or with the form rule
//! that `+` is a space (query strings, `application/x-www-form-urlencoded` bodies).
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
//! (`UriEncode`), <https://url.spec.whatwg.org/#application/x-www-form-urlencoded>.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::hex::digit;

/// SigV4's `UriEncode`: `A-Z a-z 0-9 - . _ ~` kept (and `/` when `keep_slash`), every other
/// byte of the UTF-8 text as `%XX`, upper-case hex. IAM returns policy documents so, and S3
/// lists keys so for `encoding-type=url` (with `/` kept).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` without two hex digits after it is kept as it is, and bytes
/// that are not UTF-8 are replaced (U+FFFD). Borrowed when there is nothing to decode.
pub fn percent_decode(text: &str) -> Cow<'_, str> {
    decode(text, false)
}

/// [`percent_decode`] with the form rule: `+` is a space (`a+b%2Bc` is `a b+c`).
pub fn form_decode(text: &str) -> Cow<'_, str> {
    decode(text, true)
}

fn decode(text: &str, plus_is_space: bool) -> Cow<'_, str> {
    let special = |b: u8| b == b'%' || (plus_is_space && b == b'+');
    if !text.bytes().any(special) {
        return Cow::Borrowed(text);
    }
    let hex = |b: Option<&u8>| b.and_then(|b| digit(*b));
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    // Plain runs are copied whole; only escapes and `+` are looked at byte by byte.
    while let Some(at) = rest.iter().position(|&b| special(b)) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        let step = match (rest[0], hex(rest.get(1)), hex(rest.get(2))) {
            (b'+', _, _) => {
                out.push(b' ');
                1
            }
            (_, Some(high), Some(low)) => {
                out.push(high << 4 | low);
                3
            }
            _ => {
                out.push(b'%');
                1
            }
        };
        rest = &rest[step..];
    }
    out.extend_from_slice(rest);
    Cow::Owned(match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encode_keeps_unreserved_characters() {
        assert_eq!(uri_encode("a-b_c.d~e", false), "a-b_c.d~e");
        assert_eq!(uri_encode("a b/c+d", false), "a%20b%2Fc%2Bd");
        assert_eq!(uri_encode("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(uri_encode("été", false), "%C3%A9t%C3%A9");
        assert_eq!(uri_encode(r#"{"a":1}"#, false), "%7B%22a%22%3A1%7D");
    }

    #[test]
    fn percent_decode_keeps_plus_and_bad_escapes() {
        assert_eq!(percent_decode("plain"), Cow::Borrowed("plain"));
        assert_eq!(percent_decode("a%20b%2Fc%zz%"), "a b/c%zz%");
        assert_eq!(percent_decode("a+b"), Cow::Borrowed("a+b"));
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%C3%A9t%c3%a9"), "été");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
    }

    #[test]
    fn form_decode_makes_plus_a_space() {
        assert_eq!(form_decode("plain"), Cow::Borrowed("plain"));
        assert_eq!(form_decode("a%2Fb+c"), "a/b c");
        assert_eq!(form_decode("100%25+%2B"), "100% +");
        assert_eq!(form_decode("%zz%41"), "%zzA");
        assert_eq!(form_decode("%FF%FE+"), "\u{fffd}\u{fffd} ");
    }

    #[test]
    fn decoding_undoes_encoding() {
        for text in ["", "a b", "x/y+z%", "{\"Version\":\"2012-10-17\"}", "été ☃"] {
            assert_eq!(percent_decode(&uri_encode(text, false)), text);
            assert_eq!(form_decode(&uri_encode(text, true)), text);
        }
    }
}
