//! Sharded stages (`shards: N`): a record-wise stage executed as N units.
//!
//! When a sharded stage must execute, its kind's [`RecordShards`] cuts the
//! one dep into N part files by record count (under
//! `.dvx/shards/<key>/in/<i>/`). Each part has its own key
//! ([`KeyInputs::shard_key`]: the stage's key inputs with the part's hash
//! for the dep's), so the run-cache remembers every shard on its own: a
//! shard whose key is cached is restored, the others execute — in parallel
//! here ([`run_local`]) or as one Slurm array job — and a failed shard is
//! the only one a re-run executes. When every shard is there, the kind
//! merges their outs in shard order into the stage's outs (the bytes of an
//! unsharded run) and their metrics; the stage is then stored under its
//! ordinary key, which holds no trace of `shards`, so the version is the
//! unsharded one's.
//!
//! The engine never reads a record: splitting and merging are the kind's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use dvx_cache::{hash_path, remove_path, Cache, LinkMode, OutputRef, RunEntry, StageKey, StatCache};
use serde::Serialize;

use crate::executor::local::{self, abs, tail, Executed, Failure};
use crate::key::KeyInputs;
use crate::plan::outputs_are_outs;
use crate::spec::StageDef;
use crate::{Metrics, NoProgress, RecordShards, Stage};

/// What happened to (or would happen to) one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardStatus {
    /// Executed in this run.
    Ran,
    /// Restored from the run-cache.
    Cached,
    /// Failed in this run.
    Failed,
    /// Planned: the run-cache holds it.
    Done,
    /// Planned: it must execute.
    Stale,
    /// Planned: it must execute; it failed in the last run here.
    #[serde(rename = "failed-last-run")]
    FailedLastRun,
}

/// One shard's outcome or plan, as `dvx run --json` and `dvx status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardResult {
    /// Its index, from 0.
    pub index: usize,
    /// Records in its range.
    pub records: usize,
    /// Its key.
    pub key: StageKey,
    /// What happened.
    pub status: ShardStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One shard to run: its part, where its outs go, its key.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub index: usize,
    pub records: usize,
    /// The part file (absolute).
    pub part: PathBuf,
    /// Where its outs go (absolute), one per kind out.
    pub outs: Vec<PathBuf>,
    pub key: StageKey,
}

/// A stage's shards, staged in `dir`.
pub(crate) struct Units {
    pub dir: PathBuf,
    pub units: Vec<Unit>,
}

impl Drop for Units {
    fn drop(&mut self) {
        // Parts are cut again on every run; finished shards live in the cache.
        let _ = remove_path(&self.dir);
    }
}

fn fail(message: String) -> Failure {
    Failure { message, log_tail: String::new(), kind: None }
}

/// The staging folder of a sharded stage's key: inside the workspace's
/// state folder, so Slurm jobs see it where they see the workspace.
pub(crate) fn staging_dir(state_dir: &Path, key: &StageKey) -> PathBuf {
    state_dir.join("shards").join(key.as_str())
}

/// Cut the dep of `def` into `n` parts under `dir` and key each one.
pub(crate) fn split(
    how: &dyn RecordShards,
    def: &StageDef,
    wdir: &Path,
    inputs: &KeyInputs<'_>,
    dir: PathBuf,
    n: usize,
) -> Result<Units, Failure> {
    let _ = remove_path(&dir);
    let dep = abs(wdir, &def.deps[0]);
    let file = dep.file_name().map(|f| f.to_os_string()).unwrap_or_else(|| "records.jsonl".into());
    let mut units = Units { dir, units: Vec::with_capacity(n) };
    let mut parts = Vec::with_capacity(n);
    for i in 0..n {
        let part = units.dir.join("in").join(i.to_string()).join(&file);
        std::fs::create_dir_all(part.parent().expect("a part has a folder"))
            .map_err(|e| fail(format!("cannot create {}: {e}", units.dir.display())))?;
        parts.push(part);
    }
    let counts = how
        .split(&dep, &parts)
        .map_err(|e| fail(format!("cannot split `{}` into {n} shards: {}", def.deps[0], e.detail())))?;
    let mut stat = StatCache::in_memory();
    for (i, (part, records)) in parts.into_iter().zip(counts).enumerate() {
        let (_, hash) = hash_path(&part, &mut stat).map_err(|e| fail(e.to_string()))?;
        let outs = def
            .kind_outs()
            .iter()
            .enumerate()
            .map(|(j, o)| {
                let name = Path::new(o).file_name().map(|f| f.to_os_string()).unwrap_or_else(|| "out".into());
                units.dir.join("out").join(i.to_string()).join(j.to_string()).join(name)
            })
            .collect();
        units.units.push(Unit { index: i, records, part, outs, key: inputs.shard_key(&hash) });
    }
    Ok(units)
}

/// The shards' plan, for `status` and dry runs: cut the parts (in a
/// scratch folder, removed after) and look each key up.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    how: &dyn RecordShards,
    def: &StageDef,
    n: usize,
    wdir: &Path,
    state_dir: &Path,
    inputs: &KeyInputs<'_>,
    cache: &Cache,
    failed: &[StageKey],
) -> Result<Vec<ShardResult>, Failure> {
    let scratch = state_dir.join("shards").join(format!("plan-{}-{}", std::process::id(), inputs.key().short()));
    let units = split(how, def, wdir, inputs, scratch, n)?;
    Ok(units
        .units
        .iter()
        .map(|u| {
            let status = if matches!(cache.get_run(&u.key), Ok(Some(_))) {
                ShardStatus::Done
            } else if failed.contains(&u.key) {
                ShardStatus::FailedLastRun
            } else {
                ShardStatus::Stale
            };
            ShardResult { index: u.index, records: u.records, key: u.key.clone(), status, error: None }
        })
        .collect())
}

/// Put a cached shard's outputs in its staging place; its run entry, or
/// none when the cache has no usable one.
pub(crate) fn restore_unit(cache: &Cache, def: &StageDef, unit: &Unit, link: LinkMode) -> Option<RunEntry> {
    let entry = cache.get_run(&unit.key).ok()??;
    let usable = outputs_are_outs(def, &entry.outputs)
        && entry.outputs.iter().zip(&unit.outs).all(|(o, dest)| cache.restore(o, dest, link).is_ok());
    usable.then_some(entry)
}

/// Execute one shard into its staging place and store it under its key.
/// The shard gets the run's token and HTTP client, as a whole stage does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn execute_unit(
    cache: &Cache,
    def: &StageDef,
    stage: &dyn Stage,
    wdir: &Path,
    unit: &Unit,
    threads: usize,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Result<RunEntry, Failure> {
    let mut d = def.clone();
    d.deps = vec![unit.part.display().to_string()];
    d.outs = unit.outs.iter().map(|o| o.display().to_string()).collect();
    d.metrics = Vec::new();
    // Each shard lists the memo keys it used, so gc keeps them while a version uses the stage.
    let memo = crate::executor::CacheMemo::new(cache, &def.kind);
    let services = local::Services { progress: &NoProgress, memo: &memo, cancel: cancel.clone(), http };
    let done = local::execute_with(&d, stage, wdir, threads, services)?;
    let refs: Vec<&Path> = unit.outs.iter().map(PathBuf::as_path).collect();
    let keep_log = |message: String| Failure { message, log_tail: tail(&done.log, 20), kind: None };
    let stored = cache
        .put_paths(&refs, &mut StatCache::in_memory(), dvx_cache::EscapingLinks::Refuse)
        .map_err(|e| keep_log(format!("cannot store the outputs of shard {}: {e}", unit.index)))?;
    // Named by the stage's outs: the trust rule for every run entry.
    let outputs = def
        .kind_outs()
        .iter()
        .zip(stored)
        .map(|(rel, (kind, hash))| OutputRef { path: rel.clone(), kind, hash })
        .collect();
    let log = if done.log.is_empty() { None } else { Some(cache.put_bytes(&done.log).map_err(|e| keep_log(e.to_string()))?) };
    let memo = cache.put_memo_keys(&def.kind, &memo.used()).map_err(|e| keep_log(e.to_string()))?;
    let entry = RunEntry {
        key: unit.key.clone(),
        kind: def.kind.clone(),
        stage: format!("{} shard {}", def.name, unit.index),
        outputs,
        metrics: done.metrics,
        log,
        seconds: done.seconds,
        memo,
    };
    cache.put_run(&entry).map_err(|e| keep_log(e.to_string()))?;
    Ok(entry)
}

#[allow(clippy::too_many_arguments)]
/// Execute `todo` (indexes into `units`) here, at most `threads` at once,
/// sharing the threads among them. One result per unit of `todo`, in order.
pub(crate) fn run_local(
    cache: &Cache,
    def: &StageDef,
    stage: &dyn Stage,
    wdir: &Path,
    units: &[Unit],
    todo: &[usize],
    threads: usize,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Vec<Result<RunEntry, Failure>> {
    let workers = threads.max(1).min(todo.len().max(1));
    let per = (threads / workers).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunEntry, Failure>>>> = Mutex::new(vec![None; todo.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&ui) = todo.get(k) else { break };
                let r = execute_unit(cache, def, stage, wdir, &units[ui], per, cancel, http);
                results.lock().expect("shard results lock")[k] = Some(r);
            });
        }
    });
    results.into_inner().expect("shard results lock").into_iter().map(|r| r.expect("every shard ran")).collect()
}

/// The memo keys the shards' runs used: the stage's run lists them all, so
/// gc keeps them while a version uses the stage. A list that cannot be read
/// protects nothing (warned): its entries fall back to age.
pub(crate) fn memo_keys_of(cache: &Cache, entries: &[RunEntry]) -> std::collections::BTreeSet<crate::MemoKey> {
    let mut keys = std::collections::BTreeSet::new();
    for list in entries.iter().filter_map(|e| e.memo.as_ref()) {
        match cache.memo_keys(list) {
            Ok((_, k)) => keys.extend(k),
            Err(e) => tracing::warn!("memo key list {}: {e}; its entries are kept by age only", list.short()),
        }
    }
    keys
}

/// Every shard is in its staging place: merge outs and metrics into the
/// stage's outs, as one execution of the whole stage would have left them.
pub(crate) fn merge(
    how: &dyn RecordShards,
    def: &StageDef,
    wdir: &Path,
    units: &[Unit],
    metrics: &[Metrics],
    log: Vec<u8>,
    started: Instant,
) -> Result<Executed, Failure> {
    for (j, out) in def.kind_outs().iter().enumerate() {
        let dest = abs(wdir, out);
        remove_path(&dest).map_err(|e| fail(format!("cannot remove old output: {e}")))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let parts: Vec<PathBuf> = units.iter().map(|u| u.outs[j].clone()).collect();
        how.merge(&parts, &dest).map_err(|e| fail(format!("cannot merge the shards into `{out}`: {}", e.detail())))?;
    }
    Ok(Executed {
        metrics: how.merge_metrics(metrics),
        log,
        seconds: started.elapsed().as_secs_f64(),
        memo_keys: Default::default(),
        kept: Vec::new(),
    })
}
