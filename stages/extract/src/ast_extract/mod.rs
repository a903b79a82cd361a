//! `kind: ast-extract` — parse the Python files under the deps and generate
//! tool-choice examples from their definitions (seed 004, step 19.2).
//!
//! - deps: folders (e.g. a `clone` stage's out) or single `.py` files.
//! - outs[0]: examples JSONL (shape: see [`crate::example_record`]).
//! - outs[1] (optional): every definition and import, one JSON object a line.
//!
//! Files that do not parse are counted and listed in the metrics, never fatal.

mod decode;
mod defs;
mod examples;

use std::sync::Arc;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use defs::{cleandoc, extract, Def, DefKind, FileFacts, Import};
use examples::{direct_examples, grep_examples, read_examples, GenOptions, ParsedFile};

use crate::example_record::{count_metrics, to_record, Format};
use crate::grep_sim::{GrepIndex, IndexedFile};
use crate::records::{Record, RecordWriter};
use crate::source_files::list_files;

/// How many examples of each pattern to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Counts {
    /// Search examples.
    pub grep: usize,
    /// Read-a-range examples.
    pub read: usize,
    /// Direct explanations.
    pub direct: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Counts { grep: 300, read: 150, direct: 100 }
    }
}

/// Params of `ast-extract`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Examples per pattern (default 300 / 150 / 100).
    pub counts: Counts,
    /// Sampling and wording seed (default 0).
    pub seed: u64,
    /// `chat` (default) or `alpaca`.
    pub format: Format,
    /// Optional system message for chat records.
    pub system: Option<String>,
    /// Skip searches with more result lines than this (default 10).
    pub max_grep_results: usize,
    /// Longest range a read example shows (default 40).
    pub max_read_lines: usize,
    /// Leave `_private` names out of examples (default true).
    pub skip_private: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "counts",
                "{grep, read, direct}",
                "{grep: 300, read: 150, direct: 100}",
                "Examples per pattern.",
            ),
            ParamDoc::new("seed", "integer", "0", "Sampling and wording seed."),
            ParamDoc::new("format", "chat | alpaca", "chat", "Output record shape."),
            ParamDoc::new("system", "string", "-", "System message of chat records."),
            ParamDoc::new("max_grep_results", "integer", "10", "Skip searches with more result lines than this."),
            ParamDoc::new("max_read_lines", "integer", "40", "Longest range a read example shows."),
            ParamDoc::new("skip_private", "bool", "true", "Leave `_private` names out of examples."),
        ]
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            counts: Counts::default(),
            seed: 0,
            format: Format::Chat,
            system: None,
            max_grep_results: 10,
            max_read_lines: 40,
            skip_private: true,
        }
    }
}

/// A file after reading and parsing: its dep, text and facts (or why not), raw bytes.
type ReadFile = (usize, Result<(String, FileFacts), String>, Arc<Vec<u8>>);

/// The `ast-extract` kind.
pub struct AstExtract;

impl TypedStage for AstExtract {
    const KIND: &'static str = "ast-extract";
    const VERSION: u32 = 2;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "folders of Python files";
    const OUTS_ARE: &'static str = "examples JSONL, then optionally definitions JSONL";
    type Params = Params;
    type Prepared = Params;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..2)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Params, ParamError> {
        if p.max_read_lines == 0 {
            return Err(ParamError::field("max_read_lines", "must be at least 1"));
        }
        Ok(p)
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let files = list_files(ctx.deps, &[".py"])?;
        writeln!(ctx.log, "ast-extract: {} Python file(s)", files.len())?;

        let read: Vec<ReadFile> = files
            .par_iter()
            .map(|f| {
                let root_id = f.dep;
                match std::fs::read(&f.abs) {
                    Err(e) => (root_id, Err(format!("cannot read: {e}")), Arc::new(Vec::new())),
                    Ok(bytes) => {
                        let bytes = Arc::new(bytes);
                        let parsed = decode::python_text(&bytes)
                            .and_then(|text| extract(&text).map(|facts| (text, facts)));
                        (root_id, parsed, bytes)
                    }
                }
            })
            .collect();

        let mut parsed = Vec::new();
        let mut failed = Vec::new();
        // One grep index per dep root; file deps each search their own folder.
        let mut roots: Vec<(usize, Vec<IndexedFile>)> = Vec::new();
        let mut lines_total = 0usize;
        for (f, (root_key, result, bytes)) in files.iter().zip(read) {
            let root_id = match roots.iter().position(|(k, _)| *k == root_key) {
                Some(i) => i,
                None => {
                    roots.push((root_key, Vec::new()));
                    roots.len() - 1
                }
            };
            roots[root_id].1.push(IndexedFile { rel: f.rel.clone(), binary: GrepIndex::is_binary(&bytes), bytes });
            match result {
                Err(e) => failed.push(format!("{}: {e}", f.rel)),
                Ok((text, facts)) => {
                    lines_total += facts.lines;
                    // A file given directly as a dep has no folder grep could
                    // search as the example says, so it gets no grep examples.
                    let (repo, search_dir) = match f.rel.split_once('/') {
                        Some((top, _)) => (top.to_string(), top.to_string()),
                        None if f.file_dep => (
                            f.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into()),
                            String::new(),
                        ),
                        None => (
                            f.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into()),
                            ".".to_string(),
                        ),
                    };
                    parsed.push(ParsedFile { rel: f.rel.clone(), repo, search_dir, root_id, text, facts });
                }
            }
        }
        let index: Vec<GrepIndex> = roots.into_iter().map(|(_, files)| GrepIndex::new(files)).collect();
        for f in &failed {
            writeln!(ctx.log, "parse failed: {f}")?;
        }

        let opts = GenOptions {
            seed: p.seed,
            max_grep_results: p.max_grep_results,
            max_read_lines: p.max_read_lines,
            skip_private: p.skip_private,
        };
        let (grep, grep_pool) = grep_examples(&parsed, &index, p.counts.grep, &opts);
        let (read, read_pool) = read_examples(&parsed, p.counts.read, &opts);
        let (direct, direct_pool) = direct_examples(&parsed, p.counts.direct, &opts);

        let mut w = RecordWriter::create(&ctx.outs[0])?;
        for ex in grep.iter().chain(&read).chain(&direct) {
            w.write(&to_record(ex, p.format, p.system.as_deref()))?;
        }
        let written = w.finish()?;

        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        let mut imports = 0;
        for f in &parsed {
            for d in &f.facts.defs {
                *kinds.entry(d.kind.as_str()).or_default() += 1;
            }
            imports += f.facts.imports.len();
        }
        if let Some(defs_out) = ctx.outs.get(1) {
            let mut w = RecordWriter::create(defs_out)?;
            for f in &parsed {
                for d in &f.facts.defs {
                    let mut r = match serde_json::to_value(d) {
                        Ok(Value::Object(m)) => m,
                        _ => Record::new(),
                    };
                    r.insert("file".into(), json!(f.rel));
                    r.insert("repo".into(), json!(f.repo));
                    w.write(&r)?;
                }
                for i in &f.facts.imports {
                    let mut r = Record::new();
                    r.insert("kind".into(), json!("import"));
                    r.insert("line".into(), json!(i.line));
                    r.insert("from".into(), json!(i.from));
                    r.insert("names".into(), json!(i.names));
                    r.insert("file".into(), json!(f.rel));
                    r.insert("repo".into(), json!(f.repo));
                    w.write(&r)?;
                }
            }
            w.finish()?;
        }

        let mut m = Metrics::new();
        m.insert("files".into(), json!(files.len()));
        m.insert("parsed".into(), json!(parsed.len()));
        m.insert("lines".into(), json!(lines_total));
        m.insert("parse_failed".into(), json!(failed.len()));
        m.insert("parse_failed_files".into(), json!(failed.iter().take(50).collect::<Vec<_>>()));
        m.insert("definitions".into(), json!(kinds));
        m.insert("imports".into(), json!(imports));
        m.insert(
            "patterns".into(),
            count_metrics(
                &[("grep", p.counts.grep), ("read", p.counts.read), ("direct", p.counts.direct)],
                &[("grep", grep.len()), ("read", read.len()), ("direct", direct.len())],
                &[("grep", grep_pool), ("read", read_pool), ("direct", direct_pool)],
            ),
        );
        m.insert("examples".into(), json!(written));
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
