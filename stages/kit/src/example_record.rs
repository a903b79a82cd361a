//! The record shape of generated question/answer examples.
//!
//! `format: chat` (default) writes
//! `{"messages": [{"role": "system", ...}?, {"role": "user", "content": Q}, {"role": "assistant", "content": A}], "pattern": P, "source": S, ...}`;
//! `format: alpaca` writes `{"instruction": Q, "input": "", "output": A, "pattern": P, "source": S, ...}`.
//! `pattern` is `grep`, `read` or `direct`; `source` is `path:line`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::records::Record;
use crate::seeded::SplitMix64;

/// Output record shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI-chat `messages`.
    #[default]
    Chat,
    /// `instruction` / `input` / `output`.
    Alpaca,
}

/// One generated example before it is shaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `grep`, `read` or `direct`.
    pub pattern: &'static str,
    /// The user's question.
    pub question: String,
    /// The assistant's answer.
    pub answer: String,
    /// `path:line` the example is about.
    pub source: String,
    /// What the example is about (`class`, `form`, ...).
    pub topic: String,
}

/// Shape an example as a record.
pub fn to_record(ex: &Example, format: Format, system: Option<&str>) -> Record {
    let mut r = Record::new();
    match format {
        Format::Chat => {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.push(json!({"role": "user", "content": ex.question}));
            messages.push(json!({"role": "assistant", "content": ex.answer}));
            r.insert("messages".into(), Value::Array(messages));
        }
        Format::Alpaca => {
            r.insert("instruction".into(), json!(ex.question));
            r.insert("input".into(), json!(""));
            r.insert("output".into(), json!(ex.answer));
        }
    }
    r.insert("pattern".into(), json!(ex.pattern));
    r.insert("source".into(), json!(ex.source));
    r.insert("topic".into(), json!(ex.topic));
    r
}

/// A pattern's requested and produced counts, with a note when short.
pub fn count_metrics(requested: &[(&str, usize)], produced: &[(&str, usize)], candidates: &[(&str, usize)]) -> Value {
    let mut m = serde_json::Map::new();
    for ((name, want), ((_, got), (_, pool))) in requested.iter().zip(produced.iter().zip(candidates)) {
        let mut e = serde_json::Map::new();
        e.insert("requested".into(), json!(want));
        e.insert("produced".into(), json!(got));
        e.insert("candidates".into(), json!(pool));
        if got < want {
            e.insert("short".into(), json!(format!("only {got} of {want}: not enough candidates")));
        }
        m.insert((*name).to_string(), Value::Object(e));
    }
    Value::Object(m)
}

/// One of `options`, drawn from `seed` and `key` (the example's identity), so
/// the wording of an example does not depend on which others were sampled.
pub fn pick<'a>(seed: u64, key: &str, options: &[&'a str]) -> &'a str {
    options[SplitMix64::with_label(seed, key).below(options.len() as u64) as usize]
}

/// Replace `{name}` in `template` with its value from `vars`.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}
