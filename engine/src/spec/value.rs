//! A YAML value with the location of every node. `params:` and `resources:`
//! are read as this: the engine gets plain JSON ([`Node::to_json`]), and an
//! error about a dotted field (`features.1.pattern`) is pointed at where that
//! very field is written ([`Node::spans`]), list items included.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Location, Spanned};

use crate::error::{SourceFile, Span};

/// A YAML node as JSON sees it, with a location per child.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// null, a bool, a number or a string, as `serde_json::Value` reads it.
    Scalar(Value),
    Seq(Vec<Spanned<Node>>),
    /// Entries in the order written; a repeated key overrides, as in JSON.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// The value, exactly as `serde_json::Value` would have read the YAML.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Node::Scalar(v) => v.clone(),
            Node::Seq(items) => Value::Array(items.iter().map(|i| i.value.to_json()).collect()),
            Node::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    m.insert(k.value.clone(), v.value.to_json());
                }
                Value::Object(m)
            }
        }
    }

    /// Where each dotted path below this node is written (`rules`,
    /// `rules.1`, `rules.1.regex`): a map entry at its key, a list item at
    /// the item.
    pub(crate) fn spans(&self, src: &SourceFile) -> BTreeMap<String, Span> {
        let mut out = BTreeMap::new();
        self.collect(src, "", &mut out);
        out
    }

    fn collect(&self, src: &SourceFile, prefix: &str, out: &mut BTreeMap<String, Span>) {
        let join = |part: &str| if prefix.is_empty() { part.to_string() } else { format!("{prefix}.{part}") };
        match self {
            Node::Scalar(_) => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = join(&i.to_string());
                    out.insert(path.clone(), node_span(src, &item.referenced));
                    item.value.collect(src, &path, out);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    let path = join(&k.value);
                    // A repeated key: the last one is the value JSON keeps.
                    out.insert(path.clone(), super::load::span_of(src, &k.referenced, k.value.len()));
                    v.value.collect(src, &path, out);
                }
            }
        }
    }
}

/// Where `field` (dotted) is written: the path itself, else the nearest
/// enclosing path that is written (`models.1` for `models.1.name` when the
/// item is a plain string).
pub(crate) fn field_span(spans: &BTreeMap<String, Span>, field: &str) -> Option<Span> {
    let mut path = field;
    loop {
        if let Some(span) = spans.get(path) {
            return Some(*span);
        }
        path = &path[..path.rfind('.')?];
    }
}

/// The span of a node at `loc`: the scalar's text where known, else its first character.
fn node_span(src: &SourceFile, loc: &Location) -> Span {
    if loc.line() == 0 {
        return Span { offset: 0, len: 0 };
    }
    let offset = src.offset(loc.line(), loc.column());
    let len = loc.span().byte_len().map(|l| l as usize).filter(|l| *l > 0).unwrap_or(1);
    Span { offset, len: len.min(src.text.len() - offset) }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Mirrors `serde_json::Value`'s visitor, so [`Node::to_json`] is what it would give.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Node, E> {
        Number::deserialize(serde::de::value::I128Deserializer::new(v)).map(|n| Node::Scalar(Value::Number(n)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Node, E> {
        Number::deserialize(serde::de::value::U128Deserializer::new(v)).map(|n| Node::Scalar(Value::Number(n)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (SourceFile, Spanned<Node>) {
        let node: Spanned<Node> = serde_saphyr::from_str(yaml).unwrap();
        (SourceFile::new("p.yaml".into(), yaml.to_string()), node)
    }

    /// The text at `field`'s span, and its 1-based line.
    fn at(yaml: &str, field: &str) -> (String, usize) {
        let (src, node) = parse(yaml);
        let span = field_span(&node.value.spans(&src), field).unwrap();
        (src.text[span.offset..span.offset + span.len].to_string(), src.line_of(span.offset))
    }

    #[test]
    fn json_is_what_serde_json_reads() {
        for yaml in [
            "a: 1\nb: -2\nc: 1.5\nd: .nan\ne: ~\nf: true\ng: 'x'\nh: [1, {i: j}]\n",
            "1: x\ntrue: y\n~: z\n",
            "big: 340282366920938463463374607431768211455\nneg: -170141183460469231731687303715884105728\n",
            "a: &x {p: 1, q: [2]}\nb: *x\nc:\n  <<: *x\n  q: 3\n",
            "k: 1\nk: 2\nj: 0\n",
            "s: !!str 12\nl: |\n  two\n  lines\n",
            "[]\n",
            "{}\n",
            "- - 1\n  - 2\n- ''\n",
        ] {
            let want = serde_saphyr::from_str::<Value>(yaml).map_err(|e| e.to_string());
            let got = serde_saphyr::from_str::<Node>(yaml).map(|n| n.to_json()).map_err(|e| e.to_string());
            assert_eq!(got, want, "{yaml}");
            if let Ok(want) = want {
                assert_eq!(serde_json::to_string(&got.unwrap()).unwrap(), serde_json::to_string(&want).unwrap());
            }
        }
    }

    #[test]
    fn the_second_item_is_found_in_the_second_item() {
        let yaml = "features:\n  - name: a\n    pattern: x\n  - name: b\n    pattern: y\n";
        assert_eq!(at(yaml, "features.1.pattern"), ("pattern".into(), 5));
        assert_eq!(at(yaml, "features.0.pattern"), ("pattern".into(), 3));
        assert_eq!(at(yaml, "features.1"), ("n".into(), 4));
        // Not written: the nearest written path.
        assert_eq!(at(yaml, "features.1.flags"), ("n".into(), 4));
        assert_eq!(at(yaml, "features"), ("features".into(), 1));
        let (src, node) = parse(yaml);
        assert_eq!(field_span(&node.value.spans(&src), "other"), None);
    }

    #[test]
    fn nested_maps_and_scalar_items() {
        let yaml = "tolerance:\n  acc:\n    abs: 1\n    rel: 2\nrel: 3\nmodels:\n  - a\n  - \"bee\"\n";
        assert_eq!(at(yaml, "tolerance.acc.rel"), ("rel".into(), 4));
        assert_eq!(at(yaml, "rel"), ("rel".into(), 5));
        assert_eq!(at(yaml, "models.1"), ("\"bee\"".into(), 8));
        assert_eq!(at(yaml, "models.1.name"), ("\"bee\"".into(), 8));
    }

    #[test]
    fn flow_style() {
        let yaml = "rules: [{regex: a}, {regex: b, 'flags': i}]\nx: {a: 1, b: {c: 2}}\n";
        let (src, node) = parse(yaml);
        let spans = node.value.spans(&src);
        let second = field_span(&spans, "rules.1.regex").unwrap();
        assert_eq!(&src.text[second.offset..second.offset + 5], "regex");
        assert_eq!(second.offset, yaml.rfind("regex").unwrap());
        let flags = field_span(&spans, "rules.1.flags").unwrap();
        assert_eq!(&src.text[flags.offset..flags.offset + flags.len], "'flags'");
        let c = field_span(&spans, "x.b.c").unwrap();
        assert_eq!((c.offset, c.len), (yaml.find("c: 2").unwrap(), 1));
    }
}
