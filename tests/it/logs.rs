//! Logs and progress as they happen: `dvx run`'s stage lines without a
//! terminal (streamed, plain text), `-v` on restored stages, progress of
//! long stages, the thread budget (`threads:`, `-j`), and `dvx logs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

/// A stage line: (time, what, stage, rest).
fn stage_lines(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let (time, rest) = l.split_once(' ')?;
            if !(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T') {
                return None;
            }
            let what = rest.get(..8)?.trim().to_string();
            let rest = rest.get(9..)?;
            let (stage, tail) = rest.split_once("  ").unwrap_or((rest, ""));
            Some((time.to_string(), what, stage.to_string(), tail.to_string()))
        })
        .collect()
}

/// The time of `what` for `stage` (RFC 3339 with milliseconds, in UTC: ordered as text).
fn time_of(lines: &[(String, String, String, String)], what: &str, stage: &str) -> String {
    lines
        .iter()
        .find(|l| l.1 == what && l.2 == stage)
        .map(|l| l.0.clone())
        .unwrap_or_else(|| panic!("no `{what}` line for {stage} in {lines:?}"))
}

#[test]
fn piped_run_streams_stage_lines_before_the_run_ends() {
    let p = Project::new();
    // `second` waits until the test has seen `first` end: the run cannot end
    // before then, so seeing that line proves it was written as it happened.
    p.write(
        "dvx.yaml",
        "stages:\n  first:\n    cmd: echo one > first.txt\n    outs: [first.txt]\n  second:\n    deps: [first.txt]\n    \
         cmd: for i in $(seq 600); do [ -e go ] && break; sleep 0.05; done; cp first.txt second.txt\n    outs: [second.txt]\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .args(["run", "-v"])
        .current_dir(p.dir.path())
        .env_remove("DVX_CACHE_DIR")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut released = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if !released && stage_lines(&line).iter().any(|l| l.1 == "ran" && l.2 == "first") {
            assert!(child.try_wait().unwrap().is_none(), "the run ended before its first stage line was read");
            assert!(!p.path("second.txt").exists());
            released = true;
            p.write("go", "");
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}");
    assert!(released, "no line for `first` ending came before the run ended:\n{seen}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("version: "), "{stdout}");
    // No ANSI codes in what goes to a file or pipe, -v logging included.
    assert!(!seen.contains('\x1b') && !stdout.contains('\x1b'), "{seen:?}");
    assert!(seen.contains("running"), "-v logs the stages it runs:\n{seen}");
    let lines = stage_lines(&seen);
    assert!(time_of(&lines, "ran", "first") <= time_of(&lines, "start", "second"));
    assert!(time_of(&lines, "start", "second") < time_of(&lines, "ran", "second"));
    assert!(lines.iter().any(|l| l.1 == "ran" && l.2 == "second" && l.3.ends_with('s')), "{lines:?}");

    // A restored stage is logged with -v too, and its line says so.
    std::fs::remove_file(p.path("first.txt")).unwrap();
    let r = p.dvx(&["run", "-v"]).ok();
    assert!(r.stderr().contains("restored from the run-cache"), "{}", r.stderr());
    let lines = stage_lines(&r.stderr());
    assert!(lines.iter().any(|l| l.1 == "cached" && l.2 == "first" && l.3.contains("restored")), "{lines:?}");
    assert!(!r.stderr().contains('\x1b'));
}

#[test]
fn dry_run_and_json_keep_their_outputs_clean() {
    let p = Project::new();
    p.write("dvx.yaml", "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n");
    let dry = p.dvx(&["run", "--dry-run"]).ok();
    assert!(stage_lines(&dry.stderr()).is_empty(), "{}", dry.stderr());
    let json = p.dvx(&["run", "--json"]).ok();
    // stdout is the JSON report alone; the stage lines went to stderr.
    serde_json::from_str::<serde_json::Value>(&json.stdout()).expect("stdout is JSON");
    assert_eq!(time_of(&stage_lines(&json.stderr()), "ran", "a").len(), 24);
}

#[test]
fn long_stages_report_progress() {
    let p = Project::new();
    let mut train = String::new();
    for i in 0..16 {
        train.push_str(&format!("{{\"text\": \"record {i}: the quick brown fox\"}}\n"));
    }
    p.write("train.jsonl", &train);
    p.write("valid.jsonl", "{\"text\": \"a valid record\"}\n");
    p.write(
        "dvx.yaml",
        "stages:\n  lm:\n    kind: train\n    deps: [train.jsonl, valid.jsonl]\n    outs: [model, metrics.json]\n    \
         params:\n      model: {layers: 1, width: 16, heads: 2, context: 32}\n      steps: 3\n      batch_size: 2\n  \
         dd:\n    kind: dedup\n    deps: [train.jsonl]\n    outs: [dd.jsonl]\n    params: {mode: exact}\n",
    );
    let r = p.dvx(&["run"]).ok();
    let lines = stage_lines(&r.stderr());
    let progress = |stage: &str| -> Vec<String> {
        lines.iter().filter(|l| l.1 == "progress" && l.2 == stage).map(|l| l.3.clone()).collect()
    };
    let lm = progress("lm");
    assert!(lm.iter().any(|l| l.starts_with("step 3/3 (100%) loss ") && l.contains("tokens/s")), "{lm:?}");
    let dd = progress("dd");
    let bytes = train.len();
    assert!(dd.iter().any(|l| l.starts_with(&format!("bytes {bytes}/{bytes} (100%)"))), "{dd:?}");
}

#[test]
fn hashing_a_large_dep_shows_as_progress_of_the_stage_that_reads_it() {
    let p = Project::new();
    let mib = 70u64;
    let line = "x".repeat(1023) + "\n";
    p.write("big.txt", &line.repeat(1024 * mib as usize));
    // Past the stat cache's racy window, so the second run can trust what the first hashed.
    std::thread::sleep(Duration::from_millis(300));
    p.write("dvx.yaml", "stages:\n  count:\n    deps: [big.txt]\n    cmd: wc -l big.txt > n.txt\n    outs: [n.txt]\n");
    let r = p.dvx(&["run"]).ok();
    let lines = stage_lines(&r.stderr());
    let hashing: Vec<&String> =
        lines.iter().filter(|l| l.1 == "progress" && l.2 == "count").map(|l| &l.3).collect();
    assert!(
        hashing.iter().any(|l| l.starts_with(&format!("MiB {mib}/{mib} (100%) hashing dep big.txt"))),
        "{}",
        r.stderr()
    );
    assert!(time_of(&lines, "progress", "count") < time_of(&lines, "ran", "count"));

    // Known to the stat cache the second time: nothing is read, nothing shown.
    let r = p.dvx(&["run"]).ok();
    assert!(!r.stderr().contains("hashing dep"), "{}", r.stderr());
}

#[test]
fn thread_budget_runs_wide_stages_one_at_a_time() {
    let p = Project::new();
    let stage = |name: &str, threads: &str| {
        format!("  {name}:\n    cmd: sleep 1; echo {name} > {name}.txt\n    outs: [{name}.txt]\n{threads}")
    };
    let wide = format!("stages:\n{}{}", stage("a", "    threads: 2\n"), stage("b", "    threads: 2\n"));
    p.write("dvx.yaml", &wide);
    let r = p.dvx(&["run", "-j", "2"]).ok();
    let l = stage_lines(&r.stderr());
    let (first, second) = if time_of(&l, "start", "a") < time_of(&l, "start", "b") { ("a", "b") } else { ("b", "a") };
    assert!(
        time_of(&l, "start", second) >= time_of(&l, "ran", first),
        "two `threads: 2` stages on a budget of 2 overlapped:\n{}",
        r.stderr()
    );

    // With room for both they run together.
    let r = p.dvx(&["run", "-j", "4", "--force-all"]).ok();
    let l = stage_lines(&r.stderr());
    for s in ["a", "b"] {
        let other = if s == "a" { "b" } else { "a" };
        assert!(time_of(&l, "start", s) < time_of(&l, "ran", other), "did not overlap:\n{}", r.stderr());
    }

    // Undeclared stages share the budget: two on a budget of 2 run together (one thread each).
    let narrow = format!("stages:\n{}{}", stage("c", ""), stage("d", ""));
    p.write("dvx.yaml", &narrow);
    let t0 = Instant::now();
    let r = p.dvx(&["run", "-j", "2"]).ok();
    let l = stage_lines(&r.stderr());
    assert!(time_of(&l, "start", "c") < time_of(&l, "ran", "d"), "{}", r.stderr());
    assert!(t0.elapsed() < Duration::from_secs(10));

    // A bad budget is an error at the field.
    p.write("dvx.yaml", "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n    threads: 0\n");
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("invalid `threads` of stage `a`: 0"), "{}", r.stderr());
}

#[test]
fn logs_prints_a_stage_log_from_the_cache() {
    let p = Project::new();
    p.write(
        "data.jsonl",
        "{\"id\":1,\"category\":\"x\",\"text\":\"alpha\"}\n{\"id\":2,\"category\":\"x\",\"text\":\"beta\"}\n",
    );
    let pipeline = |word: &str| {
        format!(
            "stages:\n  hello:\n    cmd: echo out-{word}; echo err-{word} >&2; echo {word} > hello.txt\n    outs: [hello.txt]\n  \
             keep:\n    kind: filter\n    deps: [data.jsonl]\n    outs: [kept.jsonl, rejected.jsonl]\n    \
             params:\n      category_field: category\n      rules:\n        x: {{contains: alpha}}\n  \
             quiet:\n    cmd: touch quiet.txt\n    outs: [quiet.txt]\n"
        )
    };
    p.write("dvx.yaml", &pipeline("one"));
    let v1 = p.dvx(&["run"]).ok().version();
    p.write("dvx.yaml", &pipeline("two"));
    let v2 = p.dvx(&["run"]).ok().version();

    // Default: the version the workspace holds.
    let log = p.dvx(&["logs", "hello"]).ok().stdout();
    assert!(log.contains("out-two") && log.contains("err-two"), "{log}");
    // A built-in's report.
    let report = p.dvx(&["logs", "keep"]).ok().stdout();
    assert!(report.contains("Pass Rate"), "{report}");
    // An older version by prefix; the pipeline named too.
    let old = p.dvx(&["logs", "hello", &v1[..8]]).ok().stdout();
    assert!(old.contains("out-one") && !old.contains("two"), "{old}");
    p.dvx(&["logs", "hello", &v2[..8], "--pipeline", "dvx.yaml"]).ok();
    // After a checkout, the default is what the workspace holds now.
    p.dvx(&["checkout", &v1[..8]]).ok();
    assert!(p.dvx(&["logs", "hello"]).ok().stdout().contains("out-one"));
    // A stage that wrote nothing says so.
    let quiet = p.dvx(&["logs", "quiet"]).ok();
    assert_eq!(quiet.stdout(), "");
    assert!(quiet.stderr().contains("wrote nothing"), "{}", quiet.stderr());

    // Unknown stage: a suggestion; unknown version: named.
    let r = p.dvx(&["logs", "helo"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("no stage `helo`") && r.stderr().contains("did you mean `hello`?"), "{}", r.stderr());
    let r = p.dvx(&["logs", "hello", "ffffffff"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("no version starts with `ffffffff`"), "{}", r.stderr());

    // A log object whose bytes do not match its name is refused, not printed as if fine.
    let cache = p.path(".dvx/cache");
    for f in walk(&cache.join("objects-v1")) {
        let bytes = std::fs::read(&f).unwrap();
        if bytes.starts_with(b"out-one") {
            std::fs::remove_file(&f).unwrap();
            std::fs::write(&f, b"out-forged\n").unwrap();
        }
    }
    let r = p.dvx(&["logs", "hello", &v1[..8]]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("corrupt") || r.stderr().contains("does not match"), "{}", r.stderr());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
