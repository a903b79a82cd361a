//! A sharded stage on Slurm: the shards to execute go out as ONE array job
//! (`sbatch --array=1,3,4`), a task per shard, each running
//! `dvx exec-stage <key>.shards.json` (see `shard_job.rs`). Its files in
//! `jobs-v1/`: `<key>.shards.json` the spec, `<key>.shards.<i>.log` and
//! `<key>.shards.<i>.outcome.json` per task; removed when every task
//! succeeded, kept otherwise.

use dvx_cache::{Bucket, RunEntry};

use super::super::shard_job::{task_log, task_outcome, ShardJobSpec, ShardTask};
use super::{fail, job_name, job_spec, tail, write_job_file, Failure, Job, JobInfo, JobOutcome, Slurm};
use crate::shard::Unit;

impl Slurm {
    /// Execute the shards `todo` (indexes into `units`) as one array job and
    /// wait for it; one result per shard of `todo`, in order. A shard's
    /// entry is in the cache and its outs in its staging place when it succeeded.
    pub(crate) fn run_shards(&self, job: &Job<'_>, units: &[Unit], todo: &[usize]) -> Vec<Result<RunEntry, Failure>> {
        if todo.is_empty() {
            return Vec::new();
        }
        let all_fail = |f: Failure| todo.iter().map(|_| Err(f.clone())).collect();
        let dir = match job.cache.bucket_dir(Bucket::Jobs) {
            Ok(d) => d,
            Err(e) => return all_fail(fail(format!("cannot create the jobs folder: {e}"))),
        };
        let spec_path = dir.join(format!("{}.shards.json", job.key));
        let tasks: Vec<ShardTask> = todo
            .iter()
            .map(|&i| {
                let u = &units[i];
                ShardTask {
                    index: u.index,
                    records: u.records,
                    part: u.part.clone(),
                    outs: u.outs.clone(),
                    key: u.key.clone(),
                }
            })
            .collect();
        for t in &tasks {
            let _ = std::fs::remove_file(task_outcome(&spec_path, t.index));
            let _ = std::fs::remove_file(task_log(&spec_path, Some(t.index)));
        }
        let spec = ShardJobSpec { job: job_spec(job), tasks };
        let bytes = serde_json::to_vec_pretty(&spec).expect("shard job spec serialises");
        if let Err(e) = write_job_file(job.cache, &spec_path, &bytes) {
            return all_fail(fail(format!("cannot write the job spec: {e}")));
        }
        let array = todo.iter().map(|&i| units[i].index.to_string()).collect::<Vec<_>>().join(",");
        let name = job_name(&job.def.name, job.key);
        let id = match self.sbatch(job, &name, &task_log(&spec_path, None), &spec_path, Some(&array)) {
            Ok(id) => id,
            Err(f) => {
                let _ = std::fs::remove_file(&spec_path);
                return all_fail(f);
            }
        };
        (job.say)(&format!(
            "slurm: stage `{}` submitted as array job {id} ({} of {} shards)",
            job.def.name,
            todo.len(),
            units.len()
        ));
        let waited = self.wait_all(job, &id);
        self.live().remove(&id);
        let lines = match waited {
            Ok(l) => l,
            Err(f) => return all_fail(f),
        };
        let results: Vec<Result<RunEntry, Failure>> =
            todo.iter().map(|&i| task_result(&spec_path, &id, &units[i], &lines)).collect();
        if results.iter().all(Result::is_ok) {
            let _ = std::fs::remove_file(&spec_path);
            for &i in todo {
                let _ = std::fs::remove_file(task_outcome(&spec_path, units[i].index));
                let _ = std::fs::remove_file(task_log(&spec_path, Some(units[i].index)));
            }
        }
        results
    }
}

/// What task `unit.index` of array job `id` did: its outcome file, else
/// Slurm's last word on it and the tail of its log.
fn task_result(spec: &std::path::Path, id: &str, unit: &Unit, lines: &[JobInfo]) -> Result<RunEntry, Failure> {
    let outcome: Option<JobOutcome> =
        std::fs::read(task_outcome(spec, unit.index)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let info = lines.iter().find(|l| l.task == unit.index.to_string());
    let state = info.map(|i| i.state.as_str()).unwrap_or("");
    if let (Some(entry), "COMPLETED" | "") = (outcome.as_ref().and_then(|o| o.entry.clone()), state) {
        if entry.key == unit.key {
            return Ok(entry);
        }
    }
    let mut message = match info {
        Some(i) => format!("slurm job {id}_{} {} (exit code {})", unit.index, i.state, i.exit_code),
        None => format!("slurm job {id}_{} is no longer known to Slurm", unit.index),
    };
    match outcome.as_ref().and_then(|o| o.error.as_deref()) {
        Some(e) => message.push_str(&format!(": {e}")),
        None if state == "COMPLETED" => message.push_str(": the task left no outcome"),
        None => {}
    }
    let log = task_log(spec, Some(unit.index));
    message.push_str(&format!("; job log: {}", log.display()));
    let log_tail = std::fs::read(&log).map(|b| tail(&b, 20)).unwrap_or_default();
    Err(Failure { message, log_tail, kind: None })
}
