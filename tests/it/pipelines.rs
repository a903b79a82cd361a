//! The shipped pipelines run on the shipped examples, offline.

use std::path::Path;

use crate::support::Project;

/// A temp copy of the repo's `pipelines/` and `examples/` (the pipelines use the repo root as wdir).
pub fn repo_copy() -> Project {
    let p = Project::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["pipelines", "examples"] {
        let status = std::process::Command::new("cp")
            .args(["-r", root.join(dir).to_str().unwrap(), p.dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let _ = std::fs::remove_dir_all(p.path("pipelines/.dvx"));
    p
}

#[test]
fn v5_8_curated_runs_and_prints_the_pass_rate_table() {
    let p = repo_copy();
    let first = p.dvx(&["run", "pipelines/v5_8_curated.yaml"]).ok();
    let out = first.stdout();
    assert!(out.contains("| Category | Total | Passed | Failed | Pass Rate |"), "{out}");
    assert!(out.contains("| **TOTAL** | **1704** |"), "{out}");
    for stage in ["filter", "dedup", "balance", "split", "validate"] {
        assert!(out.lines().any(|l| l.starts_with(stage) && l.contains(" ran ")), "{stage} did not run:\n{out}");
    }
    let again = p.dvx(&["run", "pipelines/v5_8_curated.yaml", "--json"]).ok();
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"));
    let v: serde_json::Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(v["version"].as_str().unwrap(), first.version());
    // Balanced to at most 180 per category, then split 90/10.
    let train = p.read("data/v5_8/train.jsonl").lines().count();
    let valid = p.read("data/v5_8/valid.jsonl").lines().count();
    assert!(train + valid <= 8 * 180 && train > 8 * valid, "{train}/{valid}");
}
