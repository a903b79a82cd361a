use serde_json::{json, Value};

use super::Validate;
use crate::testkit::{jsonl, run};

fn sample() -> String {
    jsonl(&[
        json!({"instruction": "Add two", "output": "def add(a, b): return a + b", "category": "x", "score": 1.0}),
        json!({"instruction": "add  TWO", "output": "def add(a, b): return a + b", "category": "x", "score": 3.0}),
        json!({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello there"}], "category": "y"}),
    ])
}

const OUTS: [&str; 4] = ["report.json", "report.md", "chart.svg", "bad.jsonl"];

#[test]
fn stats_report() {
    let r = run(Validate, &[&sample()], &OUTS[..3], json!({"max_duplicate_rate": 0.5, "min_records": 3}), 2).unwrap();
    let report: Value = serde_json::from_str(&r.text(0)).unwrap();
    assert_eq!(report["status"], json!("passed"));
    assert_eq!(report["records"], json!(3));
    assert_eq!(report["inputs"], json!({"in0.jsonl": 3}));
    assert_eq!(report["categories"], json!({"x": 2, "y": 1}));
    assert_eq!(report["duplicates"], json!({"count": 1, "rate": 0.3333}));
    assert_eq!(
        report["lengths"]["chars"]["total"],
        json!({"min": 15.0, "mean": 28.6667, "p50": 35.0, "p95": 36.0, "max": 36.0})
    );
    assert_eq!(
        report["lengths"]["tokens"]["response"],
        json!({"min": 2.0, "mean": 5.3333, "p50": 7.0, "p95": 7.0, "max": 7.0})
    );
    assert_eq!(report["lengths"]["chars"]["prompt"]["max"], json!(8.0));
    assert_eq!(report["score"]["count"], json!(2));
    assert_eq!(report["score"]["p95"], json!(3.0));
    assert_eq!(report["score"]["histogram"][0], json!({"from": 1.0, "to": 1.2, "count": 1}));
    assert_eq!(report["length_histogram"].as_array().unwrap().len(), 20);
    assert_eq!(report["length_histogram"][19], json!({"from": 34.95, "to": 36.0, "count": 2}));
    assert_eq!(
        report["checks"],
        json!([
            {"rule": "min_records", "limit": ">= 3", "actual": "3", "ok": true},
            {"rule": "max_duplicate_rate", "limit": "<= 0.5", "actual": "0.3333", "ok": true},
            {"rule": "max_invalid", "limit": "<= 0", "actual": "0", "ok": true},
        ])
    );
    assert_eq!(r.metric("status"), &json!("passed"));
    assert_eq!(r.metric("score"), &json!({"min": 1.0, "mean": 2.0, "p50": 1.0, "p95": 3.0, "max": 3.0, "count": 2}));
    assert_eq!(r.metric("failed_checks"), &json!([]));
    let md = r.text(1);
    assert!(md.starts_with("# Dataset validation\n\n**Status:** PASSED\n\n| Metric | Value |\n"), "{md}");
    assert!(md.contains("| Exact duplicates | 1 (33.33%) |\n"));
    assert!(md.contains("| Category | Records | % of Total |\n|----------|---------|------------|\n| x | 2 | 66.7% |\n| y | 1 | 33.3% |\n"));
    assert!(md.contains("| total | chars | 15 | 28.7 | 35 | 36 | 36 |\n"));
    assert!(md.contains("| max_duplicate_rate | <= 0.5 | 0.3333 | yes |\n"));
    let text = "validate: text of 3 record(s) from their turns: OpenAI `messages` (1), alpaca: instruction + output (2)\n";
    assert_eq!(r.log, format!("{md}records processed: 3, reused from earlier runs: 0\n{text}"));
    let svg = r.text(2);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains(">Records per category (3 in all)</text>"));
    assert!(svg.contains(r#"<text x="182.0" y="55.0" text-anchor="end">x</text>"#), "{svg}");
    assert!(svg.contains(r##"<rect x="190.0" y="43.0" width="470.0" height="16.0" fill="#4e79a7"/>"##));
    assert!(svg.ends_with("</svg>\n"));
}

#[test]
fn schema_violations_fail_the_stage_but_the_report_is_written() {
    let input = jsonl(&[
        json!({"instruction": "q", "output": "", "category": 3}),
        json!({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}),
        json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "y"}, {"role": "assistant", "content": " "}], "category": "c", "output": "o"}),
        json!({"messages": [{"role": "user", "content": "y"}], "category": "c", "output": "o"}),
        json!({"messages": [{"role": "user", "content": "y"}, {"role": "tool", "content": "t"}, {"role": "assistant", "content": "z"}], "category": "c", "output": "o"}),
    ]);
    let params = json!({"required_fields": ["category"], "types": {"category": "string"}, "non_empty": ["output"], "examples": 1});
    let dir_run = || run(Validate, &[&input], &OUTS[..2], params.clone(), 1);
    let err = dir_run().unwrap_err();
    assert_eq!(
        err,
        "validation failed: max_invalid (limit <= 0, got 4); broken schema rules: non_empty: output ×2, \
         required: category ×1, turns: empty ×1, turns: role order ×2, type: category is string ×1"
    );
    // The same inputs with tolerance pass, and the report lists the violations.
    let mut ok = params.clone();
    ok["max_invalid"] = json!(4);
    let r = run(Validate, &[&input], &OUTS[..2], ok, 1).unwrap();
    let report: Value = serde_json::from_str(&r.text(0)).unwrap();
    assert_eq!(report["invalid"], json!(4));
    assert_eq!(
        report["violations"],
        json!({
            "non_empty: output": {"count": 2, "examples": ["in0.jsonl:1: field `output` is empty or missing"]},
            "required: category": {"count": 1, "examples": ["in0.jsonl:2: missing field `category`"]},
            "turns: empty": {"count": 1, "examples": ["in0.jsonl:3: turn 3 (assistant) is empty"]},
            "turns: role order": {"count": 2, "examples": ["in0.jsonl:2: turn 1: expected `user`, got `assistant`"]},
            "type: category is string": {"count": 1, "examples": ["in0.jsonl:1: field `category` is integer, not string"]},
        })
    );
    assert_eq!(r.metric("violations")["turns: role order"], json!(2));
    assert!(r.text(1).contains("| turns: role order | 2 | in0.jsonl:2: turn 1: expected `user`, got `assistant` |\n"));
}

#[test]
fn configured_rules_fail_with_every_broken_rule() {
    let params = json!({"min_records": 5, "max_duplicate_rate": 0.01, "min_per_category": 2});
    let err = run(Validate, &[&sample()], &OUTS[..1], params, 1).unwrap_err();
    assert_eq!(
        err,
        "validation failed: min_records (limit >= 5, got 3); min_per_category: y (limit >= 2, got 1); \
         max_duplicate_rate (limit <= 0.01, got 0.3333)"
    );
}

#[test]
fn several_inputs_and_malformed_lines() {
    let a = sample();
    let b = "{\"output\": \"z\"}\nbroken\n";
    let err = run(Validate, &[&a, b], &OUTS[..1], json!({}), 1).unwrap_err();
    assert!(err.contains("in1.jsonl:2: malformed JSON"), "{err}");
    let r = run(Validate, &[&a, b], &OUTS, json!({"on_error": "skip"}), 1).unwrap();
    let report: Value = serde_json::from_str(&r.text(0)).unwrap();
    assert_eq!(report["inputs"], json!({"in0.jsonl": 3, "in1.jsonl": 1}));
    assert_eq!(report["malformed"], json!(1));
    assert_eq!(report["categories"]["(none)"], json!(1));
    assert_eq!(
        r.records(3),
        vec![
            json!({"_error": "malformed JSON: expected value at line 1 column 1", "_file": "in1.jsonl", "_line": 2, "_raw": "broken"})
        ]
    );
    let err = run(Validate, &[&a, b], &OUTS[..1], json!({"on_error": "skip", "max_malformed": 0}), 1).unwrap_err();
    assert_eq!(err, "validation failed: max_malformed (limit <= 0, got 1)");
}

#[test]
fn bad_params() {
    let bad = |params: Value| run(Validate, &["{}\n"], &OUTS[..1], params, 1).unwrap_err();
    assert!(bad(json!({"types": {"a": "text"}})).starts_with("types.a: unknown variant `text`"));
    assert_eq!(bad(json!({"max_duplicate_rate": 2})), "max_duplicate_rate: expected a fraction between 0 and 1");
    assert_eq!(bad(json!({"min_records": 5, "max_records": 2})), "min_records: 5 is above max_records 2");
    assert!(bad(json!({"required": ["a"]})).starts_with("required: unknown field `required`"));
}

#[test]
fn deterministic_across_threads() {
    let recs: Vec<Value> = (0..5000)
        .map(|i| json!({"instruction": format!("q{}", i % 4000), "output": "x ".repeat(i % 50), "category": format!("c{}", i % 5), "score": (i % 13) as f64 / 3.0}))
        .collect();
    let text = jsonl(&recs);
    let a = run(Validate, &[&text], &OUTS[..3], json!({}), 1).unwrap();
    let b = run(Validate, &[&text], &OUTS[..3], json!({}), 4).unwrap();
    for i in 0..3 {
        assert_eq!(a.text(i), b.text(i));
    }
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.metric("duplicates"), &json!({"count": 1000, "rate": 0.2}));
}

/// Issue 15 §1b: seed 002's `instruction`/`response` records measured with
/// `text_fields` set have their response lengths (they used to be 0), and
/// the log says where the text came from.
#[test]
fn seed_shape_response_lengths_with_text_fields() {
    let seed = jsonl(&[
        json!({"instruction": "Sum two", "response": "use the plus sign", "source": "s", "category": "c"}),
        json!({"instruction": "Say hi", "response": "hi", "source": "s", "category": "c"}),
    ]);
    let r = run(Validate, &[&seed], &OUTS[..1], json!({"text_fields": ["instruction", "response"]}), 1).unwrap();
    let report: Value = serde_json::from_str(&r.text(0)).unwrap();
    assert_eq!(report["lengths"]["tokens"]["response"]["max"], json!(4.0));
    assert_eq!(report["lengths"]["tokens"]["response"]["min"], json!(1.0));
    assert_eq!(report["lengths"]["tokens"]["total"]["max"], json!(6.0));
    assert!(
        r.log.contains("validate: text of 2 record(s) from fields instruction, response (shapes: alpaca: instruction + response (2))"),
        "{}",
        r.log
    );
    assert!(!r.log.contains("WARNING"), "{}", r.log);
    // Text that leaves the answer out is a loud warning, not a silent default.
    let r = run(Validate, &[&seed], &OUTS[..1], json!({"text_fields": ["instruction"]}), 1).unwrap();
    assert!(
        r.log.contains("validate: WARNING: the text of 2 of 2 record(s) holds no answer (the fields named leave out the answer)"),
        "{}",
        r.log
    );
}

#[test]
fn a_rerun_checks_only_new_records_and_writes_what_a_full_run_does() {
    use crate::reuse::testing::{assert_incremental, incremental_line, lines};
    let params = json!({"required_fields": ["instruction", "output"], "types": {"score": "number"}, "score_field": "score", "max_invalid": 1000});
    assert_incremental(|| Validate, lines(0, 5000), lines(5000, 5200), incremental_line(99_999), &OUTS[..2], params);
}
