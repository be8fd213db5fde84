//! An error and its causes on one line, for logs and messages.

/// `error: cause: cause of the cause`, each cause once (a cause whose text the line already
/// holds, as wrappers that repeat their source's, is left out).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn names_every_cause_once() {
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(error_chain(&e), "outer: refused");
    }
}
