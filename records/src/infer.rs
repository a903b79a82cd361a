//! The Arrow schema of records written as Parquet, inferred one record at
//! a time as they are written.
//!
//! The rules are arrow-json's `infer_json_schema` (a test checks the two
//! agree): fields in first-seen order, every field nullable, integers with
//! floats become doubles, a scalar with a list of scalars becomes a list,
//! other scalar mixes become strings (which the strict decode then refuses),
//! a field seen only as null is Null. Doing it as records arrive spares the
//! Parquet writer a second parse of its whole spool, and reads each record
//! into a skeleton (types only: no string is copied) rather than a
//! `serde_json::Value`.
//!
//! Most files repeat a handful of record shapes, so each record is first
//! scanned into its *shape*: its keys and value types in order, without
//! allocating. A shape whose last full inference left the schema exactly
//! as it was, with no change to the schema since, is skipped: inferring it
//! again is known to change nothing. Anything else takes the full path.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use indexmap::{IndexMap, IndexSet};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::flat::Takes;
use crate::scan::{Number, Scan};

/// A field's type so far.
#[derive(Debug, Clone)]
enum Inferred {
    Scalar(IndexSet<DataType>),
    Array(Box<Inferred>),
    Object(IndexMap<String, Inferred>),
    /// Nothing known yet (only nulls or empty lists seen).
    Any,
}

/// Shapes remembered at most; past this the memory starts afresh.
const KNOWN_SHAPES: usize = 4096;

/// The schema of the records added so far.
#[derive(Debug, Default)]
pub(crate) struct SchemaInference {
    fields: IndexMap<String, Inferred>,
    /// Bumped whenever `fields` changes.
    generation: u64,
    /// Shape → the generation at which inferring it changed nothing.
    known: std::collections::HashMap<Vec<u8>, u64>,
    /// The shape being scanned, kept between records.
    shape: Vec<u8>,
}

impl SchemaInference {
    /// Take one record given as JSON text.
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        self.shape.clear();
        let scanned = quick_shape(text.as_bytes(), &mut self.shape).is_some() || {
            self.shape.clear();
            scan_shape(text, &mut self.shape).is_ok()
        };
        if scanned && self.known.get(&self.shape) == Some(&self.generation) {
            return Ok(());
        }
        let before = self.fields.clone();
        match serde_json::from_str::<Skeleton>(text).map_err(|e| format!("malformed JSON: {e}"))? {
            Skeleton::Object(entries) => collect_object(&mut self.fields, &entries, "")?,
            _ => return Err("a record is not a JSON object".into()),
        }
        if !same_fields(&before, &self.fields) {
            self.generation += 1;
        } else if scanned {
            if self.known.len() >= KNOWN_SHAPES {
                self.known.clear();
            }
            self.known.insert(self.shape.clone(), self.generation);
        }
        Ok(())
    }

    /// A number that changes whenever the schema does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The Arrow schema of every record added.
    pub fn schema(&self) -> Schema {
        Schema::new(fields_of(&self.fields))
    }

    /// What each field takes without a change to the schema so far, if
    /// every field is a scalar (see `flat.rs`): the kinds of value seen
    /// in it.
    pub fn flat_takes(&self) -> Option<Vec<Takes>> {
        self.fields
            .values()
            .map(|t| match t {
                Inferred::Scalar(seen) => Some(Takes {
                    string: seen.contains(&DataType::Utf8),
                    int: seen.contains(&DataType::Int64),
                    float: seen.contains(&DataType::Float64),
                    boolean: seen.contains(&DataType::Boolean),
                }),
                Inferred::Any => Some(Takes::default()),
                Inferred::Array(_) | Inferred::Object(_) => None,
            })
            .collect()
    }
}

/// A JSON value's types, without its strings.
enum Skeleton<'a> {
    Null,
    Bool,
    /// A number serde_json holds as an `i64`.
    Int,
    /// Any other number.
    Float,
    Str,
    Array(Vec<Skeleton<'a>>),
    /// Entries in first-seen order; a repeated key keeps its first place and last value, as a parsed record does.
    Object(Vec<(Cow<'a, str>, Skeleton<'a>)>),
}

impl<'de> Deserialize<'de> for Skeleton<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkeletonVisitor)
    }
}

struct SkeletonVisitor;

impl<'de> Visitor<'de> for SkeletonVisitor {
    type Value = Skeleton<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Skeleton::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skeleton::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skeleton::Int)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(if i64::try_from(v).is_ok() { Skeleton::Int } else { Skeleton::Float })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Skeleton::Float)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Skeleton::Str)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skeleton::Str)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Skeleton::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Skeleton<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value()?;
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(Skeleton::Object(entries))
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Scan `text` into `shape`: a token per value in order (`n`ull, `b`ool,
/// `i`nt, `f`loat, `s`tring, `[`…`]`, `{`…`}`), each key as its length and
/// bytes. Equal shapes give equal skeletons.
fn scan_shape(text: &str, shape: &mut Vec<u8>) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::DeserializeSeed::deserialize(ShapeSeed(shape), &mut de)?;
    de.end()
}

/// The shape [`scan_shape`] gives, found by a byte scan that skips
/// through string bodies with `memchr` instead of walking them: the text
/// is mostly strings, and this runs for every record a Parquet out takes.
/// `None` for anything it is not sure of (an escaped key, an exponent, an
/// integer of 19 or more digits, `-0`, bad syntax), which `scan_shape`
/// then reads. Its callers hand it records that a parse has accepted; it
/// checks structure, not every rule of JSON.
fn quick_shape(text: &[u8], shape: &mut Vec<u8>) -> Option<()> {
    let mut scan = Scan::new(text);
    shape_value(&mut scan, shape, 0)?;
    (scan.peek().is_none()).then_some(())
}

/// Nesting [`quick_shape`] leaves to `scan_shape`.
const QUICK_DEPTH: usize = 64;

/// One value's shape into `out`.
fn shape_value(scan: &mut Scan, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > QUICK_DEPTH {
        return None;
    }
    match scan.peek()? {
        b'"' => {
            scan.string()?;
            out.push(b's');
        }
        b'{' => shape_items(scan, b'{', b'}', out, |scan, out| {
            if scan.peek()? != b'"' {
                return None;
            }
            let key = scan.string()?;
            if key.contains(&b'\\') {
                return None;
            }
            push_key(out, key);
            if scan.peek()? != b':' {
                return None;
            }
            scan.i += 1;
            shape_value(scan, out, depth + 1)
        })?,
        b'[' => shape_items(scan, b'[', b']', out, |scan, out| shape_value(scan, out, depth + 1))?,
        b't' => scan.word(b"true").map(|()| out.push(b'b'))?,
        b'f' => scan.word(b"false").map(|()| out.push(b'b'))?,
        b'n' => scan.word(b"null").map(|()| out.push(b'n'))?,
        // An exponent is left to serde_json, which refuses one out of range.
        b'-' | b'0'..=b'9' => match scan.number()? {
            Number::Int => out.push(b'i'),
            Number::Fraction => out.push(b'f'),
            Number::Exponent => return None,
        },
        _ => return None,
    }
    Some(())
}

/// An array or object: `open`, then `item` until the `close` that ends
/// it, each item after the first behind a `,`.
fn shape_items(
    scan: &mut Scan,
    open: u8,
    close: u8,
    out: &mut Vec<u8>,
    mut item: impl FnMut(&mut Scan, &mut Vec<u8>) -> Option<()>,
) -> Option<()> {
    scan.i += 1;
    out.push(open);
    if scan.peek()? == close {
        scan.i += 1;
    } else {
        loop {
            item(scan, out)?;
            let c = scan.peek()?;
            scan.i += 1;
            match c {
                b',' => {}
                c if c == close => break,
                _ => return None,
            }
        }
    }
    out.push(close);
    Some(())
}

struct ShapeSeed<'a>(&'a mut Vec<u8>);

impl<'de> serde::de::DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(b'n');
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.0.push(b'b');
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.push(b'i');
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(if i64::try_from(v).is_ok() { b'i' } else { b'f' });
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.push(b'f');
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.0.push(b's');
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        while seq.next_element_seed(ShapeSeed(self.0))?.is_some() {}
        self.0.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        while map.next_key_seed(ShapeKey(self.0))?.is_some() {
            map.next_value_seed(ShapeSeed(self.0))?;
        }
        self.0.push(b'}');
        Ok(())
    }
}

/// An object key into the shape: its length, then its bytes.
struct ShapeKey<'a>(&'a mut Vec<u8>);

impl<'de> serde::de::DeserializeSeed<'de> for ShapeKey<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ShapeKey<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        push_key(self.0, v.as_bytes());
        Ok(())
    }
}

/// An object key as both shape scans write it: its length, then its bytes.
fn push_key(shape: &mut Vec<u8>, key: &[u8]) {
    shape.extend_from_slice(&(key.len() as u64).to_le_bytes());
    shape.extend_from_slice(key);
}

/// Order-sensitive equality of two inferred field maps (`IndexMap`'s own
/// `==` ignores order, and first-seen order is part of the schema).
fn same_fields(a: &IndexMap<String, Inferred>, b: &IndexMap<String, Inferred>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, ta), (kb, tb))| ka == kb && same(ta, tb))
}

fn same(a: &Inferred, b: &Inferred) -> bool {
    match (a, b) {
        (Inferred::Scalar(x), Inferred::Scalar(y)) => x.len() == y.len() && x.iter().eq(y.iter()),
        (Inferred::Array(x), Inferred::Array(y)) => same(x, y),
        (Inferred::Object(x), Inferred::Object(y)) => same_fields(x, y),
        (Inferred::Any, Inferred::Any) => true,
        _ => false,
    }
}

fn path_of(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn collect_object(
    fields: &mut IndexMap<String, Inferred>,
    entries: &[(Cow<str>, Skeleton)],
    parent: &str,
) -> Result<(), String> {
    for (key, value) in entries {
        let key: &str = key;
        let path = || path_of(parent, key);
        match value {
            Skeleton::Null => {
                if !fields.contains_key(key) {
                    fields.insert(key.to_string(), Inferred::Any);
                }
            }
            Skeleton::Bool => add_scalar(fields, key, DataType::Boolean, &path())?,
            Skeleton::Int => add_scalar(fields, key, DataType::Int64, &path())?,
            Skeleton::Float => add_scalar(fields, key, DataType::Float64, &path())?,
            Skeleton::Str => add_scalar(fields, key, DataType::Utf8, &path())?,
            Skeleton::Array(items) => {
                let element = element_type(items, &path())?;
                if matches!(fields.get(key), None | Some(Inferred::Any)) {
                    let fresh = match element {
                        Inferred::Scalar(_) => Inferred::Scalar(IndexSet::new()),
                        Inferred::Object(_) => Inferred::Object(IndexMap::new()),
                        Inferred::Any | Inferred::Array(_) => Inferred::Any,
                    };
                    fields.insert(key.to_string(), Inferred::Array(Box::new(fresh)));
                }
                match fields.get_mut(key).expect("inserted above") {
                    Inferred::Array(inner) => merge(inner, element, &path())?,
                    scalar @ Inferred::Scalar(_) => {
                        // A field that is a scalar in some records and a list in others is a list.
                        merge(scalar, element, &path())?;
                        *scalar = Inferred::Array(Box::new(scalar.clone()));
                    }
                    t => return Err(format!("field `{}` is a list here and {} elsewhere", path(), describe(t))),
                }
            }
            Skeleton::Object(inner) => {
                if matches!(fields.get(key), None | Some(Inferred::Any)) {
                    fields.insert(key.to_string(), Inferred::Object(IndexMap::new()));
                }
                match fields.get_mut(key).expect("inserted above") {
                    Inferred::Object(sub) => collect_object(sub, inner, &path())?,
                    t => return Err(format!("field `{}` is an object here and {} elsewhere", path(), describe(t))),
                }
            }
        }
    }
    Ok(())
}

fn add_scalar(fields: &mut IndexMap<String, Inferred>, key: &str, ty: DataType, path: &str) -> Result<(), String> {
    if matches!(fields.get(key), None | Some(Inferred::Any)) {
        fields.insert(key.to_string(), Inferred::Scalar(IndexSet::new()));
    }
    match fields.get_mut(key).expect("inserted above") {
        Inferred::Scalar(set) => {
            set.insert(ty);
            Ok(())
        }
        list @ Inferred::Array(_) => merge(list, Inferred::Scalar(IndexSet::from([ty])), path),
        t => Err(format!("field `{path}` is a scalar here and {} elsewhere", describe(t))),
    }
}

/// The element type of one list value.
fn element_type(items: &[Skeleton], path: &str) -> Result<Inferred, String> {
    match items.first() {
        None => Ok(Inferred::Any),
        Some(Skeleton::Array(_)) => {
            let mut inner = Inferred::Any;
            for item in items {
                let Skeleton::Array(sub) = item else {
                    return Err(format!("field `{path}` is a list of lists with an element that is not a list"));
                };
                merge(&mut inner, element_type(sub, path)?, path)?;
            }
            Ok(Inferred::Array(Box::new(inner)))
        }
        Some(Skeleton::Object(_)) => {
            let mut fields = IndexMap::new();
            for item in items {
                let Skeleton::Object(entries) = item else {
                    return Err(format!("field `{path}` is a list of objects with an element that is not an object"));
                };
                collect_object(&mut fields, entries, path)?;
            }
            Ok(Inferred::Object(fields))
        }
        Some(_) => {
            let mut set = IndexSet::new();
            for item in items {
                match item {
                    Skeleton::Null => {}
                    Skeleton::Bool => _ = set.insert(DataType::Boolean),
                    Skeleton::Int => _ = set.insert(DataType::Int64),
                    Skeleton::Float => _ = set.insert(DataType::Float64),
                    Skeleton::Str => _ = set.insert(DataType::Utf8),
                    Skeleton::Array(_) | Skeleton::Object(_) => {
                        return Err(format!(
                            "field `{path}` is a list of scalars with an element that is a list or an object"
                        ))
                    }
                }
            }
            Ok(Inferred::Scalar(set))
        }
    }
}

fn merge(into: &mut Inferred, other: Inferred, path: &str) -> Result<(), String> {
    match (into, other) {
        (Inferred::Array(a), Inferred::Array(b)) => merge(a, *b, path),
        (Inferred::Scalar(a), Inferred::Scalar(b)) => {
            a.extend(b);
            Ok(())
        }
        (Inferred::Object(a), Inferred::Object(b)) => {
            for (k, v) in b {
                let sub = path_of(path, &k);
                merge(a.entry(k).or_insert(Inferred::Any), v, &sub)?;
            }
            Ok(())
        }
        (slot @ Inferred::Any, other) => {
            *slot = other;
            Ok(())
        }
        (_, Inferred::Any) => Ok(()),
        (Inferred::Array(a), scalar @ Inferred::Scalar(_)) => merge(a, scalar, path),
        (slot @ Inferred::Scalar(_), Inferred::Array(mut inner)) => {
            merge(&mut inner, slot.clone(), path)?;
            *slot = Inferred::Array(inner);
            Ok(())
        }
        (a, b) => Err(format!("field `{path}` is {} in some records and {} in others", describe(a), describe(&b))),
    }
}

fn describe(t: &Inferred) -> &'static str {
    match t {
        Inferred::Scalar(_) => "a scalar",
        Inferred::Array(_) => "a list",
        Inferred::Object(_) => "an object",
        Inferred::Any => "null",
    }
}

fn list_of(ty: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(ty, true)))
}

/// One type for a set of scalar types seen in one place.
fn coerce(types: &IndexSet<DataType>) -> DataType {
    let mut it = types.iter().cloned();
    let first = it.next().unwrap_or(DataType::Utf8);
    it.fold(first, coerce_pair)
}

fn coerce_pair(a: DataType, b: DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (Null, o) | (o, Null) => o,
        (Boolean, Boolean) => Boolean,
        (Int64, Int64) => Int64,
        (Float64 | Int64, Float64) | (Float64, Int64) => Float64,
        (List(a), List(b)) => list_of(coerce_pair(a.data_type().clone(), b.data_type().clone())),
        (List(e), other) | (other, List(e)) => list_of(coerce_pair(e.data_type().clone(), other)),
        _ => Utf8,
    }
}

fn type_of(t: &Inferred) -> DataType {
    match t {
        Inferred::Scalar(set) => coerce(set),
        Inferred::Object(fields) => DataType::Struct(fields_of(fields)),
        Inferred::Array(inner) => list_of(type_of(inner)),
        Inferred::Any => DataType::Null,
    }
}

fn fields_of(fields: &IndexMap<String, Inferred>) -> Fields {
    fields.iter().map(|(k, t)| Field::new(k, type_of(t), true)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow_json_schema(lines: &[String]) -> Result<Schema, String> {
        let text = lines.join("\n");
        arrow_json::reader::infer_json_schema(std::io::Cursor::new(text), None)
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    }

    fn ours(lines: &[String]) -> Result<Schema, String> {
        let mut inf = SchemaInference::default();
        for l in lines {
            inf.add(l)?;
        }
        Ok(inf.schema())
    }

    #[test]
    fn agrees_with_arrow_json_on_shapes_people_write() {
        let cases: Vec<Vec<&str>> = vec![
            vec![
                r#"{"instruction": "a", "response": "b", "quality_score": 0.5, "n": 3, "ok": true}"#,
                r#"{"quality_score": 1, "extra": null}"#,
            ],
            vec![
                r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"}}]}]}"#,
                r#"{"messages": []}"#,
            ],
            vec![r#"{"a": 1}"#, r#"{"a": [2, 3.5]}"#, r#"{"a": null}"#],
            vec![r#"{"a": [1, null]}"#, r#"{"a": 5}"#],
            vec![r#"{"a": []}"#, r#"{"a": [[1], [2.5, null]]}"#, r#"{"a": [[]]}"#],
            vec![r#"{"a": null}"#, r#"{"a": {"b": 1}}"#, r#"{"a": {"c": [true]}}"#],
            vec![r#"{"a": "x"}"#, r#"{"a": 2}"#],
            vec![r#"{"a": 18446744073709551615}"#, r#"{"b": -1}"#],
            vec![r#"{"a": [{"x": 1}]}"#, r#"{"a": [{"y": "s"}, {"x": 2.5}]}"#],
            vec![r#"{"a": 1, "a": "dup"}"#],
        ];
        for lines in cases {
            let lines: Vec<String> = lines.into_iter().map(String::from).collect();
            assert_eq!(ours(&lines).unwrap(), arrow_json_schema(&lines).unwrap(), "{lines:?}");
        }
    }

    #[test]
    fn refuses_what_arrow_json_refuses_and_names_the_field() {
        for lines in [
            vec![r#"{"a": {"b": 1}}"#, r#"{"a": 2}"#],
            vec![r#"{"a": 2}"#, r#"{"a": {"b": 1}}"#],
            vec![r#"{"a": [1, [2]]}"#],
            vec![r#"{"a": [{"b": 1}, 2]}"#],
            vec![r#"{"x": {"a": [1]}}"#, r#"{"x": {"a": {"c": 1}}}"#],
        ] {
            let lines: Vec<String> = lines.into_iter().map(String::from).collect();
            assert!(arrow_json_schema(&lines).is_err(), "{lines:?}");
            let err = ours(&lines).unwrap_err();
            assert!(err.contains("`a`") || err.contains("`x.a`"), "{err}");
        }
    }

    /// Random records from a small alphabet of shapes: the two agree on the
    /// schema whenever arrow-json gives one, and refuse the same ones.
    #[test]
    fn random_records_agree_with_arrow_json() {
        let mut next = crate::test_rng::below(0x2545_F491_4F6C_DD1D);
        let mut agreed = 0;
        for _ in 0..400 {
            let lines: Vec<String> = (0..1 + next(4)).map(|_| record(&mut next)).collect();
            match (ours(&lines), arrow_json_schema(&lines)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{lines:?}");
                    agreed += 1;
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{lines:?}: ours {a:?}, arrow-json {b:?}"),
            }
        }
        assert!(agreed > 150, "only {agreed} of 400 gave a schema");
    }

    /// Records repeating a few random shapes, as files do: skipping shapes
    /// already inferred gives the schema (or the refusal) a full inference
    /// of every record gives.
    #[test]
    fn skipping_known_shapes_changes_no_schema() {
        let mut next = crate::test_rng::below(0x9E37_79B9_7F4A_7C15);
        let mut skipped = 0;
        for _ in 0..200 {
            let pool: Vec<String> = (0..1 + next(5)).map(|_| record(&mut next)).collect();
            let lines: Vec<String> = (0..40).map(|_| pool[next(pool.len() as u64) as usize].clone()).collect();
            let mut inf = SchemaInference::default();
            let mut full = SchemaInference::default();
            let mut ours = Ok(());
            let mut want = Ok(());
            for l in &lines {
                if ours.is_ok() {
                    ours = inf.add(l);
                }
                if want.is_ok() {
                    full.known.clear();
                    want = full.add(l);
                }
            }
            assert_eq!(ours.is_ok(), want.is_ok(), "{lines:?}");
            if ours.is_ok() {
                assert_eq!(inf.schema(), full.schema(), "{lines:?}");
                assert_eq!(inf.schema(), arrow_json_schema(&lines).unwrap(), "{lines:?}");
            }
            skipped += inf.known.len();
        }
        assert!(skipped > 100, "the shape memory was used: {skipped}");
    }

    /// The byte scan gives `scan_shape`'s shape or none, on random texts
    /// (numbers of every form, escapes in keys and strings, nesting, some
    /// damaged), and gives one for plain records.
    #[test]
    fn quick_shape_is_scan_shape_or_none() {
        let mut next = crate::test_rng::below(0x005E_ED0F_5CA7);
        let mut quick_used = 0;
        for _ in 0..5000 {
            let mut t = String::new();
            crate::test_rng::json_value(&mut next, &mut t, 0);
            if next(8) == 0 && !t.is_empty() {
                // Damage: cut the text or add a stray byte.
                let at = t.char_indices().map(|(i, _)| i).nth(next(t.chars().count() as u64) as usize).unwrap_or(0);
                if next(2) == 0 {
                    t.truncate(at)
                } else {
                    t.insert(at, [',', '}', ']', '"'][next(4) as usize])
                }
            }
            let (mut quick, mut slow) = (Vec::new(), Vec::new());
            let want = scan_shape(&t, &mut slow).ok().map(|_| slow);
            if quick_shape(t.as_bytes(), &mut quick).is_some() {
                quick_used += 1;
                // Callers hand it parsed records, so only valid texts must agree.
                if serde_json::from_str::<serde_json::Value>(&t).is_ok() {
                    assert_eq!(Some(quick), want, "{t}");
                }
            }
        }
        assert!(quick_used > 1000, "the byte scan answered {quick_used} of 5000");
        let mut shape = Vec::new();
        let plain = r#"{"instruction": "a \"quoted\" task\n", "response": "é ✓", "quality_score": 0.75, "n": -3, "tags": ["a"], "m": {"x": null, "y": true}}"#;
        assert!(quick_shape(plain.as_bytes(), &mut shape).is_some());
    }

    fn record(next: &mut impl FnMut(u64) -> u64) -> String {
        let mut t = String::from("{");
        for k in ["a", "b", "c"] {
            if next(3) == 0 {
                continue;
            }
            if t.len() > 1 {
                t.push(',');
            }
            t.push_str(&format!("\"{k}\":"));
            gen(next, &mut t, 0);
        }
        t.push('}');
        t
    }

    fn gen(next: &mut impl FnMut(u64) -> u64, t: &mut String, depth: usize) {
        match next(if depth > 2 { 5 } else { 7 }) {
            0 => t.push_str("null"),
            1 => t.push_str(["1", "-2", "2.5", "18446744073709551615"][next(4) as usize]),
            2 => t.push_str("\"s\""),
            3 => t.push_str("true"),
            4 => t.push_str(["[]", "[1,2]", "[1.5,null]", "[\"x\"]"][next(4) as usize]),
            5 => {
                t.push('[');
                for i in 0..next(3) {
                    if i > 0 {
                        t.push(',');
                    }
                    gen(next, t, depth + 1);
                }
                t.push(']');
            }
            _ => {
                t.push('{');
                for k in ["x", "y"] {
                    if next(2) == 0 {
                        continue;
                    }
                    if !t.ends_with('{') {
                        t.push(',');
                    }
                    t.push_str(&format!("\"{k}\":"));
                    gen(next, t, depth + 1);
                }
                t.push('}');
            }
        }
    }
}
