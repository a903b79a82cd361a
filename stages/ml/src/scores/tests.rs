//! End-to-end tests of the `scores` kind on filled sheets.

use std::path::{Path, PathBuf};

use dvx_stage_api::Typed;
use serde_json::json;

use super::sheet::{to_csv, Sheet, SheetRow};
use super::Scores;
use crate::train::tests::run_stage;

fn filled(dir: &Path, name: &str, model: &str, rows: &[(&str, [f64; 2], bool)]) -> PathBuf {
    let sheet = Sheet {
        criteria: vec!["accuracy".into(), "style".into()],
        rows: rows
            .iter()
            .map(|(id, s, agent)| SheetRow {
                model: model.into(),
                id: id.to_string(),
                question: format!("question {id}"),
                answer: "an answer".into(),
                flags: [false, false, *agent],
                scores: s.iter().map(|v| Some(*v)).collect(),
                notes: String::new(),
            })
            .collect(),
    };
    let path = dir.join(name);
    std::fs::write(&path, to_csv(&sheet).unwrap()).unwrap();
    path
}

#[test]
fn seed_003_table_across_versions() {
    let dir = tempfile::tempdir().unwrap();
    let deps = [
        filled(dir.path(), "v20.csv", "v2.0", &[("q1", [7.0, 8.0], false), ("q2", [7.0, 7.6], true)]),
        filled(dir.path(), "v21.csv", "v2.1", &[("q1", [8.0, 8.4], false), ("q2", [8.0, 8.4], true)]),
        filled(dir.path(), "v23.csv", "v2.3", &[("q1", [4.0, 5.0], true), ("q2", [4.0, 5.0], true)]),
    ];
    let params = json!({"versions": [
        {"name": "v2.0", "dataset_size": 153, "dataset_type": "curated"},
        {"name": "v2.1", "dataset_size": 201, "dataset_type": "curated"},
        {"name": "v2.3", "dataset_size": 148, "dataset_type": "curated + synthetic"}]});
    let outs = [dir.path().join("t.md"), dir.path().join("s.json")];
    let (r, log) = run_stage(&Typed::new(Scores), &params, &deps, &outs, 1);
    let m = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(m["trajectory"], json!("v2.0 7.4 → v2.1 8.2 → v2.3 4.5"));
    assert_eq!(m["regressions"], json!(1));
    assert_eq!(m["versions"]["v2.3"]["agent_opening"], json!(2));
    let md = std::fs::read_to_string(&outs[0]).unwrap();
    assert!(md.contains("| v2.1 | 8.2 | 201 | curated | 2 | 0 | 0 | 1 | - |"), "{md}");
    assert!(
        md.contains("| v2.3 | 4.5 | 148 | curated + synthetic | 2 | 0 | 0 | 2 | **score 8.2 → 4.5; agent-like openings 1 → 2** |"),
        "{md}"
    );
    assert!(md.contains("| v2.3 | 4.0 | 5.0 |"), "{md}");
    assert!(log.contains("v2.3: 4.5/10 over 2 answers"), "{log}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&outs[1]).unwrap()).unwrap();
    assert_eq!(j["versions"][1]["score"], json!(8.2));
}

#[test]
fn sheets_and_params_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let a = filled(dir.path(), "a.csv", "m", &[("q1", [5.0, 5.0], false)]);
    let outs = [dir.path().join("t.md")];
    let run = |params: serde_json::Value, deps: &[PathBuf]| {
        run_stage(&Typed::new(Scores), &params, deps, &outs, 1).0.unwrap_err().message
    };
    let e = run(json!({"versions": [{"name": "x"}, {"name": "y"}]}), &[a.clone()]);
    assert!(e.starts_with("versions: 2 versions named but 1 deps"), "{e}");
    let e = run(json!({"versions": [{"name": "x", "model": "other"}]}), &[a.clone()]);
    assert!(e.ends_with("a.csv: no rows of model `other` (the sheet has `m`)"), "{e}");
    // An unfilled sheet, as the benchmark writes it, names the empty cell.
    std::fs::write(
        &a,
        "model,id,question,answer,truncated,template_bleed,agent_opening,accuracy,notes\nm,q1,Q,A,,,,,\n",
    )
    .unwrap();
    let e = run(json!({"versions": [{"name": "x"}]}), &[a]);
    assert!(
        e.ends_with("a.csv:2: score `accuracy` of model `m`, question `q1` is empty: fill in a number from 0 to 10"),
        "{e}"
    );
}
