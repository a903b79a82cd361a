//! Whole outputs, pinned: the full stdout, stderr and exit code of every `dvx`
//! command, and the full rendering of every error the pipeline loader gives,
//! as [insta] snapshots in `tests/it/snapshots/`.
//!
//! Everything that varies from run to run or machine to machine (temp paths,
//! hashes, times, durations, throughput) is replaced by placeholders in one
//! place, [`Redact`] in `support.rs`; hashes are numbered (`<H1>`, short
//! `<h1>`) so that equal hashes stay equal within a test.
//!
//! # Reviewing and updating
//!
//! A snapshot that is missing or differs fails its test, with a diff. After a
//! deliberate change of output:
//!
//! - with [cargo-insta] installed: `cargo insta test --test it -- snapshots::`
//!   then `cargo insta review` to accept or reject each change;
//! - without it: `INSTA_UPDATE=always cargo test --test it -- snapshots::`
//!   rewrites the `.snap` files in place; review them with `git diff
//!   tests/it/snapshots/` before committing.
//!
//! Plain `cargo test` (no `INSTA_UPDATE`) writes a `.snap.new` beside a
//! missing or differing snapshot (git ignores them; `cargo insta review`
//! reads them) and fails. With `CI` set to anything but `false`/`0` (`.ci/run`
//! sets `CI=true`) insta writes nothing: a new or differing snapshot fails
//! the run, so snapshots are only ever made by a person and committed.
//! cargo-insta is never needed to run the tests. Never set `INSTA_FORCE_PASS`.
//!
//! Running the test binary directly (say as an unprivileged user, outside
//! cargo), set `INSTA_WORKSPACE_ROOT` to the repository, else insta asks
//! `cargo metadata` for it; to update snapshots that way the user needs write
//! access to `tests/it/snapshots/`.
//!
//! Each snapshot's body starts with the input where there is one (the
//! pipeline file), then `exit:`, `--- stdout` and `--- stderr`.
//!
//! [insta]: https://insta.rs
//! [cargo-insta]: https://insta.rs/docs/cli/

use std::path::Path;

use insta::assert_snapshot;

use crate::support::{Project, Redact, Run};

const DATA: &str = r#"{"id":1,"category":"crud","text":"alpha"}
{"id":2,"category":"crud","text":"beta"}
{"id":3,"category":"auth","text":"alpha"}
{"id":4,"category":"auth","text":"gamma"}
{"id":5,"category":"ws","text":"beta"}
{"id":6,"category":"ws","text":"alpha"}
{"id":7,"category":"ws","text":"delta"}
{"id":8,"category":"crud","text":"gamma"}
"#;

/// Two `cmd` stages in a chain and a built-in `filter` (whose report and
/// metrics show up in `run` and `show`).
fn demo(suffix: &str, word: &str) -> String {
    format!(
        r#"name: demo
stages:
  upper:
    kind: cmd
    deps: [input.txt]
    params: {{suffix: "{suffix}"}}
    outs: [upper.txt]
    cmd: tr a-z A-Z < input.txt > upper.txt && echo "${{params.suffix}}" >> upper.txt
  count:
    deps: [upper.txt]
    outs: [count.txt]
    cmd: wc -c < upper.txt > count.txt
  keep:
    kind: filter
    deps: [data.jsonl]
    outs: [kept.jsonl, rejected.jsonl]
    params:
      category_field: category
      rules:
        crud: {{contains: {word}}}
        auth: {{contains: {word}}}
        ws: {{any: [{word}, delta]}}
"#
    )
}

fn demo_project() -> Project {
    let p = Project::new();
    p.write("input.txt", "hello\n");
    p.write("data.jsonl", DATA);
    p.write("dvx.yaml", &demo("!", "alpha"));
    p
}

/// `dvx ARGS` in `p`, with its exit code checked and its output redacted.
#[track_caller]
fn snap(p: &Project, r: &mut Redact, args: &[&str], code: i32) -> String {
    let run = p.dvx(args);
    checked(run, r, code)
}

#[track_caller]
fn checked(run: Run, r: &mut Redact, code: i32) -> String {
    assert_eq!(run.code(), code, "stdout:\n{}\nstderr:\n{}", run.stdout(), run.stderr());
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    run.snapshot(r)
}


#[test]
fn run_first_noop_json_dry_force_and_targets() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    assert_snapshot!("run_first", snap(&p, &mut r, &["run"], 0));
    assert_snapshot!("run_noop", snap(&p, &mut r, &["run"], 0));
    assert_snapshot!("run_json_noop", snap(&p, &mut r, &["run", "--json"], 0));
    p.write("input.txt", "bye\n");
    assert_snapshot!("run_dry_run", snap(&p, &mut r, &["run", "--dry-run"], 0));
    assert_snapshot!("run_target_only", snap(&p, &mut r, &["run", "dvx.yaml", "upper"], 0));
    assert_snapshot!("run_force", snap(&p, &mut r, &["run", "--force", "count", "-j", "1"], 0));
    assert_snapshot!("run_unknown_target", snap(&p, &mut r, &["run", "dvx.yaml", "uper"], 2));
    assert_snapshot!("run_missing_pipeline", snap(&p, &mut r, &["run", "nope.yaml"], 2));
}

#[test]
fn run_early_cutoff() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    p.dvx(&["run"]).ok();
    // Same letters, other case: `upper` re-runs and writes the same bytes.
    p.write("input.txt", "HELLO\n");
    assert_snapshot!("run_cutoff", snap(&p, &mut r, &["run"], 0));
}

#[test]
fn run_failure_and_resume() {
    let p = Project::new();
    let mut r = Redact::new(&p);
    let yaml = "name: fails\nstages:\n  good:\n    outs: [good.txt]\n    cmd: echo ok > good.txt\n  bad:\n    deps: [good.txt]\n    outs: [bad.txt]\n    cmd: echo line one; echo 'it went wrong' >&2; exit 3\n  after:\n    deps: [bad.txt]\n    outs: [after.txt]\n    cmd: cp bad.txt after.txt\n";
    p.write("dvx.yaml", yaml);
    assert_snapshot!("run_failure", snap(&p, &mut r, &["run"], 1));
    assert_snapshot!("run_failure_json", snap(&p, &mut r, &["run", "--json"], 1));
    p.write("dvx.yaml", &yaml.replace("exit 3", "touch bad.txt"));
    assert_snapshot!("run_failure_fixed", snap(&p, &mut r, &["run"], 0));
    // A cmd that succeeds without writing its declared out fails the stage.
    p.write("dvx.yaml", "stages:\n  a:\n    outs: [o.txt]\n    cmd: echo done\n");
    assert_snapshot!("run_missing_declared_out", snap(&p, &mut r, &["run"], 1));
}

/// A stage that reports malformed input says so in its failure line.
#[test]
fn run_bad_input() {
    let p = Project::new();
    let mut r = Redact::new(&p);
    p.write("data.jsonl", "{\"text\": \"ok\"}\nnot json\n");
    p.write(
        "dvx.yaml",
        "name: bad\nstages:\n  keep:\n    kind: filter\n    deps: [data.jsonl]\n    outs: [kept.jsonl]\n    params:\n      rules:\n        any: {contains: ok}\n",
    );
    assert_snapshot!("run_bad_input", snap(&p, &mut r, &["run"], 1));
}

#[test]
fn status_text_and_json() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    assert_snapshot!("status_never_run", snap(&p, &mut r, &["status"], 0));
    assert_snapshot!("status_never_run_json", snap(&p, &mut r, &["status", "--json"], 0));
    p.dvx(&["run"]).ok();
    assert_snapshot!("status_up_to_date", snap(&p, &mut r, &["status"], 0));
    p.write("dvx.yaml", &demo("?", "alpha"));
    p.write("data.jsonl", &DATA.replace("delta", "omega"));
    assert_snapshot!("status_changed", snap(&p, &mut r, &["status"], 0));
    assert_snapshot!("status_changed_json", snap(&p, &mut r, &["status", "--json"], 0));
    p.write("dvx.yaml", &demo("!", "alpha"));
    p.write("data.jsonl", DATA);
    std::fs::remove_file(p.path("count.txt")).unwrap();
    p.write("kept.jsonl", "{}\n");
    assert_snapshot!("status_output_missing_and_modified", snap(&p, &mut r, &["status"], 0));
    assert_snapshot!("status_output_missing_and_modified_json", snap(&p, &mut r, &["status", "--json"], 0));
}

#[test]
fn dag_formats() {
    let p = Project::new();
    let mut r = Redact::new(&p);
    p.write("in.txt", "x\n");
    p.write(
        "dvx.yaml",
        "name: diamond\nstages:\n  a:\n    deps: [in.txt]\n    outs: [a.txt]\n    cmd: cp in.txt a.txt\n  b:\n    deps: [a.txt]\n    outs: [b.txt]\n    cmd: cp a.txt b.txt\n  c:\n    deps: [a.txt]\n    outs: [c.txt]\n    cmd: cp a.txt c.txt\n  d:\n    kind: cmd\n    deps: [b.txt, c.txt]\n    outs: [d.txt]\n    cmd: cat b.txt c.txt > d.txt\n",
    );
    assert_snapshot!("dag_text", snap(&p, &mut r, &["dag"], 0));
    assert_snapshot!("dag_dot", snap(&p, &mut r, &["dag", "--format", "dot"], 0));
    assert_snapshot!("dag_mermaid", snap(&p, &mut r, &["dag", "--format", "mermaid"], 0));
}

#[test]
fn versions_log_show_diff_checkout() {
    let p = demo_project();
    let to = tempfile::tempdir().unwrap();
    let mut r = Redact::new(&p).path(to.path(), "[TO]");
    assert_snapshot!("log_empty", snap(&p, &mut r, &["log"], 0));
    let v1 = p.dvx(&["run"]).ok().version();
    p.write("dvx.yaml", &demo("!", "gamma"));
    let v2 = p.dvx(&["run"]).ok().version();
    assert_snapshot!("log", snap(&p, &mut r, &["log"], 0));
    assert_snapshot!("show", snap(&p, &mut r, &["show", &v1[..8]], 0));
    assert_snapshot!("diff", snap(&p, &mut r, &["diff", &v1[..8], &v2[..8]], 0));
    assert_snapshot!("diff_stage", snap(&p, &mut r, &["diff", &v1[..8], &v2[..8], "keep"], 0));
    assert_snapshot!("diff_json", snap(&p, &mut r, &["diff", &v1[..8], &v2[..8], "--json"], 0));
    assert_snapshot!("checkout", snap(&p, &mut r, &["checkout", &v1[..8]], 0));
    assert_snapshot!("status_after_checkout", snap(&p, &mut r, &["status"], 0));
    let dir = to.path().join("copy");
    assert_snapshot!("checkout_to", snap(&p, &mut r, &["checkout", &v1, "--to", dir.to_str().unwrap()], 0));
    let there = p.dvx_in(&dir, &["run"]);
    assert_snapshot!("run_in_checkout_to", checked(there, &mut r, 0));
    // Errors naming versions.
    assert_snapshot!("show_unknown_version", snap(&p, &mut r, &["show", "0000000"], 2));
    assert_snapshot!("show_prefix_too_short", snap(&p, &mut r, &["show", "ab"], 2));
    assert_snapshot!("diff_unknown_stage", snap(&p, &mut r, &["diff", &v1[..8], &v2[..8], "nope"], 2));
}

#[test]
fn reproduce_identical_and_differs() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    let v = p.dvx(&["run"]).ok().version();
    assert_snapshot!("reproduce_identical", snap(&p, &mut r, &["reproduce", &v[..8]], 0));

    // `noise` writes other bytes each time; `once` fails when `fail` exists,
    // which it does only after the run; `tail` is then skipped.
    let p = Project::new();
    let mut r = Redact::new(&p);
    let fail = p.path("fail");
    p.write(
        "dvx.yaml",
        &format!(
            "name: noisy\nstages:\n  noise:\n    outs: [noise.txt]\n    cmd: od -An -N16 -tx1 /dev/urandom > noise.txt\n  once:\n    outs: [once.txt]\n    cmd: test -e {} && exit 4; echo ok > once.txt\n  tail:\n    deps: [once.txt]\n    outs: [tail.txt]\n    cmd: cp once.txt tail.txt\n",
            fail.display()
        ),
    );
    let v = p.dvx(&["run"]).ok().version();
    p.write("fail", "");
    assert_snapshot!("reproduce_differs", snap(&p, &mut r, &["reproduce", &v[..8]], 1));
}

#[test]
fn gc_dry_run_and_gc() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    p.dvx(&["run"]).ok();
    p.write("dvx.yaml", &demo("?", "gamma"));
    p.write("input.txt", "other\n");
    p.dvx(&["run"]).ok();
    p.age_cache();
    assert_snapshot!("gc_no_scope", snap(&p, &mut r, &["gc"], 2));
    assert_snapshot!("gc_dry_run", snap(&p, &mut r, &["gc", "--all-workspaces", "--dry-run"], 0));
    assert_snapshot!("gc_keep_last_2", snap(&p, &mut r, &["gc", "--keep-last", "2", "--dry-run"], 0));
    assert_snapshot!("gc_bad_date", snap(&p, &mut r, &["gc", "--keep-since", "yesterday"], 2));
    assert_snapshot!("gc_no_terminal", snap(&p, &mut r, &["gc", "--all-workspaces"], 2));
    assert_snapshot!("gc", snap(&p, &mut r, &["gc", "--all-workspaces", "--force"], 0));
    assert_snapshot!("log_after_gc", snap(&p, &mut r, &["log"], 0));
    assert_snapshot!("gc_nothing_left", snap(&p, &mut r, &["gc", "--all-workspaces", "--force"], 0));
}

#[test]
fn cache_dir_stats_verify_repair() {
    let p = demo_project();
    let mut r = Redact::new(&p);
    assert_snapshot!("cache_dir", snap(&p, &mut r, &["cache", "dir"], 0));
    assert_snapshot!("cache_stats_empty", snap(&p, &mut r, &["cache", "stats"], 0));
    p.dvx(&["run"]).ok();
    assert_snapshot!("cache_stats", snap(&p, &mut r, &["cache", "stats"], 0));
    assert_snapshot!("cache_verify_clean", snap(&p, &mut r, &["cache", "verify"], 0));
    // Damage the object holding upper.txt's bytes ("HELLO\n!\n").
    let hash = blake3::hash(b"HELLO\n!\n").to_hex().to_string();
    let object = p.path(".dvx/cache/objects-v1").join(&hash[..2]).join(&hash[2..]);
    let _ = std::fs::remove_file(&object);
    std::fs::write(&object, "damaged\n").unwrap();
    assert_snapshot!("cache_verify_corrupt", snap(&p, &mut r, &["cache", "verify"], 1));
    assert_snapshot!("cache_verify_repair", snap(&p, &mut r, &["cache", "verify", "--repair"], 1));
    assert_snapshot!("cache_verify_after_repair", snap(&p, &mut r, &["cache", "verify"], 0));
    let other = tempfile::tempdir().unwrap();
    let mut r = r.path(other.path(), "[OTHER]");
    let flag = other.path().to_str().unwrap().to_string();
    assert_snapshot!("cache_dir_flag", snap(&p, &mut r, &["--cache", &flag, "cache", "dir"], 0));
}

#[test]
fn help_and_hidden_commands() {
    let p = Project::new();
    let mut r = Redact::new(&p);
    assert_snapshot!("help", snap(&p, &mut r, &["--help"], 0));
    assert_snapshot!("no_pipeline", snap(&p, &mut r, &["status"], 2));
    // What a Slurm job runs, given a job spec that is not there.
    let spec = p.path("jobs-v1/nope.json");
    assert_snapshot!("exec_stage_missing_spec", snap(&p, &mut r, &["exec-stage", spec.to_str().unwrap()], 2));
}

/// A tiny `train` stage: its report has throughput, wall time and memory.
#[test]
fn run_train_report() {
    let p = Project::new();
    let mut r = Redact::new(&p);
    let mut train = String::new();
    for i in 0..16 {
        train.push_str(&format!("{{\"text\": \"record {i}: the quick brown fox\"}}\n"));
    }
    p.write("train.jsonl", &train);
    p.write("valid.jsonl", "{\"text\": \"a valid record\"}\n");
    p.write(
        "dvx.yaml",
        "name: tiny\nstages:\n  lm:\n    kind: train\n    deps: [train.jsonl, valid.jsonl]\n    outs: [model, metrics.json]\n    params:\n      model: {layers: 1, width: 16, heads: 2, context: 32}\n      steps: 3\n      batch_size: 2\n      eval_every: 2\n",
    );
    assert_snapshot!("run_train", snap(&p, &mut r, &["run"], 0));
}

// ---- every error the pipeline loader gives -----------------------------------

/// `dvx run` on `yaml` (with `in.txt` beside it): exit 2, the input and the
/// whole output as snapshot `name`.
#[track_caller]
fn spec_error(name: &str, yaml: &str) {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", yaml);
    spec_error_in(name, &p, yaml);
}

#[track_caller]
fn spec_error_in(name: &str, p: &Project, yaml: &str) {
    let mut r = Redact::new(p);
    let out = snap(p, &mut r, &["run"], 2);
    assert_snapshot!(name, format!("--- dvx.yaml\n{yaml}{out}"));
}

#[test]
fn error_yaml_syntax() {
    spec_error("error_yaml_syntax", "name: x\nstages:\n  a:\n    cmd: [unclosed\n");
}

#[test]
fn error_yaml_wrong_type() {
    spec_error("error_yaml_wrong_type", "stages:\n  a:\n    deps: in.txt\n    cmd: echo\n");
}

#[test]
fn error_unknown_stage_key() {
    spec_error("error_unknown_stage_key", "stages:\n  a:\n    kind: cmd\n    depz: [in.txt]\n    cmd: echo\n");
}

#[test]
fn error_unknown_top_level_key() {
    spec_error("error_unknown_top_level_key", "stagez:\n  a:\n    cmd: echo\n");
}

#[test]
fn error_unknown_key_no_suggestion() {
    spec_error("error_unknown_key_no_suggestion", "stages:\n  a:\n    cmd: echo\n    zzzzzzzz: 1\n");
}

#[test]
fn error_unknown_kind() {
    spec_error("error_unknown_kind", "stages:\n  a:\n    kind: cdm\n    cmd: echo\n");
}

#[test]
fn error_unknown_kind_no_suggestion() {
    spec_error("error_unknown_kind_no_suggestion", "stages:\n  a:\n    kind: quantum-annealer\n");
}

#[test]
fn error_stage_without_kind() {
    spec_error("error_stage_without_kind", "stages:\n  a:\n    deps: [in.txt]\n");
}

#[test]
fn error_params_not_a_map() {
    spec_error("error_params_not_a_map", "stages:\n  a:\n    params: [1, 2]\n    cmd: echo\n");
}

#[test]
fn error_bad_params_at_field() {
    spec_error(
        "error_bad_params_at_field",
        "stages:\n  sp:\n    kind: split\n    deps: [in.txt]\n    outs: [t.jsonl, v.jsonl]\n    params:\n      seed: 1\n      ratio: [0.8, -0.2]\n",
    );
}

/// The second list item's field, not the first one's: spans are recorded
/// while parsing, not searched for in the text.
#[test]
fn error_bad_params_second_item() {
    spec_error(
        "error_bad_params_second_item",
        "stages:\n  sc:\n    kind: score\n    deps: [in.txt]\n    outs: [o.jsonl]\n    params:\n      features:\n        - feature: regex_count\n          pattern: ok\n        - feature: regex_count\n          pattern: \"(\"\n",
    );
}

#[test]
fn error_bad_params_nested_map() {
    spec_error(
        "error_bad_params_nested_map",
        "stages:\n  f:\n    kind: filter\n    deps: [in.txt]\n    outs: [o.jsonl]\n    params:\n      rules:\n        chat:\n          contains: hi\n          and_not:\n            regex: ok\n        code:\n          contains: hi\n          and_not:\n            regex: \"[\"\n",
    );
}

#[test]
fn error_bad_params_flow_style() {
    spec_error(
        "error_bad_params_flow_style",
        "stages:\n  f:\n    kind: filter\n    deps: [in.txt]\n    outs: [o.jsonl]\n    params: {rules: {code: {any: [{regex: ok}, {regex: \"(\"}]}}}\n",
    );
}

#[test]
fn error_bad_params_whole_stage() {
    spec_error(
        "error_bad_params_whole_stage",
        "stages:\n  sp:\n    kind: split\n    deps: [in.txt]\n    outs: [t.jsonl, v.jsonl]\n    params: {seed: 1}\n",
    );
}

#[test]
fn error_bad_resources() {
    spec_error(
        "error_bad_resources",
        "stages:\n  a:\n    outs: [o]\n    cmd: touch o\n    resources: {cpus: 2, mem: lots}\n",
    );
}

#[test]
fn error_unknown_resource() {
    spec_error("error_unknown_resource", "stages:\n  a:\n    outs: [o]\n    cmd: touch o\n    resources: {cpu: 2}\n");
}

#[test]
fn error_unknown_executor() {
    spec_error("error_unknown_executor", "stages:\n  a:\n    executor: slurn\n    outs: [o]\n    cmd: touch o\n");
}

#[test]
fn error_unknown_link_mode() {
    spec_error("error_unknown_link_mode", "link: hardlinks\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n");
}

#[test]
fn error_missing_dep() {
    spec_error("error_missing_dep", "stages:\n  a:\n    deps: [in.txt, nope.txt]\n    outs: [o]\n    cmd: touch o\n");
}

#[test]
fn error_missing_dep_suggests_an_out() {
    spec_error(
        "error_missing_dep_suggests_an_out",
        "stages:\n  a:\n    outs: [upper.txt]\n    cmd: touch upper.txt\n  b:\n    deps: [uper.txt]\n    outs: [o]\n    cmd: touch o\n",
    );
}

#[test]
fn error_two_writers() {
    spec_error(
        "error_two_writers",
        "stages:\n  a:\n    outs: [o]\n    cmd: touch o\n  b:\n    outs: [o]\n    cmd: touch o\n",
    );
}

#[test]
fn error_nested_outs() {
    spec_error(
        "error_nested_outs",
        "stages:\n  a:\n    outs: [d]\n    cmd: mkdir -p d\n  b:\n    outs: [d/x]\n    cmd: touch d/x\n",
    );
}

/// A sibling that sorts between an out and one inside it (`d-x` between
/// `d` and `d/x`) does not hide the nesting.
#[test]
fn nested_outs_found_past_a_sibling_that_sorts_between() {
    let p = Project::new();
    p.write(
        "dvx.yaml",
        "stages:\n  a:\n    outs: [d]\n    cmd: mkdir -p d\n  s:\n    outs: [d-x]\n    cmd: touch d-x\n  b:\n    outs: [d/x]\n    cmd: touch d/x\n",
    );
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("`d/x` lies inside `d`, an out of `a`"), "{}", r.stderr());
}

#[test]
fn error_cycle() {
    spec_error(
        "error_cycle",
        "stages:\n  a:\n    deps: [c.txt]\n    outs: [a.txt]\n    cmd: cp c.txt a.txt\n  b:\n    deps: [a.txt]\n    outs: [b.txt]\n    cmd: cp a.txt b.txt\n  c:\n    deps: [b.txt]\n    outs: [c.txt]\n    cmd: cp b.txt c.txt\n",
    );
}

#[test]
fn error_out_escapes() {
    spec_error("error_out_escapes", "stages:\n  a:\n    outs: [../x]\n    cmd: touch ../x\n");
}

#[test]
fn error_out_absolute() {
    spec_error("error_out_absolute", "stages:\n  a:\n    outs: [/tmp/x]\n    cmd: touch /tmp/x\n");
}

#[test]
fn error_out_escapes_through_symlink() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    let yaml = "stages:\n  a:\n    outs: [link/x]\n    cmd: touch link/x\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_out_escapes_through_symlink", &p, yaml);
}

#[test]
fn error_out_in_dvx_folder() {
    spec_error("error_out_in_dvx_folder", "stages:\n  a:\n    outs: [.dvx/x]\n    cmd: touch .dvx/x\n");
}

#[test]
fn error_out_is_pipeline_file() {
    spec_error("error_out_is_pipeline_file", "stages:\n  a:\n    outs: [dvx.yaml]\n    cmd: echo > dvx.yaml\n");
}

#[test]
fn error_out_contains_pipeline_file() {
    let p = Project::new();
    let yaml = "wdir: ..\nstages:\n  a:\n    outs: [sub]\n    cmd: mkdir -p sub\n";
    p.write("sub/dvx.yaml", yaml);
    let mut r = Redact::new(&p);
    let out = snap(&p, &mut r, &["run", "sub/dvx.yaml"], 2);
    assert_snapshot!("error_out_contains_pipeline_file", format!("--- sub/dvx.yaml\n{yaml}{out}"));
}

#[test]
fn error_out_is_project_config() {
    let p = Project::new();
    p.write("dvx.toml", "link = \"copy\"\n");
    let yaml = "stages:\n  a:\n    outs: [dvx.toml]\n    cmd: echo > dvx.toml\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_out_is_project_config", &p, yaml);
}

#[test]
fn error_dep_is_own_out() {
    spec_error("error_dep_is_own_out", "stages:\n  a:\n    deps: [o.txt]\n    outs: [o.txt]\n    cmd: touch o.txt\n");
}

#[test]
fn error_dep_holds_own_out() {
    spec_error("error_dep_holds_own_out", "stages:\n  a:\n    deps: [.]\n    outs: [out.txt]\n    cmd: ls > out.txt\n");
}

#[test]
fn error_unknown_param_in_cmd() {
    spec_error(
        "error_unknown_param_in_cmd",
        "stages:\n  a:\n    params: {n: 1, word: hi}\n    outs: [o]\n    cmd: echo ${params.m} > o\n",
    );
}

#[test]
fn error_unknown_name_in_cmd() {
    spec_error(
        "error_unknown_name_in_cmd",
        "stages:\n  a:\n    deps: [in.txt]\n    outs: [o]\n    cmd: cat ${deps[1]} > ${outs[0]}\n",
    );
}

#[test]
fn error_wdir_outside() {
    let p = Project::new();
    let yaml = "wdir: ../elsewhere\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("sub/dvx.yaml", yaml);
    let mut r = Redact::new(&p);
    let out = snap(&p, &mut r, &["run", "sub/dvx.yaml"], 2);
    assert_snapshot!("error_wdir_outside", format!("--- sub/dvx.yaml\n{yaml}{out}"));
}

#[test]
fn error_wdir_outside_through_symlink() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    let yaml = "wdir: link\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_wdir_outside_through_symlink", &p, yaml);
}

#[test]
fn error_duplicate_stage_across_imports() {
    let p = Project::new();
    p.write("sub.yaml", "stages:\n  a:\n    outs: [s.txt]\n    cmd: touch s.txt\n");
    let yaml = "imports: [sub.yaml]\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_duplicate_stage_across_imports", &p, yaml);
}

#[test]
fn error_missing_import() {
    spec_error("error_missing_import", "imports: [nope.yaml]\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n");
}

#[test]
fn error_bad_import() {
    let p = Project::new();
    p.write("sub.yaml", "stages:\n  b:\n    kind: cdm\n");
    let yaml = "imports: [sub.yaml]\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_bad_import", &p, yaml);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

#[test]
fn error_pipeline_is_fifo() {
    let p = Project::new();
    mkfifo(&p.path("dvx.yaml"));
    let mut r = Redact::new(&p);
    assert_snapshot!("error_pipeline_is_fifo", snap(&p, &mut r, &["run"], 2));
}

#[test]
fn error_import_is_fifo() {
    let p = Project::new();
    mkfifo(&p.path("sub.yaml"));
    let yaml = "imports: [sub.yaml]\nstages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_import_is_fifo", &p, yaml);
}

#[test]
fn error_dep_is_fifo() {
    let p = Project::new();
    mkfifo(&p.path("pipe"));
    let yaml = "stages:\n  a:\n    deps: [pipe]\n    outs: [o]\n    cmd: cat pipe > o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_dep_is_fifo", &p, yaml);
}

#[test]
fn error_bad_project_config() {
    let p = Project::new();
    p.write("dvx.toml", "cache = \"c\"\nshard = \"group\"\n");
    let yaml = "stages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_bad_project_config", &p, yaml);
}

#[test]
fn error_bad_project_config_executor() {
    let p = Project::new();
    p.write("dvx.toml", "executor = \"k8s\"\n");
    let yaml = "stages:\n  a:\n    outs: [o]\n    cmd: touch o\n";
    p.write("dvx.yaml", yaml);
    spec_error_in("error_bad_project_config_executor", &p, yaml);
}
