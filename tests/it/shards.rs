//! Sharded stages (`shards: N`, `--shards STAGE=N`): the same bytes and
//! version as an unsharded run, a re-run that executes only the shards whose
//! records changed, and failed shards retried alone — locally here, and on
//! a single-node Slurm cluster as one array job (`sharded_on_slurm`).

use serde_json::Value;

use crate::support::{Project, Run};

/// A `filter` over `in.jsonl`, then a `cmd` that reads what it kept.
pub(crate) const PIPELINE: &str = r#"name: sharded
stages:
  keep:
    kind: filter
    deps: [in.jsonl]
    outs: [kept.jsonl]
    params:
      rules:
        a: {contains_any: [alpha, gamma]}
        b: {min_len: 12}
  count:
    deps: [kept.jsonl]
    outs: [count.txt]
    cmd: wc -l < kept.jsonl > count.txt
"#;

/// 40 records, categories a and b, some kept and some not.
pub(crate) fn records() -> Vec<String> {
    (0..40)
        .map(|i| {
            let word = ["alpha", "beta", "gamma", "delta"][i % 4];
            let cat = if i % 3 == 0 { "b" } else { "a" };
            format!(r#"{{"id": {i}, "category": "{cat}", "text": "{word} number {i}{}"}}"#, "!".repeat(i % 5))
        })
        .collect()
}

pub(crate) fn project(lines: &[String]) -> Project {
    let p = Project::new();
    p.write("dvx.yaml", PIPELINE);
    p.write("in.jsonl", &format!("{}\n", lines.join("\n")));
    p
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}\n{}\n{}", r.stdout(), r.stderr()))
}

/// The `keep` stage's shards in a `--json` report: (status, records) per shard.
fn shards(v: &Value) -> Vec<(String, u64)> {
    let keep = v["stages"].as_array().unwrap().iter().find(|s| s["name"] == "keep").unwrap();
    keep["shards"]
        .as_array()
        .map(|a| a.iter().map(|s| (s["status"].as_str().unwrap().to_string(), s["records"].as_u64().unwrap())).collect())
        .unwrap_or_default()
}

fn count(v: &[(String, u64)], status: &str) -> usize {
    v.iter().filter(|(s, _)| s == status).count()
}

#[test]
fn sharded_run_matches_unsharded_and_reruns_only_changed_shards() {
    let mut lines = records();
    let plain = project(&lines);
    let plain_v = json(&plain.dvx(&["run", "--json"]).ok());
    let sharded = project(&lines);
    let v = json(&sharded.dvx(&["run", "--json", "--shards", "keep=4"]).ok());
    assert_eq!(v["version"], plain_v["version"], "a sharded run is the unsharded version");
    assert_eq!(sharded.read("kept.jsonl"), plain.read("kept.jsonl"));
    assert_eq!(shards(&v), vec![("ran".to_string(), 10); 4]);
    assert_eq!(shards(&plain_v), vec![], "an unsharded stage lists no shards");
    // Metrics add up to the unsharded run's.
    let metrics = |p: &Project| p.dvx(&["metrics", "show", "--json"]).ok().stdout();
    assert_eq!(metrics(&sharded), metrics(&plain));

    // Nothing changed: nothing runs, sharded or not.
    let again = json(&sharded.dvx(&["run", "--json", "--shards", "keep=4"]).ok());
    assert_eq!(again["version"], v["version"]);
    assert_eq!(shards(&again), vec![], "an up-to-date stage does not cut its shards");

    // One record edited in the second range (records 10..20): only shard 1 executes.
    lines[13] = r#"{"id": 13, "category": "a", "text": "gamma edited"}"#.to_string();
    for p in [&plain, &sharded] {
        p.write("in.jsonl", &format!("{}\n", lines.join("\n")));
    }
    let plain_v = json(&plain.dvx(&["run", "--json"]).ok());
    let v = json(&sharded.dvx(&["run", "--json", "--shards", "keep=4"]).ok());
    let s = shards(&v);
    assert_eq!((count(&s, "ran"), count(&s, "cached")), (1, 3), "{s:?}");
    assert_eq!(s[1].0, "ran");
    assert_eq!(v["version"], plain_v["version"]);
    assert_eq!(sharded.read("kept.jsonl"), plain.read("kept.jsonl"));
}

#[test]
fn a_failed_shard_is_retried_alone_and_status_lists_shards() {
    let mut lines = records();
    lines[25] = "{not json".to_string();
    let p = project(&lines);
    // Sharded in the pipeline file this time.
    p.write("dvx.yaml", &PIPELINE.replace("    kind: filter\n", "    kind: filter\n    shards: 4\n"));
    let r = p.dvx(&["run", "--json"]);
    assert_ne!(r.code(), 0, "a malformed record fails its shard");
    let v = json(&r);
    let s = shards(&v);
    assert_eq!((count(&s, "ran"), count(&s, "failed")), (3, 1), "{s:?}");
    assert_eq!(s[2].0, "failed", "record 25 is in the third range");
    let keep = &v["stages"][0];
    assert!(keep["error"].as_str().unwrap().contains("1 of 4 shards failed"), "{keep}");

    // status: the failed shard, and the others done.
    let st = p.dvx(&["status"]).ok().stdout();
    assert!(st.contains("4 shards, 1 to run"), "{st}");
    assert!(st.contains("shard 2: failed (last run) (10 records)"), "{st}");
    assert!(st.contains("shard 0: done (10 records)"), "{st}");
    let sj: Value = serde_json::from_str(&p.dvx(&["status", "--json"]).ok().stdout()).unwrap();
    let states: Vec<&str> =
        sj["stages"][0]["shards"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(states, ["done", "done", "failed-last-run", "done"]);

    // Fixed: only that shard executes, and the result is the unsharded one.
    lines[25] = r#"{"id": 25, "category": "a", "text": "alpha fixed"}"#.to_string();
    p.write("in.jsonl", &format!("{}\n", lines.join("\n")));
    let v = json(&p.dvx(&["run", "--json"]).ok());
    let s = shards(&v);
    assert_eq!((count(&s, "ran"), count(&s, "cached")), (1, 3), "{s:?}");
    let plain = project(&lines);
    let plain_v = json(&plain.dvx(&["run", "--json"]).ok());
    assert_eq!(p.read("kept.jsonl"), plain.read("kept.jsonl"));
    assert_eq!(p.read("count.txt"), plain.read("count.txt"));
    // The stage keys match (the versions differ only by the pipeline file, which has `shards: 4`).
    assert_eq!(v["stages"][0]["key"], plain_v["stages"][0]["key"]);
}

#[test]
fn stages_that_cannot_be_sharded_are_refused_with_the_reason() {
    let p = project(&records());
    let r = p.dvx(&["run", "--shards", "count=2"]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("stage `count` (cmd) cannot be sharded"), "{}", r.stderr());
    p.write(
        "dvx.yaml",
        "stages:\n  top:\n    kind: score\n    shards: 2\n    deps: [in.jsonl]\n    outs: [top.jsonl]\n    params:\n      features: [{feature: chars, weight: 1}]\n      top_k: 3\n",
    );
    let r = p.dvx(&["run"]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("cannot be sharded: `top_k` keeps the best"), "{}", r.stderr());
}

/// On Slurm (called from `slurm::slurm_end_to_end`, which owns the
/// cluster): `--shards keep=4` runs as ONE array job of 4 tasks and gives
/// the local unsharded run's version; a changed range re-runs as an array
/// of one task.
pub(crate) fn sharded_on_slurm(c: &crate::slurm::Cluster) {
    use crate::slurm::{json_of, text};
    let mut lines = records();
    let local = project(&lines);
    let local_v = json(&local.dvx(&["run", "--json"]).ok());
    let remote = project(&lines);
    remote.write("dvx.toml", "shared = \"group\"\n");
    let out = c.run(&remote, &["run", "--json", "--executor", "slurm", "--shards", "keep=4"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["version"], local_v["version"], "sharded on Slurm = local unsharded");
    assert_eq!(shards(&v), vec![("ran".to_string(), 10); 4]);
    assert_eq!(remote.read("kept.jsonl"), local.read("kept.jsonl"));
    // Slurm's records: the 4 shards are the tasks of one array job.
    let keep_tasks = |c: &crate::slurm::Cluster| -> Vec<(String, String, String)> {
        c.jobs_of(&remote)
            .values()
            .filter(|f| f["JobName"].starts_with("dvx:keep:"))
            .map(|f| (f["ArrayJobId"].clone(), f["ArrayTaskId"].clone(), f["JobState"].clone()))
            .collect()
    };
    let tasks = keep_tasks(c);
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.0 == tasks[0].0 && t.2 == "COMPLETED"), "one array job: {tasks:?}");
    let mut ids: Vec<&str> = tasks.iter().map(|t| t.1.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3"]);
    assert_eq!(std::fs::read_dir(remote.path(".dvx/cache/jobs-v1")).unwrap().count(), 0, "job files removed");

    // One record changed in the fourth range: an array of that one shard.
    lines[33] = r#"{"id": 33, "category": "b", "text": "alpha changed on the cluster"}"#.to_string();
    for p in [&local, &remote] {
        p.write("in.jsonl", &format!("{}\n", lines.join("\n")));
    }
    let local_v = json(&local.dvx(&["run", "--json"]).ok());
    let out = c.run(&remote, &["run", "--json", "--executor", "slurm", "--shards", "keep=4"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["version"], local_v["version"]);
    let s = shards(&v);
    assert_eq!((count(&s, "ran"), count(&s, "cached")), (1, 3), "{s:?}");
    let tasks = keep_tasks(c);
    let first = tasks.iter().map(|t| t.0.parse::<u64>().unwrap()).min().unwrap();
    let new: Vec<_> = tasks.iter().filter(|t| t.0.parse::<u64>().unwrap() != first).collect();
    assert_eq!(new.len(), 1, "{tasks:?}");
    assert_eq!(new[0].1, "3");
}

#[test]
fn gc_keeps_the_memo_a_sharded_stage_used_while_a_version_uses_it() {
    let p = project(&records());
    let v = p.dvx(&["run", "--shards", "keep=3"]).ok().version();
    let memo = p.path(".dvx/cache/memo-v1/filter");
    let entries = crate::llm::walkdir(&memo);
    assert!(!entries.is_empty(), "filter keeps per-record results in the memo");
    let age_memo = || {
        p.age_cache();
        crate::llm::age_files(&memo, 40);
    };
    age_memo();

    // The version stays: every entry its shards used stays, however old.
    let r = p.dvx(&["gc", "--keep", &v[..8], "--memo-older-than", "30d", "-f"]).ok();
    assert!(r.stdout().contains("removed 0 memo entries"), "{}", r.stdout());
    assert!(r.stdout().contains(&format!("kept {} older ones that kept versions used", entries.len())), "{}", r.stdout());

    // Once no kept version uses the stage, age decides.
    p.write("dvx.yaml", "name: sharded\nstages:\n  other:\n    cmd: echo x > x.txt\n    outs: [x.txt]\n");
    p.dvx(&["run"]).ok();
    age_memo();
    let r = p.dvx(&["gc", "--keep-last", "1", "--memo-older-than", "30d", "-f"]).ok();
    assert!(r.stdout().contains(&format!("removed version {v}")), "{}", r.stdout());
    assert!(r.stdout().contains(&format!("removed {} memo entries", entries.len())), "{}", r.stdout());
}
