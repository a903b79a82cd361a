//! Sharding a record-wise stage: the capability a kind opts into so that
//! `shards: N` can cut its one record input into N ranges, run the kind on
//! each range as its own unit (a process locally, a task of one Slurm array
//! job), and put the shards' outputs back together.
//!
//! The engine knows nothing of records: it asks the kind's [`RecordShards`]
//! (registered beside the kind, [`crate::Registry::register_shards`]) to
//! split the dep into part files, runs the ordinary `execute` on each part,
//! and asks it to merge the parts' outs and metrics. A kind may opt in only
//! when its output for each record depends on that record alone (no top-k,
//! no sampling, no record positions in its output), so the merged out has
//! the bytes one unsharded execution would write.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::stage::{Metrics, StageFailure};

/// How a record-wise kind is split into shards and put back together.
pub trait RecordShards: Send + Sync {
    /// Whether a stage with these params and this many deps and outs can be
    /// sharded; the error says why not (`top_k` needs every record). Checked
    /// when the pipeline loads.
    fn check(&self, params: &Value, deps: usize, outs: usize) -> Result<(), String>;

    /// Cut the records of `input` into `parts.len()` files, in order, by
    /// record count: part `i` of `n` gets records `[i·r/n, (i+1)·r/n)` of
    /// the `r`. Deterministic; returns the records in each part.
    fn split(&self, input: &Path, parts: &[PathBuf]) -> Result<Vec<usize>, StageFailure>;

    /// Write `out` from the shards' outputs for it, in shard order: the
    /// bytes one unsharded execution writes.
    fn merge(&self, parts: &[PathBuf], out: &Path) -> Result<(), StageFailure>;

    /// The stage's metrics from its shards' metrics, in shard order.
    fn merge_metrics(&self, parts: &[Metrics]) -> Metrics;
}
