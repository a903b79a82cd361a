//! A small builder: a temp project, files in it, `dvx` runs with asserts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code(), 0, "dvx failed\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
    /// The `version: <hash>` line.
    pub fn version(&self) -> String {
        self.stdout()
            .lines()
            .find_map(|l| l.strip_prefix("version: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no version line in:\n{}\n{}", self.stdout(), self.stderr()))
    }
    /// stage name → status, from `--json` output.
    pub fn statuses(&self) -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.stdout()).expect("json output");
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
            .collect()
    }
    pub fn status_of(&self, stage: &str) -> String {
        self.statuses().into_iter().find(|(n, _)| n == stage).map(|(_, s)| s).unwrap_or_default()
    }
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::tempdir().unwrap() }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Replace rather than write in place: restored outputs may be read-only links.
        let _ = std::fs::remove_file(&p);
        std::fs::write(p, text).unwrap();
        self
    }
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
    /// Lines in a counter file that stages append to when they execute.
    pub fn count(&self, rel: &str) -> usize {
        std::fs::read_to_string(self.path(rel)).map(|s| s.lines().count()).unwrap_or(0)
    }
    /// gc keeps whatever was written in the 2 seconds before it started (a
    /// writer may still need it); make everything in the cache older than that.
    pub fn age_cache(&self) {
        age_cache_at(&self.path(".dvx/cache"));
    }
    pub fn dvx(&self, args: &[&str]) -> Run {
        self.dvx_in(self.dir.path(), args)
    }

    pub fn dvx_in(&self, cwd: &Path, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_dvx"))
            .args(args)
            .current_dir(cwd)
            .env_remove("DVX_CACHE_DIR")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            // What else changes how errors render (colour, narrated text): off, so
            // the full-output snapshots do not depend on the caller's environment.
            .env_remove("FORCE_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("NO_GRAPHICS")
            .output()
            .expect("dvx runs");
        Run { out }
    }
}

/// Makes dvx's output the same from run to run and machine to machine, for
/// snapshots: the one place that knows what in it varies.
///
/// - temp folders (each project's, and any added with [`Redact::path`]) become
///   a name in brackets, `[TMP]`; any other temp folder becomes `[TEMPDIR]`;
/// - 64-hex hashes become `<H1>`, `<H2>`, … numbered by first appearance, and a
///   12-hex short hash `<h1>........` (as wide as it was) with the number of
///   the full hash it starts, else a number of its own, so equal hashes stay
///   visibly equal (and different ones different) across every snapshot
///   taken through one `Redact`;
/// - times and dates (RFC 3339, `YYYY-MM-DD`) become `[TIME]` / `[DATE]`;
/// - this machine's name becomes `[HOST]`;
/// - `dvx run`'s stage lines (`TIME start|ran|… STAGE`, written as stages
///   start and end when there is no terminal) are dropped: their order
///   varies with parallel stages; `logs.rs` checks them;
/// - durations (the run table's seconds column, keeping its width; JSON
///   `"seconds"`; `(1.2s)`, `1.5 s`), training throughput (`tok/s`), memory
///   (`peak RSS`) and thread ids become placeholders.
pub struct Redact {
    /// (exact text, placeholder), longest first when applied.
    paths: Vec<(String, String)>,
    /// Full or short hashes seen so far; a hash's number is its index + 1.
    hashes: Vec<String>,
}

impl Redact {
    pub fn new(p: &Project) -> Redact {
        Redact { paths: Vec::new(), hashes: Vec::new() }.path(p.dir.path(), "[TMP]")
    }

    /// Show `path` (as given and canonical) as `name`.
    pub fn path(mut self, path: &Path, name: &str) -> Self {
        for p in [path.to_path_buf(), path.canonicalize().unwrap_or_else(|_| path.to_path_buf())] {
            let text = p.display().to_string();
            if !self.paths.iter().any(|(t, _)| *t == text) {
                self.paths.push((text, name.to_string()));
            }
        }
        self.paths.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        self
    }

    /// `text` with everything that varies replaced.
    pub fn apply(&mut self, text: &str) -> String {
        use regex::{Captures, Regex};
        use std::sync::LazyLock;
        static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
            let temp = regex::escape(&std::env::temp_dir().display().to_string());
            let temp = temp.trim_end_matches('/');
            [
                (format!(r"{temp}/\.tmp[A-Za-z0-9]{{6}}"), "[TEMPDIR]"),
                (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)".into(), "[TIME]"),
                (r"\b\d{4}-\d\d-\d\d\b".into(), "[DATE]"),
                (r#""seconds": \d+(\.\d+)?(e-?\d+)?"#.into(), r#""seconds": "[SECS]""#),
                (r"\(\d+\.\d+s\)".into(), "([SECS]s)"),
                (r"\b\d+\.\d+ s\b".into(), "[SECS] s"),
                (r"\b\d+(\.\d+)? tok/s".into(), "[N] tok/s"),
                (r"peak RSS \d+ MiB".into(), "peak RSS [N] MiB"),
                (r"ThreadId\(\d+\)".into(), "ThreadId([N])"),
                (format!(r"\b{}\b", regex::escape(&hostname())), "[HOST]"),
            ]
            .into_iter()
            .map(|(re, with)| (Regex::new(&re).expect("valid filter"), with))
            .collect()
        });
        // The run table: `name  status  seconds  key`, seconds right-aligned.
        static SECONDS_COLUMN: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?m)( *\d+\.\d\d)(  ([0-9a-f]{12}|-)$)").unwrap());
        static HASH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b([0-9a-f]{64}|[0-9a-f]{12})\b").unwrap());

        // `dvx run`'s stage lines as they happen (stderr without a terminal):
        // their order varies with parallel stages; tests/it/logs.rs checks them.
        static STAGE_LINE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (start|ran|cached|cut off|FAILED|skipped|progress) .*\n",
            )
            .unwrap()
        });
        let mut out = STAGE_LINE.replace_all(text, "").into_owned();
        for (path, name) in &self.paths {
            out = out.replace(path.as_str(), name);
        }
        for (re, with) in RULES.iter() {
            out = re.replace_all(&out, *with).into_owned();
        }
        out = SECONDS_COLUMN
            .replace_all(&out, |c: &Captures| format!("{:>w$}{}", "[secs]", &c[2], w = c[1].len()))
            .into_owned();
        let fulls: Vec<String> =
            HASH.find_iter(&out).map(|m| m.as_str().to_string()).filter(|h| h.len() == 64).collect();
        HASH.replace_all(&out, |c: &Captures| {
            let h = &c[1];
            // A short hash is numbered as the full hash it starts, if that is known.
            let full = if h.len() == 12 {
                self.hashes
                    .iter()
                    .chain(&fulls)
                    .find(|f| f.len() == 64 && f.starts_with(h))
                    .cloned()
                    .unwrap_or_else(|| h.to_string())
            } else {
                h.to_string()
            };
            let n = match self.hashes.iter().position(|k| *k == full) {
                Some(i) => i + 1,
                None => {
                    self.hashes.push(full.clone());
                    self.hashes.len()
                }
            };
            if h.len() == 64 {
                format!("<H{n}>")
            } else {
                // As wide as the hash, so tables keep their columns.
                format!("{:.<12}", format!("<h{n}>"))
            }
        })
        .into_owned()
    }
}

/// This machine's name, as `dvx exec-stage` reports it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Run {
    /// Exit code, stdout and stderr in one text, redacted, for a snapshot.
    pub fn snapshot(&self, r: &mut Redact) -> String {
        format!("exit: {}\n--- stdout\n{}--- stderr\n{}", self.code(), r.apply(&self.stdout()), r.apply(&self.stderr()))
    }
}

/// Make every file of a cache an hour old: past gc's grace for what was
/// written just before it started, as a real cache's older versions are.
pub fn age_cache_at(cache: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fn walk(dir: &Path, old: std::time::SystemTime) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, old);
            }
            std::fs::File::open(&path).unwrap().set_modified(old).unwrap();
        }
    }
    walk(cache, old);
}
