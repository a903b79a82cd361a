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
            .output()
            .expect("dvx runs");
        Run { out }
    }
}
