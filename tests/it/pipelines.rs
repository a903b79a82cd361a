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

/// phase5 → phase6 → phase7 on the shipped corpus (training shortened so
/// the test stays fast; CI also runs the real pipeline once).
#[test]
fn phase_pipelines_build_on_each_other() {
    let p = repo_copy();
    for f in ["phase5", "phase6", "phase7"] {
        let path = format!("pipelines/{f}.yaml");
        let text = p.read(&path).replace("steps: 240", "steps: 6").replace("eval_every: 80", "eval_every: 3");
        p.write(&path, &text);
    }
    let p6 = p.dvx(&["run", "pipelines/phase6.yaml", "--json"]).ok();
    assert!(p6.statuses().iter().all(|(_, s)| s == "ran"), "{:?}", p6.statuses());
    let p7 = p.dvx(&["run", "pipelines/phase7.yaml", "--json"]).ok();
    for (name, status) in p7.statuses() {
        let want = if name.starts_with("p7_") { "ran" } else { "cached" };
        assert_eq!(status, want, "{name}");
    }
    // Seed 004's counts: 240 base + 550 AST examples, then + 30 HTML examples.
    assert_eq!(p.read("data/phase6/merged.jsonl").lines().count(), 790);
    assert_eq!(p.read("data/phase7/merged.jsonl").lines().count(), 820);
    let bench = p.read("data/phase7/benchmark.md");
    for model in ["| phase5 |", "| phase6 |", "| phase7 |"] {
        assert!(bench.contains(model), "{bench}");
    }
    // Same data, same version: a second run changes nothing.
    let again = p.dvx(&["run", "pipelines/phase7.yaml", "--json"]).ok();
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"));
    let v1: serde_json::Value = serde_json::from_str(&p7.stdout()).unwrap();
    let v2: serde_json::Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(v1["version"], v2["version"]);
}
