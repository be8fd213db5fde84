//! Wildcard patterns with policy variables: the matching core shared by `Action`, `Resource`,
//! `StringLike` and the ARN condition operators.
//!
//! `*` matches any run of characters (including `/` and `:`), `?` exactly one character.
//! `${key}` and `${key, 'default'}` are replaced by the request's value of `key` at evaluation
//! time, and `${*}`, `${?}`, `${$}` stand for the literal characters.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html>

use crate::context::Context;

/// How a pattern's text is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (`StringLike`, `Resource`, `Action`); otherwise literal.
    pub(crate) wildcards: bool,
    /// `${...}` is a policy variable (policy version 2012-10-17 only).
    pub(crate) variables: bool,
    /// Match ASCII letters regardless of case (action names).
    pub(crate) ignore_ascii_case: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Lit(Box<str>),
    Star,
    One,
    Var(Var),
}

/// A policy variable: the lowercased context key and an optional default.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub(crate) key: Box<str>,
    pub(crate) default: Option<Box<str>>,
}

/// A fast path chosen at compile time for the common shapes of a pattern with no variables.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Anything,
    Exact(Box<str>),
    Prefix(Box<str>),
    General,
}

/// Why a pattern's text could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PatternError {
    UnterminatedVariable,
    EmptyVariable,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    pieces: Vec<Piece>,
    shape: Shape,
    vars: usize,
    ignore_ascii_case: bool,
}

impl Pattern {
    pub(crate) fn parse(text: &str, syntax: Syntax) -> Result<Self, PatternError> {
        Ok(Self::from_pieces(
            tokenize(text, syntax)?,
            syntax.ignore_ascii_case,
        ))
    }

    pub(crate) fn from_pieces(pieces: Vec<Piece>, ignore_ascii_case: bool) -> Self {
        let pieces = merge_literals(pieces);
        let vars = pieces.iter().filter(|p| matches!(p, Piece::Var(_))).count();
        let shape = match pieces.as_slice() {
            _ if vars > 0 => Shape::General,
            [] => Shape::Exact("".into()),
            [Piece::Star] => Shape::Anything,
            [Piece::Lit(l)] => Shape::Exact(l.clone()),
            [Piece::Lit(l), Piece::Star] => Shape::Prefix(l.clone()),
            _ => Shape::General,
        };
        Self {
            pieces,
            shape,
            vars,
            ignore_ascii_case,
        }
    }

    /// The keys of the variables that have no value in `ctx` (and no default), lowercased:
    /// what makes [`Pattern::matches`] answer `None`.
    pub(crate) fn unresolved_keys<'a>(&'a self, ctx: &Context) -> Vec<&'a str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Var(v) if resolve(v, ctx).is_none() => Some(&*v.key),
                _ => None,
            })
            .collect()
    }

    /// Whether `text` matches. `None` when a variable has no value in the request and no default:
    /// such a pattern matches nothing.
    pub(crate) fn matches(&self, text: &str, ctx: &Context) -> Option<bool> {
        let ci = self.ignore_ascii_case;
        Some(match &self.shape {
            Shape::Anything => true,
            Shape::Exact(l) => eq(text, l, ci),
            Shape::Prefix(l) => lit_at(text, 0, l, ci),
            Shape::General if self.vars == 0 => glob(&self.pieces, &[], text, ci),
            Shape::General => {
                let resolved = self.resolve_vars(ctx)?;
                glob(&self.pieces, &resolved, text, ci)
            }
        })
    }

    /// The pattern's text with variables replaced, for patterns without wildcards. `None` when a
    /// variable cannot be resolved.
    pub(crate) fn render<'c>(&'c self, ctx: &'c Context) -> Option<std::borrow::Cow<'c, str>> {
        if let Shape::Exact(l) = &self.shape {
            return Some(std::borrow::Cow::Borrowed(l));
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Lit(l) => out.push_str(l),
                Piece::Star => out.push('*'),
                Piece::One => out.push('?'),
                Piece::Var(v) => out.push_str(resolve(v, ctx)?),
            }
        }
        Some(std::borrow::Cow::Owned(out))
    }

    fn resolve_vars<'c>(&'c self, ctx: &'c Context) -> Option<Vec<&'c str>> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Var(v) => Some(resolve(v, ctx)),
                _ => None,
            })
            .collect()
    }
}

/// A variable's value: the key's value when it is a single-valued key with a value (only those
/// can be variables), else the default.
fn resolve<'c>(var: &'c Var, ctx: &'c Context) -> Option<&'c str> {
    match ctx.entry(&var.key) {
        Some(v) if !v.multi => v.values.first().map(String::as_str),
        _ => var.default.as_deref(),
    }
}

/// Splits `text` into literal runs, wildcards and variables.
pub(crate) fn tokenize(text: &str, syntax: Syntax) -> Result<Vec<Piece>, PatternError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if syntax.variables && rest.starts_with("${") {
            let end = rest.find('}').ok_or(PatternError::UnterminatedVariable)?;
            let inner = &rest[2..end];
            rest = &rest[end + 1..];
            match inner {
                "*" | "?" | "$" => lit.push_str(inner),
                _ => {
                    push_lit(&mut pieces, &mut lit, syntax);
                    pieces.push(Piece::Var(parse_var(inner)?));
                }
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' if syntax.wildcards => {
                push_lit(&mut pieces, &mut lit, syntax);
                pieces.push(Piece::Star);
            }
            '?' if syntax.wildcards => {
                push_lit(&mut pieces, &mut lit, syntax);
                pieces.push(Piece::One);
            }
            _ => lit.push(c),
        }
    }
    push_lit(&mut pieces, &mut lit, syntax);
    Ok(pieces)
}

fn push_lit(pieces: &mut Vec<Piece>, lit: &mut String, syntax: Syntax) {
    if !lit.is_empty() {
        let mut text = std::mem::take(lit);
        if syntax.ignore_ascii_case {
            text.make_ascii_lowercase();
        }
        pieces.push(Piece::Lit(text.into()));
    }
}

/// `aws:username` or `aws:username, 'default'` (spaces around the comma are allowed).
fn parse_var(inner: &str) -> Result<Var, PatternError> {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let quoted = default.len() >= 2 && default.starts_with('\'') && default.ends_with('\'');
            if !quoted {
                return Err(PatternError::EmptyVariable);
            }
            (key, Some(default[1..default.len() - 1].into()))
        }
        None => (inner, None),
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(PatternError::EmptyVariable);
    }
    Ok(Var {
        key: key.to_lowercase().into(),
        default,
    })
}

fn merge_literals(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match (out.last_mut(), piece) {
            (Some(Piece::Lit(prev)), Piece::Lit(next)) => {
                *prev = format!("{prev}{next}").into();
            }
            // `**` is the same as `*`, and keeping one keeps the matcher linear in practice.
            (Some(Piece::Star), Piece::Star) => {}
            (_, piece) => out.push(piece),
        }
    }
    out
}

fn eq(text: &str, lit: &str, ci: bool) -> bool {
    if ci {
        text.eq_ignore_ascii_case(lit)
    } else {
        text == lit
    }
}

/// Whether `lit` occurs in `text` at byte offset `at`.
fn lit_at(text: &str, at: usize, lit: &str, ci: bool) -> bool {
    let rest = &text.as_bytes()[at..];
    rest.len() >= lit.len()
        && if ci {
            rest[..lit.len()].eq_ignore_ascii_case(lit.as_bytes())
        } else {
            &rest[..lit.len()] == lit.as_bytes()
        }
}

fn next_char(text: &str, at: usize) -> usize {
    at + text[at..].chars().next().map_or(1, char::len_utf8)
}

/// Glob matching with backtracking to the last `*` only: linear for the patterns policies use,
/// and never worse than O(pattern × text).
fn glob(pieces: &[Piece], resolved: &[&str], text: &str, ci: bool) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut var = 0usize;
    // Where to resume after the last star: (piece index, text offset, variables consumed).
    let mut back: Option<(usize, usize, usize)> = None;
    loop {
        if let Some(piece) = pieces.get(p) {
            let step = match piece {
                Piece::Star => {
                    back = Some((p + 1, t, var));
                    p += 1;
                    continue;
                }
                Piece::One => (t < text.len()).then(|| next_char(text, t)),
                Piece::Lit(l) => lit_at(text, t, l, ci).then(|| t + l.len()),
                Piece::Var(_) => {
                    let value = resolved[var];
                    var += 1;
                    lit_at(text, t, value, ci).then(|| t + value.len())
                }
            };
            if let Some(next) = step {
                t = next;
                p += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        match back {
            Some((bp, bt, bv)) if bt < text.len() => {
                let nt = next_char(text, bt);
                back = Some((bp, nt, bv));
                (p, t, var) = (bp, nt, bv);
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIKE: Syntax = Syntax {
        wildcards: true,
        variables: true,
        ignore_ascii_case: false,
    };

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::parse(pattern, LIKE)
            .unwrap()
            .matches(text, &Context::new())
            .unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(m("*", ""));
        assert!(m("*", "anything/at:all"));
        assert!(m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b/c"));
        assert!(!m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket2/a"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*.txt", "dir/file.txt"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*a*a*a", "aaaaaaaaa"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn escapes_are_literal() {
        assert!(m("a${*}b", "a*b"));
        assert!(!m("a${*}b", "aXb"));
        assert!(m("a${?}", "a?"));
        assert!(!m("a${?}", "ab"));
        assert!(m("${$}{x}", "${x}"));
    }

    #[test]
    fn variables_resolve_from_the_context() {
        let mut ctx = Context::new();
        ctx.insert("aws:username", "alice");
        let p = Pattern::parse("home/${aws:username}/*", LIKE).unwrap();
        assert_eq!(p.matches("home/alice/x", &ctx), Some(true));
        assert_eq!(p.matches("home/bob/x", &ctx), Some(false));
        assert_eq!(p.matches("home/bob/x", &Context::new()), None);
        let p = Pattern::parse("home/${AWS:UserName}/*", LIKE).unwrap();
        assert_eq!(p.matches("home/alice/x", &ctx), Some(true));
        let p = Pattern::parse("home/${aws:username, 'guest'}/*", LIKE).unwrap();
        assert_eq!(p.matches("home/guest/x", &Context::new()), Some(true));
        assert_eq!(p.matches("home/alice/x", &ctx), Some(true));
    }

    #[test]
    fn a_variable_value_is_never_a_wildcard() {
        let mut ctx = Context::new();
        ctx.insert("aws:username", "*");
        let p = Pattern::parse("home/${aws:username}", LIKE).unwrap();
        assert_eq!(p.matches("home/*", &ctx), Some(true));
        assert_eq!(p.matches("home/x", &ctx), Some(false));
    }

    #[test]
    fn without_variables_dollar_braces_are_text() {
        let syntax = Syntax {
            variables: false,
            ..LIKE
        };
        let p = Pattern::parse("a/${aws:username}", syntax).unwrap();
        assert_eq!(p.matches("a/${aws:username}", &Context::new()), Some(true));
    }

    #[test]
    fn bad_variables_are_errors() {
        assert_eq!(
            Pattern::parse("a/${aws:username", LIKE),
            Err(PatternError::UnterminatedVariable)
        );
        assert_eq!(
            Pattern::parse("a/${}", LIKE),
            Err(PatternError::EmptyVariable)
        );
        assert_eq!(
            Pattern::parse("a/${k, nope}", LIKE),
            Err(PatternError::EmptyVariable)
        );
    }

    #[test]
    fn ignore_ascii_case() {
        let syntax = Syntax {
            wildcards: true,
            variables: false,
            ignore_ascii_case: true,
        };
        let p = Pattern::parse("S3:Get*", syntax).unwrap();
        assert_eq!(p.matches("s3:getobject", &Context::new()), Some(true));
        assert_eq!(p.matches("S3:GETOBJECT", &Context::new()), Some(true));
        assert_eq!(p.matches("s3:PutObject", &Context::new()), Some(false));
    }
}
