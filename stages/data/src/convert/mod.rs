//! `kind: convert` — records from one shape to another: Alpaca, ShareGPT,
//! OpenAI `messages`, `prompt`/`completion`, `text`.
//!
//! ```yaml
//! params:
//!   from: null            # alpaca | sharegpt | messages | prompt_completion; null = per record
//!   to: sharegpt          # alpaca | sharegpt | messages | prompt_completion | text
//!   roles: {user: human, assistant: gpt, system: system, tool: tool}  # ShareGPT `from` names
//!   system_prompt: null   # added to records without one
//!   drop_system: false    # remove system prompts
//!   keep_fields: null     # other fields kept; null = all, [] = none
//!   drop_fields: []       # other fields dropped
//!   on_error: fail        # or `skip`: unconvertible records go to outs[1]
//! ```
//! Alpaca reads its prompt from `instruction` (or `prompt`, `question`) and
//! its answer from `output` (or `response`, `completion`, `answer`), so seed
//! 002's `instruction`/`response` records convert as they are. A record that
//! cannot be a training example (turns that do not alternate, an empty
//! turn, no answer, several exchanges for a one-exchange shape) is rejected
//! with the reason. OpenAI `tool_calls` and `tool` messages are kept as
//! they are in `messages`.
//! Metrics: `records_in`, `records_out`, `rejected`, `malformed`, `shapes`
//! (input shape → records).

pub(crate) mod shapes;

use std::collections::BTreeMap;

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::records::{out_writer, Record};
use crate::reuse::{Batch, Batches, Reuse};
use crate::support::{bad_line_record, file_name, pool, OnError};
use shapes::{RecordShape, RoleNames, SystemPolicy};

/// The `convert` stage kind.
pub struct Convert;

/// Params of `convert`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    from: Option<RecordShape>,
    to: RecordShape,
    #[serde(default)]
    roles: RoleNames,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    drop_system: bool,
    #[serde(default)]
    keep_fields: Option<Vec<String>>,
    #[serde(default)]
    drop_fields: Vec<String>,
    #[serde(default)]
    on_error: OnError,
    /// Reuse earlier runs' conversions (see docs/incremental.md). Left out
    /// of the key when on, so it changes no existing key.
    #[serde(default = "crate::reuse::on", skip_serializing_if = "crate::reuse::is_on")]
    reuse: bool,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "from",
                "alpaca | sharegpt | messages | prompt_completion",
                "-",
                "Input shape; unset = found per record.",
            ),
            ParamDoc::new("to", "alpaca | sharegpt | messages | prompt_completion | text", "required", "Output shape."),
            ParamDoc::new(
                "roles",
                "map: user, assistant, system, tool",
                "human, gpt, system, tool",
                "ShareGPT `from` names for each role, read and written.",
            ),
            ParamDoc::new("system_prompt", "string", "-", "System prompt added to records that have none."),
            ParamDoc::new("drop_system", "bool", "false", "Remove system prompts."),
            ParamDoc::new("keep_fields", "list of strings", "-", "Other fields kept; unset = all, `[]` = none."),
            ParamDoc::new("drop_fields", "list of strings", "[]", "Other fields dropped."),
            ParamDoc::new(
                "on_error",
                "fail | skip",
                "fail",
                "What an unconvertible or malformed record does: stop, or go to outs[1].",
            ),
            crate::reuse::param_doc(),
        ]
    }
}

/// Converts records to one shape; `merge` uses it for `format:`.
#[derive(Debug)]
pub struct Converter {
    pub(crate) from: Option<RecordShape>,
    pub(crate) to: RecordShape,
    pub(crate) roles: RoleNames,
    pub(crate) system: SystemPolicy,
    pub(crate) keep_fields: Option<Vec<String>>,
    pub(crate) drop_fields: Vec<String>,
    pub(crate) on_error: OnError,
}

impl Converter {
    /// To `to` from whatever shape each record has, everything else kept.
    pub(crate) fn to(to: RecordShape) -> Self {
        Converter {
            from: None,
            to,
            roles: RoleNames::default(),
            system: SystemPolicy::default(),
            keep_fields: None,
            drop_fields: Vec::new(),
            on_error: OnError::Fail,
        }
    }

    /// The record in the target shape, with the shape it was read as.
    pub(crate) fn convert(&self, record: Record) -> Result<(Record, RecordShape), String> {
        let from = match self.from {
            Some(s) => s,
            None => shapes::detect(&record)
                .ok_or("no known shape (messages, conversations, prompt/completion, instruction/output)")?,
        };
        let mut c = shapes::read(record, from, &self.roles)?;
        shapes::apply_system(&mut c, &self.system);
        shapes::check(&c)?;
        c.extra.retain(|k, _| {
            self.keep_fields.as_ref().is_none_or(|keep| keep.contains(k)) && !self.drop_fields.contains(k)
        });
        Ok((shapes::write(c, self.to, &self.roles)?, from))
    }
}

impl TypedStage for Convert {
    const KIND: &'static str = "convert";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::Exactly(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "records";
    const OUTS_ARE: &'static str = "converted records, then optionally the rejects";
    type Params = Params;
    type Prepared = Prepared;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Prepared, ParamError> {
        if p.from == Some(RecordShape::Text) {
            return Err(ParamError::field("from", "a `text` record has no turns to convert from"));
        }
        if p.drop_system && p.system_prompt.is_some() {
            return Err(ParamError::field("system_prompt", "set `system_prompt` or `drop_system`, not both"));
        }
        let salt = serde_json::to_value(&p).map_err(|e| ParamError::whole(e.to_string()))?;
        let reuse = p.reuse;
        let conv = Converter {
            from: p.from,
            to: p.to,
            roles: p.roles,
            system: SystemPolicy { add: p.system_prompt, drop: p.drop_system },
            keep_fields: p.keep_fields,
            drop_fields: p.drop_fields,
            on_error: p.on_error,
        };
        Ok(Prepared { conv, salt, reuse })
    }

    fn execute(&self, prepared: &Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let conv = &prepared.conv;
        let dep = &ctx.deps[0];
        let pool = pool(ctx.threads)?;
        // Under `skip`, unconvertible records go to outs[1] (only counted without it).
        let mut out = out_writer(ctx, 0)?;
        let mut rejects = (ctx.outs.len() > 1).then(|| out_writer(ctx, 1)).transpose()?;
        let (mut records_in, mut rejected, mut malformed) = (0usize, 0usize, 0usize);
        let mut shapes_seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut reuse = Reuse::new(ctx.memo, Self::KIND, Self::VERSION, &prepared.salt, prepared.reuse);
        let mut batches = Batches::open(dep)?;
        while let Some(batch) = batches.next_batch()? {
            let results = reuse.results(&batch, &pool, |i| converted(conv, dep, &batch, i))?;
            for ((at, item), result) in batch.items.iter().zip(results) {
                match result {
                    Converted::Out { shape, line } => {
                        records_in += 1;
                        *shapes_seen.entry(shape).or_default() += 1;
                        out.write_json_line(&line)?;
                    }
                    Converted::Rejected { line } => {
                        records_in += 1;
                        rejected += 1;
                        if let Some(w) = rejects.as_mut() {
                            w.write_json_line(&line)?;
                        }
                    }
                    Converted::Bad { reason } => {
                        malformed += 1;
                        if let Some(w) = rejects.as_mut() {
                            w.write(&bad_line_record(&batch.bad_line(*at, item, reason), "_error"))?;
                        }
                    }
                }
            }
        }
        tracing::info!(stage = ctx.name, processed = reuse.processed, reused = reuse.reused, "convert done");
        let written = out.finish()?;
        if let Some(w) = rejects {
            w.finish()?;
        }
        let seen: Vec<String> = shapes_seen.iter().map(|(s, n)| format!("{n} {s}")).collect();
        writeln!(
            ctx.log,
            "convert: {records_in} record(s) read as {} → {written} {}, {rejected} rejected, {malformed} malformed",
            if seen.is_empty() { "nothing".into() } else { seen.join(", ") },
            conv.to.name()
        )?;
        writeln!(ctx.log, "{}", reuse.summary())?;
        let mut m = Metrics::new();
        m.insert("records_in".into(), json!(records_in));
        m.insert("records_out".into(), json!(written));
        m.insert("rejected".into(), json!(rejected));
        m.insert("malformed".into(), json!(malformed));
        m.insert("shapes".into(), Value::Object(shapes_seen.into_iter().map(|(k, v)| (k, json!(v))).collect()));
        Ok(m)
    }
}

/// `convert`'s params, ready: the converter, and what salts its memo.
pub struct Prepared {
    conv: Converter,
    salt: Value,
    reuse: bool,
}

/// What `convert` made of one input item, kept across runs.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Converted {
    /// Converted: the shape it was read as, and the line written.
    #[serde(rename = "o")]
    Out {
        #[serde(rename = "s")]
        shape: String,
        #[serde(rename = "l")]
        line: String,
    },
    /// Unconvertible (under `skip`): the record with its `_error`.
    #[serde(rename = "r")]
    Rejected {
        #[serde(rename = "l")]
        line: String,
    },
    /// Malformed (under `skip`): the reader's reason.
    #[serde(rename = "b")]
    Bad {
        #[serde(rename = "r")]
        reason: String,
    },
}

/// Convert item `i` of `batch`; under `fail`, a bad or unconvertible record ends the stage.
fn converted(conv: &Converter, dep: &std::path::Path, batch: &Batch, i: usize) -> Result<Converted, StageFailure> {
    let rec = match batch.parse(i) {
        Ok(rec) => rec,
        Err(b) if conv.on_error == OnError::Skip => return Ok(Converted::Bad { reason: b.reason }),
        Err(b) => return Err(b.into()),
    };
    let line = |r: &Record| serde_json::to_string(r).map_err(|e| StageFailure::new(format!("cannot write a record: {e}")));
    match conv.convert(rec.clone()) {
        Ok((converted, from)) => Ok(Converted::Out { shape: from.name().into(), line: line(&converted)? }),
        Err(reason) if conv.on_error == OnError::Skip => {
            let mut r = rec;
            r.insert("_error".into(), json!(reason));
            Ok(Converted::Rejected { line: line(&r)? })
        }
        Err(reason) => Err(StageFailure::bad_input(format!(
            "{}: record {}: cannot convert to {}: {reason}",
            file_name(dep),
            batch.items[i].0,
            conv.to.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jsonl, run};

    fn seed(i: &str, r: &str) -> Value {
        json!({"instruction": i, "response": r, "source": "alpaca", "quality_score": 0.9, "category": "qa"})
    }

    #[test]
    fn seed_records_become_sharegpt_with_their_fields() {
        let input = jsonl(&[seed("q1", "a1"), seed("q2", "a2")]);
        let r = run(Convert, &[&input], &["o.jsonl"], json!({"to": "sharegpt", "drop_fields": ["quality_score"]}), 2)
            .unwrap();
        assert_eq!(
            r.records(0)[0],
            json!({"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}],
                   "source": "alpaca", "category": "qa"})
        );
        assert_eq!(r.metric("shapes"), &json!({"alpaca": 2}));
        assert!(r.log.contains("2 record(s) read as 2 alpaca → 2 sharegpt"), "{}", r.log);
    }

    #[test]
    fn every_shape_round_trips_through_messages() {
        let msgs = json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                       {"role": "assistant", "content": "a"}], "id": 7});
        for to in ["alpaca", "sharegpt", "messages"] {
            let there = run(Convert, &[&jsonl(&[msgs.clone()])], &["o.jsonl"], json!({"to": to}), 1).unwrap();
            let back = run(Convert, &[&there.text(0)], &["o.jsonl"], json!({"to": "messages"}), 1).unwrap();
            assert_eq!(back.records(0), vec![msgs.clone()], "via {to}");
        }
        let pc = run(Convert, &[&jsonl(&[msgs.clone()])], &["o.jsonl"], json!({"to": "prompt_completion", "drop_system": true}), 1)
            .unwrap();
        assert_eq!(pc.records(0), vec![json!({"prompt": "q", "completion": "a", "id": 7})]);
        let text = run(Convert, &[&jsonl(&[msgs])], &["o.jsonl"], json!({"to": "text", "keep_fields": []}), 1).unwrap();
        assert_eq!(text.records(0), vec![json!({"text": "s\n\nq\n\na"})]);
    }

    #[test]
    fn tool_calls_are_kept_and_roles_mapped() {
        let rec = json!({"messages": [
            {"role": "user", "content": "wx?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "wx", "arguments": "{}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
            {"role": "assistant", "content": "sunny"}]});
        let same = run(Convert, &[&jsonl(&[rec.clone()])], &["o.jsonl"], json!({"to": "messages"}), 1).unwrap();
        assert_eq!(same.records(0), vec![rec.clone()]);
        let sg = run(
            Convert,
            &[&jsonl(&[rec])],
            &["o.jsonl"],
            json!({"to": "sharegpt", "roles": {"user": "user", "assistant": "assistant", "tool": "observation"}}),
            1,
        )
        .unwrap();
        let froms: Vec<Value> = sg.records(0)[0]["conversations"].as_array().unwrap().iter().map(|t| t["from"].clone()).collect();
        assert_eq!(froms, vec![json!("user"), json!("assistant"), json!("observation"), json!("assistant")]);
    }

    #[test]
    fn unconvertible_records_are_rejected_or_fail() {
        let bad = json!({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q"}]});
        let input = jsonl(&[seed("q", "a"), bad.clone(), json!({"x": 1})]);
        let r = run(Convert, &[&input], &["o.jsonl", "rej.jsonl"], json!({"to": "messages", "on_error": "skip"}), 2).unwrap();
        assert_eq!(r.records(0).len(), 1);
        let rej = r.records(1);
        assert_eq!(rej[0]["_error"], json!("turn 2 (user): turns do not alternate user / assistant"));
        assert_eq!(rej[1]["_error"], json!("no known shape (messages, conversations, prompt/completion, instruction/output)"));
        assert_eq!(r.metric("rejected"), &json!(2));
        let err = run(Convert, &[&input], &["o.jsonl"], json!({"to": "messages"}), 2).unwrap_err();
        assert!(err.ends_with("in0.jsonl: record 2: cannot convert to messages: turn 2 (user): turns do not alternate user / assistant"), "{err}");
        let err = run(Convert, &[&input], &["o.jsonl"], json!({"from": "text", "to": "messages"}), 2).unwrap_err();
        assert!(err.contains("from"), "{err}");
        let two = json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]});
        let err = run(Convert, &[&jsonl(&[two])], &["o.jsonl"], json!({"to": "alpaca"}), 1).unwrap_err();
        assert!(err.ends_with("alpaca holds one exchange; this record has 4 messages besides the system prompt"), "{err}");
    }

    #[test]
    fn merge_writes_one_shape_from_several() {
        let alpaca = jsonl(&[json!({"instruction": "q", "input": "ctx", "output": "a"})]);
        let sharegpt = jsonl(&[json!({"conversations": [{"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]})]);
        let r = run(crate::merge::Merge, &[&alpaca, &sharegpt], &["o.jsonl"], json!({"format": "messages", "source_field": null}), 1)
            .unwrap();
        assert_eq!(
            r.records(0),
            vec![
                json!({"messages": [{"role": "user", "content": "q\n\nctx"}, {"role": "assistant", "content": "a"}]}),
                json!({"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}),
            ]
        );
    }

    #[test]
    fn outs_that_cannot_hold_records_are_refused() {
        let err = run(Convert, &[&jsonl(&[seed("q", "a")])], &["o.csv"], json!({"to": "messages"}), 1).unwrap_err();
        assert!(err.contains("records are written as .jsonl, .jsonl.gz, .jsonl.zst or .parquet"), "{err}");
    }

    #[test]
    fn a_rerun_converts_only_new_records_and_writes_what_a_full_run_does() {
        let line = |i: usize| match i % 7 {
            0 => format!(r#"{{"conversations": [{{"from": "human", "value": "q{i}"}}, {{"from": "human", "value": "x"}}]}}"#),
            3 => format!("{{not json {i}"),
            _ => seed(&format!("q{i}"), &format!("a{i}")).to_string(),
        };
        let lines: Vec<String> = (0..5000).map(line).collect();
        let more: Vec<String> = (5000..5200).map(line).collect();
        let params = json!({"to": "sharegpt", "on_error": "skip", "drop_fields": ["quality_score"]});
        crate::reuse::testing::assert_incremental(|| Convert, lines, more, line(9998), &["o.jsonl", "rej.jsonl"], params);
    }
}
