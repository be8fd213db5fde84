//! The request context: condition keys and their values, as the caller supplies them.
//!
//! Key names are case-insensitive (`aws:CurrentTime` is `AWS:currenttime`); values are text and
//! each condition operator reads them as its type (number, date, IP address, ...).
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>

use std::borrow::Cow;

/// The condition keys of one request.
///
/// Built once per request, so it allocates little: keys given as `&'static str` are not copied,
/// a single value is stored without a list, and lookups compare ASCII keys without lowercasing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// The key as given; lowercased when it is not ASCII.
    key: Cow<'static, str>,
    values: Stored,
}

#[derive(Debug, Clone, PartialEq)]
enum Stored {
    One(String),
    Many(Vec<String>),
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

    /// An empty context with room for `n` keys (a server knows how many it sets per request).
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Sets a single-valued key, replacing any earlier value.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> &mut Self {
        self.set(key.into(), Stored::One(value.into()))
    }

    /// Sets a multivalued key, replacing any earlier value.
    pub fn insert_multi<I, S>(&mut self, key: impl Into<Cow<'static, str>>, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set(
            key.into(),
            Stored::Many(values.into_iter().map(Into::into).collect()),
        )
    }

    fn set(&mut self, key: Cow<'static, str>, values: Stored) -> &mut Self {
        let key = if key.is_ascii() {
            key
        } else {
            Cow::Owned(key.to_lowercase())
        };
        match self.entries.iter_mut().find(|e| same_key(&e.key, &key)) {
            Some(entry) => entry.values = values,
            None => self.entries.push(Entry { key, values }),
        }
        self
    }

    /// The values of `key`, matched without regard to case.
    pub fn get(&self, key: &str) -> Option<Values<'_>> {
        if key.is_ascii() {
            self.entry(key)
        } else {
            self.entry(&key.to_lowercase())
        }
    }

    /// Whether `key` was supplied at all.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Looks up a key that is already lowercased (or ASCII).
    pub(crate) fn entry(&self, lower: &str) -> Option<Values<'_>> {
        self.entries
            .iter()
            .find(|e| same_key(&e.key, lower))
            .map(|e| match &e.values {
                Stored::One(v) => Values {
                    values: std::slice::from_ref(v),
                    multi: false,
                },
                Stored::Many(v) => Values {
                    values: v,
                    multi: true,
                },
            })
    }

    /// The keys as given (non-ASCII keys lowercased), in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.key)
    }
}

/// Keys are stored ASCII as given or lowercased, and looked up ASCII or lowercased.
fn same_key(stored: &str, wanted: &str) -> bool {
    stored.eq_ignore_ascii_case(wanted)
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

    #[test]
    fn non_ascii_keys_are_case_insensitive_too() {
        let mut ctx = Context::new();
        ctx.insert(String::from("aws:PrincipalTag/Équipe"), "ops");
        assert_eq!(ctx.get("AWS:PRINCIPALTAG/ÉQUIPE").unwrap().values, ["ops"]);
        assert_eq!(ctx.get("aws:principaltag/équipe").unwrap().values, ["ops"]);
        ctx.insert(String::from("aws:principaltag/équipe"), "dev");
        assert_eq!(ctx.keys().count(), 1);
    }
}
