//! Reading a policy document's JSON text, refusing a key that appears twice in one object, at
//! any depth.
//!
//! A JSON parser keeps the last of two equal keys, so `{"Effect":"Deny","Effect":"Allow"}` would
//! allow while a reviewer reads the deny. IAM refuses a policy with more than one `Statement`
//! element; Keyless refuses every repeated key (`Effect`, a condition operator, a condition key,
//! a principal type, ...), naming where it stands.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_policies.html>

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::PolicyError;

/// Parses a policy document's JSON text into a value. Keys are compared after unescaping, so
/// `"Eff\u0065ct"` repeats `"Effect"`.
pub(crate) fn parse(text: &str) -> Result<Value, PolicyError> {
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Seed {
        path: &Path::Root,
        duplicate: &duplicate,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (value, duplicate.take()) {
        (_, Some(path)) => Err(PolicyError::DuplicateKey { path }),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(PolicyError::Json {
            message: json_message(&e),
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// Where a value stands, as the rest of the parser writes it: `Statement[0].Condition.Bool`.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Key(Self::Root, key) => f.write_str(key),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes one value at `path`; on a repeated key, records its path in `duplicate`.
#[derive(Clone, Copy)]
struct Seed<'a> {
    path: &'a Path<'a>,
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.path, items.len());
            let seed = Seed {
                path: &path,
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = Path::Key(self.path, &key);
            if map.contains_key(&key) {
                self.duplicate.set(Some(path.to_string()));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = access.next_value_seed(Seed {
                path: &path,
                duplicate: self.duplicate,
            })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// serde_json's message without its trailing " at line L column C" (reported separately).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> String {
        match parse(text) {
            Err(PolicyError::DuplicateKey { path }) => path,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn values_are_those_serde_json_reads() {
        let text = r#"{"a":[1,-2,3.5,true,null,"s\u00e9",{}],"b":{"c":18446744073709551615}}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text).unwrap(), want);
    }

    #[test]
    fn duplicates_are_named_by_path() {
        assert_eq!(duplicate(r#"{"Statement":{},"Statement":[]}"#), "Statement");
        assert_eq!(
            duplicate(r#"{"Statement":[{"Effect":"Deny","Effect":"Allow"}]}"#),
            "Statement[0].Effect"
        );
        assert_eq!(
            duplicate(r#"{"Statement":[{},{"Condition":{"Bool":{"k":"1","k":"2"}}}]}"#),
            "Statement[1].Condition.Bool.k"
        );
        assert_eq!(duplicate(r#"{"a":[[{"x":1,"x":1}]]}"#), "a[0][0].x");
        assert_eq!(duplicate(r#"{"Eff\u0065ct":1,"Effect":2}"#), "Effect");
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_no_duplicate() {
        assert!(parse(r#"[{"Effect":"Allow"},{"Effect":"Deny","Sid":{"Effect":1}}]"#).is_ok());
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        assert_eq!(
            parse("{\"Version\":\"2012-10-17\"")
                .unwrap_err()
                .to_string(),
            "policy is not valid JSON: EOF while parsing an object at line 1 column 23"
        );
        assert_eq!(
            parse("{} x").unwrap_err().to_string(),
            "policy is not valid JSON: trailing characters at line 1 column 4"
        );
    }
}
