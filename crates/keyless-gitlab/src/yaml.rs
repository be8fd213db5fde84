//! A YAML document as a tree that keeps each scalar's type, so that a value the parser turned
//! into a number, a boolean or a map can be told apart from the string the chart wanted.
//!
//! Helm (sigs.k8s.io/yaml over go-yaml v2), the registry (go-yaml v2) and GitLab Rails (Ruby's
//! Psych) all read YAML 1.1, where `yes`/`no`/`on`/`off` are booleans; serde-saphyr accepts
//! those spellings too (its `strict_booleans` stays off), so the tree types scalars as they do.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::GitlabError;

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `~`, `null`, or nothing.
    Null,
    /// A boolean (YAML 1.1 spellings included).
    Bool(bool),
    /// An integer or a float, kept as text for messages.
    Number(String),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys that are not strings are kept as their text.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value at `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at a path of mapping keys.
    pub(crate) fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The entries, when this is a mapping.
    pub(crate) fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A scalar as the text a client would see (numbers and booleans stringified), `None` for
    /// null, sequences and mappings.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Str(s) | Node::Number(s) => Some(s.clone()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// What the node parsed as, for messages: "a number (123)", "a map", ...
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "empty".to_owned(),
            Node::Bool(b) => format!("a boolean ({b})"),
            Node::Number(n) => format!("a number ({n})"),
            Node::Str(s) => format!("the string `{s}`"),
            Node::Seq(_) => "a list".to_owned(),
            Node::Map(entries) => {
                let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                format!("a map (keys: {})", keys.join(", "))
            }
        }
    }
}

/// Parses one YAML document; an empty document is `Null`.
pub(crate) fn parse(file: &str, text: &str) -> Result<Node, GitlabError> {
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    if !has_content {
        return Ok(Node::Null);
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| GitlabError::Yaml {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

/// The line of `raw` where `key` is given a plain (unquoted) value that a ` #` cut short:
/// YAML reads everything from ` #` on as a comment. Keys may be quoted or plain.
pub(crate) fn comment_cut_line(raw: &str, key: &str) -> Option<String> {
    raw.lines().find_map(|line| {
        let mut rest = line.trim_start();
        rest = rest.strip_prefix("- ").map_or(rest, str::trim_start);
        let after_key = [format!("\"{key}\""), format!("'{key}'"), key.to_owned()]
            .iter()
            .find_map(|k| rest.strip_prefix(k.as_str()).map(str::to_owned))?;
        let value = after_key.trim_start().strip_prefix(':')?;
        if !value.is_empty() && !value.starts_with([' ', '\t']) {
            return None;
        }
        let value = value.trim_start();
        let quoted = value.starts_with(['"', '\'']);
        let cut = value.starts_with('#') || value.contains(" #") || value.contains("\t#");
        (!quoted && cut).then(|| line.trim().to_owned())
    })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Node, Node>()? {
            let key = key.scalar_text().unwrap_or_else(|| key.describe());
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        parse("test.yaml", text).unwrap()
    }

    #[test]
    fn keeps_the_type_each_scalar_parsed_as() {
        let n = yaml(
            "a: 123456789012\nb: yes\nc: \"yes\"\nd: ~\ne: arn:aws:iam::123456789012:role/x\n",
        );
        assert_eq!(n.get("a"), Some(&Node::Number("123456789012".into())));
        assert_eq!(n.get("b"), Some(&Node::Bool(true)));
        assert_eq!(n.get("c"), Some(&Node::Str("yes".into())));
        assert_eq!(n.get("d"), Some(&Node::Null));
        assert_eq!(
            n.get("e"),
            Some(&Node::Str("arn:aws:iam::123456789012:role/x".into()))
        );
    }

    #[test]
    fn a_comment_cuts_a_plain_value() {
        let n = yaml("k: arn:aws:iam::123456789012:role/a #b\n");
        assert_eq!(
            n.get("k"),
            Some(&Node::Str("arn:aws:iam::123456789012:role/a".into()))
        );
        let raw = "x:\n  k: # arn:aws:iam::1:role/a\n  q: \"a #b\"\n";
        assert_eq!(
            comment_cut_line(raw, "k").as_deref(),
            Some("k: # arn:aws:iam::1:role/a")
        );
        assert_eq!(comment_cut_line(raw, "q"), None);
        assert_eq!(comment_cut_line("kk: a #b\n", "k"), None);
    }

    #[test]
    fn paths_and_empty_documents() {
        let n = yaml("a:\n  b:\n    c: 1\n");
        assert_eq!(n.path(&["a", "b", "c"]), Some(&Node::Number("1".into())));
        assert_eq!(n.path(&["a", "x"]), None);
        assert_eq!(yaml("# nothing\n"), Node::Null);
        assert!(parse("bad.yaml", "a: [\n").is_err());
    }

    #[test]
    fn non_string_keys_become_text() {
        let n = yaml("1: one\ntrue: yes\n");
        assert_eq!(n.get("1"), Some(&Node::Str("one".into())));
        assert_eq!(n.get("true"), Some(&Node::Bool(true)));
    }
}
