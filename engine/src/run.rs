//! The scheduler: walks the graph on tokio, in parallel where stages are
//! independent. Per stage it hashes the deps, plans (`crate::plan`: up to
//! date, restore from the run-cache, or execute — and why) and, unless it is
//! a dry run, acts on the plan: keeps, restores or executes, with the checks
//! that protect the workspace (outs dvx did not write, entries naming other
//! paths, another process running the same key).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dvx_cache::{
    hash_listed_folder, hash_path_locked, hash_path_reporting, hash_stated_path, Hash, KeyLock, OutputKind, OutputRef,
    StageKey, StatCache, VersionMeta,
};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::event::{Event, Observer};
use crate::executor::local::{abs, Failure};
use crate::executor::{self, Executor, Job};
use crate::graph::Graph;
use crate::key::KeyInputs;
use crate::plan::{self, outputs_are_outs, Decision, Facts, Lookup, Plan};
use crate::progress::HashingProgress;
use crate::shard::{self, ShardResult, ShardStatus};
use crate::spec::{ExecutorKind, Pipeline, StageDef};
use crate::state::{OwnedOuts, StageState, WorkspaceState};
use crate::stated::Stated;
use crate::version::{RecordedStage, VersionBody};
use crate::why::StaleReason;
use crate::workspace::Workspace;

mod schedule;
use crate::Registry;
use crate::{Metrics, Stage};

/// What happened to a stage in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Executed.
    Ran,
    /// Up to date, or restored from the run-cache.
    Cached,
    /// An upstream stage re-ran but produced the same bytes, so this stage did not run.
    Cutoff,
    /// Failed.
    Failed,
    /// Not run because an upstream stage failed, or the run stopped first.
    Skipped,
    /// Stopped part way because the run was cancelled (another stage
    /// failed, or dvx was interrupted); nothing of it was cached.
    Cancelled,
}

/// What a dry run (or `status`) would do with a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing: the workspace holds its current outputs.
    UpToDate,
    /// Restore outputs from the run-cache.
    Restore,
    /// Execute.
    Run,
}

/// One stage's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    /// Stage name.
    pub name: String,
    /// Status (for runs).
    pub status: Status,
    /// Planned action (for dry runs and status).
    #[serde(skip)]
    pub action: Action,
    /// Its key, when known.
    pub key: Option<StageKey>,
    /// Seconds spent.
    pub seconds: f64,
    /// Why it ran / would run.
    #[serde(skip)]
    pub reasons: Vec<StaleReason>,
    /// Failure message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of failure the stage reported, when it is worth saying
    /// (transient or bad input; a permanent failure goes without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::FailureKind>,
    /// Tail of the log when it failed.
    #[serde(skip)]
    pub log_tail: Option<String>,
    /// Outputs.
    #[serde(skip)]
    pub outputs: Vec<OutputRef>,
    /// Metrics.
    #[serde(skip)]
    pub metrics: Metrics,
    /// The kind.
    #[serde(skip)]
    pub kind: String,
    /// The stage's log object, when known (stages that ran or were restored).
    #[serde(skip)]
    pub log: Option<Hash>,
    /// Of a sharded stage that executed (or, planned, would): each shard.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardResult>,
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these stages (and what they need); empty = all.
    pub targets: Vec<String>,
    /// Execute these even when cached.
    pub force: Vec<String>,
    /// Execute everything.
    pub force_all: bool,
    /// Plan only.
    pub dry_run: bool,
    /// The thread budget (`-j`): stages in flight use at most this many
    /// compute threads together (see [`budget`]).
    pub jobs: usize,
    /// `--executor`: where stages run unless a stage names its own.
    pub executor: Option<ExecutorKind>,
    /// `--shards STAGE=N`: shard these stages for this run, whatever their
    /// `shards:` says. Like the executor, not part of any key or version.
    pub shards: Vec<(String, usize)>,
    /// `--keep-going`: when a stage fails, let the others run on. Without
    /// it the run stops early: stages in flight are asked to stop (their
    /// token trips) and no new stage starts.
    pub keep_going: bool,
    /// The run's cancellation token, handed to every stage. The engine
    /// trips it when a stage fails (unless `keep_going`); the caller may
    /// trip it too (the CLI does on SIGINT/SIGTERM).
    pub cancel: crate::Cancel,
    /// The HTTP client every stage of the run shares (the CLI gives
    /// dvx-stages-net's). Not part of any key. `None`: stages that need one fail, saying so.
    pub http: Option<Arc<dyn crate::Http>>,
}

/// The outcome of a run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The version written (none for dry runs and failed runs).
    pub version: Option<Hash>,
    /// Stages in topological order.
    pub stages: Vec<StageResult>,
    /// Why the run stopped early, when it did ("stage `x` failed",
    /// "interrupted by SIGINT").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl RunReport {
    /// Whether any stage failed or was cancelled.
    pub fn failed(&self) -> bool {
        self.stages.iter().any(|s| matches!(s.status, Status::Failed | Status::Cancelled))
    }

    /// The stages that were stopped part way.
    pub fn cancelled(&self) -> impl Iterator<Item = &StageResult> {
        self.stages.iter().filter(|s| s.status == Status::Cancelled)
    }
}

struct Shared {
    p: Arc<Pipeline>,
    graph: Graph,
    registry: Registry,
    ws: Workspace,
    stat: Mutex<StatCache>,
    state: Mutex<WorkspaceState>,
    owned: OwnedOuts,
    results: Mutex<Vec<Option<StageResult>>>,
    forced: Vec<bool>,
    /// Source hashes computed in this run (sources do not change during a run).
    sources: Mutex<std::collections::HashMap<String, (OutputKind, Hash)>>,
    /// What the source check and the pipeline's load read of the sources
    /// and outs, for the planner's first look at each (see [`crate::stated`]).
    stated: Stated,
    dry_run: bool,
    /// Where each stage executes.
    executors: Vec<ExecutorKind>,
    /// How many shards each stage is split into (`None`: not sharded).
    shards: Vec<Option<usize>>,
    /// The Slurm executor, when a selected stage uses it.
    slurm: Option<executor::Slurm>,
    /// Hears what happens.
    observer: Arc<dyn Observer>,
    /// The run's token (see [`RunOptions::cancel`]).
    cancel: crate::Cancel,
    /// Let other stages run on after a failure.
    keep_going: bool,
    /// Whether the tripped token kept a stage from starting.
    held_back: std::sync::atomic::AtomicBool,
    /// The shared HTTP client.
    http: Option<Arc<dyn crate::Http>>,
}

impl Shared {
    /// `f` of stage `si`'s result, read in place (not copied).
    fn with_result<R>(&self, si: usize, f: impl FnOnce(Option<&StageResult>) -> R) -> R {
        f(self.results.lock().expect("results lock")[si].as_ref())
    }

    fn hash_source(&self, rel: &str) -> std::result::Result<(OutputKind, Hash), String> {
        self.hash_source_for(rel, None)
    }

    /// [`Self::hash_source`] for a stage being planned: hashing a large dep
    /// the stat cache does not know shows as that stage's progress, told to
    /// `observer`.
    fn hash_source_for(
        &self,
        rel: &str,
        stage: Option<(&str, &dyn Observer)>,
    ) -> std::result::Result<(OutputKind, Hash), String> {
        if let Some(h) = self.sources.lock().expect("sources lock").get(rel) {
            return Ok(h.clone());
        }
        let path = abs(&self.p.wdir, rel);
        let progress = stage.map(|(stage, observer)| HashingProgress::new(stage, rel, observer));
        let report = |p| {
            if let Some(progress) = &progress {
                progress.report(p)
            }
        };
        let h = if let Some(listed) = self.stated.take_listed(&path) {
            hash_listed_folder(&path, &listed, &self.stat, &report)
        } else {
            match (self.stated.take(&path), &progress) {
                (Some(meta), _) => hash_stated_path(&path, &meta, &self.stat, &report),
                (None, Some(_)) => hash_path_reporting(&path, &self.stat, &report),
                (None, None) => hash_path_locked(&path, &self.stat),
            }
        }
        .map_err(|e| e.to_string())?;
        self.sources.lock().expect("sources lock").insert(rel.to_string(), h.clone());
        Ok(h)
    }

    fn hash_workspace(&self, rel: &str) -> std::result::Result<(OutputKind, Hash), String> {
        hash_path_locked(&abs(&self.p.wdir, rel), &self.stat).map_err(|e| e.to_string())
    }

    /// The first of `outputs` that the workspace lacks or holds with other
    /// bytes. `planning`: the first look at these paths in the run, before
    /// their stage acted, so what the load read of them may stand in for a
    /// stat; anything later states them afresh.
    fn mismatch(&self, outputs: &[OutputRef], planning: bool) -> Option<StaleReason> {
        for o in outputs {
            let path = abs(&self.p.wdir, &o.path);
            let hashed = match self.stated.take(&path).filter(|_| planning) {
                Some(meta) => hash_stated_path(&path, &meta, &self.stat, &|_| {}).map_err(|e| e.to_string()),
                None => self.hash_workspace(&o.path),
            };
            match hashed {
                Ok((k, h)) if k == o.kind && h == o.hash => {}
                // Told apart only when it is not there as it was: one stat less per out on a no-op.
                _ if std::fs::symlink_metadata(abs(&self.p.wdir, &o.path)).is_err() => {
                    return Some(StaleReason::OutputMissing { path: o.path.clone() })
                }
                _ => return Some(StaleReason::OutputModified { path: o.path.clone() }),
            }
        }
        None
    }
}

impl Lookup for Shared {
    fn workspace_mismatch(&self, outputs: &[OutputRef]) -> Option<StaleReason> {
        self.mismatch(outputs, true)
    }

    fn run_entry(&self, key: &StageKey) -> dvx_cache::Result<Option<dvx_cache::RunEntry>> {
        self.ws.cache.get_run(key)
    }
}

impl Shared {
    /// Before a version names them: make the active cache hold every output
    /// of the run, with gc held off. The workspace has each with the right
    /// bytes (checked or restored in this run), so what a new or gc'd cache
    /// lacks is stored from there, with a run entry for its stage's key — no
    /// stage re-runs. Pinned by this run's lease from then on.
    fn settle_outputs(&self, results: &[StageResult]) -> Result<()> {
        let all: Vec<(usize, &OutputRef)> =
            results.iter().enumerate().flat_map(|(ri, r)| r.outputs.iter().map(move |o| (ri, o))).collect();
        let refs: Vec<OutputRef> = all.iter().map(|(_, o)| (*o).clone()).collect();
        let missing = self.ws.cache.missing(&refs)?;
        let mut stages: Vec<usize> = missing.iter().map(|&i| all[i].0).collect();
        stages.dedup();
        for ri in stages {
            let r = &results[ri];
            tracing::info!(stage = %r.name, "outputs are not in the active cache; storing them from the workspace");
            self.store_workspace(&r.outputs).map_err(|e| {
                EngineError::Other(format!("cannot store the outputs of `{}` in the cache: {e}", r.name))
            })?;
            let Some(key) = &r.key else { continue };
            if !matches!(self.ws.cache.get_run(key), Ok(Some(_))) {
                let entry = dvx_cache::RunEntry {
                    key: key.clone(),
                    kind: r.kind.clone(),
                    stage: r.name.clone(),
                    outputs: r.outputs.clone(),
                    metrics: r.metrics.clone(),
                    // A log is only named when this cache has it.
                    log: r.log.clone().filter(|h| self.ws.cache.has_object(h)),
                    memo: None,
                    seconds: 0.0,
                };
                if let Err(e) = self.ws.cache.put_run(&entry) {
                    tracing::warn!(stage = %r.name, "cannot record the run entry ({e})");
                }
            }
        }
        Ok(())
    }

    /// Store workspace outputs whose bytes are known to match `outputs`;
    /// fails if they changed meanwhile.
    fn store_workspace(&self, outputs: &[OutputRef]) -> dvx_cache::Result<()> {
        let paths: Vec<PathBuf> = outputs.iter().map(|o| abs(&self.p.wdir, &o.path)).collect();
        let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
        let stored = {
            let mut stat = self.stat.lock().expect("stat lock");
            self.ws.cache.put_paths(&refs, &mut stat, dvx_cache::EscapingLinks::Follow)?
        };
        for (o, (kind, hash)) in outputs.iter().zip(stored) {
            if kind != o.kind || hash != o.hash {
                return Err(dvx_cache::CacheError::BadRecord {
                    path: abs(&self.p.wdir, &o.path),
                    message: "changed while it was being stored".into(),
                });
            }
        }
        Ok(())
    }

    /// A declared out that exists but that dvx did not write and cannot
    /// restore: executing would delete it for good, so refuse, naming it.
    /// Otherwise claim the outs as dvx's before anything writes them.
    fn unknown_outs(&self, def: &StageDef, prev: Option<&StageState>) -> Option<Failure> {
        for out in &def.outs {
            if std::fs::symlink_metadata(abs(&self.p.wdir, out)).is_err() || self.owned.contains(out) {
                continue;
            }
            if prev.is_some_and(|p| p.outputs.iter().any(|o| &o.path == out)) {
                continue;
            }
            let in_cache = self.hash_workspace(out).ok().is_some_and(|(kind, hash)| {
                let o = OutputRef { path: out.clone(), kind, hash };
                self.ws.cache.missing(&[o]).is_ok_and(|m| m.is_empty())
            });
            if !in_cache {
                return Some(Failure {
                    message: format!(
                        "out `{out}` already exists and dvx did not write it (no copy is in the cache); running \
                         `{}` would delete it. Move it away, or delete it yourself if it is not needed",
                        def.name
                    ),
                    log_tail: String::new(),
                    kind: None,
                });
            }
        }
        self.owned.claim(&def.outs).err().map(|e| Failure {
            message: format!("cannot record the outs of `{}` in {}: {e}", def.name, self.ws.state_dir.display()),
            log_tail: String::new(),
            kind: None,
        })
    }
}

/// Check that every dep that no stage produces exists and is a file or a
/// folder, pointing at it if not. This runs before any source is opened:
/// reading a FIFO blocks and a device like `/dev/zero` never ends.
pub fn check_sources(p: &Pipeline, graph: &Graph) -> Result<()> {
    checked_sources(p, graph).map(drop)
}

/// What the source check read of a source: a folder is listed without
/// being stated (the planner's walk of it is done here), anything else
/// (or a folder that cannot be listed) is stated.
enum Looked {
    Listed(Option<dvx_cache::FolderListing>),
    Stated(std::fs::Metadata),
}

/// [`check_sources`], also handing on what it read of each source (by
/// absolute path) so that the planner does not state or list it again.
fn checked_sources(p: &Pipeline, graph: &Graph) -> Result<Stated> {
    let sources: Vec<(usize, usize)> = (0..p.stages.len())
        .flat_map(|si| (0..p.stages[si].deps.len()).map(move |di| (si, di)))
        .filter(|&(si, di)| graph.producers[si][di].is_none())
        .collect();
    let looked = crate::par::map_in_order(&sources, |&(si, di)| {
        let path = abs(&p.wdir, &p.stages[si].deps[di]);
        match dvx_cache::list_folder(&path) {
            Ok(listed) => Ok((path, Looked::Listed(listed))),
            // Not a folder (or not one this process may open): as before.
            Err(_) => std::fs::metadata(&path).map(|m| (path, Looked::Stated(m))),
        }
    });
    let stated = Stated::default();
    let (mut metas, mut listed) = (Vec::new(), Vec::new());
    for (&(si, di), looked) in sources.iter().zip(looked) {
        let meta = looked.as_ref().map(|(path, l)| match l {
            Looked::Stated(m) => (path, Some(m)),
            Looked::Listed(_) => (path, None),
        });
        let (s, d) = (&p.stages[si], &p.stages[si].deps[di]);
        if let Some(what) = meta.as_ref().ok().and_then(|(_, m)| m.and_then(crate::spec::special_file)) {
            return Err(p
                .error_at(
                    &s.origin,
                    s.origin.deps[di],
                    format!("dep `{d}` of stage `{}` is {what}, not a file or folder", s.name),
                    what.trim_start_matches("a "),
                )
                .with_help("dvx hashes every source dep; reading this one would block or never end")
                .into());
        }
        let Ok(_) = meta else {
            let outs = p.stages.iter().flat_map(|s| s.outs.iter().map(String::as_str));
            let mut err = p.error_at(
                &s.origin,
                s.origin.deps[di],
                format!("dep `{d}` of stage `{}` does not exist and no stage produces it", s.name),
                "not found",
            );
            if let Some(best) = crate::spec::did_you_mean(d, outs) {
                err = err.with_help(format!("did you mean `{best}`?"));
            }
            return Err(err.into());
        };
        match looked {
            Ok((path, Looked::Stated(m))) => metas.push((path, m)),
            // A folder whose walk failed: the planner walks it again and says why.
            Ok((path, Looked::Listed(Some(l)))) => listed.push((path, l)),
            _ => {}
        }
    }
    stated.extend(metas);
    stated.extend_listed(listed);
    Ok(stated)
}

/// Run (or, with `dry_run`, plan) a pipeline, telling `observer` what happens.
pub fn run(
    p: Arc<Pipeline>,
    registry: Registry,
    ws: Workspace,
    opts: RunOptions,
    observer: Arc<dyn Observer>,
) -> Result<RunReport> {
    let t0 = std::time::Instant::now();
    let graph = Graph::build(&p)?;
    // What the load and the source check read is this run's first look at
    // the outs and sources: the planner starts from it.
    let stated = p.stated_outs.take_all();
    stated.absorb(checked_sources(&p, &graph)?);
    tracing::debug!(elapsed = ?t0.elapsed(), "graph built");
    let mut target_idx = Vec::new();
    for t in &opts.targets {
        match p.stages.iter().position(|s| &s.name == t) {
            Some(i) => target_idx.push(i),
            None => return Err(unknown_stage(&p, t)),
        }
    }
    let mut forced = vec![opts.force_all; p.stages.len()];
    for f in &opts.force {
        match p.stages.iter().position(|s| &s.name == f) {
            Some(i) => forced[i] = true,
            None => return Err(unknown_stage(&p, f)),
        }
    }
    let selected = if target_idx.is_empty() { graph.order.clone() } else { graph.closure(&target_idx) };
    let n = p.stages.len();
    let jobs = opts.jobs.max(1);
    let executors: Vec<ExecutorKind> =
        p.stages.iter().map(|s| executor::resolve(s, opts.executor, ws.executor)).collect();
    let on_slurm = selected.iter().filter(|&&i| executors[i] == ExecutorKind::Slurm).count();
    let slurm = (on_slurm > 0 && !opts.dry_run).then(|| {
        if !ws.cache.is_shared() {
            tracing::warn!(
                "{on_slurm} stage(s) may run as Slurm jobs but the cache {} is not in shared mode: jobs on compute \
                 nodes need a cache on a shared filesystem that they can write (set `shared = \"group\"` and \
                 `cache = \"/shared/path\"` in dvx.toml)",
                ws.cache.root().display()
            );
        }
        executor::Slurm::new(opts.cancel.clone())
    });
    let shards = shard_counts(&p, &registry, &opts.shards)?;
    let mut ws = ws;
    if !opts.dry_run {
        // Everything this run restores, stores or writes stays alive against a concurrent gc.
        ws.cache = ws.cache.with_lease()?;
    }
    let (stat, state) = crate::prefetch::take(&ws.state_dir);
    let sh = Arc::new(Shared {
        stat: Mutex::new(stat),
        state: Mutex::new(state),
        owned: OwnedOuts::load(&ws.state_dir),
        results: Mutex::new(vec![None; n]),
        p: p.clone(),
        graph,
        registry,
        ws,
        forced,
        sources: Mutex::new(Default::default()),
        stated,
        dry_run: opts.dry_run,
        executors,
        shards,
        slurm,
        observer: observer.clone(),
        cancel: opts.cancel.clone(),
        keep_going: opts.keep_going,
        held_back: Default::default(),
        http: opts.http.clone(),
    });

    // Stages are planned in batches, one at a time per core (within the
    // budget), beside the stages acting.
    let planners = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(jobs.max(2) + planners)
        .enable_all()
        .build()
        .map_err(|e| EngineError::Other(format!("cannot start the scheduler: {e}")))?;
    tracing::debug!(elapsed = ?t0.elapsed(), "state loaded");
    observer.event(Event::Started { stages: selected.len() });
    rt.block_on(schedule::schedule(sh.clone(), &selected, jobs, planners));
    tracing::debug!(elapsed = ?t0.elapsed(), "stages done");
    observer.event(Event::StagesDone);

    let results: Vec<StageResult> = {
        let mut r = sh.results.lock().expect("results lock");
        // Taken, not copied: nothing reads them from there after the schedule.
        selected.iter().map(|&i| r[i].take().expect("every selected stage has a result")).collect()
    };
    let mut version = None;
    // A stopped run has stages that did not run: it is no version. It is
    // reported as stopped when that stopped something.
    let stopped = sh.cancel.reason();
    if !opts.dry_run {
        let failed = results.iter().any(|r| matches!(r.status, Status::Failed | Status::Cancelled));
        if !failed && stopped.is_none() {
            version = Some(write_version(&sh, &selected, &results)?);
            tracing::debug!(elapsed = ?t0.elapsed(), "version written");
        }
        let cached = results.iter().filter(|r| matches!(r.status, Status::Cached | Status::Cutoff)).count();
        let mut state = sh.state.lock().expect("state lock");
        state.last_hit_rate = Some(if results.is_empty() { 1.0 } else { cached as f64 / results.len() as f64 });
        if let Some(v) = &version {
            state.last_version.insert(p.file.display().to_string(), v.clone());
            // So a gc from any workspace of this cache keeps it.
            let wdir = p.wdir.canonicalize().unwrap_or_else(|_| p.wdir.clone());
            if let Err(e) = sh.ws.cache.register_workspace(&wdir, v) {
                tracing::warn!("cannot register this workspace with the cache: {e}");
            }
        }
        // The run made the workspace follow the pipeline as written.
        state.checked_out = None;
        remember_failures(&mut state, &results);
        // A full workspace disk must not hide which stage failed and why:
        // without the state the next run re-checks outputs, nothing worse.
        if let Err(e) = state.save() {
            tracing::warn!("cannot save workspace state in {}: {e}", sh.ws.state_dir.display());
        }
        let mut stat = sh.stat.lock().expect("stat lock");
        tracing::debug!(files = stat.files_hashed, "file contents read for hashing");
        match stat.save() {
            // The file of an earlier dvx, not read: its files were hashed again once.
            Ok(true) => drop(std::fs::remove_file(sh.ws.state_dir.join(crate::prefetch::OLD_STAT_FILE))),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot save the stat cache: {e}"),
        }
        tracing::debug!(elapsed = ?t0.elapsed(), "state saved");
    }
    let stopped_any =
        sh.held_back.load(std::sync::atomic::Ordering::SeqCst) || results.iter().any(|r| r.status == Status::Cancelled);
    free_in_background(&sh);
    Ok(RunReport { version, stages: results, stopped: stopped.filter(|_| stopped_any) })
}

/// Hand the run's big tables (a stat cache entry per file, a state and a
/// result per stage) to another thread to free: at 10,000 stages that is
/// 100 ms of `free` that nothing needs to wait for.
fn free_in_background(sh: &Shared) {
    let stat = std::mem::take(&mut *sh.stat.lock().expect("stat lock"));
    let state = std::mem::take(&mut *sh.state.lock().expect("state lock"));
    let results = std::mem::take(&mut *sh.results.lock().expect("results lock"));
    let _ = std::thread::Builder::new().name("dvx-free".into()).spawn(move || drop((stat, state, results)));
}

/// Remember which stages failed (and forget those that now succeeded), so
/// `status` can say `failed last run` rather than `never run`.
fn remember_failures(state: &mut WorkspaceState, results: &[StageResult]) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for r in results {
        match (r.status, &r.error) {
            (Status::Failed, Some(message)) => {
                let shards =
                    r.shards.iter().filter(|s| s.status == ShardStatus::Failed).map(|s| s.key.clone()).collect();
                let f = crate::state::FailedRun { key: r.key.clone(), message: message.clone(), at: now, shards };
                state.failed.insert(r.name.clone(), f);
            }
            (Status::Ran | Status::Cached | Status::Cutoff, _) => {
                state.failed.remove(&r.name);
            }
            _ => {}
        }
    }
}

/// Each stage's shard count: its `shards:`, or what `--shards` says, checked
/// as the loader checks `shards:`.
fn shard_counts(p: &Pipeline, registry: &Registry, overrides: &[(String, usize)]) -> Result<Vec<Option<usize>>> {
    let mut counts: Vec<Option<usize>> = p.stages.iter().map(|s| s.shards).collect();
    for (name, n) in overrides {
        let Some(i) = p.stages.iter().position(|s| &s.name == name) else { return Err(unknown_stage(p, name)) };
        let def = &p.stages[i];
        let refuse = |why: String| EngineError::Other(format!("--shards {name}={n}: {why}"));
        if *n == 0 {
            return Err(refuse("a stage is split into at least 1 shard".into()));
        }
        let Some(how) = registry.shards(&def.kind) else {
            let able: Vec<&str> = registry.names().filter(|k| registry.shards(k).is_some()).collect();
            return Err(refuse(format!(
                "stage `{name}` ({}) cannot be sharded; only record-wise kinds can: {}",
                def.kind,
                able.join(", ")
            )));
        };
        how.check(&def.params, def.deps.len(), def.kind_outs().len())
            .map_err(|why| refuse(format!("stage `{name}` ({}) cannot be sharded: {why}", def.kind)))?;
        if !def.metrics.is_empty() {
            return Err(refuse(format!("stage `{name}` has `metrics` files, which a sharded stage cannot have")));
        }
        counts[i] = Some(*n);
    }
    Ok(counts)
}

fn unknown_stage(p: &Pipeline, name: &str) -> EngineError {
    let best = crate::spec::did_you_mean(name, p.stages.iter().map(|s| s.name.as_str()));
    EngineError::Other(match best {
        Some(b) => format!("no stage `{name}` in {} (did you mean `{b}`?)", p.file.display()),
        None => format!("no stage `{name}` in {}", p.file.display()),
    })
}

fn blank(name: &str, status: Status, action: Action) -> StageResult {
    StageResult {
        name: name.to_string(),
        status,
        action,
        key: None,
        seconds: 0.0,
        reasons: Vec::new(),
        error: None,
        error_kind: None,
        log_tail: None,
        outputs: Vec::new(),
        metrics: Metrics::new(),
        kind: String::new(),
        log: None,
        shards: Vec::new(),
    }
}

/// A stage planned that needs more than its plan: a restore or a run. It
/// waits for the thread budget, then [`act_planned`] carries it out.
struct Planned {
    si: usize,
    stage: Arc<dyn Stage>,
    prev: Option<Arc<StageState>>,
    deps: Vec<(String, OutputKind, Hash)>,
    params: serde_json::Value,
    fingerprint: Option<serde_json::Value>,
    plan: Plan,
    hit_status: Status,
    /// Whether its `start` was already told (it hashed a large dep while planned).
    started: bool,
}

/// What planning a stage comes to.
#[allow(clippy::large_enum_variant)] // one a stage, moved once
enum Step {
    /// Its result, with nothing more to do: up to date, planned in a dry
    /// run, skipped, or failed before anything was done.
    Done(StageResult),
    /// A restore or a run to do.
    Act(Box<Planned>),
}

/// Plan one stage: skip it when an upstream failed or the run is stopping,
/// hash its deps, make its key and decide. Runs on a blocking thread;
/// `observer` hears its progress (hashing a large dep).
fn plan_stage(sh: &Shared, si: usize, observer: &dyn Observer) -> Step {
    let def = &sh.p.stages[si];
    let stage = sh.registry.get(&def.kind).expect("kinds are checked at load").clone();
    // What planning needs of the upstream results, read in place: the
    // first that failed or did not run, those that (would) produce new
    // outputs in this run, and whether any ran.
    let (bad, upstream_changed, upstream_ran) = {
        let results = sh.results.lock().expect("results lock");
        let ups = sh.graph.upstream[si].iter().filter_map(|&u| results[u].as_ref());
        let (mut bad, mut changed, mut ran) = (None, Vec::new(), false);
        for u in ups {
            if bad.is_none() && matches!(u.status, Status::Failed | Status::Skipped | Status::Cancelled) {
                bad = Some((u.name.clone(), u.status));
            }
            if if sh.dry_run { u.action == Action::Run } else { u.status == Status::Ran } {
                changed.push(u.name.clone());
            }
            ran |= u.status == Status::Ran;
        }
        (bad, changed, ran)
    };
    if let Some((name, status)) = bad {
        let mut r = blank(&def.name, Status::Skipped, Action::Run);
        let what = match status {
            Status::Failed => "failed",
            Status::Cancelled => "was cancelled",
            _ => "was skipped",
        };
        r.error = Some(format!("upstream {name} {what}"));
        return Step::Done(r);
    }
    if let Some(why) = sh.cancel.reason().filter(|_| !sh.dry_run) {
        let mut r = blank(&def.name, Status::Skipped, Action::Run);
        r.error = Some(format!("not started: {why}"));
        sh.held_back.store(true, std::sync::atomic::Ordering::SeqCst);
        return Step::Done(r);
    }
    let prev = sh.state.lock().expect("state lock").stages.get(&def.name).cloned();

    // Hash the deps: a produced dep takes its producer's output hash.
    let mut deps: Vec<(String, OutputKind, Hash)> = Vec::with_capacity(def.deps.len());
    let mut producer_names = Vec::with_capacity(def.deps.len());
    let mut unknown_upstream = false;
    for (di, d) in def.deps.iter().enumerate() {
        let producer = sh.graph.producers[si][di];
        producer_names.push(producer.map(|pr| sh.p.stages[pr.stage].name.clone()));
        let known = match producer {
            Some(pr) if pr.exact => sh.with_result(pr.stage, |up| {
                up.expect("upstream done").outputs.get(pr.out).map(|o| (o.kind, o.hash.clone()))
            }),
            Some(pr) if sh.dry_run && sh.with_result(pr.stage, |u| u.is_some_and(|u| u.action == Action::Run)) => None,
            None => match sh.hash_source_for(d, Some((&def.name, observer))) {
                Ok(x) => Some(x),
                Err(e) => {
                    let mut r = blank(&def.name, Status::Failed, Action::Run);
                    r.error = Some(format!("cannot read dep `{d}`: {e}"));
                    return Step::Done(r);
                }
            },
            _ => match sh.hash_workspace(d) {
                Ok(x) => Some(x),
                Err(e) if producer.is_none() => {
                    let mut r = blank(&def.name, Status::Failed, Action::Run);
                    r.error = Some(format!("cannot read dep `{d}`: {e}"));
                    return Step::Done(r);
                }
                Err(_) => None,
            },
        };
        match known {
            Some((k, h)) => deps.push((d.clone(), k, h)),
            None => {
                // Only in dry runs: the upstream would run, so this hash is not known yet.
                unknown_upstream = true;
                let old = prev.as_ref().and_then(|p| p.deps.iter().find(|x| &x.0 == d).cloned());
                deps.push(old.unwrap_or((d.clone(), OutputKind::File, Hash::of_bytes(b""))));
            }
        }
    }

    let fingerprint = match crate::key::fingerprint(&sh.p.wdir, def, stage.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            let mut r = blank(&def.name, Status::Failed, Action::Run);
            r.error = Some(format!("cannot fingerprint: {e}"));
            r.error_kind = e.kind.label().map(|_| e.kind);
            return Step::Done(r);
        }
    };
    let params = match crate::key::normalised_params(def, stage.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            let mut r = blank(&def.name, Status::Failed, Action::Run);
            r.error = Some(e.message);
            r.error_kind = e.kind.label().map(|_| e.kind);
            return Step::Done(r);
        }
    };
    let inputs = KeyInputs::for_stage(def, stage.version(), &params, &deps, fingerprint.as_ref());
    let failed = sh.state.lock().expect("state lock").failed.get(&def.name).map(|f| f.message.clone());
    let facts = Facts {
        def,
        prev: prev.as_deref(),
        inputs: &inputs,
        upstream_changed: &upstream_changed,
        producers: &producer_names,
        forced: sh.forced[si],
        key_known: !unknown_upstream,
        failed: failed.as_deref(),
    };
    let mut plan = plan::plan(sh, &facts);
    let hit_status = if upstream_ran { Status::Cutoff } else { Status::Cached };
    // A real run has every dep hash unless a dep inside an upstream's
    // folder out is missing; such a stage is reported, not run.
    if sh.dry_run || !plan.key_known {
        // Only for showing: how much each changed source moved.
        crate::why::size_changes(&mut plan.reasons, &sh.ws.cache, &sh.p.wdir);
        let shards = match (&plan.decision, sh.shards[si], sh.registry.shards(&def.kind)) {
            (Decision::Run, Some(n), Some(how)) if plan.key_known => {
                let failed = sh.state.lock().expect("state lock").failed.get(&def.name).map(|f| f.shards.clone());
                let (wdir, state_dir) = (&sh.p.wdir, &sh.ws.state_dir);
                shard::plan(how.as_ref(), def, n, wdir, state_dir, &inputs, &sh.ws.cache, &failed.unwrap_or_default())
                    .unwrap_or_else(|f| {
                        tracing::warn!(stage = %def.name, "cannot plan its shards: {}", f.message);
                        Vec::new()
                    })
            }
            _ => Vec::new(),
        };
        let mut r = planned(def, plan, hit_status);
        r.shards = shards;
        return Step::Done(r);
    }
    if let Decision::UpToDate { outputs, metrics } = plan.decision {
        // Whether the active cache holds them too is settled once, for all
        // stages, before the version is written (`Shared::settle_outputs`).
        let mut r = blank(&def.name, hit_status, Action::UpToDate);
        r.kind = def.kind.clone();
        r.key = Some(plan.key);
        r.outputs = outputs;
        r.metrics = metrics;
        return Step::Done(r);
    }
    Step::Act(Box::new(Planned { si, stage, prev, deps, params, fingerprint, plan, hit_status, started: false }))
}

/// Carry out a planned restore or run, unless the run is stopping: then
/// the stage is not started, as one not planned yet would not be.
fn act_planned(sh: &Shared, p: Planned, threads: usize) -> StageResult {
    let def = &sh.p.stages[p.si];
    if let Some(why) = sh.cancel.reason() {
        let mut r = blank(&def.name, Status::Skipped, Action::Run);
        r.error = Some(format!("not started: {why}"));
        sh.held_back.store(true, std::sync::atomic::Ordering::SeqCst);
        return r;
    }
    let inputs = KeyInputs::for_stage(def, p.stage.version(), &p.params, &p.deps, p.fingerprint.as_ref());
    act(sh, p.si, p.stage.as_ref(), &inputs, p.prev.as_deref(), p.plan, p.hit_status, threads)
}

/// A stage's result as planned, for dry runs and `status`.
fn planned(def: &StageDef, plan: Plan, hit_status: Status) -> StageResult {
    let mut r = blank(&def.name, hit_status, plan.decision.action());
    r.kind = def.kind.clone();
    r.key = plan.key_known.then_some(plan.key);
    r.reasons = plan.decision.shown_reasons(&plan.reasons);
    match plan.decision {
        Decision::UpToDate { outputs, metrics } => {
            r.outputs = outputs;
            r.metrics = metrics;
        }
        Decision::Restore { entry, .. } => r.outputs = entry.outputs,
        Decision::Run => {}
    }
    r
}

/// Carry out a stage's plan: keep its outputs (storing them in the active
/// cache if it lacks them), restore them, or execute it. A restore that
/// cannot be done falls back to executing.
#[allow(clippy::too_many_arguments)]
fn act(
    sh: &Shared,
    si: usize,
    stage: &dyn Stage,
    inputs: &KeyInputs<'_>,
    prev: Option<&StageState>,
    plan: Plan,
    hit_status: Status,
    threads: usize,
) -> StageResult {
    let def = &sh.p.stages[si];
    let Plan { key, reasons, decision, .. } = plan;
    let mut result = blank(&def.name, hit_status, Action::UpToDate);
    result.kind = def.kind.clone();
    result.key = Some(key.clone());

    if let Decision::UpToDate { outputs, metrics } = decision {
        // `plan_stage` reports these itself, with nothing to do.
        result.outputs = outputs;
        result.metrics = metrics;
        return result;
    }
    if let Decision::Restore { entry, .. } = &decision {
        result.action = decision.action();
        result.reasons = decision.shown_reasons(&reasons);
        if let Some(f) = sh.unknown_outs(def, prev) {
            return failed(result, f);
        }
        match restore(sh, &entry.outputs) {
            Ok(()) => {
                tracing::info!(stage = %def.name, key = %key.short(), "restored from the run-cache");
                record_state(sh, si, inputs, &key, &entry.outputs, &entry.metrics);
                result.outputs = entry.outputs.clone();
                result.log = entry.log.clone();
                result.metrics = entry.metrics.clone();
                return result;
            }
            Err(e) => {
                tracing::warn!(stage = %def.name, "cached outputs unusable ({e}); executing instead");
                // Only the cache's own damage condemns the entry; a
                // local failure (a full workspace disk) is not the team's problem.
                if e.is_damage() {
                    let _ = sh.ws.cache.remove_run(&key);
                }
            }
        }
    }
    result.action = Action::Run;
    result.reasons = reasons;
    tracing::info!(stage = %def.name, reasons = %result.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "), "running");

    // At most one process executes a key; the others wait and then restore.
    let _lock = match KeyLock::try_acquire(&sh.ws.cache, &key) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(stage = %def.name, "another process is running this stage; waiting");
            match KeyLock::acquire(&sh.ws.cache, &key) {
                Ok(l) => l,
                Err(e) => {
                    return failed(result, Failure { message: e.to_string(), log_tail: String::new(), kind: None })
                }
            }
        }
        Err(e) => return failed(result, Failure { message: e.to_string(), log_tail: String::new(), kind: None }),
    };
    if !sh.forced[si] {
        if let Ok(Some(entry)) = sh.ws.cache.get_run(&key) {
            if outputs_are_outs(def, &entry.outputs) && restore(sh, &entry.outputs).is_ok() {
                tracing::info!(stage = %def.name, key = %key.short(), "restored from the run-cache (another process ran it)");
                record_state(sh, si, inputs, &key, &entry.outputs, &entry.metrics);
                result.status = hit_status;
                result.action = Action::Restore;
                result.outputs = entry.outputs;
                result.log = entry.log.clone();
                result.metrics = entry.metrics;
                return result;
            }
        }
    }
    if let Some(f) = sh.unknown_outs(def, prev) {
        return failed(result, f);
    }
    let kind = sh.executors[si];
    let progress = crate::StageProgress::new(&def.name, sh.observer.as_ref());
    let job = Job {
        pipeline: &sh.p,
        def,
        stage,
        key: &key,
        deps: inputs.deps,
        cache: &sh.ws.cache,
        stat: &sh.stat,
        threads,
        progress: &progress,
        note: &|n: &str| sh.observer.event(Event::Note { stage: &def.name, note: n }),
        say: &|l: &str| sh.observer.event(Event::Message { line: l }),
        cancel: &sh.cancel,
        http: sh.http.as_deref(),
    };
    let ran = match (kind, &sh.slurm) {
        _ if sh.shards[si].is_some() => {
            let (ran, shards) = run_sharded(sh, si, stage, inputs, &key, threads, &job);
            result.shards = shards;
            ran
        }
        (ExecutorKind::Slurm, Some(slurm)) => slurm.run(&job).and_then(|entry| {
            // The job wrote the workspace on the shared filesystem; check (and repair) it as for a hit.
            restore(sh, &entry.outputs).map(|()| entry).map_err(|e| Failure {
                message: format!("cannot restore the job's outputs: {e}"),
                log_tail: String::new(),
                kind: None,
            })
        }),
        _ => executor::Local.run(&job),
    };
    match ran {
        Ok(entry) => {
            record_state(sh, si, inputs, &key, &entry.outputs, &entry.metrics);
            result.status = Status::Ran;
            result.seconds = entry.seconds;
            result.outputs = entry.outputs;
            result.log = entry.log.clone();
            result.metrics = entry.metrics;
            result
        }
        Err(f) => failed(result, f),
    }
}

/// Execute a sharded stage (see [`crate::shard`]): cut its dep into parts,
/// restore the shards the run-cache has, execute the others (here, or as
/// one Slurm array job), then merge them and store the stage under `key`.
/// Also each shard's outcome.
fn run_sharded(
    sh: &Shared,
    si: usize,
    stage: &dyn Stage,
    inputs: &KeyInputs<'_>,
    key: &StageKey,
    threads: usize,
    job: &Job<'_>,
) -> (std::result::Result<dvx_cache::RunEntry, Failure>, Vec<ShardResult>) {
    let def = &sh.p.stages[si];
    let how = sh.registry.shards(&def.kind).expect("shards are checked at load").clone();
    let n = sh.shards[si].unwrap_or(1);
    let started = std::time::Instant::now();
    let dir = shard::staging_dir(&sh.ws.state_dir, key);
    let units = match shard::split(how.as_ref(), def, &sh.p.wdir, inputs, dir, n) {
        Ok(u) => u,
        Err(f) => return (Err(f), Vec::new()),
    };
    let mut results: Vec<ShardResult> = units
        .units
        .iter()
        .map(|u| ShardResult {
            index: u.index,
            records: u.records,
            key: u.key.clone(),
            status: ShardStatus::Cached,
            error: None,
        })
        .collect();
    let mut entries: Vec<Option<dvx_cache::RunEntry>> = vec![None; n];
    let mut todo = Vec::new();
    for (i, u) in units.units.iter().enumerate() {
        match shard::restore_unit(&sh.ws.cache, def, u, sh.ws.link).filter(|_| !sh.forced[si]) {
            Some(e) => entries[i] = Some(e),
            None => todo.push(i),
        }
    }
    tracing::info!(stage = %def.name, shards = n, cached = n - todo.len(), to_run = todo.len(), "sharded");
    (job.note)(&format!("{} of {n} shards to run", todo.len()));
    let ran = match (sh.executors[si], &sh.slurm) {
        (ExecutorKind::Slurm, Some(slurm)) => slurm
            .run_shards(job, &units.units, &todo)
            .into_iter()
            .zip(&todo)
            .map(|(r, &i)| {
                // The task wrote its part's outs on the shared filesystem: check (and repair) them.
                r.and_then(|_| {
                    shard::restore_unit(&sh.ws.cache, def, &units.units[i], sh.ws.link).ok_or_else(|| Failure {
                        message: format!("cannot restore the outputs of shard {i} from the cache"),
                        log_tail: String::new(),
                        kind: None,
                    })
                })
            })
            .collect(),
        _ => shard::run_local(
            &sh.ws.cache,
            def,
            stage,
            &sh.p.wdir,
            &units.units,
            &todo,
            threads,
            &sh.cancel,
            sh.http.as_deref(),
        ),
    };
    let mut first_failure = None;
    for (&i, r) in todo.iter().zip(ran) {
        match r {
            Ok(e) => {
                tracing::info!(stage = %def.name, shard = i, records = units.units[i].records, "shard ran");
                results[i].status = ShardStatus::Ran;
                entries[i] = Some(e);
            }
            Err(f) => {
                tracing::warn!(stage = %def.name, shard = i, "shard failed: {}", f.message);
                results[i].status = ShardStatus::Failed;
                results[i].error = Some(f.message.clone());
                first_failure.get_or_insert((i, f));
            }
        }
    }
    if let Some((i, f)) = first_failure {
        let failed = results.iter().filter(|r| r.status == ShardStatus::Failed).count();
        let message = format!("{failed} of {n} shards failed (a re-run executes only those); shard {i}: {}", f.message);
        return (Err(Failure { message, ..f }), results);
    }
    let entries: Vec<dvx_cache::RunEntry> = entries.into_iter().map(|e| e.expect("every shard is done")).collect();
    // The stage's log: each shard's, under a header.
    let mut log = Vec::new();
    for (u, e) in units.units.iter().zip(&entries) {
        let how_done = if results[u.index].status == ShardStatus::Ran { "ran" } else { "cached" };
        log.extend(format!("== shard {} of {n}: {} records, {how_done} ==\n", u.index, u.records).into_bytes());
        if let Some(bytes) = e.log.as_ref().and_then(|h| sh.ws.cache.read_object(h).ok()) {
            log.extend(bytes);
        }
    }
    let metrics: Vec<Metrics> = entries.iter().map(|e| e.metrics.clone()).collect();
    let merged = shard::merge(how.as_ref(), def, &sh.p.wdir, &units.units, &metrics, log, started)
        .map(|mut done| {
            done.memo_keys = shard::memo_keys_of(&sh.ws.cache, &entries);
            done
        })
        .and_then(|done| crate::executor::local::store(&sh.ws.cache, &sh.stat, def, &sh.p.wdir, key, done));
    (merged, results)
}

fn failed(mut r: StageResult, f: Failure) -> StageResult {
    r.status = if f.kind == Some(crate::FailureKind::Cancelled) { Status::Cancelled } else { Status::Failed };
    r.error = Some(f.message);
    r.error_kind = f.kind.filter(|k| k.label().is_some());
    r.log_tail = (!f.log_tail.is_empty()).then_some(f.log_tail);
    r
}

/// Put a run entry's outputs into the workspace: those already there with
/// the right bytes stay, the others are restored.
fn restore(sh: &Shared, outputs: &[OutputRef]) -> dvx_cache::Result<()> {
    for o in outputs {
        if sh.mismatch(std::slice::from_ref(o), false).is_some() {
            sh.ws.cache.restore(o, &abs(&sh.p.wdir, &o.path), sh.ws.link)?;
        }
    }
    Ok(())
}

fn record_state(
    sh: &Shared,
    si: usize,
    inputs: &KeyInputs<'_>,
    key: &StageKey,
    outputs: &[OutputRef],
    metrics: &Metrics,
) {
    let def = &sh.p.stages[si];
    let st = StageState {
        key: key.clone(),
        kind: def.kind.clone(),
        version: inputs.version,
        // As normalised, so `why` compares like with like.
        params: inputs.params.clone(),
        cmd: def.cmd.clone(),
        env: def.env.clone(),
        deps: inputs.deps.to_vec(),
        fingerprint: inputs.fingerprint.cloned(),
        outputs: outputs.to_vec(),
        metrics: metrics.clone(),
        checked_out: None,
    };
    sh.state.lock().expect("state lock").stages.insert(def.name.clone(), Arc::new(st));
}

/// Store the run's sources and write its version record.
fn write_version(sh: &Shared, selected: &[usize], results: &[StageResult]) -> Result<Hash> {
    let p = &sh.p;
    let mut sources = Vec::new();
    let mut seen = BTreeSet::new();
    for &si in selected {
        for (di, d) in p.stages[si].deps.iter().enumerate() {
            if sh.graph.producers[si][di].is_some() || !seen.insert(d.clone()) {
                continue;
            }
            let (kind, hash) = sh.hash_source(d).map_err(EngineError::Other)?;
            sources.push(OutputRef { path: d.clone(), kind, hash });
        }
    }
    // What else the version needs to be rebuilt from its sources alone: the
    // files stages read from outside the graph and the pipeline files.
    for rel in extra_sources(sh, selected)? {
        if !seen.insert(rel.clone()) {
            continue;
        }
        let (kind, hash) = sh.hash_source(&rel).map_err(EngineError::Other)?;
        sources.push(OutputRef { path: rel, kind, hash });
    }
    // Sorted, so the version hash does not depend on stage or import order.
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    // Everything the version body is made of, digested cheaply: when it is
    // what the last run here produced, that run's version stands.
    let mut digest = blake3::Hasher::new();
    digest.update(p.name.as_bytes());
    for (&si, r) in selected.iter().zip(results) {
        digest.update(&[0]);
        digest.update(p.stages[si].name.as_bytes());
        digest.update(r.key.as_ref().map_or("", StageKey::as_str).as_bytes());
        for o in &r.outputs {
            digest.update(o.path.as_bytes());
            digest.update(o.hash.as_str().as_bytes());
        }
    }
    for s in &sources {
        digest.update(&[1]);
        digest.update(s.path.as_bytes());
        digest.update(s.hash.as_str().as_bytes());
    }
    let digest = digest.finalize().to_hex().to_string();
    let file_key = p.file.display().to_string();
    let last = sh.state.lock().expect("state lock").last_digest.get(&file_key).cloned();
    if let Some((d, v)) = last {
        // The same version as last time, and it is still in this cache: gc
        // keeps a version's objects with its record, so they are all there.
        if d == digest && sh.ws.cache.keep_version(&v)? {
            return Ok(v);
        }
    }
    // A version is written only over objects the cache holds.
    sh.settle_outputs(results)?;
    let missing = sh.ws.cache.missing(&sources)?;
    if !missing.is_empty() {
        let paths: Vec<PathBuf> = missing.iter().map(|&i| abs(&p.wdir, &sources[i].path)).collect();
        let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
        let mut stat = sh.stat.lock().expect("stat lock");
        sh.ws.cache.put_paths(&refs, &mut stat, dvx_cache::EscapingLinks::Follow)?;
    }

    let mut stages = Vec::new();
    let mut meta = VersionMeta::now(p.file.display().to_string());
    for (&si, r) in selected.iter().zip(results) {
        let s = &p.stages[si];
        stages.push(RecordedStage {
            name: s.name.clone(),
            kind: s.kind.clone(),
            key: r.key.clone(),
            cwd: s.cwd.clone(),
            deps: s.deps.clone(),
            outs: s.outs.clone(),
            metrics: s.metrics.clone(),
            params: s.params.clone(),
            cmd: s.cmd.clone(),
            env: s.env.clone(),
            outputs: r.outputs.clone(),
        });
        meta.metrics.insert(s.name.clone(), serde_json::Value::Object(r.metrics.clone()));
        meta.statuses.insert(s.name.clone(), serde_json::to_value(r.status).expect("status serialises"));
    }
    let body = VersionBody { dvx_version: 1, pipeline: p.name.clone(), stages, sources };
    let body = serde_json::to_value(body).expect("a version body serialises");
    let version = sh.ws.cache.put_version(body, meta)?;
    sh.state.lock().expect("state lock").last_digest.insert(file_key, (digest, version.clone()));
    Ok(version)
}

/// Sources of a version beyond the deps, relative to the root wdir: every
/// external input of a selected stage and every pipeline file loaded (they
/// are part of the version: a pipeline file holds the commands that ran).
/// `dvx.toml` is not: it says where the cache is and how to restore, not
/// what the data is. Paths outside the wdir cannot be restored and are
/// skipped with a warning.
fn extra_sources(sh: &Shared, selected: &[usize]) -> Result<BTreeSet<String>> {
    let p = &sh.p;
    let inside = |path: &std::path::Path, what: &str| -> Option<String> {
        let mut norm = PathBuf::new();
        for c in path.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    norm.pop();
                }
                c => norm.push(c.as_os_str()),
            }
        }
        match norm.strip_prefix(&p.wdir) {
            Ok(rel) if !rel.as_os_str().is_empty() => Some(rel.to_string_lossy().replace('\\', "/")),
            _ => {
                tracing::warn!(
                    "{what} {} is not inside the workspace {}: the version cannot restore it",
                    path.display(),
                    p.wdir.display()
                );
                None
            }
        }
    };
    let mut out = BTreeSet::new();
    for &si in selected {
        let def = &p.stages[si];
        let stage = sh.registry.get(&def.kind).expect("kinds are checked at load");
        let cwd = abs(&p.wdir, &def.cwd);
        let deps: Vec<PathBuf> = def.deps.iter().map(|d| abs(&p.wdir, d)).collect();
        let ctx = crate::FingerprintContext { cwd: &cwd, deps: &deps, params: &def.params };
        let inputs =
            stage.external_inputs(&ctx).map_err(|e| EngineError::Other(format!("stage `{}`: {e}", def.name)))?;
        let what = format!("input of stage `{}`", def.name);
        out.extend(inputs.iter().filter_map(|i| inside(i, &what)));
    }
    out.extend(p.files.iter().filter_map(|f| inside(f, "pipeline file")));
    Ok(out)
}
