//! XML as AWS's services write it: element text escaped the way their own serializers do, and
//! a small builder for result documents (`<User><UserName>bob</UserName>...`).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::time::iso8601;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_elements_dates_and_members() {
        let mut x = Xml::new();
        x.open("User")
            .text("UserName", "a<b&c")
            .date("CreateDate", 0)
            .close("User")
            .members("Names", ["x", "y"], |x, n| {
                x.text("Name", n);
            });
        assert_eq!(
            x.finish(),
            "<User><UserName>a&lt;b&amp;c</UserName><CreateDate>1970-01-01T00:00:00Z</CreateDate></User><Names><member><Name>x</Name></member><member><Name>y</Name></member></Names>"
        );
        assert_eq!(escape("plain"), Cow::Borrowed("plain"));
        assert_eq!(escape("a\rb\u{1}"), "a&#13;b\u{fffd}");
    }
}
