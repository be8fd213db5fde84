//! Browser-form uploads (POST Object) in front of s3s: the session token of temporary
//! credentials travels in the form's `x-amz-security-token` field, which s3s reads while it
//! checks the POST policy's signature but does not hand on. The form's bytes pass through
//! [`sniff_fields`] unchanged on their way to s3s, and the field's value is kept for the
//! authenticator ([`FormFields`]), with the file's name for `${filename}` in the key. The
//! fields come before the file and must fit in [`SCAN_LIMIT`] bytes (a policy and a token are a
//! few kilobytes); a form whose file does not begin by then is cut off there, so an
//! unauthenticated client cannot make the server read more.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTForms.html>

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use s3s::Body;
use s3s::stream::{ByteStream, DynByteStream, RemainingLength};

use crate::extensions::FormFields;

/// Whether a request is a browser-form upload: a POST of `multipart/form-data`.
pub fn is_form(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

/// How much of a form is searched for the token.
pub const SCAN_LIMIT: usize = 256 * 1024;

/// Passes a form's body through, keeping its `x-amz-security-token` and `acl` fields and its
/// file's name in the `FormFields` returned, which are also put in the request's extensions.
pub fn sniff_fields<B: Into<Body>>(req: http::Request<B>) -> (http::Request<Body>, FormFields) {
    let fields = FormFields::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(fields.clone());
    let sniffer = Sniffer {
        inner: body.into(),
        seen: Vec::new(),
        lower: Vec::new(),
        fields: fields.clone(),
        done: false,
        too_long: false,
    };
    let stream: DynByteStream = Box::pin(sniffer);
    (http::Request::from_parts(parts, Body::from(stream)), fields)
}

struct Sniffer {
    inner: Body,
    /// The form's first bytes, until the file's part is seen or the limit reached.
    seen: Vec<u8>,
    /// The same, lower-cased, for part headers (their names are case-insensitive).
    lower: Vec<u8>,
    fields: FormFields,
    done: bool,
    /// The fields ran past [`SCAN_LIMIT`] without the file: the form is refused there, before
    /// anything else of it is read (nothing has been authenticated yet).
    too_long: bool,
}

impl Sniffer {
    fn look(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let room = SCAN_LIMIT.saturating_sub(self.seen.len());
        let taken = &chunk[..chunk.len().min(room)];
        self.seen.extend_from_slice(taken);
        self.lower.extend(taken.iter().map(u8::to_ascii_lowercase));
        for (name, slot) in [
            ("x-amz-security-token", &self.fields.token),
            ("acl", &self.fields.acl),
        ] {
            if slot.get().is_none()
                && let Some(value) = field_in(&self.seen, &self.lower, name)
            {
                let _ = slot.set(value);
            }
        }
        // The file comes last: once its name is seen, so has every field before it.
        if let Some(name) = filename_in(&self.seen, &self.lower) {
            let _ = self.fields.filename.set(name);
            self.done = true;
        } else if self.seen.len() >= SCAN_LIMIT {
            self.done = true;
            self.too_long = true;
        }
        if self.done {
            self.seen = Vec::new();
            self.lower = Vec::new();
        }
    }
}

/// The value of the field `name`, once the part that holds it has been seen whole. `seen`
/// holds the form's bytes as sent and `lower` the same lower-cased, where the part header is
/// matched (field names are case-insensitive in S3's forms).
fn field_in(seen: &[u8], lower: &[u8], name: &str) -> Option<String> {
    let field = format!("name=\"{name}\"");
    let at = lower
        .windows(field.len())
        .position(|w| w == field.as_bytes())?;
    let after = &seen[at..];
    let header_end = after.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let value = &after[header_end..];
    let end = value.windows(4).position(|w| w == b"\r\n--")?;
    let token = std::str::from_utf8(&value[..end]).ok()?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The answer to a form upload with `${filename}` in its key names the key as stored: the
/// `<Key>` and `<Location>` of a 201 and the `key` of a 303's `Location` (s3s writes them from
/// the form's field, before the name is put in).
pub async fn name_the_key(
    mut response: s3s::HttpResponse,
    fields: &FormFields,
) -> s3s::HttpResponse {
    const PLACEHOLDER: &str = "${filename}";
    let Some(name) = fields.filename.get() else {
        return response;
    };
    match response.status().as_u16() {
        201 => {
            let Ok(body) = response.body_mut().store_all_limited(64 * 1024).await else {
                return response;
            };
            let text = String::from_utf8_lossy(&body);
            if text.contains(PLACEHOLDER) {
                let named = text.replace(PLACEHOLDER, &keyless_types::xml::escape(name));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, named.len().into());
                *response.body_mut() = Body::from(named);
            } else {
                *response.body_mut() = Body::from(body);
            }
            response
        }
        303 => {
            let encoded = keyless_types::encoding::uri_encode(PLACEHOLDER, true);
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| l.replace(&encoded, &keyless_types::encoding::uri_encode(name, true)));
            if let Some(value) = location.and_then(|l| http::HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(http::header::LOCATION, value);
            }
            response
        }
        _ => response,
    }
}

/// A form whose fields break its POST policy's conditions, as S3 answers it: 403
/// AccessDenied "Invalid according to Policy: Policy Condition failed: ..." (s3s answers 400
/// InvalidPolicyDocument).
pub(super) fn as_s3_refuses_it(response: s3s::HttpResponse) -> s3s::HttpResponse {
    if response.status() != http::StatusCode::BAD_REQUEST {
        return response;
    }
    let Some(fields) = response
        .body()
        .bytes()
        .and_then(|b| super::errors::parse(&b))
    else {
        return response;
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match (field("Code"), field("Message")) {
        (Some("InvalidPolicyDocument"), Some(message))
            if message.starts_with("Policy condition") =>
        {
            super::serialize(s3s::S3Error::with_message(
                s3s::S3ErrorCode::AccessDenied,
                format!("Invalid according to Policy: Policy Condition failed: {message}"),
            ))
        }
        _ => response,
    }
}

/// The file part's `filename`, once its part header is whole.
fn filename_in(seen: &[u8], lower: &[u8]) -> Option<String> {
    const NAME: &[u8] = b"; filename=\"";
    let at = lower.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let rest = &seen[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    // The header line must be whole, so that a name split across chunks is not cut short.
    rest[end..].windows(2).position(|w| w == b"\r\n")?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    // Browsers send a bare name; some send a path.
    Some(name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned())
}

impl Stream for Sniffer {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.too_long {
            return Poll::Ready(Some(Err(format!(
                "the form's fields run past {SCAN_LIMIT} bytes before its file"
            )
            .into())));
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.look(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

impl ByteStream for Sniffer {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(seen: &[u8]) -> Option<String> {
        field_in(seen, &seen.to_ascii_lowercase(), "x-amz-security-token")
    }

    #[test]
    fn the_token_field_is_found_in_any_case_and_split_anywhere() {
        let form = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--b\r\n\
Content-Disposition: form-data; name=\"X-Amz-Security-Token\"\r\n\r\nIQoJb3JpZ2luX2VjE\r\n--b\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nDATA\r\n--b--\r\n";
        for split in [1, 7, 60, 100, 120, form.len()] {
            let fields = FormFields::default();
            let mut sniffer = Sniffer {
                inner: Body::empty(),
                seen: Vec::new(),
                lower: Vec::new(),
                fields: fields.clone(),
                done: false,
                too_long: false,
            };
            for chunk in form.chunks(split) {
                sniffer.look(chunk);
            }
            assert_eq!(
                fields.token.get().map(String::as_str),
                Some("IQoJb3JpZ2luX2VjE"),
                "{split}"
            );
            assert_eq!(
                fields.filename.get().map(String::as_str),
                Some("f"),
                "{split}"
            );
        }
        assert_eq!(
            {
                let h = b"name=\"file\"; filename=\"C:\\Users\\me\\cv.pdf\"\r\n";
                filename_in(h, &h.to_ascii_lowercase())
            }
            .as_deref(),
            Some("cv.pdf")
        );
        assert_eq!(field(b"--b\r\nname=\"key\"\r\n\r\nk\r\n--b"), None);
        // A value not yet whole is not taken.
        assert_eq!(field(b"name=\"x-amz-security-token\"\r\n\r\nIQo"), None);
    }
}
