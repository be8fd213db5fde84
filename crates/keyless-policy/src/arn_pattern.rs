//! ARN patterns for `Resource`/`NotResource` and the `Arn*` condition operators.
//!
//! Each of the six colon-delimited parts is matched on its own, wildcards included, and the
//! resource part (everything after the fifth colon) may hold `:` and `/`.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html>

use crate::context::Context;
use crate::pattern::{Pattern, PatternError, Piece, Syntax, tokenize};

/// A compiled ARN pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArnPattern {
    /// `*`: every resource.
    Any,
    /// Six parts of which the first five hold no wildcard: matching the whole text is then the
    /// same as matching part by part, and faster.
    Whole(Pattern),
    /// Part-by-part matching. A pattern of fewer than six parts (`arn:aws:ec2:*`) lets its last
    /// part take the rest of the ARN.
    Parts(Vec<Pattern>),
}

/// Why a text is not an ARN pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArnPatternError {
    Malformed,
    Variable(PatternError),
}

impl ArnPattern {
    pub(crate) fn parse(text: &str, variables: bool) -> Result<Self, ArnPatternError> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let syntax = Syntax {
            wildcards: true,
            variables,
            ignore_ascii_case: false,
        };
        let pieces = tokenize(text, syntax).map_err(ArnPatternError::Variable)?;
        let parts = split_parts(pieces);
        let literal_head = parts
            .iter()
            .take(5)
            .all(|part| part.iter().all(|p| matches!(p, Piece::Lit(_))));
        let head_is_arn =
            matches!(parts.first().map(Vec::as_slice), Some([Piece::Lit(l)]) if &**l == "arn");
        // `arn:partition:service` at the least; a partition and a service are required.
        let named = parts.len() >= 3 && !parts[1].is_empty() && !parts[2].is_empty();
        if !head_is_arn || !named {
            return Err(ArnPatternError::Malformed);
        }
        if parts.len() == 6 && literal_head {
            return Ok(Self::Whole(Pattern::from_pieces(join_parts(parts), false)));
        }
        Ok(Self::Parts(
            parts
                .into_iter()
                .map(|p| Pattern::from_pieces(p, false))
                .collect(),
        ))
    }

    /// Whether `arn` matches; `None` when a variable has no value (the pattern then matches
    /// nothing).
    pub(crate) fn matches(&self, arn: &str, ctx: &Context) -> Option<bool> {
        match self {
            Self::Any => Some(true),
            Self::Whole(p) => p.matches(arn, ctx),
            Self::Parts(parts) => {
                let mut text = arn.splitn(parts.len(), ':');
                let mut all = true;
                for part in parts.iter() {
                    let Some(t) = text.next() else {
                        return Some(false);
                    };
                    all &= part.matches(t, ctx)?;
                }
                Some(all)
            }
        }
    }

    /// The keys of the policy variables that have no value in `ctx`.
    pub(crate) fn unresolved_keys<'a>(&'a self, ctx: &Context) -> Vec<&'a str> {
        match self {
            Self::Any => Vec::new(),
            Self::Whole(p) => p.unresolved_keys(ctx),
            Self::Parts(parts) => parts.iter().flat_map(|p| p.unresolved_keys(ctx)).collect(),
        }
    }
}

/// Splits pieces at the first five colons of their literal text.
fn split_parts(pieces: Vec<Piece>) -> Vec<Vec<Piece>> {
    let mut parts: Vec<Vec<Piece>> = vec![Vec::new()];
    for piece in pieces {
        match piece {
            Piece::Lit(lit) => {
                let mut rest: &str = &lit;
                while parts.len() < 6 {
                    let Some(i) = rest.find(':') else { break };
                    if i > 0 {
                        push(&mut parts, Piece::Lit(rest[..i].into()));
                    }
                    parts.push(Vec::new());
                    rest = &rest[i + 1..];
                }
                if !rest.is_empty() {
                    push(&mut parts, Piece::Lit(rest.into()));
                }
            }
            other => push(&mut parts, other),
        }
    }
    parts
}

/// The inverse of [`split_parts`]: the pieces with the colons put back.
fn join_parts(parts: Vec<Vec<Piece>>) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            pieces.push(Piece::Lit(":".into()));
        }
        pieces.extend(part);
    }
    pieces
}

fn push(parts: &mut [Vec<Piece>], piece: Piece) {
    if let Some(last) = parts.last_mut() {
        last.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, arn: &str) -> bool {
        ArnPattern::parse(pattern, true)
            .unwrap()
            .matches(arn, &Context::new())
            .unwrap()
    }

    #[test]
    fn bucket_and_objects() {
        assert!(m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c"));
        assert!(!m("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket"));
        assert!(m("arn:aws:s3:::bucket", "arn:aws:s3:::bucket"));
        assert!(m("arn:aws:s3:::*", "arn:aws:s3:::anything/at/all"));
        assert!(m("*", "whatever"));
    }

    #[test]
    fn wildcards_stay_within_their_part() {
        // The AWS example: ArnLike does not let the region's `*` run into the account.
        let p = "arn:aws:someservice:*:111122223333:finance/*";
        assert!(m(
            p,
            "arn:aws:someservice:us-east-2:111122223333:finance/abc"
        ));
        assert!(!m(
            p,
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/x"
        ));
        assert!(m(
            "arn:aws:iam::*:role/gitlab-*",
            "arn:aws:iam::111122223333:role/gitlab-registry"
        ));
        assert!(!m(
            "arn:aws:iam::*:role/gitlab-*",
            "arn:aws:iam::111122223333:user/gitlab-registry"
        ));
        assert!(!m("arn:aws:iam::*:role/x", "arn:aws:iam"));
    }

    #[test]
    fn short_patterns_match_the_rest() {
        assert!(m(
            "arn:aws:ec2:*",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-1"
        ));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "bucket/*",
            "arn",
            "arn:aws",
            "arn::s3:::b",
            "urn:aws:s3:::b",
            "arn*:aws:s3:::b",
        ] {
            assert_eq!(
                ArnPattern::parse(bad, true),
                Err(ArnPatternError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn variables_in_the_resource_part() {
        let mut ctx = Context::new();
        ctx.insert("aws:username", "alice");
        let p = ArnPattern::parse("arn:aws:s3:::home/${aws:username}/*", true).unwrap();
        assert_eq!(p.matches("arn:aws:s3:::home/alice/f", &ctx), Some(true));
        assert_eq!(p.matches("arn:aws:s3:::home/bob/f", &ctx), Some(false));
        assert_eq!(
            p.matches("arn:aws:s3:::home/alice/f", &Context::new()),
            None
        );
        assert_eq!(p.unresolved_keys(&Context::new()), vec!["aws:username"]);
        assert!(p.unresolved_keys(&ctx).is_empty());
    }
}
