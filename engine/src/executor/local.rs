//! Executing in this process.

use dvx_cache::RunEntry;

use super::{Executor, Job};
use crate::exec::{self, Failure};

/// Runs stages in the dvx process: execute into the workspace, then store
/// the outputs and the run-cache entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Executor for Local {
    fn run(&self, job: &Job<'_>) -> Result<RunEntry, Failure> {
        let done = exec::execute(job.def, job.stage, &job.pipeline.wdir, job.threads)?;
        exec::store(job.cache, job.stat, job.def, &job.pipeline.wdir, job.key, done)
    }
}
