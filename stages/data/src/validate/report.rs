//! The validation report as JSON, as Markdown, and as metrics.

use std::fmt::Write as _;

use dvx_stage_api::Metrics;
use serde_json::{json, Map, Value};

use super::collect::Totals;
use crate::support::{round4, summary};

/// One configured rule and how the data fared.
pub(super) struct Check {
    pub(super) rule: String,
    pub(super) limit: String,
    pub(super) actual: String,
    pub(super) ok: bool,
}

const SIDES: [&str; 3] = ["prompt", "response", "total"];
const UNITS: [&str; 2] = ["chars", "tokens"];

/// Equal-width bins between the smallest and largest value.
pub(super) fn histogram(values: &[f64], bins: usize) -> Value {
    if values.is_empty() {
        return json!([]);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = if hi > lo { bins } else { 1 };
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for v in values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    Value::Array(
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let from = lo + width * i as f64;
                let to = if i + 1 == bins { hi.max(from) } else { lo + width * (i + 1) as f64 };
                json!({"from": round4(from), "to": round4(to), "count": c})
            })
            .collect(),
    )
}

/// The full report.
pub(super) fn json(t: &Totals, checks: &[Check], bins: usize) -> Value {
    let mut lengths = Map::new();
    for (u, unit) in UNITS.iter().enumerate() {
        let mut per = Map::new();
        for (s, side) in SIDES.iter().enumerate() {
            per.insert((*side).into(), summary(&mut t.lengths[s][u].clone()));
        }
        lengths.insert((*unit).into(), Value::Object(per));
    }
    let score = if t.scores.is_empty() {
        Value::Null
    } else {
        let mut s = summary(&mut t.scores.clone());
        s["count"] = json!(t.scores.len());
        s["histogram"] = histogram(&t.scores, 10);
        s
    };
    let violations: Map<String, Value> =
        t.violations.iter().map(|(r, v)| (r.clone(), json!({"count": v.count, "examples": v.examples}))).collect();
    let failed = checks.iter().any(|c| !c.ok);
    json!({
        "status": if failed { "failed" } else { "passed" },
        "records": t.records,
        "malformed": t.malformed,
        "invalid": t.invalid,
        "inputs": t.inputs.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<Map<_, _>>(),
        "categories": t.categories.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<Map<_, _>>(),
        "duplicates": {"count": t.duplicates, "rate": round4(t.duplicate_rate())},
        "lengths": lengths,
        "length_histogram": histogram(&t.lengths[2][0], bins),
        "score": score,
        "violations": violations,
        "checks": checks.iter().map(|c| json!({"rule": c.rule, "limit": c.limit, "actual": c.actual, "ok": c.ok})).collect::<Vec<_>>(),
    })
}

/// The stage metrics: the report without histograms and example locations.
pub(super) fn metrics(report: &Value) -> Metrics {
    let mut m = Metrics::new();
    for key in ["status", "records", "malformed", "invalid", "duplicates", "categories", "lengths"] {
        m.insert(key.into(), report[key].clone());
    }
    let mut score = report["score"].clone();
    if let Value::Object(s) = &mut score {
        s.remove("histogram");
    }
    m.insert("score".into(), score);
    let violations: Map<String, Value> =
        report["violations"].as_object().into_iter().flatten().map(|(r, v)| (r.clone(), v["count"].clone())).collect();
    m.insert("violations".into(), Value::Object(violations));
    let failed: Vec<Value> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] == json!(false))
        .map(|c| c["rule"].clone())
        .collect();
    m.insert("failed_checks".into(), Value::Array(failed));
    m
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// The report in Markdown.
pub(super) fn markdown(t: &Totals, checks: &[Check], report: &Value) -> String {
    let mut s = String::from("# Dataset validation\n\n");
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.rule.as_str()).collect();
    if failed.is_empty() {
        s.push_str("**Status:** PASSED\n\n");
    } else {
        let _ = writeln!(s, "**Status:** FAILED ({})\n", failed.join(", "));
    }
    s.push_str("| Metric | Value |\n|--------|-------|\n");
    let _ = writeln!(s, "| Records | {} |", t.records);
    for (name, n) in &t.inputs {
        let _ = writeln!(s, "| Records in `{name}` | {n} |");
    }
    let _ = writeln!(s, "| Malformed lines | {} |", t.malformed);
    let _ = writeln!(s, "| Invalid records | {} |", t.invalid);
    let _ = writeln!(s, "| Exact duplicates | {} ({:.2}%) |", t.duplicates, 100.0 * t.duplicate_rate());

    s.push_str("\n## Categories\n\n| Category | Records | % of Total |\n|----------|---------|------------|\n");
    for (cat, n) in &t.categories {
        let pct = if t.records == 0 { 0.0 } else { 100.0 * *n as f64 / t.records as f64 };
        let _ = writeln!(s, "| {cat} | {n} | {pct:.1}% |");
    }

    s.push_str("\n## Lengths\n\n| Text | Unit | Min | Mean | P50 | P95 | Max |\n|------|------|-----|------|-----|-----|-----|\n");
    for unit in UNITS {
        for side in SIDES {
            let st = &report["lengths"][unit][side];
            let _ = writeln!(
                s,
                "| {side} | {unit} | {} | {} | {} | {} | {} |",
                num(&st["min"]),
                num(&st["mean"]),
                num(&st["p50"]),
                num(&st["p95"]),
                num(&st["max"])
            );
        }
    }

    let score = &report["score"];
    if !score.is_null() {
        s.push_str(
            "\n## Scores\n\n| Count | Min | Mean | P50 | P95 | Max |\n|-------|-----|------|-----|-----|-----|\n",
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            score["count"], score["min"], score["mean"], score["p50"], score["p95"], score["max"]
        );
        s.push_str("\n| Score range | Records |\n|-------------|---------|\n");
        for bin in score["histogram"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "| {} – {} | {} |", bin["from"], bin["to"], bin["count"]);
        }
    }

    s.push_str("\n## Checks\n\n| Rule | Limit | Actual | OK |\n|------|-------|--------|----|\n");
    for c in checks {
        let _ = writeln!(s, "| {} | {} | {} | {} |", c.rule, c.limit, c.actual, if c.ok { "yes" } else { "**no**" });
    }

    if !t.violations.is_empty() {
        s.push_str("\n## Schema violations\n\n| Rule | Records | First seen |\n|------|---------|------------|\n");
        for (rule, v) in &t.violations {
            let _ = writeln!(s, "| {rule} | {} | {} |", v.count, v.examples.join("<br>").replace('|', "\\|"));
        }
    }
    s
}
