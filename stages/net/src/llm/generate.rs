//! `kind: generate` — responses from one or more teachers (seed 002's
//! multi-teacher distillation).
//!
//! - deps: JSONL files of prompts, read in order.
//! - outs[0]: JSONL, one record per input record that was answered, in
//!   input order: the input's fields, the conversation in `format`
//!   (`messages`, `alpaca` or `sharegpt`), `_teacher`, `_usage`
//!   (`prompt_tokens`, `completion_tokens`) and `_finish_reason`.
//! - outs[1] (optional): the records whose request failed, with `_teacher`
//!   and `_error`.
//! - Each record goes to one teacher, by `share`, through a hash of its
//!   content seeded with `seed`: appending records moves none.
//! - Every answer is memoised (see `runner.rs`): re-runs, appends, a change
//!   to one teacher's params only send what was never answered.
//! - Not deterministic: a fresh call may answer differently. `dvx
//!   reproduce` answers from the memo unless `--fresh`.
//! - metrics: `records`, `written`, `requests`, `requests_sent`,
//!   `from_memo`, `retried`, `failed`, `cost`, `latency_s`, `teachers.<name>`.

use dvx_stage_api::{
    Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::prompt::Prompt;
use super::runner::{ask_all, failures_by_teacher, requests_for, Sending};
use super::teachers::{self, Teacher};
use crate::records::{Record, RecordWriter};

/// The shape of the records written.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI `messages: [{role, content}]`.
    #[default]
    Messages,
    /// `instruction` / `input` / `output`.
    Alpaca,
    /// `conversations: [{from, value}]`.
    ShareGpt,
}

/// Params of `generate`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    teachers: Vec<Teacher>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default = "default_limits")]
    limits: Sending,
    #[serde(default)]
    max_failures: usize,
}

pub(super) fn default_limits() -> Sending {
    serde_json::from_value(json!({})).expect("defaults")
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        let mut d = teachers::docs();
        d.extend([
            ParamDoc::new("prompt", "template", "-", "User message from record fields (`{field}`, as in `multiply`); none: the record's own conversation."),
            ParamDoc::new("system", "string", "-", "System message sent first."),
            ParamDoc::new("format", "messages | alpaca | sharegpt", "messages", "Shape of the records written."),
            ParamDoc::new("limits", "map", "{}", "`max_concurrent` (8), `rpm`, `tpm`, `max_retries` (5), `backoff_s` (1), `timeout_s` (60)."),
            ParamDoc::new("max_failures", "integer", "0", "Requests that may fail (they go to outs[1]) before the stage fails."),
        ]);
        d
    }
}

/// Checked params and the compiled prompt.
pub struct Prepared {
    p: Params,
    prompt: Prompt,
}

/// The `generate` kind.
pub struct Generate;

impl TypedStage for Generate {
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
    const DETERMINISTIC: bool = false;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Between(1, 2);
    const DEPS_ARE: &'static str = "JSONL prompts";
    const OUTS_ARE: &'static str = "JSONL responses, then optionally the failed records";
    type Params = Params;
    type Prepared = Prepared;

    fn check_outs(&self, outs: &[&str]) -> Result<(), dvx_stage_api::OutError> {
        crate::support::check_record_outs(outs, ..)
    }

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Prepared, ParamError> {
        teachers::check(&p.teachers)?;
        p.limits.check()?;
        let prompt = Prompt::new(p.prompt.as_deref(), p.system.as_deref())?;
        Ok(Prepared { p, prompt })
    }

    fn execute(&self, prepared: &Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let Prepared { p, prompt } = prepared;
        let (records, requests) = requests_for(ctx.deps, ctx.cwd, &p.teachers, p.seed, |rec, at| prompt.messages(rec, at))?;
        let report = ask_all(&p.teachers, &requests, &p.limits, ctx.memo, &|_| true, 0, &ctx.cancel, ctx.need_http()?)?;

        let mut out = RecordWriter::create(&ctx.outs[0])?;
        let mut rejects = ctx.outs.get(1).map(|o| RecordWriter::create(o)).transpose()?;
        let mut first_error = None;
        for ((rec, req), done) in records.into_iter().zip(&requests).zip(&report.done) {
            let teacher = &p.teachers[req.teacher].name;
            match &done.answer {
                Ok(a) => {
                    let mut r = shaped(rec, &req.body["messages"], &a.content, p.format);
                    r.insert("_teacher".into(), json!(teacher));
                    r.insert(
                        "_usage".into(),
                        json!({"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens}),
                    );
                    r.insert("_finish_reason".into(), json!(a.finish_reason));
                    out.write(&r)?;
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("teacher `{teacher}`: {e}"));
                    if let Some(w) = rejects.as_mut() {
                        let mut r = rec;
                        r.insert("_teacher".into(), json!(teacher));
                        r.insert("_error".into(), json!(e));
                        w.write(&r)?;
                    }
                }
            }
        }
        let written = out.finish()?;
        if let Some(w) = rejects {
            w.finish()?;
        }
        let mut m = report.metrics;
        writeln!(
            ctx.log,
            "generate: {} requests, {} sent, {} from the memo, {} retried, {} failed",
            m["requests"], m["requests_sent"], m["from_memo"], m["retried"], m["failed"]
        )?;
        let failed = m["failed"].as_u64().unwrap_or(0) as usize;
        if failed > p.max_failures {
            let by = failures_by_teacher(&p.teachers, &requests, &report.done);
            let by: Vec<String> = by.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            return Err(StageFailure::transient(format!(
                "{failed} requests failed ({}), more than max_failures {}; every answer that arrived is kept in the memo, so a re-run sends only these",
                by.join(", "),
                p.max_failures
            ))
            .caused_by_text(first_error.unwrap_or_default()));
        }
        m.insert("records".into(), json!(requests.len()));
        m.insert("written".into(), json!(written));
        Ok(m)
    }
}

/// The input record with the conversation added in `format`.
fn shaped(mut rec: Record, messages: &Value, answer: &str, format: Format) -> Record {
    let msgs = messages.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let text = |m: &Value| m["content"].as_str().unwrap_or("").to_string();
    match format {
        Format::Messages => {
            let mut all = msgs.to_vec();
            all.push(json!({"role": "assistant", "content": answer}));
            rec.insert("messages".into(), Value::Array(all));
        }
        Format::Alpaca => {
            let user: Vec<String> = msgs.iter().filter(|m| m["role"] == "user").map(text).collect();
            rec.insert("instruction".into(), json!(user.join("\n")));
            rec.entry("input").or_insert(json!(""));
            rec.insert("output".into(), json!(answer));
        }
        Format::ShareGpt => {
            let from = |role: &str| match role {
                "user" => "human",
                "assistant" => "gpt",
                other => other,
            }
            .to_string();
            let mut conv: Vec<Value> =
                msgs.iter().map(|m| json!({"from": from(m["role"].as_str().unwrap_or("")), "value": text(m)})).collect();
            conv.push(json!({"from": "gpt", "value": answer}));
            rec.insert("conversations".into(), Value::Array(conv));
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dvx_stage_api::MemoryMemo;

    use super::super::fake::{Fake, Fault};
    use super::*;
    use super::super::testing::{run, run_with_memo};
    use crate::testkit::jsonl;

    fn prompts(range: std::ops::Range<usize>) -> String {
        jsonl(&range.map(|i| json!({"id": i, "topic": format!("topic {i}")})).collect::<Vec<_>>())
    }

    fn params(url: &str, temperature: f64) -> Value {
        json!({
            "teachers": [
                {"name": "a", "base_url": url, "model": "ma", "share": 0.6, "params": {"temperature": temperature}},
                {"name": "b", "base_url": url, "model": "mb", "share": 0.4},
            ],
            "prompt": "Explain {topic}.",
            "limits": {"backoff_s": 0.01, "max_concurrent": 4},
        })
    }

    #[test]
    fn memo_serves_reruns_appends_and_unchanged_teachers() {
        let fake = Fake::start();
        let memo = MemoryMemo::default();
        let first = run_with_memo(Generate, &[&prompts(0..50)], &["out.jsonl"], params(&fake.base_url, 0.5), 1, &memo)
            .unwrap();
        assert_eq!(fake.count(), 50);
        let recs = first.records(0);
        assert_eq!(recs.len(), 50);
        assert_eq!(recs[3]["id"], json!(3), "input order");
        assert_eq!(recs[3]["messages"][1]["content"], json!("answer to: Explain topic 3."));
        assert_eq!(recs[3]["_usage"]["completion_tokens"], json!(5));
        let a = recs.iter().filter(|r| r["_teacher"] == "a").count();
        assert!((20..=40).contains(&a), "{a} of 50 to a");
        assert_eq!(first.metric("requests_sent"), &json!(50));

        let again = run_with_memo(Generate, &[&prompts(0..50)], &["out.jsonl"], params(&fake.base_url, 0.5), 1, &memo)
            .unwrap();
        assert_eq!(fake.count(), 50, "a re-run sends nothing");
        assert_eq!(again.text(0), first.text(0), "the same bytes from the memo");
        assert_eq!(again.metric("from_memo"), &json!(50));

        run_with_memo(Generate, &[&prompts(0..60)], &["out.jsonl"], params(&fake.base_url, 0.5), 1, &memo).unwrap();
        assert_eq!(fake.count(), 60, "appending 10 records sends 10");

        let changed =
            run_with_memo(Generate, &[&prompts(0..60)], &["out.jsonl"], params(&fake.base_url, 0.9), 1, &memo)
                .unwrap();
        let share_a = changed.records(0).iter().filter(|r| r["_teacher"] == "a").count();
        assert_eq!(fake.count(), 60 + share_a, "a new temperature for a re-sends a's share only");
    }

    #[test]
    fn cancel_stops_further_requests_and_a_rerun_resumes_from_the_memo() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        use dvx_stage_api::Cancel;

        use crate::testkit::{run_with, Services};

        let http = super::super::testing::http();

        // The teacher trips the run's token as it answers the 5th request.
        let cancel = Cancel::new();
        let answered = Arc::new(AtomicUsize::new(0));
        let (tripper, count) = (cancel.clone(), answered.clone());
        let fake = Fake::with(move |body| {
            if count.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
                tripper.cancel("stage `boom` failed");
            }
            format!("answer to: {}", body["messages"].as_array().unwrap().last().unwrap()["content"])
        });
        let mut p = params(&fake.base_url, 0.5);
        p["limits"] = json!({"backoff_s": 0.01, "max_concurrent": 1});
        let memo = MemoryMemo::default();
        let with = |cancel| Services { memo: &memo, cancel, http: Some(&http) };
        let e = run_with(Generate, &[&prompts(0..20)], &["out.jsonl"], p.clone(), 1, with(cancel)).unwrap_err();
        assert!(e.starts_with("cancelled: stage `boom` failed"), "{e}");
        assert!(e.contains("5 of 20 requests to send were answered"), "{e}");
        assert_eq!(fake.count(), 5, "no request goes out after the token trips");
        assert_eq!(memo.len(), 5, "the answers that arrived are kept");

        let r = run_with(Generate, &[&prompts(0..20)], &["out.jsonl"], p, 1, with(Cancel::new())).unwrap();
        assert_eq!(fake.count(), 20, "the re-run sends only the other 15");
        assert_eq!(r.metric("from_memo"), &json!(5));
        assert_eq!(r.records(0).len(), 20);
    }

    #[test]
    fn retries_faults_and_keeps_order() {
        let fake = Fake::start();
        fake.push(Fault::TooMany { retry_after: 0 });
        fake.push(Fault::ServerError);
        fake.push(Fault::Drop);
        fake.push(Fault::Stall(Duration::from_millis(1500)));
        let mut p = params(&fake.base_url, 0.5);
        p["limits"] = json!({"backoff_s": 0.01, "max_concurrent": 1, "timeout_s": 0.5});
        let r = run(Generate, &[&prompts(0..5)], &["out.jsonl"], p, 1).unwrap();
        assert_eq!(r.records(0).len(), 5);
        assert_eq!(r.metric("retried"), &json!(4));
        assert_eq!(fake.count(), 9);
    }

    #[test]
    fn failures_go_to_rejects_and_fail_past_max_failures() {
        let fake = Fake::start();
        for _ in 0..4 {
            fake.push(Fault::ServerError);
        }
        let mut p = params(&fake.base_url, 0.5);
        p["limits"] = json!({"backoff_s": 0.0, "max_concurrent": 1, "max_retries": 1});
        let memo = MemoryMemo::default();
        let e = run_with_memo(Generate, &[&prompts(0..4)], &["out.jsonl", "rejects.jsonl"], p.clone(), 1, &memo)
            .unwrap_err();
        assert!(e.contains("2 requests failed") && e.contains("more than max_failures 0"), "{e}");
        assert_eq!(memo.len(), 2, "the answers that arrived are kept");

        for _ in 0..4 {
            fake.push(Fault::ServerError);
        }
        p["max_failures"] = json!(2);
        let r = run(Generate, &[&prompts(0..4)], &["out.jsonl", "rejects.jsonl"], p, 1).unwrap();
        assert_eq!((r.records(0).len(), r.records(1).len()), (2, 2));
        assert!(r.records(1)[0]["_error"].as_str().unwrap().contains("HTTP 500"));
    }

    #[test]
    fn the_api_key_is_sent_but_never_kept() {
        let fake = Fake::start();
        std::env::set_var("DVX_TEST_GENERATE_KEY", "sk-secret-1234");
        let mut p = params(&fake.base_url, 0.5);
        p["teachers"][0]["api_key_env"] = json!("DVX_TEST_GENERATE_KEY");
        p["teachers"][1]["api_key_env"] = json!("DVX_TEST_GENERATE_KEY");
        let memo = MemoryMemo::default();
        let r = run_with_memo(Generate, &[&prompts(0..3)], &["out.jsonl"], p.clone(), 1, &memo).unwrap();
        let bodies = fake.bodies.lock().unwrap().clone();
        assert!(bodies.iter().all(|(auth, _)| auth.as_deref() == Some("Bearer sk-secret-1234")));
        assert!(!r.text(0).contains("sk-secret") && !r.log.contains("sk-secret"));
        p["teachers"][0]["api_key_env"] = json!("DVX_TEST_GENERATE_UNSET");
        let e = run(Generate, &[&prompts(0..3)], &["out.jsonl"], p, 1).unwrap_err();
        assert!(e.contains("`DVX_TEST_GENERATE_UNSET` is not set"), "{e}");
    }

    #[test]
    fn formats() {
        let msgs = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]);
        let rec = json!({"id": 1}).as_object().unwrap().clone();
        let a = shaped(rec.clone(), &msgs, "ans", Format::Alpaca);
        assert_eq!((a["instruction"].as_str(), a["output"].as_str()), (Some("q"), Some("ans")));
        let s = shaped(rec, &msgs, "ans", Format::ShareGpt);
        assert_eq!(s["conversations"][1], json!({"from": "human", "value": "q"}));
        assert_eq!(s["conversations"][2], json!({"from": "gpt", "value": "ans"}));
    }
}
