//! Bounded, deterministic fuzzing of what dvx reads from others: malformed
//! pipelines and crafted or damaged cache records (issue 10 §3).
//!
//! Every case runs in its own folder `base/cN/` holding `project/` and a
//! sentinel `victim/`, and every dvx command must: not panic (exit 101), not
//! die by a signal, finish within 10 s, leave `victim/` byte-identical (bytes,
//! mtimes, modes) and create no file whose name comes from a traversal path
//! (they all contain `pwn`). Set `DVX_FUZZ_SEED` to vary the seed and
//! `DVX_FUZZ_SCALE` (percent) to run more or fewer cases.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::trust::{canonical_json, snapshot};

const DEADLINE: Duration = Duration::from_secs(10);

/// splitmix64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn s(&mut self, v: &[&'static str]) -> &'static str {
        v[self.below(v.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed() -> u64 {
    std::env::var("DVX_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_D7C5)
}

fn scaled(n: usize) -> usize {
    let pct: usize = std::env::var("DVX_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    (n * pct / 100).max(1)
}

// ------------------------------------------------------------------ running

/// How one dvx command ended.
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn label(&self) -> String {
        if self.timed_out {
            "timeout".into()
        } else if let Some(s) = self.signal {
            format!("signal {s}")
        } else {
            format!("exit {}", self.code.unwrap_or(-1))
        }
    }
}

/// Run dvx in `cwd` with a deadline; the whole process group is killed on
/// timeout. Address space is capped so a runaway allocation aborts the
/// child instead of the machine.
fn dvx(cwd: &Path, args: &[String]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvx"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DVX_CACHE_DIR")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 4 << 30, rlim_max: 4 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                code: Some(-2),
                signal: None,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("spawn failed: {e}"),
            }
        }
    };
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            timed_out = true;
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// One case's folder: `project/` and `victim/` side by side.
struct CaseDir {
    root: PathBuf,
    victim_before: BTreeMap<String, (Option<Vec<u8>>, std::time::SystemTime, u32)>,
}

fn make_victim(root: &Path) {
    let v = root.join("victim");
    std::fs::create_dir_all(v.join("dir")).unwrap();
    std::fs::write(v.join("a.txt"), "victim a\n").unwrap();
    std::fs::write(v.join("b.txt"), "victim b\n").unwrap();
    std::fs::write(v.join("dir/c.txt"), "victim c\n").unwrap();
    std::fs::write(v.join("dir/x.json"), "{\"victim\": true}\n").unwrap();
}

impl CaseDir {
    fn project(&self) -> PathBuf {
        self.root.join("project")
    }
    fn seal(root: PathBuf) -> CaseDir {
        let victim_before = snapshot(&root.join("victim"));
        CaseDir { root, victim_before }
    }
    /// What escaped since the last call: a changed victim or a `pwn` file
    /// anywhere near. What was found is then taken as the new normal, so
    /// only the command that did it is blamed.
    fn escapes(&mut self, base: &Path) -> Option<String> {
        let after = snapshot(&self.root.join("victim"));
        let before = std::mem::replace(&mut self.victim_before, after.clone());
        if after != before {
            let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let changed: Vec<&String> =
                before.keys().filter(|k| after.get(*k).is_some_and(|a| a != &before[*k])).collect();
            return Some(format!("victim/ changed: gone {gone:?}, new {new:?}, changed {changed:?}"));
        }
        for dir in [self.root.as_path(), base, base.parent().unwrap_or(base)] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().contains("pwn") {
                        remove_tree(&e.path());
                        let _ = std::fs::remove_file(e.path());
                        return Some(format!("{} appeared", e.path().display()));
                    }
                }
            }
        }
        None
    }
}

fn remove_tree(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walk_dirs(p) {
        let _ = std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o755));
    }
    let _ = std::fs::remove_dir_all(p);
}

fn walk_dirs(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if std::fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false) {
        v.push(p.to_path_buf());
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                v.extend(walk_dirs(&e.path()));
            }
        }
    }
    v
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&src, &dst);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Counts and failures over all cases.
#[derive(Default)]
struct Tally {
    cases: usize,
    commands: usize,
    histogram: BTreeMap<String, usize>,
    /// Failure kind (command, problem, panic location) → count and the first full report.
    failures: BTreeMap<String, (usize, String)>,
}

fn check(
    tally: &Mutex<Tally>,
    case: &mut CaseDir,
    base: &Path,
    args: &[String],
    o: &Outcome,
    input: &dyn Fn() -> String,
) {
    let mut problems = Vec::new();
    if o.code == Some(101) {
        let at = o.stderr.lines().find(|l| l.contains("panicked at")).unwrap_or("").to_string();
        let at = at.split("panicked at ").nth(1).unwrap_or("?").trim_end_matches(':').to_string();
        problems.push(format!("panicked at {at}"));
    }
    if let (Some(sig), false) = (o.signal, o.timed_out) {
        problems.push(format!("killed by signal {sig}"));
    }
    if o.timed_out {
        problems.push(format!("no answer within {DEADLINE:?}"));
    }
    if let Some(e) = case.escapes(base) {
        problems.push(format!("wrote outside the workspace: {e}"));
    }
    let mut t = tally.lock().unwrap();
    t.commands += 1;
    *t.histogram.entry(format!("{} {}", args[0], o.label())).or_default() += 1;
    if !problems.is_empty() {
        let kind = format!("dvx {} {}: {}", args[0], args.get(1).filter(|a| a.starts_with('-')).map_or("", |a| a), {
            // Group escapes by what they did, not by the exact files.
            problems.iter().map(|p| p.split(": victim").next().unwrap_or(p)).collect::<Vec<_>>().join("; ")
        });
        let tail: String = o.stderr.lines().filter(|l| !l.trim().is_empty()).take(6).collect::<Vec<_>>().join("\n    ");
        let full = format!(
            "{} — `dvx {}` {}\n  stderr:\n    {}\n  input:\n{}",
            case.root.file_name().unwrap().to_string_lossy(),
            args.join(" "),
            problems.join("; "),
            tail,
            input()
        );
        let e = t.failures.entry(kind).or_insert((0, full));
        e.0 += 1;
    }
}

fn report(name: &str, tally: Tally, t0: Instant) {
    println!("{name}: {} cases, {} dvx commands in {:.1}s", tally.cases, tally.commands, t0.elapsed().as_secs_f64());
    for (k, n) in &tally.histogram {
        println!("  {k:<28} {n}");
    }
    if !tally.failures.is_empty() {
        println!("\n{name}: failing commands by kind:");
        for (kind, (n, _)) in &tally.failures {
            println!("  {n:>4}  {kind}");
        }
        for (kind, (n, first)) in &tally.failures {
            println!("\n=== {kind} ({n}×), first case:\nFAIL {first}");
        }
        let total: usize = tally.failures.values().map(|(n, _)| n).sum();
        panic!("{name}: {total} failing commands, {} kinds (one case of each printed above)", tally.failures.len());
    }
}

fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8) * 2
}

// ---------------------------------------------------------------- pipelines

const DATA: &str = r#"{"category": "A", "text": "alpha one two three four five"}
{"category": "A", "text": "alpha one two three four five"}
{"category": "B", "text": "beta six seven eight nine ten"}
{"category": "B", "text": "gamma eleven twelve thirteen"}
{"category": "C", "text": "other"}
not json at all
{"category": "A", "text": "alpha again with other words here"}
"#;

const SUB: &str = "name: sub\nstages:\n  s:\n    deps: [in.txt]\n    outs: [s.txt]\n    cmd: cp in.txt s.txt\n";

const TEMPLATES: &[&str] = &[
    r#"name: fz
stages:
  a:
    deps: [in.txt]
    outs: [a.txt]
    cmd: tr a-z A-Z < ${deps[0]} > ${outs[0]}
  b:
    deps: [a.txt]
    params: {n: 2, word: hi}
    outs: [b]
    cmd: mkdir -p ${outs[0]} && cp ${deps[0]} ${outs[0]}/x.txt && echo ${params.n} ${params.word} > ${outs[0]}/n.txt
  c:
    kind: cmd
    deps: [b, in.txt]
    env: {X: "1"}
    outs: [c.txt]
    cmd: cat ${deps[0]}/x.txt ${deps[1]} > ${outs[0]}
"#,
    r#"name: ds
stages:
  keep:
    kind: filter
    deps: [data.jsonl]
    outs: [kept.jsonl, rejected.jsonl]
    params:
      category_field: category
      on_error: skip
      rules:
        A: {contains: alpha}
        B: {any: [beta, gamma]}
  dd:
    kind: dedup
    deps: [kept.jsonl]
    outs: [dd.jsonl]
    params: {mode: both, threshold: 0.8, num_perm: 16, shingle: {unit: words, size: 2}}
  sp:
    kind: split
    deps: [dd.jsonl]
    outs: [train.jsonl, valid.jsonl]
    params: {ratio: [0.8, 0.2], seed: 1}
"#,
    r#"name: imp
imports: [sub.yaml]
stages:
  top:
    deps: [s.txt]
    outs: [top.txt]
    cmd: cat ${deps[0]} > ${outs[0]}
  bal:
    kind: balance
    deps: [data.jsonl]
    outs: [bal.jsonl]
    params: {category_field: category, cap: 1, seed: 0}
  mg:
    kind: merge
    deps: [bal.jsonl, data.jsonl]
    outs: [merged.jsonl]
    params: {source_field: _source}
"#,
];

/// Values swapped in for a scalar.
const JUNK: &[&str] = &[
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{a: {b: c}}",
    "99999999999999999999999999",
    "18446744073709551616",
    "-1",
    "0",
    "1e308",
    "-1e308",
    ".nan",
    ".inf",
    "~",
    "null",
    "true",
    "\"\"",
    "\"ünï©ødé ✓ 😀 \\u0000\"",
    "\"\\ud800\"",
    "!!binary aGVsbG8=",
    "&x [*x]",
    "*nope",
    "'${params.nope}'",
    "'${outs[99]}'",
    "'${deps[-1]}'",
    "'${'",
    "'${params.}'",
    "'${params.n.deep.er}'",
    "'$${outs[0]}'",
    "\"a\\nb\"",
    "{{{",
    "[",
    "'",
    "- x",
    ": :",
    "2000000000",
    "4294967296",
];

/// Paths swapped in for a dep, out, import or wdir. Relative ones are
/// resolved against `project/` (or its wdir); none reaches above the case
/// folder except as a new file named `pwn…` (safe to create, easy to spot).
///
/// SAFETY: dvx today deletes and overwrites whatever a record's path names,
/// and tests may run as root. A path here that resolves outside the case
/// folder (`/`, `//`, `../../..`) makes dvx `rm -rf` it: an earlier draft
/// with `"//"` deleted the machine's `/etc`. [`contained`] checks every
/// path before it is written anywhere; keep it that way.
const PATHS: &[&str] = &[
    "../victim/a.txt",
    "../victim/dir",
    "../victim",
    "{CASE}/victim/a.txt",
    "{CASE}/victim/dir",
    "{CASE}/pwn-abs.txt",
    "../pwn-up.txt",
    "../../pwn-up2-{N}.txt",
    "sub/../../victim/b.txt",
    "./../victim/pwn-new.txt",
    "a.txt/../../victim/a.txt",
    "..",
    ".",
    "",
    "./",
    "in.txt/",
    "dir//x",
    "ünï©ødé.txt",
    "a\\b",
    "~/pwn-home",
    "${outs[0]}",
    "nul\\u0000byte",
];

const KINDS: &[&str] = &[
    "cmd",
    "filter",
    "dedup",
    "split",
    "balance",
    "merge",
    "score",
    "validate",
    "minhash-index",
    "multiply",
    "nope",
    "Filter",
    "",
    "clone",
    "ast-extract",
    "html-extract",
];

/// Odd params for built-in kinds.
const PARAMS: &[&str] = &[
    "{rules: {A: {at_least: 5, of: []}}}",
    "{rules: {A: {regex: \"(\"}}}",
    "{rules: {A: {regex: \"(a+)+$\"}}}",
    "{rules: {A: {gt: x}}}",
    "{rules: {A: {not: {not: {not: {}}}}}}",
    "{rules: []}",
    "{rules: {A: {field: category, eq: [1, 2]}}}",
    "{rules: {A: {min_len: -5, max_len: 1e300}}}",
    "{category_field: \"\", on_error: explode}",
    "{mode: sideways}",
    "{mode: near, threshold: 0}",
    "{mode: near, threshold: 1.5}",
    "{mode: near, threshold: -1}",
    "{mode: near, num_perm: 0}",
    "{mode: near, num_perm: 100000}",
    "{bands: 3}",
    "{bands: 0, rows: 0}",
    "{bands: 200, rows: 1}",
    "{shingle: {unit: words, size: 0}}",
    "{shingle: {unit: bytes, size: 2}}",
    "{reference: 5}",
    "{reference: -1}",
    "{ratio: []}",
    "{ratio: [0.5]}",
    "{ratio: [2.0, -1.0]}",
    "{ratio: [0, 0]}",
    "{ratio: [.nan, .nan]}",
    "{counts: {valid: 1000000}}",
    "{counts: {valid: -1, test: -1}}",
    "{counts: {valid: 1}, ratio: [0.5, 0.5]}",
    "{stratify_by: nope.deep.field}",
    "{cap: -1}",
    "{caps: {A: 1e20}}",
    "{proportions: {A: 2, B: -1}, total: 5}",
    "{proportions: {}, total: 0}",
    "{names: [a]}",
    "{dedup_key: [1]}",
    "{min_records: 1e300, histogram_bins: 0}",
    "{histogram_bins: 99999999999}",
    "{features: [{feature: nope}]}",
    "{features: [{feature: regex_count, pattern: \"[\"}], top_k: -3}",
    "{top_k: 0}",
    "[]",
    "7",
    "\"str\"",
];

fn render(s: &str, case: &Path, n: usize) -> String {
    s.replace("{CASE}", case.to_str().unwrap()).replace("{N}", &n.to_string())
}

/// [`render`] a path that dvx will resolve against each of `anchors` (case
/// folder relative), refusing (a harness bug) any that could reach outside.
fn render_path(s: &str, case: &Path, n: usize, anchors: &[&str]) -> String {
    let out = render(s, case, n);
    assert!(contained(case, &out, anchors), "fuzz harness bug: {out:?} could reach outside {}", case.display());
    out
}

/// Lexically resolve `p` against `anchor` (no symlinks followed).
fn resolve(anchor: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let joined = if Path::new(p).is_absolute() { PathBuf::from(p) } else { anchor.join(p) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether `p`, resolved against each anchor (a folder relative to the
/// case folder), stays inside the case folder, or names a new `pwn…` file
/// directly in its parent.
fn contained(case: &Path, p: &str, anchors: &[&str]) -> bool {
    let base = case.parent().expect("case folder has a parent");
    anchors.iter().all(|a| {
        let r = resolve(&case.join(a), p);
        r.starts_with(case)
            || (r.parent() == Some(base) && r.file_name().is_some_and(|n| n.to_string_lossy().contains("pwn")))
    })
}

/// Where record paths are resolved: the workspace and the `--to` folder.
const RECORD_ANCHORS: &[&str] = &["project", "to"];
/// Where manifest entries are resolved (the folder outputs, which a case
/// never also moves).
const MANIFEST_ANCHORS: &[&str] = &["project/adir", "to/adir", "project/adir/sub", "to/adir/sub"];
/// Where pipeline paths are resolved (a case that moves wdir moves no path).
const PIPELINE_ANCHORS: &[&str] = &["project", "project/sub"];

/// Every path the fuzzers can produce is checked up front, so a new entry
/// in [`PATHS`] that escapes fails here, before dvx ever sees it.
fn check_path_lists() {
    let case = Path::new("/fuzz-base/c0");
    for p in PATHS {
        for anchors in [RECORD_ANCHORS, PIPELINE_ANCHORS] {
            render_path(p, case, 0, anchors);
        }
        render_path(p, case, 0, MANIFEST_ANCHORS);
        render_path(&format!("../{p}"), case, 0, MANIFEST_ANCHORS);
    }
    assert!(!contained(case, "//", RECORD_ANCHORS) && !contained(case, "../../..", RECORD_ANCHORS));
}

/// Replace the value after `key:` on a line (keeping indentation).
fn set_value(line: &str, v: &str) -> String {
    match line.find(':') {
        Some(i) => format!("{}: {}", &line[..i], v),
        None => format!("{line} {v}"),
    }
}

/// One malformed pipeline: the text (with `{CASE}`/`{N}` placeholders) and
/// the mutations applied, for the report.
fn mutate_pipeline(rng: &mut Rng) -> (String, Vec<String>) {
    let template = rng.below(TEMPLATES.len());
    let mut lines: Vec<String> = TEMPLATES[template].lines().map(str::to_string).collect();
    let mut log = vec![format!("template {template}")];
    let mut escaping_path = false;
    let mut moved_wdir = false;
    let n = if rng.chance(60) { 1 } else { 2 + rng.below(3) };
    for _ in 0..n {
        let i = rng.below(lines.len());
        match rng.below(14) {
            0 => {
                log.push(format!("delete line {i}"));
                lines.remove(i);
            }
            1 => {
                log.push(format!("duplicate line {i}"));
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len());
                log.push(format!("swap lines {i} {j}"));
                lines.swap(i, j);
            }
            3 | 4 => {
                let v = rng.s(JUNK);
                log.push(format!("line {i} value := {v}"));
                lines[i] = set_value(&lines[i], v);
            }
            5 | 6 => {
                // A dep or out path.
                let idx: Vec<usize> = (0..lines.len())
                    .filter(|&k| {
                        lines[k].trim_start().starts_with("deps:") || lines[k].trim_start().starts_with("outs:")
                    })
                    .collect();
                if moved_wdir || idx.is_empty() {
                    continue;
                }
                let k = *rng.pick(&idx);
                let p = rng.s(PATHS);
                let list = if rng.chance(50) { format!("[\"{p}\"]") } else { format!("[in.txt, \"{p}\"]") };
                log.push(format!("line {k} paths := {list}"));
                lines[k] = set_value(&lines[k], &list);
                escaping_path = true;
            }
            7 => {
                if escaping_path || moved_wdir {
                    continue;
                }
                // wdir never reaches the victim (running there would be the
                // user's own choice) and never leaves the case folder.
                let w = *rng.pick(&[
                    "..",
                    ".",
                    "",
                    "sub",
                    "{CASE}",
                    "{CASE}/project",
                    "in.txt",
                    "[a]",
                    "{CASE}/nonexistent",
                ]);
                log.push(format!("wdir := {w:?}"));
                lines.insert(1, format!("wdir: \"{w}\""));
                moved_wdir = true;
            }
            8 => {
                let p = rng.s(PATHS);
                let what = *rng.pick(&["sub.yaml", "dvx.yaml", "missing.yaml", "in.txt", p]);
                log.push(format!("imports := [{what:?}]"));
                lines.insert(1, format!("imports: [\"{what}\"]"));
            }
            9 => {
                let idx: Vec<usize> =
                    (0..lines.len()).filter(|&k| lines[k].trim_start().starts_with("kind:")).collect();
                let k = if idx.is_empty() { i } else { *rng.pick(&idx) };
                let kind = rng.s(KINDS);
                log.push(format!("line {k} kind := {kind:?}"));
                lines[k] = set_value(&lines[k], kind);
            }
            10 => {
                let idx: Vec<usize> =
                    (0..lines.len()).filter(|&k| lines[k].trim_start().starts_with("params:")).collect();
                if idx.is_empty() {
                    continue;
                }
                let k = *rng.pick(&idx);
                // Drop a block of params below, then set flow params.
                while k + 1 < lines.len() && lines[k + 1].starts_with("      ") {
                    lines.remove(k + 1);
                }
                let p = rng.s(PARAMS);
                log.push(format!("line {k} params := {p}"));
                lines[k] = set_value(&lines[k], p);
            }
            11 => {
                log.push("cycle".into());
                lines.push("  cyc1:\n    deps: [cyc2.txt]\n    outs: [cyc1.txt]\n    cmd: cp cyc2.txt cyc1.txt".into());
                lines.push("  cyc2:\n    deps: [cyc1.txt]\n    outs: [cyc2.txt]\n    cmd: cp cyc1.txt cyc2.txt".into());
                if rng.chance(50) {
                    lines.push("  self:\n    deps: [self.txt]\n    outs: [self.txt]\n    cmd: touch self.txt".into());
                }
            }
            12 => {
                let indent = rng.below(7);
                log.push(format!("line {i} reindented to {indent}"));
                lines[i] = format!("{}{}", " ".repeat(indent), lines[i].trim_start());
            }
            _ => {
                // Truncate the text at a random character.
                let text = lines.join("\n");
                let cut = text.char_indices().map(|(c, _)| c).nth(rng.below(text.chars().count())).unwrap_or(0);
                log.push(format!("truncated at byte {cut}"));
                lines = text[..cut].lines().map(str::to_string).collect();
                if lines.is_empty() {
                    lines.push(String::new());
                }
            }
        }
    }
    (lines.join("\n") + "\n", log)
}

#[test]
fn fuzz_malformed_pipelines() {
    check_path_lists();
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let n_cases = scaled(520);
    let mut rng = Rng(seed());
    let cases: Vec<(String, Vec<String>)> = (0..n_cases).map(|_| mutate_pipeline(&mut rng)).collect();
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..workers() {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= cases.len() {
                    break;
                }
                let (text, log) = &cases[i];
                let root = base.path().join(format!("p{i}"));
                make_victim(&root);
                let project = root.join("project");
                std::fs::create_dir_all(project.join("sub")).unwrap();
                std::fs::write(project.join("in.txt"), "hello fuzz\n").unwrap();
                std::fs::write(project.join("data.jsonl"), DATA).unwrap();
                std::fs::write(project.join("sub.yaml"), SUB).unwrap();
                std::fs::write(project.join("dvx.yaml"), render(text, &root, i)).unwrap();
                let mut case = CaseDir::seal(root.clone());
                let input = || format!("  mutations: {log:?}\n  dvx.yaml:\n{text}");
                for args in [vec!["run", "-j", "2"], vec!["status"], vec!["dag"], vec!["run", "--dry-run"]] {
                    let args: Vec<String> = args.into_iter().map(String::from).collect();
                    if !case.project().is_dir() {
                        break;
                    }
                    let o = dvx(&case.project(), &args);
                    check(&tally, &mut case, base.path(), &args, &o, &input);
                }
                tally.lock().unwrap().cases += 1;
                remove_tree(&root);
            });
        }
    });
    report("malformed pipelines", tally.into_inner().unwrap(), t0);
}

// ------------------------------------------------------------------- cache

const CACHE_PIPELINE: &str = r#"name: fc
stages:
  a:
    deps: [in.txt]
    outs: [a.txt, adir]
    cmd: tr a-z A-Z < in.txt > a.txt && mkdir -p adir/sub && rev in.txt > adir/r.txt && cp in.txt adir/sub/i.txt
  b:
    deps: [a.txt]
    outs: [b.txt]
    cmd: cat a.txt a.txt > b.txt
"#;

/// The reference cache every case starts from.
struct Baseline {
    dir: tempfile::TempDir,
    version: String,
}

impl Baseline {
    fn new() -> Baseline {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("in.txt"), "hello cache fuzz\n").unwrap();
        std::fs::write(project.join("dvx.yaml"), CACHE_PIPELINE).unwrap();
        let o = dvx(&project, &["run".into()]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let version = o.stdout.lines().find_map(|l| l.strip_prefix("version: ")).unwrap().to_string();
        Baseline { dir, version }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut es: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        es.sort();
        for p in es {
            if p.is_dir() {
                v.extend(files_under(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

fn write_forced(p: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = p.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if std::fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false) {
        remove_tree(p);
    } else if p.exists() {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
        let _ = std::fs::remove_file(p);
    }
    // A damage earlier in the same case may have made this impossible (a
    // bucket replaced by a file); that is fine.
    let _ = std::fs::write(p, bytes);
}

fn read_json(f: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(f).ok()?).ok().filter(|v| v.is_object())
}

/// Junk hashes.
const HASHES: &[&str] = &[
    "x",
    "",
    "ab",
    "abc",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262",
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "..{CASE}/victim/a.txt",
    "é1",
    "é",
    "0000000000000000000000000000000000000000000000000000000000000000aa",
];

/// JSON values swapped in for a field.
const JSON_JUNK: &[&str] =
    &["null", "5", "-1", "1e999", "\"s\"", "[]", "{}", "[{}]", "true", "18446744073709551616", "\"\\ud800\""];

/// Whole-file damage.
fn damaged_bytes(rng: &mut Rng, original: &[u8]) -> (Vec<u8>, String) {
    match rng.below(9) {
        0 => {
            let cut = rng.below(original.len().max(1));
            (original[..cut].to_vec(), format!("truncated to {cut} bytes"))
        }
        1 => (Vec::new(), "empty".into()),
        2 => {
            let mut b = original.to_vec();
            let i = rng.below(b.len().max(1));
            if !b.is_empty() {
                b[i] = 0xff;
            }
            (b, format!("byte {i} := 0xff (not UTF-8)"))
        }
        3 => (b"\xfe\xff\x00{\"key\": \"\xc3\x28\"}".to_vec(), "non-UTF-8 junk".into()),
        4 => ("[".repeat(100_000).into_bytes(), "100k nested arrays".into()),
        5 => {
            let v = rng.s(JSON_JUNK);
            (v.as_bytes().to_vec(), format!("whole file := {v}"))
        }
        6 => {
            let mut b = original.to_vec();
            b.extend_from_slice(b"\n{\"trailing\": 1}");
            (b, "trailing garbage".into())
        }
        7 => (b"{\"key\": 1, \"outputs\": {\"path\": []}}".to_vec(), "wrong types".into()),
        _ => {
            let mut b = original.to_vec();
            let i = rng.below(b.len().max(1));
            if i < b.len() {
                b[i] ^= 0x01;
            }
            (b, format!("bit flip at {i}"))
        }
    }
}

/// Set `field` of a random element of the JSON array at `arr` pointer.
fn pick_output<'a>(rng: &mut Rng, v: &'a mut serde_json::Value, ptr: &str) -> Option<&'a mut serde_json::Value> {
    let arr = v.pointer_mut(ptr)?.as_array_mut()?;
    if arr.is_empty() {
        return None;
    }
    let i = rng.below(arr.len());
    arr.get_mut(i)
}

/// A manifest whose entries escape, stored under its true name.
fn evil_manifest(rng: &mut Rng, cache: &Path, case: &Path, n: usize, good_hash: &str) -> (String, String) {
    let mut entries = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let raw = rng.s(PATHS);
        let raw = if rng.chance(50) { format!("../{raw}") } else { raw.to_string() };
        let p = render_path(&raw, case, n, MANIFEST_ANCHORS);
        let hash = if rng.chance(80) { good_hash.to_string() } else { render(rng.s(HASHES), case, n) };
        entries.push(serde_json::json!({"path": p, "exec": rng.chance(20), "hash": hash}));
    }
    entries.push(serde_json::json!({"path": "ok.txt", "exec": false, "hash": good_hash}));
    let bytes = if rng.chance(85) {
        serde_json::to_vec(&serde_json::json!({"dvx_tree": 1, "entries": entries})).unwrap()
    } else {
        rng.pick(&[
            &b"{\"dvx_tree\":1,\"entries\":\"x\"}"[..],
            b"{\"dvx_tree\":99,\"entries\":[]}",
            b"{\"dvx_tree\":1,\"entries\":[{\"path\":1}]}",
            b"not a manifest",
        ])
        .to_vec()
    };
    let h = blake3::hash(&bytes).to_hex().to_string();
    write_forced(&cache.join("objects-v1").join(&h[..2]).join(&h[2..]), &bytes);
    (h, String::from_utf8_lossy(&bytes).into_owned())
}

/// Damage the case's cache; returns a description of each damage (with the
/// record content written, for reproduction).
fn damage_cache(rng: &mut Rng, case: &Path, n: usize, version: &str) -> Vec<String> {
    let cache = case.join("project/.dvx/cache");
    let mut log = Vec::new();
    let runs = files_under(&cache.join("runs-v1"));
    let objects = files_under(&cache.join("objects-v1"));
    let vpath = cache.join("versions-v1").join(format!("{version}.json"));
    // A real file object (not a manifest), for crafted records to point at.
    let good_hash = {
        let b = std::fs::read(case.join("project/in.txt")).unwrap();
        blake3::hash(&b).to_hex().to_string()
    };
    // A case either moves output paths or plants an escaping manifest, never
    // both: a folder output moved up *and* a `../..` entry inside it could
    // reach past the case folder (see [`PATHS`]).
    let mut moved_paths = false;
    let mut planted_manifest = false;
    for _ in 0..1 + rng.below(3) {
        match rng.below(12) {
            0 | 1 => {
                // A run entry whose output path escapes.
                if planted_manifest {
                    continue;
                }
                moved_paths = true;
                let f = rng.pick(&runs).clone();
                let Some(mut v) = read_json(&f) else { continue };
                let p = render_path(rng.s(PATHS), case, n, RECORD_ANCHORS);
                if let Some(o) = pick_output(rng, &mut v, "/outputs") {
                    o["path"] = p.clone().into();
                }
                let text = serde_json::to_string(&v).unwrap();
                write_forced(&f, text.as_bytes());
                log.push(format!("run entry {} := {text}", f.display()));
            }
            2 => {
                // A run entry with a junk hash or field.
                let f = rng.pick(&runs).clone();
                let Some(mut v) = read_json(&f) else { continue };
                if rng.chance(60) {
                    let h = render(rng.s(HASHES), case, n);
                    if let Some(o) = pick_output(rng, &mut v, "/outputs") {
                        o["hash"] = h.into();
                    }
                } else {
                    let field = *rng.pick(&["key", "kind", "stage", "outputs", "metrics", "log", "seconds"]);
                    let j: serde_json::Value =
                        serde_json::from_str(rng.s(JSON_JUNK)).unwrap_or(serde_json::Value::Null);
                    if let Some(m) = v.as_object_mut() {
                        m.insert(field.to_string(), j);
                    }
                }
                let text = serde_json::to_string(&v).unwrap();
                write_forced(&f, text.as_bytes());
                log.push(format!("run entry {} := {text}", f.display()));
            }
            3 => {
                let f = rng.pick(&runs).clone();
                let Ok(orig) = std::fs::read(&f) else { continue };
                let (b, what) = damaged_bytes(rng, &orig);
                write_forced(&f, &b);
                log.push(format!("run entry {}: {what}", f.display()));
            }
            4 => {
                // Stray files and folders in the cache's buckets.
                let entry = std::fs::read(&runs[0]).unwrap_or_default();
                let which = rng.below(12);
                let (rel, bytes): (&str, Vec<u8>) = match which {
                    0 => ("runs-v1/zz/x.json", entry),
                    1 => ("runs-v1/x.json", entry),
                    2 => ("runs-v1/ab/.json", b"{}".to_vec()),
                    3 => ("runs-v1/a/b.json", entry),
                    4 => ("objects-v1/zz/x", b"stray".to_vec()),
                    5 => ("objects-v1/x", b"stray".to_vec()),
                    6 => ("versions-v1/x.json", std::fs::read(&vpath).unwrap_or_default()),
                    7 => ("versions-v1/abcd.json", std::fs::read(&vpath).unwrap_or_default()),
                    8 => ("versions-v1/notes.txt", b"hello".to_vec()),
                    9 => ("tmp/leftover", b"x".to_vec()),
                    10 => ("locks-v1/x.lock", b"x".to_vec()),
                    _ => ("versions-v1/ab/cd.json", b"{}".to_vec()),
                };
                write_forced(&cache.join(rel), &bytes);
                log.push(format!("stray file {rel}"));
            }
            5 => {
                // A file name that is not UTF-8.
                use std::os::unix::ffi::OsStrExt;
                let bucket = *rng.pick(&["runs-v1/ab", "versions-v1", "objects-v1/ab", "objects-v1", "runs-v1"]);
                let name = std::ffi::OsStr::from_bytes(b"\xff\xfe-bad.json");
                write_forced(&cache.join(bucket).join(name), b"{}");
                log.push(format!("non-UTF-8 file name in {bucket}"));
            }
            6 | 7 => {
                // A version record: escaping paths, junk fields, renamed or not.
                let Ok(bytes) = std::fs::read(&vpath) else { continue };
                let Ok(mut rec) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
                let what = match rng.below(6) {
                    0 | 1 => {
                        if planted_manifest {
                            continue;
                        }
                        moved_paths = true;
                        let p = render_path(rng.s(PATHS), case, n, RECORD_ANCHORS);
                        let ptr = if rng.chance(70) { "/body/stages/0/outputs" } else { "/body/sources" };
                        if let Some(o) = pick_output(rng, &mut rec, ptr) {
                            o["path"] = p.clone().into();
                        }
                        format!("{ptr} path := {p:?}")
                    }
                    2 => {
                        let h = render(rng.s(HASHES), case, n);
                        if let Some(o) = pick_output(rng, &mut rec, "/body/stages/1/outputs") {
                            o["hash"] = h.clone().into();
                        }
                        format!("output hash := {h:?}")
                    }
                    3 => {
                        let k = render(rng.s(HASHES), case, n);
                        rec["body"]["stages"][0]["key"] = k.clone().into();
                        format!("stage key := {k:?}")
                    }
                    4 => {
                        let ptr = *rng.pick(&[
                            "/body/stages",
                            "/body/sources",
                            "/body/pipeline",
                            "/meta/created",
                            "/meta",
                            "/hash",
                            "/body/stages/0/outputs",
                            "/body/stages/0/name",
                        ]);
                        let j: serde_json::Value =
                            serde_json::from_str(rng.s(JSON_JUNK)).unwrap_or(serde_json::Value::Null);
                        if let Some(slot) = rec.pointer_mut(ptr) {
                            *slot = j.clone();
                        }
                        format!("{ptr} := {j}")
                    }
                    _ => {
                        if moved_paths {
                            continue;
                        }
                        planted_manifest = true;
                        let (m, text) = evil_manifest(rng, &cache, case, n, &good_hash);
                        rec["body"]["stages"][0]["outputs"][1]["hash"] = m.clone().into();
                        format!("adir := manifest {m} {text}")
                    }
                };
                let renamed = rng.chance(60);
                let text = serde_json::to_string(&rec).unwrap();
                if renamed && rec.get("body").is_some() {
                    let h = blake3::hash(&canonical_json(&rec["body"])).to_hex().to_string();
                    rec["hash"] = h.clone().into();
                    let text = serde_json::to_string(&rec).unwrap();
                    write_forced(&cache.join("versions-v1").join(format!("{h}.json")), text.as_bytes());
                    log.push(format!("version {h} (new, self-consistent): {what}: {text}"));
                } else {
                    write_forced(&vpath, text.as_bytes());
                    log.push(format!("version {version} edited in place: {what}: {text}"));
                }
            }
            8 => {
                let Ok(bytes) = std::fs::read(&vpath) else { continue };
                let (b, what) = damaged_bytes(rng, &bytes);
                write_forced(&vpath, &b);
                log.push(format!("version {version}: {what}"));
            }
            9 => {
                // A run entry pointing its folder output at an escaping manifest.
                if moved_paths {
                    continue;
                }
                planted_manifest = true;
                let (m, text) = evil_manifest(rng, &cache, case, n, &good_hash);
                for f in &runs {
                    let Some(mut v) = read_json(f) else { continue };
                    let Some(outs) = v["outputs"].as_array_mut() else { continue };
                    for o in outs.iter_mut() {
                        if o["kind"] == "dir" {
                            o["hash"] = m.clone().into();
                        }
                    }
                    write_forced(f, serde_json::to_string(&v).unwrap().as_bytes());
                }
                log.push(format!("dir outputs := manifest {m}: {text}"));
            }
            10 => {
                // Objects: gone, flipped, truncated, a folder, a symlink to the victim.
                let Some(o) = (!objects.is_empty()).then(|| rng.pick(&objects).clone()) else { continue };
                if !o.exists() {
                    continue;
                }
                let what = match rng.below(5) {
                    0 => {
                        let _ = std::fs::remove_file(&o);
                        "deleted"
                    }
                    1 => {
                        let mut b = std::fs::read(&o).unwrap_or_default();
                        if !b.is_empty() {
                            b[0] ^= 0x20;
                        }
                        write_forced(&o, &b);
                        "flipped"
                    }
                    2 => {
                        let b = std::fs::read(&o).unwrap_or_default();
                        write_forced(&o, &b[..b.len() / 2]);
                        "truncated"
                    }
                    3 => {
                        let _ = std::fs::remove_file(&o);
                        let _ = std::fs::create_dir_all(o.join("inner"));
                        "replaced by a folder"
                    }
                    _ => {
                        let _ = std::fs::remove_file(&o);
                        let _ = std::os::unix::fs::symlink(case.join("victim/a.txt"), &o);
                        "replaced by a symlink to victim/a.txt"
                    }
                };
                log.push(format!("object {}: {what}", o.display()));
            }
            _ => {
                // A bucket replaced by a file.
                let bucket = *rng.pick(&["runs-v1", "versions-v1", "tmp", "locks-v1", "objects-v1/ab"]);
                write_forced(&cache.join(bucket), b"not a folder");
                log.push(format!("{bucket} replaced by a file"));
            }
        }
    }
    log
}

#[test]
fn fuzz_damaged_cache_records() {
    check_path_lists();
    let t0 = Instant::now();
    let baseline = Baseline::new();
    let base = tempfile::tempdir().unwrap();
    let n_cases = scaled(220);
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let seed = seed();
    std::thread::scope(|s| {
        for _ in 0..workers() {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n_cases {
                    break;
                }
                let mut rng = Rng(seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let root = base.path().join(format!("c{i}"));
                copy_tree(&baseline.dir.path().join("project"), &root.join("project"));
                make_victim(&root);
                let log = damage_cache(&mut rng, &root, i, &baseline.version);
                // Half the cases lose their workspace outputs, so runs consult the cache.
                if rng.chance(50) {
                    for out in ["a.txt", "adir", "b.txt"] {
                        let p = root.join("project").join(out);
                        if p.is_dir() {
                            remove_tree(&p);
                        } else {
                            let _ = std::fs::remove_file(&p);
                        }
                    }
                }
                let mut case = CaseDir::seal(root.clone());
                let root_s = root.to_str().unwrap().to_string();
                let input = || {
                    format!(
                        "  case root {root_s} (a copy of a clean cache from pipeline:\n{CACHE_PIPELINE}  then)\n    {}",
                        log.join("\n    ")
                    )
                };
                let v = baseline.version.clone();
                let to = format!("{root_s}/to");
                let commands: Vec<Vec<String>> = [
                    vec!["status"],
                    vec!["log"],
                    vec!["show", &v[..12]],
                    vec!["checkout", &v[..12]],
                    vec!["checkout", &v[..12], "--to", &to],
                    vec!["run"],
                    vec!["gc", "--all-workspaces", "--dry-run"],
                    vec!["cache", "verify"],
                    vec!["cache", "verify", "--repair"],
                    vec!["cache", "verify"],
                    vec!["gc", "--all-workspaces", "--force"],
                    vec!["run"],
                ]
                .into_iter()
                .map(|c| c.into_iter().map(String::from).collect())
                .collect();
                // Versions the damage created get shown and checked out too.
                let mut extra = Vec::new();
                for f in files_under(&root.join("project/.dvx/cache/versions-v1")) {
                    let name = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                    if name != v && name.len() >= 4 && name.is_ascii() {
                        extra.push(vec!["show".to_string(), name.clone()]);
                        extra.push(vec!["checkout".to_string(), name.clone()]);
                        extra.push(vec!["checkout".to_string(), name, "--to".into(), to.clone()]);
                    }
                }
                for args in extra.into_iter().chain(commands) {
                    if !case.project().is_dir() {
                        break;
                    }
                    let o = dvx(&case.project(), &args);
                    check(&tally, &mut case, base.path(), &args, &o, &input);
                }
                tally.lock().unwrap().cases += 1;
                remove_tree(&root);
            });
        }
    });
    report("damaged cache records", tally.into_inner().unwrap(), t0);
}
