//! Parsing a record only as far as a kind reads it.
//!
//! A `filter` on `quality_score` and `category` need not build a `String`
//! for every instruction and response it passes on unread: most of the cost
//! of parsing a record is its text fields. A [`Projection`] parses the
//! fields it keeps in full and checks the others exactly as strictly as a
//! full parse (same syntax, escapes, surrogates and number ranges: it
//! walks them with serde_json's own `deserialize_any`), then puts a
//! *stand-in* in their place: a value of the same JSON type, and for a
//! string, as blank or not as the real one. So keys, their order, types and
//! whether a text answers (see `records::text_source`) read as they would
//! from the full record, and a record that a full parse refuses is refused
//! here too.
//!
//! Only code that reads nothing but the kept fields may look at the result.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::records::Record;

/// Which top-level fields to parse in full; every field when `None`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    keep: Option<BTreeSet<String>>,
}

impl Projection {
    /// Parse every field: the same record a full parse gives.
    pub fn all() -> Self {
        Projection { keep: None }
    }

    /// Parse in full the top-level fields of these dotted paths.
    pub fn fields<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let keep = paths.into_iter().map(|p| p.split('.').next().unwrap_or(p).to_string()).collect();
        Projection { keep: Some(keep) }
    }

    /// Whether every field is parsed in full.
    pub fn is_all(&self) -> bool {
        self.keep.is_none()
    }

    /// The record in `text`, its unkept fields as stand-ins; `None` for
    /// anything a full parse would refuse or not call a record (the caller
    /// parses it in full for the reason).
    pub fn parse(&self, text: &str) -> Option<Record> {
        let Some(keep) = &self.keep else {
            return match serde_json::from_str(text) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let rec = de.deserialize_any(Top { keep }).ok()??;
        de.end().ok()?;
        Some(rec)
    }
}

/// The top level: a map, or not a record.
struct Top<'k> {
    keep: &'k BTreeSet<String>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Option<Record>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Record>, A::Error> {
        // Records have a handful of fields: no growing as they are read.
        let mut rec = Map::with_capacity(8);
        while let Some(key) = map.next_key::<String>()? {
            let value = if self.keep.contains(key.as_str()) { map.next_value::<Value>()? } else { map.next_value_seed(StandIn)? };
            rec.insert(key, value);
        }
        Ok(Some(rec))
    }

    // Anything but an object is no record; the value is still checked so
    // that trailing garbage and bad syntax are told apart as a full parse does.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Record>, A::Error> {
        while seq.next_element_seed(StandIn)?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<Record>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Record>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Record>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Record>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Record>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Record>, E> {
        Ok(None)
    }
}

/// A value walked in full but not kept: its stand-in.
struct StandIn;

/// The stand-in of a non-blank string.
const TEXT: &str = "…";

impl<'de> DeserializeSeed<'de> for StandIn {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StandIn {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Bool(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::from(0))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::from(0))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::from(0))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(if s.trim().is_empty() { String::new() } else { TEXT.to_string() }))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element_seed(StandIn)?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_key_seed(StandIn)?.is_some() {
            map.next_value_seed(StandIn)?;
        }
        Ok(Value::Object(Map::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::text_source;

    fn full(text: &str) -> Option<Record> {
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn kept_fields_are_whole_and_the_rest_keep_key_order_type_and_blankness() {
        let text = r#"{"instruction":"Explain \"x\"","response":"  ","n":1.5,"meta":{"a":[1,2]},"tags":["t"],"ok":true,"z":null}"#;
        let p = Projection::fields(["meta.a", "n"]);
        let rec = p.parse(text).unwrap();
        let f = full(text).unwrap();
        assert_eq!(rec.keys().collect::<Vec<_>>(), f.keys().collect::<Vec<_>>());
        assert_eq!((&rec["meta"], &rec["n"]), (&f["meta"], &f["n"]));
        assert_eq!(rec["instruction"], Value::String(TEXT.into()));
        assert_eq!(rec["response"], Value::String(String::new()));
        assert_eq!((rec["tags"].is_array(), rec["ok"].is_boolean(), rec["z"].is_null()), (true, true, true));
        assert_eq!(text_source(&rec, &[]), text_source(&f, &[]));
        assert_eq!(Projection::all().parse(text), Some(f));
    }

    #[test]
    fn refuses_exactly_what_a_full_parse_refuses() {
        let p = Projection::fields(["keep"]);
        for text in [
            r#"{"keep":1,"skip":"\ud800"}"#,     // a lone surrogate
            r#"{"keep":1,"skip":1e400}"#,         // out of range
            r#"{"keep":1,"skip":"a\qb"}"#,        // a bad escape
            r#"{"keep":1,"skip":[1,2}"#,          // bad nesting
            r#"{"keep":1,"skip":"tab	in"}"#,     // a control character
            r#"{"keep":1} trailing"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"{"keep":1,"skip":{"a":"\ud83d\ude00","b":-0.0e-5}}"#,
            r#"{"skip":"x","skip":"","keep":[{"k":"v"}]}"#,
        ] {
            let (a, b) = (p.parse(text), full(text));
            assert_eq!(a.is_some(), b.is_some(), "{text}");
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(a["keep"], b["keep"], "{text}");
                assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{text}");
                assert_eq!(a["skip"].as_str().map(str::is_empty), b["skip"].as_str().map(|s| s.trim().is_empty()), "{text}");
            }
        }
    }
}
