//! Running pipelines: what runs, what is cached, cutoff, failures, status.

use crate::support::Project;

/// Three stages: a → b, and c on its own. Each appends to `runs.log` when it executes.
fn three_stages(p: &Project, suffix: &str) {
    p.write(
        "dvx.yaml",
        &format!(
            r#"name: three
stages:
  a:
    kind: cmd
    deps: [in.txt]
    params: {{suffix: "{suffix}"}}
    outs: [a.txt]
    cmd: echo a >> runs.log && tr a-z A-Z < in.txt > a.txt && echo "${{params.suffix}}" >> a.txt
  b:
    kind: cmd
    deps: [a.txt]
    outs: [b.txt]
    cmd: echo b >> runs.log && wc -c < a.txt > b.txt
  c:
    kind: cmd
    deps: [other.txt]
    outs: [c.txt]
    cmd: echo c >> runs.log && cp other.txt c.txt
"#
        ),
    );
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

#[test]
fn only_changed_stage_and_dependents_run_and_revert_is_cached() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    let first = p.dvx(&["run", "--json"]).ok();
    assert_eq!(p.count("runs.log"), 3);
    assert_eq!(first.status_of("a"), "ran");
    assert_eq!(p.read("a.txt"), "HELLO\n!\n");

    // No-op: nothing runs.
    let again = p.dvx(&["run", "--json"]).ok();
    assert_eq!(p.count("runs.log"), 3);
    assert!(again.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", again.statuses());

    // Change a param: a and b run, c does not.
    three_stages(&p, "?");
    let changed = p.dvx(&["run", "--json"]).ok();
    assert_eq!(sorted_lines(&p.read("runs.log")), ["a", "a", "b", "b", "c"]);
    assert_eq!(changed.status_of("c"), "cached");
    assert_eq!(p.read("a.txt"), "HELLO\n?\n");

    // Revert: everything restored from the cache, nothing executes.
    three_stages(&p, "!");
    let reverted = p.dvx(&["run", "--json"]).ok();
    assert_eq!(p.count("runs.log"), 5);
    assert!(reverted.statuses().iter().all(|(_, s)| s == "cached"));
    assert_eq!(p.read("a.txt"), "HELLO\n!\n");

    // Change a source dep: a and b run again.
    p.write("in.txt", "bye\n");
    p.dvx(&["run"]).ok();
    assert_eq!(sorted_lines(&p.read("runs.log")), ["a", "a", "a", "b", "b", "b", "c"]);
}

#[test]
fn early_cutoff_stops_at_identical_bytes() {
    let p = Project::new();
    p.write("in.txt", "data\n");
    let yaml = |note: &str| {
        format!(
            r#"stages:
  first:
    kind: cmd
    deps: [in.txt]
    params: {{note: "{note}"}}
    outs: [mid.txt]
    cmd: echo first >> runs.log && echo "${{params.note}}" > /dev/null && cp in.txt mid.txt
  second:
    kind: cmd
    deps: [mid.txt]
    outs: [out.txt]
    cmd: echo second >> runs.log && cp mid.txt out.txt
"#
        )
    };
    p.write("dvx.yaml", &yaml("one"));
    p.dvx(&["run"]).ok();
    p.write("dvx.yaml", &yaml("two"));
    let r = p.dvx(&["run", "--json"]).ok();
    assert_eq!(r.status_of("first"), "ran");
    assert_eq!(r.status_of("second"), "cutoff");
    assert_eq!(p.read("runs.log"), "first\nsecond\nfirst\n");
}

#[test]
fn failure_in_one_branch_lets_the_other_finish() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        r#"stages:
  bad:
    cmd: echo "about to fail, disk on fire" && exit 3
    outs: [bad.txt]
  after_bad:
    deps: [bad.txt]
    outs: [after.txt]
    cmd: cp bad.txt after.txt
  good:
    cmd: sleep 0.3 && echo ok > good.txt && echo good >> runs.log
    outs: [good.txt]
"#,
    );
    // With --keep-going; without it the run stops early (tests/it/cancel.rs).
    let r = p.dvx(&["run", "-j", "2", "--json", "--keep-going"]);
    assert_eq!(r.code(), 1);
    assert_eq!(r.status_of("bad"), "failed");
    assert_eq!(r.status_of("after_bad"), "skipped");
    assert_eq!(r.status_of("good"), "ran");
    let table = p.dvx(&["run", "-j", "2", "--keep-going"]);
    assert_eq!(table.code(), 1);
    assert!(table.stderr().contains("stage `bad` failed: command failed (exit code 3)"), "{}", table.stderr());
    assert!(table.stderr().contains("about to fail, disk on fire"), "{}", table.stderr());
    // The good branch stayed cached: it did not run again.
    assert_eq!(p.count("runs.log"), 1);
}

#[test]
fn status_names_the_exact_cause() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    let s = p.dvx(&["status"]).ok().stdout();
    assert!(s.contains("a: would run: never run"), "{s}");
    p.dvx(&["run"]).ok();
    assert_eq!(p.dvx(&["status"]).ok().stdout(), "everything is up to date\n");

    three_stages(&p, "?");
    let s = p.dvx(&["status"]).ok().stdout();
    assert!(s.contains("a: would run: params.suffix changed (\"!\" → \"?\")"), "{s}");
    assert!(s.contains("b: would run: upstream a changed"), "{s}");
    assert!(!s.contains("c:"), "{s}");
    three_stages(&p, "!");

    p.write("other.txt", "y\n");
    let s = p.dvx(&["status"]).ok().stdout();
    assert_eq!(s, "c: would run: deps other.txt changed (same size)\n");
    p.write("other.txt", "x\n");

    std::fs::remove_file(p.path("b.txt")).unwrap();
    let s = p.dvx(&["status"]).ok().stdout();
    assert_eq!(s, "b: would restore: output missing from workspace (b.txt)\n");
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("b.txt").trim(), "8");

    // An implementation change is what the stored kind version says.
    let state_path = p.path(".dvx/state-v1.json");
    let mut state: serde_json::Value = serde_json::from_str(&p.read(".dvx/state-v1.json")).unwrap();
    state["stages"]["c"]["version"] = serde_json::json!(0);
    std::fs::write(state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::remove_file(p.path("c.txt")).unwrap();
    let s = p.dvx(&["status"]).ok().stdout();
    assert!(s.contains("c: would restore: implementation of cmd changed"), "{s}");
}

#[test]
fn status_json_and_dry_run_do_not_execute() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    let r = p.dvx(&["run", "--dry-run"]).ok();
    assert!(r.stdout().contains("a: would run: never run"));
    assert_eq!(p.count("runs.log"), 0);
    let j: serde_json::Value = serde_json::from_str(&p.dvx(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(j["stages"][0]["action"], "run");
    assert_eq!(j["stages"][0]["reasons"][0], serde_json::json!({"reason": "never_run"}));
}

#[test]
fn status_json_gives_reasons_as_data_with_old_and_new() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    p.dvx(&["run"]).ok();
    three_stages(&p, "?");
    p.write("other.txt", "y\n");
    let j: serde_json::Value = serde_json::from_str(&p.dvx(&["status", "--json"]).ok().stdout()).unwrap();
    let stage = |name: &str| j["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(stage("a")["action"], "run");
    assert_eq!(
        stage("a")["reasons"],
        serde_json::json!([{"reason": "param_changed", "field": "suffix", "old": "!", "new": "?"}])
    );
    assert_eq!(stage("b")["reasons"], serde_json::json!([{"reason": "upstream_changed", "stage": "a"}]));
    let c = stage("c")["reasons"].as_array().unwrap().clone();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["reason"], "dep_changed");
    assert_eq!(c[0]["path"], "other.txt");
    let (old, new) = (c[0]["old"].as_str().unwrap(), c[0]["new"].as_str().unwrap());
    assert!(!old.is_empty() && !new.is_empty() && old != new, "{c:?}");
    // The text form is unchanged.
    let text = p.dvx(&["status"]).ok().stdout();
    assert!(text.contains("a: would run: params.suffix changed (\"!\" → \"?\")"), "{text}");
    assert!(text.contains("c: would run: deps other.txt changed"), "{text}");
}

#[test]
fn targets_and_force() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    p.dvx(&["run", "dvx.yaml", "b"]).ok();
    assert_eq!(p.read("runs.log"), "a\nb\n");
    p.dvx(&["run", "--force", "c"]).ok();
    assert_eq!(sorted_lines(&p.read("runs.log")), ["a", "b", "c"]);
    let r = p.dvx(&["run", "--force", "a", "--json"]).ok();
    assert_eq!(r.status_of("a"), "ran");
    assert_eq!(r.status_of("b"), "cutoff");
    p.dvx(&["run", "--force-all"]).ok();
    assert_eq!(p.count("runs.log"), 7);
}

#[test]
fn folders_as_deps_and_outs() {
    let p = Project::new();
    p.write("src/one.txt", "1\n").write("src/sub/two.txt", "2\n");
    p.write(
        "dvx.yaml",
        r#"stages:
  copy:
    deps: [src]
    outs: [build]
    cmd: echo copy >> runs.log && mkdir -p build && cat src/one.txt src/sub/two.txt > build/all.txt && cp src/one.txt build/one.txt
  use:
    deps: [build/all.txt]
    outs: [final.txt]
    cmd: echo use >> runs.log && cp build/all.txt final.txt
"#,
    );
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("final.txt"), "1\n2\n");
    p.dvx(&["run"]).ok();
    assert_eq!(p.count("runs.log"), 2);
    p.write("src/sub/two.txt", "22\n");
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("final.txt"), "1\n22\n");
    assert_eq!(p.count("runs.log"), 4);
    // A removed output folder is restored from the cache, not rebuilt.
    std::fs::remove_dir_all(p.path("build")).unwrap();
    p.dvx(&["run"]).ok();
    assert_eq!(p.read("build/all.txt"), "1\n22\n");
    assert_eq!(p.count("runs.log"), 4);
}

#[test]
fn imports_share_work() {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write(
        "base.yaml",
        "stages:\n  base:\n    deps: [in.txt]\n    outs: [base.txt]\n    cmd: echo base >> runs.log && cp in.txt base.txt\n",
    );
    p.write(
        "top.yaml",
        "imports: [base.yaml]\nstages:\n  top:\n    deps: [base.txt]\n    outs: [top.txt]\n    cmd: echo top >> runs.log && cat base.txt base.txt > top.txt\n",
    );
    p.dvx(&["run", "base.yaml"]).ok();
    let r = p.dvx(&["run", "top.yaml", "--json"]).ok();
    assert_eq!(r.status_of("base"), "cached");
    assert_eq!(r.status_of("top"), "ran");
    assert_eq!(p.read("runs.log"), "base\ntop\n");
}

#[test]
fn dag_formats() {
    let p = Project::new();
    p.write("in.txt", "hello\n").write("other.txt", "x\n");
    three_stages(&p, "!");
    assert_eq!(p.dvx(&["dag"]).ok().stdout(), "a (cmd)\nb (cmd) <- a\nc (cmd)\n");
    assert!(p.dvx(&["dag", "--format", "dot"]).ok().stdout().contains("\"a\" -> \"b\";"));
    assert!(p.dvx(&["dag", "--format", "mermaid"]).ok().stdout().contains("s0 --> s1"));
}

#[test]
fn no_op_run_reads_no_source_file() {
    let p = Project::new();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let mut yaml = String::from("stages:\n");
    for i in 0..20 {
        for j in 0..5 {
            let rel = format!("src/d{i}/f{j}.txt");
            p.write(&rel, &format!("{i} {j}\n"));
            // Older than the stat cache's racy window.
            std::fs::File::options().write(true).open(p.path(&rel)).unwrap().set_modified(old).unwrap();
        }
        yaml += &format!(
            "  s{i}:\n    deps: [src/d{i}]\n    outs: [out/o{i}.txt]\n    cmd: cat src/d{i}/* > out/o{i}.txt\n"
        );
    }
    p.write("dvx.yaml", &yaml);
    // ctime cannot be set back: let the sources' ctime leave the racy window too.
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.dvx(&["run"]).ok();
    let files_read = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvx"))
            .args(["run"])
            .current_dir(p.dir.path())
            .env("RUST_LOG", "dvx_engine=debug")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let line =
            log.lines().find(|l| l.contains("file contents read for hashing")).expect("hash count logged").to_string();
        line.rsplit("files=").next().unwrap().trim().parse::<usize>().unwrap()
    };
    std::thread::sleep(std::time::Duration::from_millis(250)); // outputs leave the racy window
                                                               // The 100 sources were hashed once, by the first run; fresh outputs are
                                                               // checked once more (they were hashed within the racy window).
    assert!(files_read() <= 20);
    assert_eq!(files_read(), 0);
}
