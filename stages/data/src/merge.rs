//! `kind: merge` — concatenate several JSONL files, recording where each
//! record came from, optionally dropping exact duplicates.
//!
//! ```yaml
//! params:
//!   names: [phase6, html]        # one per dep; default each dep's file stem
//!   source_field: _source        # provenance field; null = add none
//!   dedup_key: null              # a field path, or `text` (the record text,
//!                                # case and whitespace folded); first wins
//!   text_fields: []              # what `text` means; [] = the record's turns
//!   on_error: fail               # or `skip` malformed lines
//!   format: null                 # a record shape (as `convert`'s `to`) every
//!                                # record is converted to; null = as they are
//! ```
//! deps: the inputs, merged in declared order. outs[0]: the merged records,
//! each with `source_field` set (an existing value is replaced).
//! outs[1] (optional): what was dropped: duplicates with `_duplicate_of:
//! "<name>:<line>"`, and skipped malformed lines.
//! Records missing the `dedup_key` field are never duplicates.
//! Metrics: `records_out`, `duplicates`, `malformed`, `inputs` ({name:
//! {records, kept, duplicates, malformed}}).

use std::collections::HashMap;

use dvx_cache::canonical_json;
use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::convert::shapes::RecordShape;
use crate::convert::Converter;
use crate::field_check::FieldsSeen;
use crate::records::{field, out_writer, record_text, Record};
use crate::support::{
    bad_line_record, digest, digest_bytes, normalize_text, par_map, pool, read_chunk, ChunkReader, OnError,
};

/// The `merge` stage kind.
pub struct Merge;

/// Params of `merge`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default = "default_source_field")]
    source_field: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    text_fields: Vec<String>,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    format: Option<RecordShape>,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("names", "list of strings", "-", "One name per dep; default each dep's file stem."),
            ParamDoc::new(
                "source_field",
                "string or null",
                "_source",
                "Provenance field set on every record; null = add none.",
            ),
            ParamDoc::new(
                "dedup_key",
                "field path or `text`",
                "-",
                "Drop later records with the same key (first wins).",
            ),
            ParamDoc::new("text_fields", "list of field paths", "[]", "What `text` means; `[]` = the record's turns."),
            ParamDoc::new("on_error", "fail | skip", "fail", "What a malformed line does: stop, or count and reject."),
            ParamDoc::new(
                "format",
                "alpaca | sharegpt | messages | prompt_completion | text",
                "-",
                "Convert every record to this shape (as `convert`), so inputs of several shapes merge into one.",
            ),
        ]
    }
}

fn default_source_field() -> Option<String> {
    Some("_source".into())
}

fn parse(p: Params, deps: usize) -> Result<Params, ParamError> {
    if let Some(names) = &p.names {
        if names.len() != deps {
            return Err(ParamError::field("names", format!("{} names for {deps} deps", names.len())));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(ParamError::field(format!("names.{i}"), format!("`{n}` is used twice")));
            }
        }
    }
    if p.dedup_key.as_deref() == Some("") {
        return Err(ParamError::field("dedup_key", "expected a field path or `text`"));
    }
    Ok(p)
}

/// Each dep's name: given, or its file stem (repeats get `#2`, `#3`).
fn names(p: &Params, deps: &[std::path::PathBuf]) -> Vec<String> {
    if let Some(n) = &p.names {
        return n.clone();
    }
    let mut out: Vec<String> = Vec::new();
    for d in deps {
        let stem = d.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut name = stem.clone();
        let mut k = 1;
        while out.contains(&name) {
            k += 1;
            name = format!("{stem}#{k}");
        }
        out.push(name);
    }
    out
}

/// The dedup digest of a record, or `None` when it has no key.
fn key_of(p: &Params, rec: &Record) -> Option<[u8; 16]> {
    match p.dedup_key.as_deref()? {
        "text" => Some(digest(&normalize_text(&record_text(rec, &p.text_fields)))),
        path => {
            let v = field(rec, path).filter(|v| !v.is_null())?;
            Some(digest_bytes(&canonical_json(v)))
        }
    }
}

#[derive(Default)]
struct InputCount {
    records: usize,
    kept: usize,
    duplicates: usize,
    malformed: usize,
}

impl TypedStage for Merge {
    const KIND: &'static str = "merge";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "merged records, then optionally what was dropped";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, params: Params, shape: Shape) -> Result<Params, ParamError> {
        parse(params, shape.deps)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let names = names(p, ctx.deps);
        let pool = pool(ctx.threads)?;
        let converter = p.format.map(Converter::to);
        if let Some(f) = p.format {
            writeln!(ctx.log, "merge: every record converted to {}", f.name())?;
        }
        let mut out = out_writer(ctx, 0)?;
        let mut dropped = (ctx.outs.len() > 1).then(|| out_writer(ctx, 1)).transpose()?;
        // digest -> (input index, line) of the first record with that key.
        let mut seen: HashMap<[u8; 16], (usize, usize)> = HashMap::new();
        let mut counts: Vec<InputCount> = Vec::new();
        let mut bad = Vec::new();
        let fields = match p.dedup_key.as_deref() {
            None => FieldsSeen::new(),
            Some("text") => FieldsSeen::new().name_all("text_fields", &p.text_fields).text_from(&p.text_fields),
            Some(path) => FieldsSeen::new().name("dedup_key", path),
        };
        for (src, dep) in ctx.deps.iter().enumerate() {
            let mut c = InputCount::default();
            let mut reader = ChunkReader::open(dep)?;
            loop {
                let chunk = read_chunk(&mut reader, &pool, p.on_error, &mut bad)?;
                for b in bad.drain(..) {
                    c.malformed += 1;
                    if let Some(w) = dropped.as_mut() {
                        w.write(&bad_line_record(&b, "_error"))?;
                    }
                }
                if chunk.is_empty() {
                    break;
                }
                let chunk = match &converter {
                    None => chunk,
                    Some(conv) => {
                        let converted = par_map(&pool, &chunk, |(_, rec)| conv.convert(rec.clone()));
                        let mut out = Vec::with_capacity(chunk.len());
                        for ((line, _), r) in chunk.into_iter().zip(converted) {
                            let (rec, _) = r.map_err(|reason| {
                                StageFailure::bad_input(format!(
                                    "{}: record {line}: cannot convert to {}: {reason}",
                                    names[src],
                                    conv.to.name()
                                ))
                            })?;
                            out.push((line, rec));
                        }
                        out
                    }
                };
                let keys = par_map(&pool, &chunk, |(_, rec)| {
                    fields.observe(rec);
                    key_of(p, rec)
                });
                for ((line, mut rec), key) in chunk.into_iter().zip(keys) {
                    c.records += 1;
                    let first = key.and_then(|k| match seen.get(&k) {
                        Some(at) => Some(*at),
                        None => {
                            seen.insert(k, (src, line));
                            None
                        }
                    });
                    if let Some(f) = &p.source_field {
                        rec.insert(f.clone(), json!(names[src]));
                    }
                    match first {
                        None => {
                            c.kept += 1;
                            out.write(&rec)?;
                        }
                        Some((s, l)) => {
                            c.duplicates += 1;
                            if let Some(w) = dropped.as_mut() {
                                rec.insert("_duplicate_of".into(), json!(format!("{}:{l}", names[s])));
                                w.write(&rec)?;
                            }
                        }
                    }
                }
            }
            counts.push(c);
        }
        fields.check()?;
        let written = out.finish()?;
        if let Some(w) = dropped {
            w.finish()?;
        }
        for (name, c) in names.iter().zip(&counts) {
            writeln!(ctx.log, "{name}: {} record(s), {} kept, {} duplicate(s)", c.records, c.kept, c.duplicates)?;
        }
        if let Some(l) = fields.text_report("merge") {
            writeln!(ctx.log, "{l}")?;
        }
        let mut m = Metrics::new();
        m.insert("records_out".into(), json!(written));
        m.insert("duplicates".into(), json!(counts.iter().map(|c| c.duplicates).sum::<usize>()));
        m.insert("malformed".into(), json!(counts.iter().map(|c| c.malformed).sum::<usize>()));
        m.insert(
            "inputs".into(),
            Value::Object(
                names
                    .iter()
                    .zip(&counts)
                    .map(|(n, c)| {
                        (
                            n.clone(),
                            json!({"records": c.records, "kept": c.kept, "duplicates": c.duplicates, "malformed": c.malformed}),
                        )
                    })
                    .collect(),
            ),
        );
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jsonl, run};

    fn alpaca(i: &str, o: &str) -> Value {
        json!({"instruction": i, "output": o})
    }

    #[test]
    fn concatenates_with_provenance() {
        let a = jsonl(&[alpaca("a1", "x"), alpaca("a2", "y")]);
        let b = jsonl(&[json!({"instruction": "b1", "output": "z", "_source": "old"})]);
        let r = run(Merge, &[&a, &b], &["o"], json!({"names": ["phase6", "html"]}), 2).unwrap();
        assert_eq!(
            r.records(0),
            vec![
                json!({"instruction": "a1", "output": "x", "_source": "phase6"}),
                json!({"instruction": "a2", "output": "y", "_source": "phase6"}),
                json!({"instruction": "b1", "output": "z", "_source": "html"}),
            ]
        );
        // Default names are the file stems.
        let r = run(Merge, &[&a, &b], &["o"], json!({"source_field": null}), 1).unwrap();
        assert_eq!(r.records(0)[2], json!({"instruction": "b1", "output": "z", "_source": "old"}));
        assert_eq!(
            r.metric("inputs"),
            &json!({
                "in0": {"records": 2, "kept": 2, "duplicates": 0, "malformed": 0},
                "in1": {"records": 1, "kept": 1, "duplicates": 0, "malformed": 0},
            })
        );
    }

    #[test]
    fn dedup_by_text_keeps_the_first() {
        let a = jsonl(&[alpaca("Hello  World", "x"), alpaca("other", "y"), alpaca("hello world", "x")]);
        let b = jsonl(&[alpaca("other", "y"), alpaca("new", "z")]);
        let r = run(Merge, &[&a, &b], &["o", "d"], json!({"names": ["a", "b"], "dedup_key": "text"}), 2).unwrap();
        assert_eq!(r.column(0, "instruction"), vec!["Hello  World", "other", "new"]);
        assert_eq!(r.column(1, "_duplicate_of"), vec!["a:1", "a:2"]);
        assert_eq!(r.column(1, "_source"), vec!["a", "b"]);
        assert_eq!(r.metric("duplicates"), &json!(2));
        assert_eq!(r.metric("inputs")["b"], json!({"records": 2, "kept": 1, "duplicates": 1, "malformed": 0}));
        assert_eq!(
            r.log,
            "a: 3 record(s), 2 kept, 1 duplicate(s)\nb: 2 record(s), 1 kept, 1 duplicate(s)\n\
             merge: text of 5 record(s) from their turns: alpaca: instruction + output (5)\n"
        );
    }

    #[test]
    fn dedup_by_field_ignores_records_without_it() {
        let a = jsonl(&[json!({"id": 1}), json!({"x": 1}), json!({"id": 1.5}), json!({"x": 1}), json!({"id": 1})]);
        let r = run(Merge, &[&a], &["o"], json!({"dedup_key": "id"}), 1).unwrap();
        assert_eq!(r.records(0).len(), 4);
    }

    #[test]
    fn errors_and_skips() {
        let bad = |params: Value| run(Merge, &["{}\n", "{}\n"], &["o"], params, 1).unwrap_err();
        assert_eq!(bad(json!({"names": ["a"]})), "names: 1 names for 2 deps");
        assert_eq!(bad(json!({"names": ["a", "a"]})), "names.1: `a` is used twice");
        assert!(bad(json!({"dedup": "text"})).starts_with("dedup: unknown field `dedup`"));
        let e = run(Merge, &["{}\n", "{}\nnope\n"], &["o"], json!({}), 1).unwrap_err();
        assert!(e.contains("in1.jsonl:2: malformed JSON"), "{e}");
        let r = run(Merge, &["{}\n", "{}\nnope\n"], &["o", "d"], json!({"on_error": "skip"}), 1).unwrap();
        assert_eq!(r.metric("malformed"), &json!(1));
        assert_eq!(r.records(1)[0]["_raw"], json!("nope"));
    }

    #[test]
    fn deterministic_across_threads() {
        let recs: Vec<Value> = (0..5000).map(|i| alpaca(&format!("q{}", i % 1500), "a")).collect();
        let text = jsonl(&recs);
        let a = run(Merge, &[&text, &text], &["o", "d"], json!({"dedup_key": "text"}), 1).unwrap();
        let b = run(Merge, &[&text, &text], &["o", "d"], json!({"dedup_key": "text"}), 4).unwrap();
        assert_eq!(a.text(0), b.text(0));
        assert_eq!(a.text(1), b.text(1));
        assert_eq!(a.metric("records_out"), &json!(1500));
    }
}
