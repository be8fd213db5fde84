//! Where each statement stands in the policy text, for the simulator's `MatchedStatements`.
//!
//! Positions are counted the way IAM's simulator reports them: 1-based lines and columns; a
//! statement ends just after its closing `}`; the first statement of an array starts just after
//! the `[`, each later one where the previous one ended, and a lone statement object just after
//! its `{`.

use std::iter::Peekable;
use std::str::Chars;

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Where a statement starts and ends in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start position.
    pub start: Position,
    /// End position.
    pub end: Position,
}

struct Scanner<'a> {
    chars: Peekable<Chars<'a>>,
    pos: Position,
}

impl Scanner<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }

    fn ws(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.bump();
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.ws();
        (self.bump()? == c).then_some(())
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.chars.peek().copied()
    }

    fn string(&mut self) -> Option<String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(out),
                '\\' => {
                    let escaped = self.bump()?;
                    out.push('\\');
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
    }

    /// Skips one JSON value.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            '"' => self.string().map(drop),
            '{' => {
                self.bump();
                self.members(|s, _| s.value())
            }
            '[' => {
                self.bump();
                self.elements(|s| s.value())
            }
            _ => {
                while self
                    .chars
                    .peek()
                    .is_some_and(|c| !matches!(c, ',' | '}' | ']') && !c.is_whitespace())
                {
                    self.bump();
                }
                Some(())
            }
        }
    }

    /// Reads object members after the `{`, through the `}`.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        if self.peek()? == '}' {
            self.bump();
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(':')?;
            each(self, &key)?;
            match self.peek()? {
                ',' => self.bump(),
                '}' => return self.bump().map(drop),
                _ => return None,
            };
        }
    }

    /// Reads array elements after the `[`, through the `]`.
    fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek()? == ']' {
            self.bump();
            return Some(());
        }
        loop {
            each(self)?;
            match self.peek()? {
                ',' => self.bump(),
                ']' => return self.bump().map(drop),
                _ => return None,
            };
        }
    }
}

/// The spans of the statements of a policy text, in order, or `None` if the text cannot be
/// scanned (the JSON parser reports why).
pub(crate) fn statement_spans(text: &str) -> Option<Vec<Span>> {
    let mut s = Scanner {
        chars: text.chars().peekable(),
        pos: Position { line: 1, column: 1 },
    };
    let mut spans = None;
    s.expect('{')?;
    s.members(|s, key| {
        if key != "Statement" {
            return s.value();
        }
        let mut found = Vec::new();
        match s.peek()? {
            '[' => {
                s.bump();
                let mut start = s.pos;
                s.elements(|s| {
                    if s.peek()? != '{' {
                        return None;
                    }
                    s.value()?;
                    found.push(Span { start, end: s.pos });
                    start = s.pos;
                    Some(())
                })?;
            }
            '{' => {
                s.bump();
                let start = s.pos;
                s.members(|s, _| s.value())?;
                found.push(Span { start, end: s.pos });
            }
            _ => return None,
        }
        spans = Some(found);
        Some(())
    })?;
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(l1: usize, c1: usize, l2: usize, c2: usize) -> Span {
        Span {
            start: Position {
                line: l1,
                column: c1,
            },
            end: Position {
                line: l2,
                column: c2,
            },
        }
    }

    #[test]
    fn awscli_example_one_line_object() {
        // awscli's simulate-custom-policy example 1 reports 1:38 to 1:167 for this policy.
        let text = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;
        assert_eq!(statement_spans(text).unwrap(), [span(1, 38, 1, 167)]);
    }

    #[test]
    fn administrator_access_layout() {
        let text = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n      \"Effect\": \"Allow\",\n      \"Action\": \"*\",\n      \"Resource\": \"*\"\n    }\n  ]\n}\n";
        assert_eq!(statement_spans(text).unwrap(), [span(3, 17, 8, 6)]);
    }

    #[test]
    fn consecutive_statements_share_a_boundary() {
        let text =
            r#"{"Statement":[{"Effect":"Deny","Action":"*"},{"Effect":"Allow","Action":"s3:*"}]}"#;
        let spans = statement_spans(text).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(
            spans[0].start,
            Position {
                line: 1,
                column: 15
            }
        );
        assert_eq!(spans[1].start, spans[0].end);
    }

    #[test]
    fn strings_with_braces_and_escapes() {
        let text = r#"{"Id":"a}\"{","Statement":[{"Sid":"x}]","Effect":"Allow","Action":"*"}]}"#;
        assert_eq!(statement_spans(text).unwrap().len(), 1);
    }
}
