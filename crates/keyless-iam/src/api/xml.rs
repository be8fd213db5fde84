//! The query protocol's XML: responses as `<ActionResponse><ActionResult>...` with a request
//! id, and errors as `<ErrorResponse>`, in the namespace of the service (IAM now, STS next).
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html>

use std::borrow::Cow;
use std::fmt::Write as _;

use keyless_types::time::iso8601;

/// IAM's XML namespace.
pub const IAM_NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// Escapes text for an element's content (quotes need no escape there).
pub fn escape(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| matches!(c, '&' | '<' | '>' | '\r') || (c < ' ' && c != '\t' && c != '\n');
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            // XML 1.0 cannot carry other control characters at all, even as references.
            c if c < ' ' && c != '\t' && c != '\n' => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Builds the content of a `...Result` element.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>");
        self
    }

    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "</{tag}>");
        self
    }

    /// `<tag>text</tag>`, escaped.
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>{}</{tag}>", escape(text));
        self
    }

    /// `<tag>value</tag>` for anything displayed as is (numbers, booleans).
    pub fn value(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.out, "<{tag}>{value}</{tag}>");
        self
    }

    /// `<tag>2026-11-25T12:00:00Z</tag>`.
    pub fn date(&mut self, tag: &str, epoch_seconds: i64) -> &mut Self {
        self.text(tag, &iso8601(epoch_seconds))
    }

    /// `<tag><member>..</member>...</tag>`, each member written by `each`.
    pub fn members<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.open(tag);
        for item in items {
            self.open("member");
            each(self, item);
            self.close("member");
        }
        self.close(tag)
    }

    /// The content written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A whole success response: `result` is the content of `<ActionResult>`, or `None` for
/// actions that return nothing.
pub fn response(namespace: &str, action: &str, result: Option<&str>, request_id: &str) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{namespace}\">"
    );
    if let Some(result) = result {
        let _ = write!(out, "<{action}Result>{result}</{action}Result>");
    }
    let _ = writeln!(
        out,
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    );
    out
}

/// A whole error response. `sender` says whether the client (`Sender`) or the service
/// (`Receiver`) is at fault.
pub fn error_response(
    namespace: &str,
    code: &str,
    message: &str,
    sender: bool,
    request_id: &str,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>\n",
        if sender { "Sender" } else { "Receiver" },
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_results_members_and_errors() {
        let mut x = Xml::new();
        x.open("User")
            .text("UserName", "a<b&c")
            .date("CreateDate", 0)
            .close("User")
            .members("Names", ["x", "y"], |x, n| {
                x.text("Name", n);
            });
        let body = response(IAM_NAMESPACE, "GetUser", Some(&x.finish()), "rid");
        assert!(body.contains("<GetUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetUserResult><User><UserName>a&lt;b&amp;c</UserName><CreateDate>1970-01-01T00:00:00Z</CreateDate></User><Names><member><Name>x</Name></member><member><Name>y</Name></member></Names></GetUserResult>"), "{body}");
        assert!(response(IAM_NAMESPACE, "DeleteUser", None, "rid").contains("<DeleteUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ResponseMetadata><RequestId>rid</RequestId>"));
        let err = error_response(IAM_NAMESPACE, "NoSuchEntity", "no <user>", true, "rid");
        assert!(err.contains("<Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no &lt;user&gt;</Message></Error><RequestId>rid</RequestId>"), "{err}");
    }
}
