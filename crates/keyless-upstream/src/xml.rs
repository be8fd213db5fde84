//! The upstream's XML answers read as a small tree of elements: S3's documents are shallow and
//! bounded (a listing page holds at most 1,000 entries), and a tree keeps every reader below a
//! few lines of lookups.

use quick_xml::events::Event;

/// An element: its local name, its text (unescaped, trimmed) and its children in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// The deepest nesting read; S3's answers go four deep.
const MAX_DEPTH: usize = 16;

/// The document's root element, or why it is not XML.
pub(crate) fn parse(body: &[u8]) -> Result<Element, String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("nested too deeply".into());
                }
                stack.push(Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                });
            }
            Ok(Event::Empty(start)) => {
                let element = Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Ok(Event::Text(text)) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&text.decode().map_err(|e| e.to_string())?);
                }
            }
            Ok(Event::GeneralRef(entity)) => {
                if let Some(top) = stack.last_mut() {
                    match entity.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => top.text.push(c),
                        None => {
                            let name = entity.decode().map_err(|e| e.to_string())?;
                            let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                                .ok_or_else(|| format!("unknown entity `&{name};`"))?;
                            top.text.push_str(resolved);
                        }
                    }
                }
            }
            Ok(Event::CData(data)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Ok(Event::End(_)) => {
                let Some(mut done) = stack.pop() else {
                    return Err("an end tag without its start".into());
                };
                done.text = done.text.trim().to_owned();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Ok(Event::Eof) => return Err("the document ends before its root element does".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_a_listing() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
  <Contents><Key>a &amp; b</Key><Size>3</Size></Contents>
  <Contents><Key>c</Key><Size>4</Size></Contents><IsTruncated>false</IsTruncated><Empty/>
</ListBucketResult>"#;
        let root = parse(xml).unwrap();
        assert_eq!(root.name, "ListBucketResult");
        let keys: Vec<&str> = root
            .all("Contents")
            .filter_map(|c| c.text_of("Key"))
            .collect();
        assert_eq!(keys, ["a & b", "c"]);
        assert_eq!(root.text_of("IsTruncated"), Some("false"));
        assert_eq!(root.text_of("Empty"), Some(""));
    }

    #[test]
    fn refuses_what_is_not_a_document() {
        assert!(parse(b"").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"not xml at all").is_err());
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
