//! The Slurm executor: one `sbatch` job per stage key, running the hidden
//! `dvx exec-stage <spec>` against the shared cache and workspace.
//!
//! Files of a key `K` in the cache's `jobs-v1/` (on the shared filesystem):
//! `K.json` the job spec, `K.jobid` the Slurm job id (so a dvx restarted after
//! a crash waits for a job still running instead of submitting it again),
//! `K.log` the job's stdout and stderr, `K.outcome.json` what the job did.
//! They are removed when the job succeeds and kept when it fails.
//!
//! Jobs are followed with `scontrol show job -o` (works without accounting,
//! unlike `sacct`; finished jobs stay visible for Slurm's `MinJobAge`). When
//! the run's [`Cancel`] token trips (SIGINT or SIGTERM to dvx, see
//! [`super::interrupt`], or another stage failed) every wait cancels its job
//! (`scancel`) and returns, and nothing more is submitted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dvx_cache::{Bucket, RunEntry, StageKey};

use super::job::{hostname, outcome_path, write_job_file, JobOutcome, JobSpec};
use super::local::{tail, Failure};
use super::{Executor, Job};
use crate::Cancel;

mod array;

/// Submits stages as Slurm jobs and waits for them.
#[derive(Debug)]
pub struct Slurm {
    exe: PathBuf,
    poll: Duration,
    /// Job ids in flight. Submitting happens under its lock, after a look
    /// at the token: a cancel comes either before a submission (nothing is
    /// submitted) or after it (the job's wait sees it and `scancel`s it).
    live: Mutex<BTreeSet<String>>,
    /// The run's token: once tripped, nothing more is submitted and every
    /// wait cancels its job and returns.
    cancel: Cancel,
}

impl Slurm {
    /// A Slurm executor for a run cancelled through `cancel`. The job runs
    /// this same `dvx` binary (or `$DVX_SLURM_EXE`), which must be at the
    /// same path on the nodes.
    pub fn new(cancel: Cancel) -> Slurm {
        let exe = std::env::var_os("DVX_SLURM_EXE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("dvx"));
        let poll = std::env::var("DVX_SLURM_POLL_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(2));
        Slurm { exe, poll, live: Mutex::default(), cancel }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `scancel` job `id` (the run was cancelled), saying so; the failure its stage reports.
    fn cancel_job(&self, job: &Job<'_>, id: &str) -> Failure {
        let why = self.cancel.reason().unwrap_or_else(|| "the run was cancelled".into());
        let line = match Command::new("scancel").arg(id).output() {
            Ok(o) if o.status.success() => format!("dvx: {why}: cancelled Slurm job(s) {id}"),
            Ok(o) => format!("dvx: {why}: `scancel {id}` failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => format!("dvx: {why}: cannot run scancel: {e}; cancel job {id} by hand"),
        };
        (job.say)(&line);
        Failure {
            message: format!("cancelled: {why}: slurm job {id} cancelled"),
            log_tail: String::new(),
            kind: Some(crate::FailureKind::Cancelled),
        }
    }
}

/// One job as `scontrol show job -o` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JobInfo {
    pub state: String,
    pub reason: String,
    pub exit_code: String,
    pub name: String,
    pub nodes: String,
    /// The task's index in an array job (empty for a plain job; a range
    /// such as `2-3` for tasks still pending together).
    pub task: String,
}

/// Parse one line of `scontrol show job -o`.
pub(crate) fn parse_show_job(line: &str) -> JobInfo {
    let fields: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|t| t.split_once('=')).collect();
    let get = |k: &str| fields.get(k).copied().unwrap_or("").to_string();
    JobInfo {
        // "CANCELLED by 0" is one word in this format, but be safe.
        state: get("JobState").split_whitespace().next().unwrap_or("").to_string(),
        reason: get("Reason"),
        exit_code: get("ExitCode"),
        name: get("JobName"),
        nodes: get("NodeList"),
        task: get("ArrayTaskId"),
    }
}

/// States after which a job never runs again.
const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

fn is_terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

/// Every line Slurm shows for the job (one per task of an array job);
/// `Ok(None)` when Slurm no longer knows it.
fn query(id: &str) -> Result<Option<Vec<JobInfo>>, String> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .map_err(|e| format!("cannot run scontrol: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(None);
        }
        return Err(format!("scontrol show job {id}: {}", stderr.trim()));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<JobInfo> = stdout.lines().filter(|l| l.contains("JobId=")).map(parse_show_job).collect();
    Ok((!lines.is_empty()).then_some(lines))
}

/// Quote for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a job needs to find and check its stage.
fn job_spec(job: &Job<'_>) -> JobSpec {
    JobSpec {
        format: 1,
        pipeline: job.pipeline.file.clone(),
        wdir: job.pipeline.wdir.clone(),
        stage: job.def.name.clone(),
        key: job.key.clone(),
        deps: job.deps.to_vec(),
        cache: job.cache.root().to_path_buf(),
        shared: job.cache.is_shared(),
        submit_host: hostname(),
    }
}

fn job_name(stage: &str, key: &StageKey) -> String {
    format!("dvx:{stage}:{}", key.short())
}

struct Files {
    spec: PathBuf,
    jobid: PathBuf,
    log: PathBuf,
    outcome: PathBuf,
}

impl Files {
    fn new(dir: &Path, key: &StageKey) -> Files {
        let spec = dir.join(format!("{key}.json"));
        Files {
            jobid: dir.join(format!("{key}.jobid")),
            log: dir.join(format!("{key}.log")),
            outcome: outcome_path(&spec),
            spec,
        }
    }
    fn remove_results(&self) {
        for p in [&self.jobid, &self.log, &self.outcome] {
            let _ = std::fs::remove_file(p);
        }
    }
    fn remove_all(&self) {
        self.remove_results();
        let _ = std::fs::remove_file(&self.spec);
    }
}

fn fail(message: String) -> Failure {
    Failure { message, log_tail: String::new(), kind: None }
}

impl Slurm {
    /// A job for this key still in flight from an earlier dvx (crashed or killed).
    fn adoptable(&self, files: &Files, name: &str) -> Option<String> {
        let id = std::fs::read_to_string(&files.jobid).ok()?.trim().to_string();
        let info = query(&id).ok()??.into_iter().next()?;
        (info.name == name && !is_terminal(&info.state)).then_some(id)
    }

    fn submit(&self, job: &Job<'_>, files: &Files, name: &str) -> Result<String, Failure> {
        let spec = job_spec(job);
        files.remove_results();
        let bytes = serde_json::to_vec_pretty(&spec).expect("job spec serialises");
        write_job_file(job.cache, &files.spec, &bytes).map_err(|e| fail(format!("cannot write the job spec: {e}")))?;
        let id = self.sbatch(job, name, &files.log, &files.spec, None).inspect_err(|_| files.remove_all())?;
        let _ = write_job_file(job.cache, &files.jobid, id.as_bytes());
        Ok(id)
    }

    /// Submit `dvx exec-stage SPEC` with the stage's resources (as an array
    /// job of the tasks `array`, `1,3,4`, when given); the job id. The job
    /// counts as in flight (cancelled on a signal) from then on.
    fn sbatch(&self, job: &Job<'_>, name: &str, log: &Path, spec: &Path, array: Option<&str>) -> Result<String, Failure> {
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={name}"),
            format!("--output={}", log.display()),
            format!("--chdir={}", job.pipeline.wdir.display()),
            "--export=ALL".to_string(),
        ];
        if let Some(tasks) = array {
            args.push(format!("--array={tasks}"));
        }
        if let Some(r) = &job.def.resources {
            args.extend(r.sbatch_args());
        }
        let wrap =
            format!("exec {} exec-stage {}", sh_quote(&self.exe.to_string_lossy()), sh_quote(&spec.to_string_lossy()));
        args.push(format!("--wrap={wrap}"));

        // Submitting under the lock of the jobs in flight, checking the
        // token first: a cancel either comes before (nothing is submitted)
        // or after (the job's wait sees it and cancels the job).
        let mut t = self.live();
        if let Err(f) = self.cancel.check() {
            return Err(Failure { message: format!("{} before the job was submitted", f.message), log_tail: String::new(), kind: Some(f.kind) });
        }
        tracing::debug!(stage = %job.def.name, ?args, "sbatch");
        let mut sbatch = Command::new("sbatch");
        if job.cache.is_shared() {
            // sbatch hands the job its umask through SLURM_UMASK (else it
            // copies ours): group members must be able to replace what the
            // job writes (its log, its outputs in the shared workspace).
            sbatch.env("SLURM_UMASK", "0002");
        }
        let out = sbatch.args(&args).output().map_err(|e| {
            fail(format!("cannot run `sbatch`: {e} (is Slurm installed on this machine and on PATH?)"))
        })?;
        if !out.status.success() {
            return Err(fail(format!("sbatch refused the job: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout.lines().next().and_then(|l| l.split(';').next()).map(str::trim).unwrap_or("");
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            // Submitted, perhaps, but not trackable: say what sbatch said.
            return Err(fail(format!("cannot read the job id from sbatch's output `{}`", stdout.trim())));
        }
        t.insert(id.to_string());
        Ok(id.to_string())
    }

    /// Wait until the job is over; its last state, or none if Slurm forgot it.
    fn wait(&self, job: &Job<'_>, id: &str) -> Result<Option<JobInfo>, Failure> {
        self.wait_all(job, id).map(|lines| lines.into_iter().next())
    }

    /// Wait until every task of the job is over; their last states (none
    /// if Slurm forgot the job).
    fn wait_all(&self, job: &Job<'_>, id: &str) -> Result<Vec<JobInfo>, Failure> {
        let mut last = String::new();
        let mut delay = Duration::from_millis(100);
        let mut failing_since: Option<Instant> = None;
        loop {
            // Sleep in slices, so a cancel is acted on within a tenth of a second.
            let woke = Instant::now() + delay;
            while !self.cancel.is_cancelled() && Instant::now() < woke {
                std::thread::sleep(Duration::from_millis(100).min(delay));
            }
            delay = (delay * 2).min(self.poll);
            if self.cancel.is_cancelled() {
                return Err(self.cancel_job(job, id));
            }
            match query(id) {
                Ok(Some(lines)) => {
                    failing_since = None;
                    let state = summary(&lines);
                    if state != last {
                        tracing::info!(stage = %job.def.name, job = id, state = %state, "slurm job");
                        (job.note)(&format!("job {id} {state}"));
                        last = state;
                    }
                    if lines.iter().all(|i| is_terminal(&i.state)) {
                        return Ok(lines);
                    }
                }
                Ok(None) => return Ok(Vec::new()),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    tracing::warn!(stage = %job.def.name, job = id, "cannot ask Slurm about the job: {e}");
                    if since.elapsed() > Duration::from_secs(600) {
                        return Err(fail(format!("lost track of slurm job {id}: {e}")));
                    }
                }
            }
        }
    }
}

/// A job's state in a word, or an array's as counts (`2 RUNNING, 1 COMPLETED`).
fn summary(lines: &[JobInfo]) -> String {
    if let [one] = lines {
        return one.state.clone();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines {
        *counts.entry(l.state.as_str()).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

impl Executor for Slurm {
    fn run(&self, job: &Job<'_>) -> Result<RunEntry, Failure> {
        let dir =
            job.cache.bucket_dir(Bucket::Jobs).map_err(|e| fail(format!("cannot create the jobs folder: {e}")))?;
        let files = Files::new(&dir, job.key);
        let name = job_name(&job.def.name, job.key);
        let id = match self.adoptable(&files, &name) {
            Some(id) => {
                (job.say)(&format!(
                    "slurm: stage `{}` is still running as job {id} from an earlier dvx; waiting for it",
                    job.def.name
                ));
                self.live().insert(id.clone());
                id
            }
            None => {
                let id = self.submit(job, &files, &name)?;
                (job.say)(&format!("slurm: stage `{}` submitted as job {id}", job.def.name));
                id
            }
        };
        (job.note)(&format!("job {id} submitted"));
        let waited = self.wait(job, &id);
        self.live().remove(&id);
        let info = waited?;
        let outcome: Option<JobOutcome> =
            std::fs::read(&files.outcome).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let state = info.as_ref().map(|i| i.state.as_str()).unwrap_or("");
        if let (Some(entry), "COMPLETED" | "") = (outcome.as_ref().and_then(|o| o.entry.clone()), state) {
            if &entry.key == job.key {
                files.remove_all();
                return Ok(entry);
            }
        }
        let mut message = match &info {
            Some(i) => {
                let mut m = format!("slurm job {id} {}", i.state);
                if !i.exit_code.is_empty() {
                    m.push_str(&format!(" (exit code {}", i.exit_code));
                    if !i.reason.is_empty() && i.reason != "None" {
                        m.push_str(&format!(", reason {}", i.reason));
                    }
                    m.push(')');
                }
                if !i.nodes.is_empty() && i.nodes != "(null)" {
                    m.push_str(&format!(" on {}", i.nodes));
                }
                m
            }
            None => format!("slurm job {id} is no longer known to Slurm"),
        };
        match outcome.as_ref().and_then(|o| o.error.as_deref()) {
            Some(e) => message.push_str(&format!(": {e}")),
            None if state == "COMPLETED" => {
                message.push_str(": the job left no outcome (did it run `dvx exec-stage`?)")
            }
            None => {}
        }
        message.push_str(&format!("; job log: {}", files.log.display()));
        let log_tail = match std::fs::read(&files.log) {
            Ok(bytes) => tail(&bytes, 20),
            Err(e) => format!(
                "(no job log at {}: {e}; is the cache folder visible from the compute node?)",
                files.log.display()
            ),
        };
        Err(Failure { message, log_tail, kind: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scontrol_show_job_lines() {
        let line = "JobId=12 JobName=dvx:train:0123456789ab UserId=root(0) GroupId=root(0) MCS_label=N/A \
                    Priority=1 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode \
                    Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=1:0 RunTime=00:00:01 \
                    NodeList=node7 BatchHost=node7 WorkDir=/shared/ws";
        let i = parse_show_job(line);
        assert_eq!(
            i,
            JobInfo {
                state: "FAILED".into(),
                reason: "NonZeroExitCode".into(),
                exit_code: "1:0".into(),
                name: "dvx:train:0123456789ab".into(),
                nodes: "node7".into(),
                task: String::new(),
            }
        );
        assert!(is_terminal(&i.state));
        assert!(!is_terminal("COMPLETING"));
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
