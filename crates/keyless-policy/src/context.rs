//! The request context: condition keys and their values, as the caller supplies them.
//!
//! Key names are case-insensitive (`aws:CurrentTime` is `AWS:currenttime`); values are text and
//! each condition operator reads them as its type (number, date, IP address, ...).
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>

/// The condition keys of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    lower: Box<str>,
    values: Vec<String>,
    multi: bool,
}

/// The values of one key in a [`Context`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Values<'c> {
    /// The values, one for a single-valued key.
    pub values: &'c [String],
    /// Whether the key is multivalued (such as `aws:TagKeys`), which only set operators
    /// (`ForAllValues:`, `ForAnyValue:`) compare value by value.
    pub multi: bool,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a single-valued key, replacing any earlier value.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.set(key, vec![value.into()], false)
    }

    /// Sets a multivalued key, replacing any earlier value.
    pub fn insert_multi<I, S>(&mut self, key: &str, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set(key, values.into_iter().map(Into::into).collect(), true)
    }

    fn set(&mut self, key: &str, values: Vec<String>, multi: bool) -> &mut Self {
        let lower: Box<str> = key.to_lowercase().into();
        match self.entries.iter_mut().find(|e| e.lower == lower) {
            Some(entry) => {
                entry.values = values;
                entry.multi = multi;
            }
            None => self.entries.push(Entry {
                lower,
                values,
                multi,
            }),
        }
        self
    }

    /// The values of `key`, matched without regard to case.
    pub fn get(&self, key: &str) -> Option<Values<'_>> {
        self.get_lowercase(&key.to_lowercase())
            .map(|values| Values {
                values,
                multi: self.is_multi(&key.to_lowercase()),
            })
    }

    /// Whether `key` was supplied at all.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn entry(&self, lower: &str) -> Option<Values<'_>> {
        self.entries
            .iter()
            .find(|e| &*e.lower == lower)
            .map(|e| Values {
                values: &e.values,
                multi: e.multi,
            })
    }

    pub(crate) fn get_lowercase(&self, lower: &str) -> Option<&[String]> {
        self.entry(lower).map(|v| v.values)
    }

    fn is_multi(&self, lower: &str) -> bool {
        self.entry(lower).is_some_and(|v| v.multi)
    }

    /// The keys, lowercased, in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_replace() {
        let mut ctx = Context::new();
        ctx.insert("aws:SourceIp", "10.0.0.1");
        assert_eq!(ctx.get("AWS:SOURCEIP").unwrap().values, ["10.0.0.1"]);
        ctx.insert("aws:sourceip", "10.0.0.2");
        assert_eq!(ctx.get("aws:SourceIp").unwrap().values, ["10.0.0.2"]);
        assert_eq!(ctx.keys().count(), 1);
        ctx.insert_multi("aws:TagKeys", ["a", "b"]);
        let tags = ctx.get("aws:tagkeys").unwrap();
        assert!(tags.multi);
        assert_eq!(tags.values.len(), 2);
        assert!(!ctx.contains("aws:username"));
    }
}
