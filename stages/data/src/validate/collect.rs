//! Per-record facts (schema violations, lengths, duplicate digest, score)
//! and their running totals.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::records::{detect_shape, field, record_text, turns, Record, Shape};
use crate::support::{category_of, digest, normalize_text};

use super::Params;

/// What one record contributes (kept across runs by the record reuse;
/// the score as its bits, so it comes back the very same number).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Facts {
    category: String,
    /// chars and whitespace tokens of prompt, response, total.
    lengths: [[f64; 2]; 3],
    dup: [u8; 16],
    #[serde(with = "crate::reuse::opt_f64_bits")]
    score: Option<f64>,
    /// (rule, detail) for each broken schema rule.
    violations: Vec<(String, String)>,
}

/// Look at one record.
pub(super) fn facts(p: &Params, rec: &Record) -> Facts {
    let mut violations = Vec::new();
    for f in &p.required_fields {
        if field(rec, f).is_none_or(Value::is_null) {
            violations.push((format!("required: {f}"), format!("missing field `{f}`")));
        }
    }
    for (f, ty) in &p.types {
        if let Some(v) = field(rec, f).filter(|v| !v.is_null()) {
            if !ty.matches(v) {
                violations.push((
                    format!("type: {f} is {}", ty.name()),
                    format!("field `{f}` is {}, not {}", type_name(v), ty.name()),
                ));
            }
        }
    }
    for f in &p.non_empty {
        let empty = match field(rec, f) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if empty {
            violations.push((format!("non_empty: {f}"), format!("field `{f}` is empty or missing")));
        }
    }
    let shape = detect_shape(rec);
    let ts = turns(rec);
    if p.check_turns && matches!(shape, Shape::Chat | Shape::ShareGpt) {
        check_turns(&ts, &mut violations);
    }
    let (mut prompt, mut response) = (String::new(), String::new());
    for (role, text) in &ts {
        let side = match role.as_str() {
            "assistant" => &mut response,
            "user" | "system" => &mut prompt,
            _ => continue,
        };
        if !side.is_empty() {
            side.push('\n');
        }
        side.push_str(text);
    }
    let total = record_text(rec, &p.text_fields);
    let measure = |s: &str| [s.chars().count() as f64, s.split_whitespace().count() as f64];
    Facts {
        category: category_of(rec, &p.category_field),
        lengths: [measure(&prompt), measure(&response), measure(&total)],
        dup: digest(&normalize_text(&total)),
        score: field(rec, &p.score_field).and_then(Value::as_f64),
        violations,
    }
}

/// Chat turns: an optional leading system turn, then user and assistant in
/// turn starting with user and ending with assistant; tool turns are left
/// out of the order; no turn is empty.
fn check_turns(ts: &[(String, String)], out: &mut Vec<(String, String)>) {
    if ts.is_empty() {
        out.push(("turns: none".into(), "no turns".into()));
        return;
    }
    let mut expect = "user";
    let mut first_order_error = None;
    for (i, (role, text)) in ts.iter().enumerate() {
        if text.trim().is_empty() {
            out.push(("turns: empty".into(), format!("turn {} ({role}) is empty", i + 1)));
        }
        match role.as_str() {
            "system" if i == 0 => continue,
            "tool" | "function" | "ipython" => continue,
            r if r == expect => expect = if expect == "user" { "assistant" } else { "user" },
            r => {
                first_order_error.get_or_insert(format!("turn {}: expected `{expect}`, got `{r}`", i + 1));
            }
        }
    }
    if first_order_error.is_none() && expect == "assistant" {
        first_order_error = Some("last turn is not `assistant`".into());
    }
    if let Some(detail) = first_order_error {
        out.push(("turns: role order".into(), detail));
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A broken rule: how often, and where first.
#[derive(Default)]
pub(super) struct Violation {
    pub(super) count: usize,
    pub(super) examples: Vec<String>,
}

/// Everything gathered over all inputs.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) records: usize,
    pub(super) malformed: usize,
    pub(super) invalid: usize,
    pub(super) inputs: Vec<(String, usize)>,
    pub(super) categories: BTreeMap<String, usize>,
    /// [prompt, response, total] × [chars, tokens], one value per record.
    pub(super) lengths: [[Vec<f64>; 2]; 3],
    pub(super) scores: Vec<f64>,
    pub(super) duplicates: usize,
    seen: HashSet<[u8; 16]>,
    pub(super) violations: BTreeMap<String, Violation>,
}

impl Totals {
    /// Fold in one record, found at `at` (`file:line`).
    pub(super) fn add(&mut self, f: Facts, at: impl Fn() -> String, examples: usize) {
        self.records += 1;
        *self.categories.entry(f.category).or_default() += 1;
        for (side, l) in f.lengths.iter().enumerate() {
            self.lengths[side][0].push(l[0]);
            self.lengths[side][1].push(l[1]);
        }
        if let Some(s) = f.score {
            self.scores.push(s);
        }
        if !self.seen.insert(f.dup) {
            self.duplicates += 1;
        }
        if !f.violations.is_empty() {
            self.invalid += 1;
        }
        for (rule, detail) in f.violations {
            let v = self.violations.entry(rule).or_default();
            v.count += 1;
            if v.examples.len() < examples {
                v.examples.push(format!("{}: {detail}", at()));
            }
        }
    }

    /// Duplicates over records.
    pub(super) fn duplicate_rate(&self) -> f64 {
        if self.records == 0 {
            0.0
        } else {
            self.duplicates as f64 / self.records as f64
        }
    }
}
