//! The benchmark end to end through `dvx`: a stratified sample, the scoring
//! sheet it writes, `train` with `steps: 0`, and the `scores` kind reading
//! filled sheets as deps, so a changed human score is a new version.

use serde_json::Value;

use crate::support::Project;

fn records(n: usize) -> String {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("{{\"instruction\": \"find x{i}\", \"output\": \"grep -rn x{i}\", \"pattern\": \"grep\"}}\n"),
            1 => format!("{{\"instruction\": \"open x{i}\", \"output\": \"read a{i}.py\", \"pattern\": \"read\"}}\n"),
            _ => format!("{{\"instruction\": \"why x{i}\", \"output\": \"it is so\", \"pattern\": \"direct\"}}\n"),
        })
        .collect()
}

const PIPELINE: &str = "name: bench
stages:
  lm:
    kind: train
    deps: [train.jsonl, valid.jsonl]
    outs: [model, metrics.json, loss.svg]
    params:
      model: {layers: 1, width: 16, heads: 2, context: 64}
      template: '{user}>{assistant}'
      steps: 4
      batch_size: 4
      eval_every: 2
  base_eval:
    kind: train
    deps: [train.jsonl, valid.jsonl, model]
    outs: [model_eval, metrics_eval.json]
    params: {steps: 0}
  bench:
    kind: benchmark
    deps: [model, valid.jsonl, questions.jsonl]
    outs: [bench.md, bench.json, bench.svg, sheet.csv]
    params:
      models: [v1]
      prompts: 3
      max_new_tokens: 6
      criteria: [accuracy, style]
";

const SCORES: &str = "name: scores
stages:
  scores:
    kind: scores
    deps: [filled/v20.csv, filled/v21.csv]
    outs: [scores.md, scores.json]
    params:
      versions:
        - {name: v2.0, dataset_size: 153, dataset_type: curated}
        - {name: v2.1, dataset_size: 201, dataset_type: curated}
";

/// The sheet's rows, header first.
fn rows(sheet: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(sheet.as_bytes());
    r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect()
}

/// Fill every score cell of a sheet the benchmark wrote with `score`.
fn fill(sheet: &str, score: &str) -> String {
    let rows = rows(sheet);
    let scored: Vec<usize> =
        rows[0].iter().enumerate().filter(|(_, h)| *h == "accuracy" || *h == "style").map(|(i, _)| i).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    for (n, mut row) in rows.into_iter().enumerate() {
        if n > 0 {
            scored.iter().for_each(|&i| row[i] = score.to_string());
        }
        w.write_record(&row).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

#[test]
fn stratified_benchmark_sheet_and_human_scores() {
    let p = Project::new();
    p.write("train.jsonl", &records(24));
    p.write("valid.jsonl", &records(9));
    p.write(
        "questions.jsonl",
        "{\"id\": \"q1\", \"question\": \"find y\"}\n{\"id\": \"q2\", \"question\": \"why z\"}\n",
    );
    p.write("dvx.yaml", PIPELINE);
    p.dvx(&["run"]).ok();

    // `steps: 0` only measured the base: its loss is the trained model's last one.
    let m: Value = serde_json::from_str(&p.read("metrics_eval.json")).unwrap();
    let lm: Value = serde_json::from_str(&p.read("metrics.json")).unwrap();
    assert_eq!(m["steps"], 0);
    assert_eq!(m["initial_valid_loss"], m["final_valid_loss"]);
    let (a, b) = (m["final_valid_loss"].as_f64().unwrap(), lm["final_valid_loss"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "{a} vs {b}");

    // One prompt per class, not the first three records.
    let j: Value = serde_json::from_str(&p.read("bench.json")).unwrap();
    assert_eq!(j["sample"]["per_class"], serde_json::json!({"direct": 1, "grep": 1, "read": 1}));
    let row = &j["models"][0];
    assert_eq!(row["labelled"], 3);
    assert!(row["accuracy_ci95"][1].as_f64().unwrap() > row["accuracy_ci95"][0].as_f64().unwrap());
    assert_eq!(row["checks"]["answers"], 5, "3 eval prompts + 2 questions");
    assert_eq!(row["questions"][1]["id"], "q2");
    let md = p.read("bench.md");
    assert!(md.contains("## Accuracy per class (95% Wilson interval)"), "{md}");
    assert!(md.contains("## Automatic checks"), "{md}");
    let svg = p.read("bench.svg");
    assert!(svg.contains("valid loss — lower is better"), "{svg}");
    assert!(p.read("loss.svg").contains("loss: model — from scratch"));

    // The sheet: one row per question, empty score columns.
    let sheet = p.read("sheet.csv");
    assert!(sheet.starts_with("model,id,question,answer,truncated,template_bleed,agent_opening,accuracy,style,notes\n"));
    let table = rows(&sheet);
    assert_eq!(table.len(), 3, "{sheet}");
    assert_eq!(table[2][..3], ["v1", "q2", "why z"]);
    assert_eq!(table[2][7..], ["", "", ""]);

    // A person fills it; `scores` compares the versions.
    p.write("filled/v20.csv", &fill(&sheet, "7.4"));
    p.write("filled/v21.csv", &fill(&sheet, "8.2"));
    p.write("scores.yaml", SCORES);
    let first = p.dvx(&["run", "scores.yaml", "--json"]).ok();
    let table = p.read("scores.md");
    assert!(table.contains("v2.0 7.4 → v2.1 8.2"), "{table}");
    assert!(table.contains("| v2.1 | 8.2 | 201 | curated | 2 |"), "{table}");
    // A changed human score is a new version, and a drop is a regression.
    p.write("filled/v21.csv", &fill(&sheet, "4.5"));
    let second = p.dvx(&["run", "scores.yaml", "--json"]).ok();
    assert_eq!(second.status_of("scores"), "ran");
    let version = |r: &crate::support::Run| serde_json::from_str::<Value>(&r.stdout()).unwrap()["version"].clone();
    assert_ne!(version(&first), version(&second));
    assert!(p.read("scores.md").contains("**score 7.4 → 4.5**"), "{}", p.read("scores.md"));
}
