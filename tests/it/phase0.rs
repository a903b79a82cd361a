//! pipelines/phase0.yaml end to end, offline: scripts/serve-teachers.sh
//! trains (shortened here) and serves the teacher and judge models, the
//! pipeline generates, judges, dedups, validates and splits, and a forced
//! re-run of the LLM stages is answered from the memo.

use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;

use crate::pipelines::repo_copy;
use crate::support::Project;

/// A port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The serve script, run in `p` with this build's dvx and the given ports;
/// `stop` on drop.
struct Servers<'a> {
    p: &'a Project,
    ports: (u16, u16),
}

impl Servers<'_> {
    fn script(&self, arg: &str) -> std::process::Output {
        Command::new(self.p.path("scripts/serve-teachers.sh"))
            .arg(arg)
            .env("DVX", env!("CARGO_BIN_EXE_dvx"))
            .env("PHASE0_TEACHER_PORT", self.ports.0.to_string())
            .env("PHASE0_JUDGE_PORT", self.ports.1.to_string())
            .env_remove("DVX_CACHE_DIR")
            .output()
            .unwrap()
    }
}

impl Drop for Servers<'_> {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// `STAGE`'s metrics in the version the workspace holds.
fn metrics(p: &Project, stage: &str) -> Value {
    let out = p.dvx(&["metrics", "show", "--pipeline", "pipelines/phase0.yaml", "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    v["metrics"].get(stage).cloned().unwrap_or_else(|| panic!("no metrics of {stage} in {v}"))
}

/// The metrics of the one run entry of kind `kind` in the project's cache.
fn run_entry_metrics(p: &Project, kind: &str) -> Value {
    let entries: Vec<Value> = crate::llm::walkdir(&p.path(""))
        .into_iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "runs-v1"))
        .filter_map(|f| serde_json::from_slice::<Value>(&std::fs::read(f).ok()?).ok())
        .filter(|v| v["kind"] == kind)
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0]["metrics"].clone()
}

#[test]
fn phase0_generates_judges_and_splits_offline() {
    let p = repo_copy();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(Command::new("cp").args(["-r", root.join("scripts").to_str().unwrap(), p.path("").to_str().unwrap()]).status().unwrap().success());
    let ports = (free_port(), free_port());
    // Shorter training and a smaller judge, so a debug build stays quick; 60 prompts.
    let p5 = p.read("pipelines/phase5.yaml").replace("steps: 240", "steps: 4").replace("eval_every: 80", "eval_every: 2");
    p.write("pipelines/phase5.yaml", &p5);
    let p0 = p
        .read("pipelines/phase0.yaml")
        .replace("{ layers: 2, width: 64, heads: 4, context: 640 }", "{ layers: 1, width: 16, heads: 2, context: 640 }")
        .replace("steps: 300", "steps: 4")
        .replace("eval_every: 100", "eval_every: 2")
        .replace("max_failures: 30", "max_failures: 60\n      parse_retries: 0")
        .replace("127.0.0.1:8101", &format!("127.0.0.1:{}", ports.0))
        .replace("127.0.0.1:8102", &format!("127.0.0.1:{}", ports.1));
    p.write("pipelines/phase0.yaml", &p0);
    let prompts: String = p.read("examples/phase0/prompts.jsonl").lines().take(60).map(|l| format!("{l}\n")).collect();
    p.write("examples/phase0/prompts.jsonl", &prompts);

    let servers = Servers { p: &p, ports };
    let started = servers.script("start");
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let said = String::from_utf8_lossy(&started.stdout).to_string();
    assert!(said.contains(&format!("http://127.0.0.1:{}/v1", ports.0)), "{said}");
    assert!(said.contains(&format!("http://127.0.0.1:{}/v1", ports.1)), "{said}");
    assert!(String::from_utf8_lossy(&servers.script("status").stdout).matches("running").count() == 2);

    let run = p.dvx(&["run", "pipelines/phase0.yaml", "--json"]).ok();
    for (name, status) in run.statuses() {
        let want = if name == "p5_split" || name == "p5_train" || name.starts_with("p0_judge_") { "cached" } else { "ran" };
        assert_eq!(status, want, "{name}");
    }
    let generated = p.read("data/phase0/generated.jsonl");
    assert_eq!(generated.lines().count(), 60);
    for line in generated.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert!(["p5-greedy", "p5-warm", "p5-hot"].contains(&r["_teacher"].as_str().unwrap()), "{line}");
        assert!(r["output"].is_string() && r["category"].is_string());
    }
    // Every record is judged into one of the two outs: kept (mean above 7) or the rest.
    let kept = p.count("data/phase0/judged.jsonl");
    assert_eq!(kept + p.count("data/phase0/judged_out.jsonl"), 60);
    for line in p.read("data/phase0/judged.jsonl").lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert!(r["quality_score"].as_f64().unwrap() > 7.0, "{line}");
    }
    let deduped = p.count("data/phase0/deduped.jsonl");
    assert!(deduped <= kept);
    assert_eq!(p.count("data/phase0/train.jsonl") + p.count("data/phase0/valid.jsonl"), deduped);
    let report: Value = serde_json::from_str(&p.read("data/phase0/report.json")).unwrap();
    assert_eq!(report["records"].as_u64(), Some(deduped as u64), "{report}");
    let judge_log = p.dvx(&["logs", "p0_judge", "--pipeline", "pipelines/phase0.yaml"]).ok().stdout();
    assert!(judge_log.contains("9-10") && judge_log.contains("mean score"), "{judge_log}");
    let g = metrics(&p, "p0_generate");
    assert_eq!((g["requests"].as_u64(), g["requests_sent"].as_u64()), (Some(60), Some(60)), "{g}");

    // Forced again: every answer comes from the memo, the same bytes come out.
    let again = p.dvx(&["run", "pipelines/phase0.yaml", "--force", "p0_generate", "--json"]).ok();
    assert!(again.statuses().iter().any(|(n, s)| n == "p0_generate" && s == "ran"));
    // The forced run rewrote its run entry (same key, same outputs), with its own metrics.
    let g = run_entry_metrics(&p, "generate");
    assert_eq!((g["requests_sent"].as_u64(), g["from_memo"].as_u64()), (Some(0), Some(60)), "{g}");
    assert_eq!(p.read("data/phase0/generated.jsonl"), generated);
    drop(servers);
}
