//! The shipped `pipelines/v5_8_curated.yaml` on the shipped example data:
//! filter → balance → split → validate with the pipeline's own params (the
//! dedup stage is another module's; balance reads the filter output here).

use serde_json::{json, Value};

use dvx_stage_kit::testkit::{example, pipeline_params, run};
use dvx_stages_data::{balance::Balance, filter::Filter, split::Split, validate::Validate};

const PIPELINE: &str = "v5_8_curated.yaml";

fn params(stage: &str) -> Value {
    pipeline_params(PIPELINE, stage)
}

#[test]
fn every_stage_of_the_pipeline_accepts_its_params() {
    let path = format!("{}/../pipelines/{PIPELINE}", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let registry = crate::builtin_registry();
    for (name, stage) in doc["stages"].as_object().unwrap() {
        let kind = stage["kind"].as_str().unwrap();
        let Some(imp) = registry.get(kind) else {
            assert_eq!(kind, "dedup", "stage `{name}` has an unknown kind");
            continue;
        };
        let shape = dvx_stage_api::StageShape {
            params: &stage["params"],
            deps: stage["deps"].as_array().unwrap().len(),
            outs: stage["outs"].as_array().unwrap().len(),
            cmd: None,
        };
        imp.check(&shape).unwrap_or_else(|e| panic!("stage `{name}`: {e:?}"));
    }
}

#[test]
fn v5_8_curated_on_the_example() {
    let input = std::fs::read_to_string(example("fastapi/v5_7.jsonl")).unwrap();
    let filtered = run(Filter, &[&input], &["filtered.jsonl", "rejected.jsonl"], params("filter"), 2).unwrap();
    assert_eq!(
        filtered.log,
        "\
| Category | Total | Passed | Failed | Pass Rate | Status |
|----------|-------|--------|--------|-----------|--------|
| **Background Tasks** | 214 | 211 | 3 | 98.6% | excellent |
| **Error Handling** | 214 | 211 | 3 | 98.6% | excellent |
| **WebSockets** | 211 | 207 | 4 | 98.1% | excellent |
| **Async SQLAlchemy** | 210 | 199 | 11 | 94.8% | excellent |
| **JWT Authentication** | 213 | 147 | 66 | 69.0% | good |
| **Query Optimization** | 216 | 140 | 76 | 64.8% | good |
| **CRUD** | 215 | 134 | 81 | 62.3% | good |
| **Pagination** | 211 | 129 | 82 | 61.1% | good |
| **TOTAL** | **1704** | **1378** | **326** | **80.9%** | |
records processed: 1704, reused from earlier runs: 0
filter: text of 1704 record(s) from their turns: alpaca: instruction + output (1704)
"
    );
    let kept = filtered.text(0);
    let balanced = run(Balance, &[&kept], &["balanced.jsonl"], params("balance"), 2).unwrap();
    assert_eq!(
        balanced.metric("after"),
        &json!({
            "Async SQLAlchemy": 180, "Background Tasks": 180, "CRUD": 134, "Error Handling": 180,
            "JWT Authentication": 147, "Pagination": 129, "Query Optimization": 140, "WebSockets": 180,
        })
    );
    let split = run(Split, &[&balanced.text(0)], &["train.jsonl", "valid.jsonl"], params("split"), 2).unwrap();
    assert_eq!((split.metric("train"), split.metric("valid")), (&json!(1143), &json!(127)));
    let mut vparams = params("validate");
    // Without the dedup stage the example's planted duplicates are still here.
    vparams["max_duplicate_rate"] = json!(0.05);
    let report = run(Validate, &[&split.text(0), &split.text(1)], &["r.json", "r.md", "r.svg"], vparams, 2).unwrap();
    assert_eq!(report.metric("status"), &json!("passed"));
    assert_eq!(report.metric("records"), &json!(1270));
    // The planted duplicates make the shipped threshold fail, as it should.
    let strict = run(Validate, &[&split.text(0), &split.text(1)], &["r.json"], params("validate"), 2).unwrap_err();
    assert!(strict.starts_with("validation failed: max_duplicate_rate"), "{strict}");
}
