//! Stages as Slurm jobs, on a real single-node cluster on localhost.
//!
//! The cluster is the one `SLURM_CONF` points at when `sinfo` answers there;
//! otherwise the test starts its own with `ci/slurm/start.sh` and stops it
//! with `ci/slurm/stop.sh` (by PID) when done. Where Slurm cannot be started
//! (not installed, not root) the test prints why and passes, except in CI
//! (`CI=true`), where that is a failure.
//!
//! Jobs are checked through Slurm's own records (`scontrol show job`, which
//! keeps finished jobs for `MinJobAge`; accounting is off, so no `sacct`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::Project;

pub(crate) struct Cluster {
    conf: PathBuf,
    /// The folder of a cluster this test started (stopped on drop).
    started: Option<PathBuf>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.started {
            let _ = Command::new("bash").arg(script("stop.sh")).arg(dir).status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/slurm").join(name)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The cluster, or why there is none.
fn cluster() -> Result<Cluster, String> {
    if let Some(conf) = std::env::var_os("SLURM_CONF").map(PathBuf::from) {
        let up = Command::new("sinfo").arg("-h").env("SLURM_CONF", &conf).output();
        if up.is_ok_and(|o| o.status.success()) {
            return Ok(Cluster { conf, started: None });
        }
    }
    let dir = tempfile::Builder::new().prefix("dvx-slurm-").tempdir().map_err(|e| e.to_string())?.keep();
    let out = Command::new("bash")
        .arg(script("start.sh"))
        .arg(&dir)
        .env_remove("SLURM_CONF")
        .output()
        .map_err(|e| format!("cannot run start.sh: {e}"))?;
    if !out.status.success() {
        let _ = Command::new("bash").arg(script("stop.sh")).arg(&dir).status();
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("ci/slurm/start.sh failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let conf = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or(""));
    Ok(Cluster { conf, started: Some(dir) })
}

impl Cluster {
    fn dvx(&self, p: &Project, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dvx"));
        c.args(args)
            .current_dir(p.dir.path())
            .env("SLURM_CONF", &self.conf)
            .env("DVX_SLURM_POLL_MS", "300")
            .env("COUNT_DIR", p.path("counts"))
            .env_remove("DVX_CACHE_DIR")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        c
    }

    pub(crate) fn run(&self, p: &Project, args: &[&str]) -> Output {
        self.dvx(p, args).output().expect("dvx runs")
    }

    /// Slurm's record of every job whose working folder is `p`: job id → fields.
    pub(crate) fn jobs_of(&self, p: &Project) -> BTreeMap<u64, BTreeMap<String, String>> {
        let wdir = p.dir.path().canonicalize().unwrap();
        let out = Command::new("scontrol")
            .args(["show", "job", "-o"])
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("scontrol runs");
        let mut jobs = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: BTreeMap<String, String> = line
                .split_whitespace()
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if f.get("WorkDir").map(PathBuf::from).as_deref() == Some(wdir.as_path()) {
                jobs.insert(f["JobId"].parse().unwrap(), f);
            }
        }
        jobs
    }

    /// Stage name of each job of `p` → its state.
    fn stage_states(&self, p: &Project) -> Vec<(String, String)> {
        self.jobs_of(p)
            .values()
            .map(|f| (f["JobName"].split(':').nth(1).unwrap_or("").to_string(), f["JobState"].clone()))
            .collect()
    }

    fn wait_for(&self, what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !ok() {
            assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&o.stdout), text(&o.stderr)))
}

fn statuses(v: &serde_json::Value) -> Vec<(String, String)> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
        .collect()
}

const PIPELINE: &str = r#"name: onslurm
stages:
  prep:
    deps: [in.txt]
    outs: [prep.txt]
    cmd: echo prep >> "$COUNT_DIR/prep" && tr a-z A-Z < in.txt > prep.txt
    resources: {cpus: 1, mem: 100M, time: "5:00"}
  left:
    deps: [prep.txt]
    outs: [left]
    cmd: mkdir -p left && cp prep.txt left/a.txt && rev prep.txt > left/b.txt
  right:
    deps: [prep.txt]
    outs: [right.txt]
    cmd: cat prep.txt prep.txt > right.txt
  cheap:
    deps: [prep.txt]
    outs: [cheap.txt]
    executor: local
    cmd: wc -c < prep.txt > cheap.txt
  join:
    deps: [left, right.txt, cheap.txt]
    outs: [join.txt]
    cmd: cat left/a.txt left/b.txt right.txt cheap.txt > join.txt
"#;

fn project(pipeline: &str, shared: bool) -> Project {
    let p = Project::new();
    p.write("in.txt", "jobs on a cluster\n");
    p.write("dvx.yaml", pipeline);
    if shared {
        p.write("dvx.toml", "shared = \"group\"\n");
    }
    std::fs::create_dir_all(p.path("counts")).unwrap();
    p
}

#[test]
fn slurm_end_to_end() {
    let cluster = match cluster() {
        Ok(c) => c,
        Err(why) if !in_ci() => {
            eprintln!("skipping the Slurm test: {why}");
            return;
        }
        Err(why) => panic!("CI=true but Slurm cannot be started: {why}"),
    };
    same_version_every_stage_a_job(&cluster);
    failed_job_reports_state_and_log(&cluster);
    interrupt_cancels_jobs(&cluster);
    restart_after_crash_reuses_jobs(&cluster);
    crate::shards::sharded_on_slurm(&cluster);
}

/// `--executor slurm` gives the local run's version; every stage that ran
/// (except `executor: local`) ran as a job; cached stages never reach Slurm.
fn same_version_every_stage_a_job(c: &Cluster) {
    let local = project(PIPELINE, true);
    let out = c.run(&local, &["run", "--json"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let local_version = json_of(&out)["version"].as_str().unwrap().to_string();
    assert!(c.jobs_of(&local).is_empty(), "a local run submitted jobs");

    let remote = project(PIPELINE, true);
    let out = c.run(&remote, &["run", "--executor", "slurm", "--json", "-j", "2"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let report = json_of(&out);
    assert_eq!(report["version"].as_str().unwrap(), local_version);
    let ran: Vec<String> = statuses(&report).into_iter().filter(|(_, s)| s == "ran").map(|(n, _)| n).collect();
    assert_eq!(ran, ["prep", "left", "right", "cheap", "join"]);
    assert!(!text(&out.stderr).contains("not in shared mode"), "{}", text(&out.stderr));
    let mut jobs = c.stage_states(&remote);
    jobs.sort();
    let want: Vec<(String, String)> =
        ["join", "left", "prep", "right"].iter().map(|s| (s.to_string(), "COMPLETED".to_string())).collect();
    assert_eq!(jobs, want, "one COMPLETED job per stage that ran, none for `executor: local`");
    assert_eq!(remote.read("join.txt"), local.read("join.txt"));
    let jobs_dir = remote.path(".dvx/cache/jobs-v1");
    assert_eq!(std::fs::read_dir(&jobs_dir).unwrap().count(), 0, "job files are removed after success");

    // Cached stages never reach Slurm.
    let out = c.run(&remote, &["run", "--executor", "slurm", "--json"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(statuses(&json_of(&out)).iter().all(|(_, s)| s == "cached"));
    assert_eq!(c.jobs_of(&remote).len(), 4, "a cached run submitted jobs");

    // A changed input re-runs its stages as jobs; the job's entry serves the local run too.
    remote.write("in.txt", "other text\n");
    local.write("in.txt", "other text\n");
    let out = c.run(&remote, &["run", "--executor", "slurm"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    // The command line prints the engine's notices (no terminal, so no bar).
    assert!(text(&out.stderr).contains("slurm: stage `prep` submitted as job "), "{}", text(&out.stderr));
    assert_eq!(c.jobs_of(&remote).len(), 8);
    assert_eq!(remote.count("counts/prep"), 2);
}

/// A failing job fails its stage with Slurm's state and the tail of the job's log.
fn failed_job_reports_state_and_log(c: &Cluster) {
    let p = project(
        r#"stages:
  boom:
    deps: [in.txt]
    outs: [never.txt]
    cmd: echo "about to fail on purpose" && echo "oops on stderr" >&2 && exit 3
"#,
        false,
    );
    let out = c.run(&p, &["run", "--executor", "slurm"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not in shared mode"), "no shared-mode warning:\n{stderr}");
    let jobs = c.jobs_of(&p);
    assert_eq!(jobs.len(), 1);
    let (id, job) = jobs.iter().next().unwrap();
    assert_eq!(job["JobState"], "FAILED");
    assert!(
        stderr.contains(&format!("stage `boom` failed: slurm job {id} FAILED (exit code 1:0")),
        "no Slurm state in:\n{stderr}"
    );
    let tail = stderr.split("--- last lines of its log ---").nth(1).unwrap_or_else(|| panic!("no log tail:\n{stderr}"));
    assert!(tail.contains("about to fail on purpose") && tail.contains("oops on stderr"), "{stderr}");
    assert!(stderr.contains("jobs-v1/"), "the job log's path is shown:\n{stderr}");
}

/// SIGINT to dvx while its job runs cancels the job.
fn interrupt_cancels_jobs(c: &Cluster) {
    let p = project(
        r#"stages:
  slow:
    deps: [in.txt]
    outs: [slow.txt]
    cmd: sleep 120 && cp in.txt slow.txt
"#,
        true,
    );
    let mut child =
        c.dvx(&p, &["run", "--executor", "slurm"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.wait_for("the job to run", 60, || c.stage_states(&p).iter().any(|(_, s)| s == "RUNNING"));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "dvx did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cancelled Slurm job(s)"), "{}", text(&out.stderr));
    c.wait_for("the job to be cancelled", 30, || c.stage_states(&p).iter().all(|(_, s)| s == "CANCELLED"));
    let squeue = Command::new("squeue").args(["-h", "-o", "%i %Z"]).env("SLURM_CONF", &c.conf).output().unwrap();
    let wdir = p.dir.path().canonicalize().unwrap();
    assert!(
        !text(&squeue.stdout).contains(&*wdir.to_string_lossy()),
        "a job was left behind: {}",
        text(&squeue.stdout)
    );
}

/// A dvx killed while jobs run does not redo, on restart, what its jobs finished,
/// and waits for the job still running instead of submitting it again.
fn restart_after_crash_reuses_jobs(c: &Cluster) {
    let p = project(
        r#"stages:
  first:
    deps: [in.txt]
    outs: [first.txt]
    cmd: echo first >> "$COUNT_DIR/first" && cp in.txt first.txt
  second:
    deps: [first.txt]
    outs: [second.txt]
    cmd: echo second >> "$COUNT_DIR/second" && sleep 6 && rev first.txt > second.txt
"#,
        true,
    );
    let mut child =
        c.dvx(&p, &["run", "--executor", "slurm"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    c.wait_for("the second job to run", 60, || c.stage_states(&p).iter().any(|(n, s)| n == "second" && s == "RUNNING"));
    child.kill().unwrap(); // SIGKILL: no chance to cancel anything
    child.wait().unwrap();
    let out = c.run(&p, &["run", "--executor", "slurm", "--json"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let st = statuses(&json_of(&out));
    assert_eq!(st[0], ("first".to_string(), "cached".to_string()), "{st:?}");
    assert_eq!(st[1], ("second".to_string(), "ran".to_string()), "{st:?}");
    assert!(text(&out.stderr).contains("still running as job"), "{}", text(&out.stderr));
    assert_eq!(p.count("counts/first"), 1);
    assert_eq!(p.count("counts/second"), 1, "the running job was submitted again");
    assert_eq!(c.stage_states(&p).len(), 2);
    assert_eq!(p.read("second.txt"), "retsulc a no sboj\n");
}

// Without a cluster.

fn rendered_error(yaml: &str) -> String {
    let p = Project::new();
    p.write("in.txt", "x\n");
    p.write("dvx.yaml", yaml);
    let r = p.dvx(&["run"]);
    assert_eq!(r.code(), 2, "{}\n{}", r.stdout(), r.stderr());
    r.stderr()
}

#[test]
fn wrong_resources_point_at_the_field() {
    let e = rendered_error(
        "stages:\n  train:\n    deps: [in.txt]\n    outs: [o.txt]\n    resources:\n      cpus: 2\n      memory: 4G\n    cmd: cp in.txt o.txt\n",
    );
    assert_eq!(
        e,
        r#"dvx::spec

  × invalid `resources` of stage `train`: unknown field `memory` (did you mean
  │ `mem`?)
   ╭─[dvx.yaml:7:7]
 6 │       cpus: 2
 7 │       memory: 4G
   ·       ───┬──
   ·          ╰── here
 8 │     cmd: cp in.txt o.txt
   ╰────

"#
    );
    let e = rendered_error("stages:\n  a:\n    outs: [o.txt]\n    resources: {time: 2h}\n    cmd: touch o.txt\n");
    assert!(e.contains("invalid `resources.time` of stage `a`: `2h` is not a Slurm time limit"), "{e}");
    assert!(e.contains("[dvx.yaml:4:17]"), "{e}");
}

#[test]
fn unknown_executor_suggests() {
    let e = rendered_error("executor: slrum\nstages:\n  a:\n    outs: [o.txt]\n    cmd: touch o.txt\n");
    assert_eq!(
        e,
        r#"dvx::spec

  × unknown executor `slrum`
   ╭─[dvx.yaml:1:11]
 1 │ executor: slrum
   ·           ──┬──
   ·             ╰── here
 2 │ stages:
   ╰────
  help: did you mean `slurm`? (one of: local, slurm)

"#
    );
}

/// A `sbatch` that only records that it was called.
fn fake_sbatch(p: &Project) -> String {
    let bin = p.path("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let sbatch = bin.join("sbatch");
    std::fs::write(&sbatch, format!("#!/bin/sh\necho called >> {}\nexit 1\n", p.path("sbatch-called").display()))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
}

#[test]
fn cached_and_local_stages_never_reach_slurm() {
    let p = project(PIPELINE, true);
    let path = fake_sbatch(&p);
    let dvx = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dvx"))
            .args(args)
            .current_dir(p.dir.path())
            .env("PATH", &path)
            .env("COUNT_DIR", p.path("counts"))
            .env_remove("DVX_CACHE_DIR")
            .output()
            .unwrap()
    };
    // The pipeline asks for Slurm; the command line keeps it local.
    p.write("dvx.yaml", &format!("executor: slurm\n{PIPELINE}"));
    let out = dvx(&["run", "--executor", "local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Now everything is cached: Slurm is never asked.
    let out = dvx(&["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!p.path("sbatch-called").exists());
    // A stale stage marked `executor: local` runs here even with `--executor slurm`.
    p.write("dvx.yaml", &format!("executor: slurm\n{}", PIPELINE.replace("wc -c <", "wc -l <")));
    let out = dvx(&["run", "--executor", "slurm", "dvx.yaml", "cheap"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!p.path("sbatch-called").exists());
    // A stale stage on Slurm reaches sbatch, and its refusal fails the stage.
    let out = dvx(&["run", "--executor", "slurm"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stage `join` failed: sbatch refused the job"), "{}", text(&out.stderr));
    assert!(p.path("sbatch-called").exists());
    let jobs = p.path(".dvx/cache/jobs-v1");
    assert_eq!(std::fs::read_dir(jobs).unwrap().count(), 0, "a refused job leaves no files");
}

#[test]
fn exec_stage_says_when_the_cache_is_not_visible() {
    let p = Project::new();
    let r = p.dvx(&["exec-stage", "/nonexistent/shared/cache/jobs-v1/0123.json"]);
    assert_eq!(r.code(), 2);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(
        r.stderr(),
        format!(
            "dvx exec-stage: error: the dvx cache `/nonexistent/shared/cache` is not visible from {}: put the cache \
             (and the workspace) on a filesystem that the submitting machine and the compute nodes share, at the same path\n",
            host.trim()
        )
    );
}
