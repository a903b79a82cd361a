//! The job side of a sharded stage on Slurm: each task of the array job
//! runs `dvx exec-stage <key>.shards.json`, finds its shard by
//! `SLURM_ARRAY_TASK_ID`, checks the stage's key as any job does, checks
//! that its part still has the bytes its shard key was made of, then
//! executes the stage on the part and stores the shard under its key,
//! exactly as a local shard ([`crate::shard::execute_unit`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use dvx_cache::{hash_path, Cache, CacheOptions, RunEntry, StageKey, StatCache};
use serde::{Deserialize, Serialize};

use super::job::{check_spec, hostname, job_threads, write_job_file, JobError, JobOutcome, JobSpec};
use crate::shard::{self, Unit};
use crate::Registry;

/// What the tasks of a sharded stage's array job need
/// (`jobs-v1/<key>.shards.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardJobSpec {
    /// The stage, as for an unsharded job.
    pub job: JobSpec,
    /// The shards to execute; a task's `SLURM_ARRAY_TASK_ID` is its `index`.
    pub tasks: Vec<ShardTask>,
}

/// One shard to execute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardTask {
    /// The shard's index (and its array task id).
    pub index: usize,
    /// Records in its part.
    pub records: usize,
    /// Its part file (absolute, in the shared workspace's `.dvx/shards/`).
    pub part: PathBuf,
    /// Where its outs go (absolute).
    pub outs: Vec<PathBuf>,
    /// The shard key it must produce.
    pub key: StageKey,
}

/// Whether `spec` names a sharded stage's spec.
pub(crate) fn is_shard_spec(spec: &Path) -> bool {
    spec.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".shards.json"))
}

/// Where task `index` of the array job of `spec` writes its outcome.
pub(crate) fn task_outcome(spec: &Path, index: usize) -> PathBuf {
    let name = spec.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    spec.with_file_name(format!("{}.{index}.outcome.json", name.trim_end_matches(".json")))
}

/// Where task `index` of the array job of `spec` logs (`pattern`: as sbatch's `--output`, `%a` for the index).
pub(crate) fn task_log(spec: &Path, index: Option<usize>) -> PathBuf {
    let name = spec.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let at = index.map_or_else(|| "%a".to_string(), |i| i.to_string());
    spec.with_file_name(format!("{}.{at}.log", name.trim_end_matches(".json")))
}

/// Execute this task's shard, as `dvx exec-stage` in an array job.
pub(crate) fn exec_shard_job(
    spec_path: &Path,
    registry: &Registry,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Result<RunEntry, JobError> {
    let host = hostname();
    let bad = |message: String| JobError::BadSpec { path: spec_path.to_path_buf(), message };
    let text = std::fs::read(spec_path).map_err(|e| bad(e.to_string()))?;
    let spec: ShardJobSpec = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let index = std::env::var("SLURM_ARRAY_TASK_ID")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| bad("no SLURM_ARRAY_TASK_ID: a sharded stage's spec is run by a task of an array job".into()))?;
    let result = run_task(&spec, index, registry, &host, cancel, http);
    let outcome = match &result {
        Ok(entry) => JobOutcome { host: host.clone(), entry: Some(entry.clone()), error: None, log_tail: String::new() },
        Err(JobError::Stage { message, log_tail, .. }) => {
            JobOutcome { host: host.clone(), entry: None, error: Some(message.clone()), log_tail: log_tail.clone() }
        }
        Err(e) => JobOutcome { host: host.clone(), entry: None, error: Some(e.to_string()), log_tail: String::new() },
    };
    let bytes = serde_json::to_vec_pretty(&outcome).expect("outcome serialises");
    if let Ok(cache) = Cache::open(&spec.job.cache, CacheOptions { shared_group: spec.job.shared }) {
        if let Err(e) = write_job_file(&cache, &task_outcome(spec_path, index), &bytes) {
            eprintln!("dvx exec-stage: cannot write the task outcome: {e}");
        }
    }
    result
}

fn run_task(
    spec: &ShardJobSpec,
    index: usize,
    registry: &Registry,
    host: &str,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Result<RunEntry, JobError> {
    let setup = |message: String| JobError::Setup { stage: spec.job.stage.clone(), host: host.to_string(), message };
    let task = spec
        .tasks
        .iter()
        .find(|t| t.index == index)
        .ok_or_else(|| setup(format!("no shard {index} in the job spec")))?;
    let checked = check_spec(&spec.job, registry, host)?;
    let def = checked.def();
    let (_, part) = hash_path(&task.part, &mut StatCache::in_memory())
        .map_err(|e| setup(format!("cannot read shard {index}'s part here: {e}")))?;
    if checked.inputs().shard_key(&part) != task.key {
        return Err(setup(format!(
            "shard {index}'s part {} is not what {} cut: the workspace changed",
            task.part.display(),
            spec.job.submit_host
        )));
    }
    let unit =
        Unit { index, records: task.records, part: task.part.clone(), outs: task.outs.clone(), key: task.key.clone() };
    let entry = shard::execute_unit(
        &checked.cache,
        def,
        checked.stage.as_ref(),
        &checked.pipeline.wdir,
        &unit,
        job_threads(),
        cancel,
        http,
    )
    .map_err(|f| JobError::Stage {
        stage: spec.job.stage.clone(),
        host: host.to_string(),
        message: f.message,
        log_tail: f.log_tail,
    })?;
    if let Some(log) = entry.log.as_ref().and_then(|h| checked.cache.read_object(h).ok()) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&log);
        let _ = out.flush();
    }
    Ok(entry)
}
