//! Where a stage executes. The scheduler decides *whether* a stage runs; an
//! [`Executor`] runs one stage key: "run this key with these inputs into this
//! folder, store what it made in the cache, and hand back the run-cache entry".
//!
//! - [`Local`] executes in this process ([`crate::execute`] then the store,
//!   both in `local.rs`).
//! - [`Slurm`] submits one `sbatch` job running the hidden `dvx exec-stage`
//!   on a compute node that sees the same cache and workspace (a shared
//!   filesystem); the job does exactly what [`Local`] does, and this process
//!   waits for it, so the dvx process stays the scheduler.
//!
//! Which one a stage uses, first match wins: `executor:` on the stage,
//! `--executor` on the command line, `executor:` of the stage's file (or of
//! the root pipeline), `executor` in dvx.toml, else local.

mod interrupt;
mod job;
pub(crate) mod local;
mod memo;
mod shard_job;
mod slurm;

use std::sync::Mutex;

use dvx_cache::{Cache, Hash, OutputKind, RunEntry, StageKey, StatCache};

use crate::spec::{ExecutorKind, Pipeline, StageDef};
use crate::Stage;
use local::Failure;

pub use job::{exec_job, JobError, JobOutcome, JobSpec};
pub use local::Local;
pub use memo::CacheMemo;
pub use interrupt::{listen, Interrupt, Interrupts};
pub use slurm::Slurm;

/// One stage key to execute, with everything an executor needs.
pub struct Job<'a> {
    /// The pipeline (for its file and working folder).
    pub pipeline: &'a Pipeline,
    /// The stage as resolved from the pipeline: deps, outs, params, resources.
    pub def: &'a StageDef,
    /// The kind's code that executes it.
    pub stage: &'a dyn Stage,
    /// The key it must produce.
    pub key: &'a StageKey,
    /// Its deps' path, kind and hash, as they went into the key.
    pub deps: &'a [(String, OutputKind, Hash)],
    /// The cache the outputs and the run-cache entry go to.
    pub cache: &'a Cache,
    /// The run's stat cache (local execution records output hashes in it).
    pub stat: &'a Mutex<StatCache>,
    /// Threads a local stage may use.
    pub threads: usize,
    /// Where a local stage reports how far it is.
    pub progress: &'a dyn crate::Progress,
    /// Called with a short progress note ("slurm job 12 RUNNING").
    pub note: &'a (dyn Fn(&str) + Sync),
    /// Called with a line worth printing (a job submitted).
    pub say: &'a (dyn Fn(&str) + Sync),
    /// The run's cancellation token.
    pub cancel: &'a crate::Cancel,
    /// The run's shared HTTP client, if its caller gave one.
    pub http: Option<&'a dyn crate::Http>,
}

/// Runs one stage key.
///
/// Contract: the caller holds the key's [`dvx_cache::KeyLock`] for the whole
/// call (an executor must not take it, nor let its job take it). On success
/// the outputs are stored in the cache, the run-cache entry for `job.key` is
/// written, and the entry is returned; the caller then restores the outputs
/// into the workspace (a no-op where they are already there) as for a cache
/// hit. A failure is never recorded in the run-cache.
pub trait Executor: Send + Sync {
    /// Execute `job`, blocking until it is done.
    fn run(&self, job: &Job<'_>) -> Result<RunEntry, Failure>;
}

/// Which executor a stage uses (see the module doc for the order).
pub fn resolve(def: &StageDef, cli: Option<ExecutorKind>, config: Option<ExecutorKind>) -> ExecutorKind {
    def.executor.or(cli).or(def.file_executor).or(config).unwrap_or(ExecutorKind::Local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(stage: Option<ExecutorKind>, file: Option<ExecutorKind>) -> StageDef {
        StageDef { executor: stage, file_executor: file, ..StageDef::of_kind("s", "cmd") }
    }

    #[test]
    fn stage_beats_command_line_beats_file_beats_config() {
        use ExecutorKind::*;
        assert_eq!(resolve(&def(None, None), None, None), Local);
        assert_eq!(resolve(&def(None, None), None, Some(Slurm)), Slurm);
        assert_eq!(resolve(&def(None, Some(Local)), None, Some(Slurm)), Local);
        assert_eq!(resolve(&def(None, Some(Local)), Some(Slurm), None), Slurm);
        assert_eq!(resolve(&def(Some(Local), Some(Slurm)), Some(Slurm), Some(Slurm)), Local);
    }
}
