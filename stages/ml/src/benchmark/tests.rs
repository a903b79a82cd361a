//! End-to-end tests of the `benchmark` stage on the train tests' tool task.

use std::path::PathBuf;
use std::sync::OnceLock;

use dvx_stage_api::Typed;
use serde_json::{json, Value};

use super::Benchmark;
use crate::train::tests::{run_stage, shared_base, tiny_params};
use crate::train::Train;

/// A LoRA adapter on the shared base and a barely trained model.
fn models() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static M: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    M.get_or_init(|| {
        let s = shared_base();
        let dir = tempfile::tempdir().unwrap();
        let adapter = dir.path().join("adapter");
        let params = json!({"lora": {"rank": 2}, "steps": 2, "batch_size": 4, "lr": 0.001, "log_every": 0});
        let deps = [s.train.clone(), s.valid.clone(), s.base.clone()];
        let (r, log) = run_stage(&Typed::new(Train), &params, &deps, &[adapter.clone(), dir.path().join("a.json")], 1);
        r.unwrap_or_else(|e| panic!("{e}\n{log}"));
        let raw = dir.path().join("raw");
        let mut params = tiny_params(1);
        params["lr"] = json!(1e-6);
        let (r, log) = run_stage(&Typed::new(Train), &params, &deps[..2], &[raw.clone(), dir.path().join("r.json")], 1);
        r.unwrap_or_else(|e| panic!("{e}\n{log}"));
        (dir, adapter, raw)
    })
}

fn bench(params: &Value, tag: &str) -> (Value, String, String, Value) {
    let s = shared_base();
    let (_, adapter, raw) = models();
    let dir = tempfile::tempdir().unwrap();
    let outs = [
        dir.path().join(format!("{tag}.md")),
        dir.path().join(format!("{tag}.json")),
        dir.path().join(format!("{tag}.svg")),
    ];
    let deps = [s.base.clone(), adapter.clone(), raw.clone(), s.valid.clone()];
    let (r, log) = run_stage(&Typed::new(Benchmark), params, &deps, &outs, 2);
    let metrics = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let md = std::fs::read_to_string(&outs[0]).unwrap();
    let json: Value = serde_json::from_slice(&std::fs::read(&outs[1]).unwrap()).unwrap();
    assert!(std::fs::read_to_string(&outs[2]).unwrap().starts_with("<svg"));
    (json, md, log, Value::Object(metrics))
}

fn params() -> Value {
    json!({"models": ["base", {"name": "lora", "base": "base"}, "raw"], "max_new_tokens": 12})
}

#[test]
fn accuracy_sizes_and_marked_regressions() {
    let (json, md, log, metrics) = bench(&params(), "a");
    if std::env::var_os("DVX_SHOW").is_some() {
        eprintln!("{md}\n{log}");
    }
    let rows = json["models"].as_array().unwrap();
    let acc = |i: usize| rows[i]["accuracy"].as_f64().unwrap();
    // Three patterns: chance is 1/3.
    assert!(acc(0) >= 0.8, "{md}\n{log}");
    assert!(acc(1) >= 0.8, "{md}");
    assert_eq!(rows[0]["labelled"], json!(9));
    assert_eq!(rows[1]["kind"], json!("adapter"));
    assert_eq!(rows[1]["base"], json!("base"));
    // The adapter file is a fraction of the full model.
    assert!(rows[1]["size_bytes"].as_u64().unwrap() * 5 < rows[0]["size_bytes"].as_u64().unwrap());
    // The untrained model is flagged: its loss is far above the baseline's.
    let regs = rows[2]["regressions"].as_array().unwrap();
    assert!(regs.iter().any(|r| r.as_str().unwrap().starts_with("valid loss +")), "{md}");
    assert!(regs.iter().any(|r| r.as_str().unwrap().starts_with("accuracy -")), "{md}");
    assert!(acc(2) < 0.5, "{md}");
    assert!(md.contains("| raw | model |"), "{md}");
    assert!(md.contains("**REGRESSION**"), "{md}");
    assert!(!md.contains("gen tok/s"), "{md}");
    assert!(rows[0].get("timing").is_none());
    assert_eq!(rows[0]["samples"][0]["line"], json!(1));
    assert_eq!(metrics["baseline"], json!("base"));
    assert!(metrics["regressions"].as_u64().unwrap() >= 1);
    assert!(metrics["timing"]["base"]["gen_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(log.contains("base: loaded in"), "{log}");

    // Deterministic mode: the same bytes again.
    let (json2, md2, _, _) = bench(&params(), "b");
    assert_eq!(md, md2);
    assert_eq!(json, json2);
}

#[test]
fn timings_and_exact_match_when_asked() {
    let mut p = params();
    p["deterministic"] = json!(false);
    p["exact_match_field"] = json!("output");
    p["prompts"] = json!(3);
    p["baseline"] = json!("lora");
    let (json, md, _, _) = bench(&p, "t");
    assert!(md.contains("| load s | gen tok/s |"), "{md}");
    assert!(md.contains("Baseline: `lora`."), "{md}");
    let rows = json["models"].as_array().unwrap();
    assert!(rows[0]["timing"]["load_s"].as_f64().is_some());
    assert_eq!(rows[0]["samples"].as_array().unwrap().len(), 3);
    assert!(rows[0]["exact_match"].as_f64().unwrap() >= 2.0 / 3.0, "{md}");
}

#[test]
fn bad_inputs_fail_clearly() {
    let s = shared_base();
    let (_, adapter, _) = models();
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("t.md"), dir.path().join("t.json")];
    let deps = [adapter.clone(), s.valid.clone()];
    let e = run_stage(&Typed::new(Benchmark), &json!({"models": ["lora"]}), &deps, &outs, 1).0.unwrap_err().message;
    assert!(e.starts_with("model `lora`: ") && e.ends_with("holds a LoRA adapter: name its base model"), "{e}");
    let e = run_stage(&Typed::new(Benchmark), &json!({"models": ["a", "b"]}), &deps, &outs, 1).0.unwrap_err().message;
    assert!(e.starts_with("models: 2 models named but 2 deps"), "{e}");
    let e = run_stage(&Typed::new(Benchmark), &json!({"models": ["a"]}), &deps, &outs[..1], 1).0.unwrap_err().message;
    assert!(e.contains("takes 2 to 4 outs (table.md, results.json"), "{e}");
    let outs = [dir.path().join("t.md"), dir.path().join("t.json"), dir.path().join("t.png")];
    let stage = Typed::new(Benchmark);
    let e = dvx_stage_api::Stage::check_outs(&stage, &["t.md", "t.json", "t.png"]).unwrap_err();
    assert_eq!(e.index, 2);
    assert!(e.message.contains("one `.svg` chart and one `.csv` scoring sheet"), "{}", e.message);
    let _ = outs;
    let e = run_stage(&stage, &json!({"models": ["a"], "top_p": 0}), &deps, &outs[..2], 1).0.unwrap_err().message;
    assert!(e.starts_with("top_p: must be in (0, 1]"), "{e}");
}

#[test]
fn cut_answers_count_as_truncated_and_samples_are_stratified() {
    // Two new tokens (bytes) cannot spell `grep -`: every answer is cut.
    let p = json!({"models": ["base"], "max_new_tokens": 2, "prompts": 3, "seed": 4});
    let s = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("t.md"), dir.path().join("t.json"), dir.path().join("s.csv")];
    let (r, log) = run_stage(&Typed::new(Benchmark), &p, &[s.base.clone(), s.valid.clone()], &outs, 1);
    let m = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let json: Value = serde_json::from_slice(&std::fs::read(&outs[1]).unwrap()).unwrap();
    let row = &json["models"][0];
    assert_eq!(json["sample"]["per_class"], json!({"direct": 1, "grep": 1, "read": 1}));
    assert_eq!(row["truncated"], json!(3), "{row}");
    assert_eq!(row["accuracy"], json!(0.0));
    assert!(row["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["predicted"] == "truncated" && s["flags"]["truncated"] == true));
    assert_eq!(row["per_class"]["grep"]["truncated"], json!(1));
    assert_eq!(m["models"]["base"]["checks"]["truncated"], json!(3));
    assert!(log.contains("base:   grep: 0/1 = 0.0% (95% CI 0.0–79.3%), 1 truncated"), "{log}");
    // No questions file: the sheet holds the eval prompts, one row each.
    let sheet = std::fs::read_to_string(&outs[2]).unwrap();
    assert_eq!(sheet.lines().count(), 4, "{sheet}");
    assert!(sheet.lines().nth(1).unwrap().starts_with("base,"), "{sheet}");
}

/// Seed 004's fused 8-bit variant: the base exported as a q8_0 GGUF by
/// `export-model`, benchmarked beside the base on its stored blocks with
/// the base's tokenizer and template: accuracy and loss as the base's,
/// a third of its size, load time and tokens/s reported.
#[test]
fn a_q8_0_gguf_is_benchmarked_beside_its_source() {
    let s = shared_base();
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("base-q8_0.gguf");
    let export = Typed::new(crate::export_model::ExportModel);
    let (r, log) = run_stage(
        &export,
        &json!({"format": "gguf", "dtype": "q8_0"}),
        std::slice::from_ref(&s.base),
        std::slice::from_ref(&gguf),
        1,
    );
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let outs = [dir.path().join("q.md"), dir.path().join("q.json")];
    let p = json!({"models": ["base", {"name": "q8", "from": "base"}], "max_new_tokens": 12, "deterministic": false});
    let deps = [s.base.clone(), gguf.clone(), s.valid.clone()];
    let (r, log) = run_stage(&Typed::new(Benchmark), &p, &deps, &outs, 2);
    let metrics = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let md = std::fs::read_to_string(&outs[0]).unwrap();
    if std::env::var_os("DVX_SHOW").is_some() {
        eprintln!("{md}\n{log}");
    }
    let json: Value = serde_json::from_slice(&std::fs::read(&outs[1]).unwrap()).unwrap();
    let rows = json["models"].as_array().unwrap();
    let (base, q8) = (&rows[0], &rows[1]);
    assert_eq!(q8["kind"], json!("gguf q8_0"), "{md}");
    assert!(md.contains("| q8 | gguf q8_0 |"), "{md}");
    assert_eq!(q8["params"], base["params"]);
    // f32 base vs 8.5 bits per weight (plus f32 norms and metadata).
    let (bs, qs) = (base["size_bytes"].as_f64().unwrap(), q8["size_bytes"].as_f64().unwrap());
    assert!(qs < bs / 2.5, "q8_0 {qs} bytes vs base {bs}");
    let (bl, ql) = (base["valid_loss"].as_f64().unwrap(), q8["valid_loss"].as_f64().unwrap());
    assert!((ql - bl).abs() / bl < 0.02, "valid loss {bl} -> {ql}");
    assert!(base["accuracy"].as_f64().unwrap() >= 0.8, "{md}");
    assert!(q8["accuracy"].as_f64().unwrap() >= base["accuracy"].as_f64().unwrap() - 0.12, "{md}");
    assert!(q8["regressions"].as_array().unwrap().is_empty(), "{md}");
    for r in rows {
        assert!(r["timing"]["load_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["timing"]["gen_tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(metrics["timing"]["q8"]["gen_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(log.contains("q8: loaded in"), "{log}");

    // Without `from` it cannot prompt the file, and says why.
    let p = json!({"models": ["base", "q8"]});
    let e = run_stage(&Typed::new(Benchmark), &p, &deps, &outs, 1).0.unwrap_err().message;
    assert!(e.starts_with("model `q8`: ") && e.contains("is a GGUF file: give its entry `from: <entry>`"), "{e}");
    let p = json!({"models": [{"name": "q8", "from": "base"}, "base"]});
    let e = run_stage(&Typed::new(Benchmark), &p, &deps, &outs, 1).0.unwrap_err().message;
    assert!(e.starts_with("models.0.from: no earlier model is named `base`"), "{e}");
}
