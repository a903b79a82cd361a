//! Executing in this process: one stage into the workspace, then storing
//! what it produced. [`Local`] is that; a Slurm job (`dvx exec-stage`) runs
//! the same [`execute`] and [`store`] on a compute node. The scheduler
//! decides *whether* to call either.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dvx_cache::{remove_path, Cache, OutputRef, RunEntry, StageKey, StatCache};

use super::{Executor, Job};
use crate::spec::StageDef;
use crate::{Metrics, Progress, Stage, StageContext};

/// Runs stages in the dvx process: execute into the workspace, then store
/// the outputs and the run-cache entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Executor for Local {
    fn run(&self, job: &Job<'_>) -> Result<RunEntry, Failure> {
        let memo = super::CacheMemo::new(job.cache, &job.def.kind);
        let services = Services { progress: job.progress, memo: &memo, cancel: job.cancel.clone(), http: job.http };
        let mut done = execute_with(job.def, job.stage, &job.pipeline.wdir, job.threads, services)?;
        done.memo_keys = memo.used();
        store(job.cache, job.stat, job.def, &job.pipeline.wdir, job.key, done)
    }
}

/// A stage that failed: why, and the tail of its log.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong (with `caused by: …` lines when the stage gave causes).
    pub message: String,
    /// Last lines of the stage's log.
    pub log_tail: String,
    /// The kind the stage gave its failure; `None` when dvx failed around
    /// it (removing old outputs, storing, a Slurm job).
    pub kind: Option<crate::FailureKind>,
}

/// What a successful execution produced.
pub struct Executed {
    /// Metrics returned by the stage.
    pub metrics: Metrics,
    /// Everything the stage wrote to its log, stored as an object.
    pub log: Vec<u8>,
    /// Seconds it took.
    pub seconds: f64,
    /// The memo keys it read or wrote (filled by the caller that owns the memo).
    pub memo_keys: std::collections::BTreeSet<crate::MemoKey>,
    /// Per out, when its writer took the previous out over: that file's
    /// identity before the run and how many of its first bytes were kept,
    /// so storing the out hashes only the rest ([`store`]).
    pub kept: Vec<Option<(std::fs::Metadata, u64)>>,
}

/// The last `n` lines of a log.
pub fn tail(log: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Absolute path of a workspace path.
pub fn abs(wdir: &Path, p: &str) -> PathBuf {
    if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        wdir.join(p)
    }
}

/// What a stage reaches through its context besides its own inputs.
pub struct Services<'a> {
    /// Where it reports how far it is.
    pub progress: &'a dyn Progress,
    /// Its answers kept across runs.
    pub memo: &'a dyn crate::Memo,
    /// Tripped when the run asks it to stop.
    pub cancel: crate::Cancel,
    /// The run's shared HTTP client, if any.
    pub http: Option<&'a dyn crate::Http>,
}

/// [`execute_with`] with `progress` and `memo`, a token nobody trips and no HTTP client.
pub fn execute(
    def: &StageDef,
    stage: &dyn Stage,
    wdir: &Path,
    threads: usize,
    progress: &dyn Progress,
    memo: &dyn crate::Memo,
) -> Result<Executed, Failure> {
    let services = Services { progress, memo, cancel: crate::Cancel::default(), http: None };
    execute_with(def, stage, wdir, threads, services)
}

/// Run `stage` for `def` with the workspace rooted at `wdir`: remove old
/// outs, execute (with `services` in its context), check every declared
/// out exists, read its `metrics:` files into its metrics (a file's names
/// win over the kind's own). A stage that stops on its token fails with
/// [`crate::FailureKind::Cancelled`], so nothing it wrote is stored; one that
/// finishes anyway (it does not check) succeeds as usual.
pub fn execute_with(
    def: &StageDef,
    stage: &dyn Stage,
    wdir: &Path,
    threads: usize,
    services: Services<'_>,
) -> Result<Executed, Failure> {
    let cwd = abs(wdir, &def.cwd);
    let deps: Vec<PathBuf> = def.deps.iter().map(|d| abs(wdir, d)).collect();
    let outs: Vec<PathBuf> = def.outs.iter().map(|o| abs(wdir, o)).collect();
    let fail = |message: String, log: &[u8]| Failure { message, log_tail: tail(log, 20), kind: None };
    let mut previous = Vec::with_capacity(outs.len());
    let mut previous_meta = Vec::with_capacity(outs.len());
    for o in &outs {
        let (aside, meta) = if def.cmd.is_none() { keep_aside(o).unzip() } else { (None, None) };
        previous.push(aside);
        previous_meta.push(meta);
        remove_path(o).map_err(|e| fail(format!("cannot remove old output: {e}"), &[]))?;
        if let Some(parent) = o.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display()), &[]))?;
        }
    }
    let env: Vec<(String, String)> = def.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut log = Vec::new();
    let started = Instant::now();
    // One each: a clone shares its slot, so `vec![x; n]` would give one to all.
    let kept_prefixes: Vec<dvx_stage_api::KeptPrefix> = outs.iter().map(|_| Default::default()).collect();
    let result = {
        let kind_outs = &outs[..def.kind_outs().len()];
        let mut ctx = StageContext::new(&def.name, &cwd, &deps, kind_outs, &def.params, &mut log)
            .with_cmd(def.cmd.as_deref())
            .with_env(&env)
            .with_threads(threads)
            .with_progress(services.progress)
            .with_memo(services.memo)
            .with_cancel(services.cancel.clone())
            .with_http(services.http)
            .with_previous_outs(&previous[..kind_outs.len()])
            .with_kept_prefixes(&kept_prefixes[..kind_outs.len()]);
        stage.execute(&mut ctx)
    };
    for p in previous.iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut metrics =
        result.map_err(|e| Failure { message: e.detail(), log_tail: tail(&log, 20), kind: Some(e.kind) })?;

    for (o, rel) in outs.iter().zip(&def.outs) {
        if std::fs::symlink_metadata(o).is_err() {
            let what = if def.metrics.contains(rel) { "metrics file" } else { "out" };
            return Err(fail(format!("declared {what} `{rel}` was not created by the stage"), &log));
        }
    }
    for rel in &def.metrics {
        let read = crate::metrics_file::read(&abs(wdir, rel))
            .map_err(|e| fail(format!("metrics file `{rel}` of stage `{}`: {e}", def.name), &log))?;
        metrics.extend(read);
    }
    let kept = previous_meta.into_iter().zip(&kept_prefixes).map(|(m, k)| m.zip(k.get())).collect();
    Ok(Executed { metrics, log, seconds, memo_keys: Default::default(), kept })
}

/// Outs smaller than this are rewritten whole: keeping them aside saves nothing.
const KEEP_ASIDE_FROM: u64 = 1 << 20;

/// Move a large out file aside (beside it, hidden) for the stage to rewrite
/// only where its new bytes differ (`StageContext::previous_outs`), and
/// return where and its identity before the move; `None` when it is kept
/// nowhere. Only a plain file with one link qualifies: a hard link may be a
/// cache object, which must never be written in place.
fn keep_aside(out: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
    use std::os::unix::fs::MetadataExt;
    let name = out.file_name()?.to_string_lossy();
    let aside = out.with_file_name(format!(".{name}.dvx-prev"));
    let _ = std::fs::remove_file(&aside); // left by a killed run
    let meta = std::fs::symlink_metadata(out).ok()?;
    if !meta.is_file() || meta.nlink() != 1 || meta.len() < KEEP_ASIDE_FROM {
        return None;
    }
    std::fs::rename(out, &aside).ok().map(|()| (aside, meta))
}

/// Outs at least this large wait out the stat cache's racy window (at most
/// 100 ms) before they are stored. A file stored the moment its stage
/// wrote it is "racy", its stat entry is dropped, and the next run must
/// hash it whole again (about 0.3 s per 1.7 GB here) instead of trusting
/// its identity, which also decides whether the next writer's kept prefix
/// counts (`StatCache::note_kept_prefix`). From this size the wait costs
/// less than that hashing.
const SETTLE_FROM: u64 = 512 << 20;

/// Wait until no file out of at least `from` bytes among `paths` is racy.
fn settle(paths: &[PathBuf], from: u64) {
    let wait = paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file() && m.len() >= from)
        .map(|m| StatCache::racy_for(&m))
        .max()
        .unwrap_or_default();
    if !wait.is_zero() {
        tracing::debug!(?wait, "letting large outs settle before storing them");
        std::thread::sleep(wait);
    }
}

/// Store the outputs and log of an execution and record the run-cache entry.
pub fn store(
    cache: &Cache,
    stat: &std::sync::Mutex<StatCache>,
    def: &StageDef,
    wdir: &Path,
    key: &StageKey,
    done: Executed,
) -> Result<RunEntry, Failure> {
    let fail = |message: String| Failure { message, log_tail: tail(&done.log, 20), kind: None };
    let paths: Vec<PathBuf> = def.outs.iter().map(|rel| abs(wdir, rel)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    settle(&paths, SETTLE_FROM);
    let stored = {
        let mut stat = stat.lock().expect("stat cache lock");
        // An out whose writer kept the first bytes of the previous one: if
        // that file was the object the stat cache knows, its store hashes
        // only the rest (`StatCache::note_kept_prefix`).
        for (path, kept) in paths.iter().zip(&done.kept) {
            if let Some((before, bytes)) = kept {
                if let Some(previous) = stat.lookup(path, before) {
                    stat.note_kept_prefix(path, previous, *bytes);
                }
            }
        }
        // Fresh outputs must not carry files from outside the workspace (through symlinks) into a shared cache.
        cache
            .put_paths(&refs, &mut stat, dvx_cache::EscapingLinks::Refuse)
            .map_err(|e| fail(format!("cannot store outputs: {e}")))?
    };
    let outputs: Vec<OutputRef> =
        def.outs.iter().zip(stored).map(|(rel, (kind, hash))| OutputRef { path: rel.clone(), kind, hash }).collect();
    let log =
        if done.log.is_empty() { None } else { Some(cache.put_bytes(&done.log).map_err(|e| fail(e.to_string()))?) };
    let memo = cache.put_memo_keys(&def.kind, &done.memo_keys).map_err(|e| fail(e.to_string()))?;
    let entry = RunEntry {
        key: key.clone(),
        kind: def.kind.clone(),
        stage: def.name.clone(),
        outputs,
        metrics: done.metrics,
        log,
        memo,
        seconds: done.seconds,
    };
    cache.put_run(&entry).map_err(|e| fail(e.to_string()))?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metrics, StageShape};

    #[test]
    fn large_outs_settle_past_the_racy_window_and_small_ones_do_not_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let (big, small) = (tmp.path().join("big"), tmp.path().join("small"));
        std::fs::write(&small, b"s").unwrap();
        let started = std::time::Instant::now();
        settle(&[small.clone()], 2);
        assert!(started.elapsed() < std::time::Duration::from_millis(50), "a small out waited");
        std::fs::write(&big, b"big").unwrap();
        assert!(StatCache::is_racy(&std::fs::metadata(&big).unwrap()));
        settle(&[small, big.clone()], 2);
        assert!(!StatCache::is_racy(&std::fs::metadata(&big).unwrap()), "stored now, its stat entry is kept");
    }

    /// Writes each out afresh and says its writer kept `kept[i]` bytes.
    struct SaysKept(Vec<u64>);

    impl Stage for SaysKept {
        fn kind(&self) -> &'static str {
            "says-kept"
        }
        fn version(&self) -> u32 {
            1
        }
        fn check(&self, _: &StageShape<'_>) -> Result<(), crate::ParamError> {
            Ok(())
        }
        fn execute(&self, ctx: &mut StageContext<'_>) -> Result<Metrics, crate::StageFailure> {
            for (i, out) in ctx.outs.iter().enumerate() {
                std::fs::write(out, b"new")?;
                ctx.kept_prefix(i).expect("asked for").set(self.0[i]);
            }
            Ok(Metrics::new())
        }
    }

    #[test]
    fn each_out_reports_its_own_kept_prefix_with_the_identity_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let outs = ["a.jsonl", "b.jsonl", "small.jsonl"];
        std::fs::write(dir.path().join(outs[0]), vec![b'a'; 2 << 20]).unwrap();
        std::fs::write(dir.path().join(outs[1]), vec![b'b'; 3 << 20]).unwrap();
        std::fs::write(dir.path().join(outs[2]), b"under a MiB: rewritten whole").unwrap();
        let before: Vec<_> = outs.iter().map(|o| std::fs::metadata(dir.path().join(o)).unwrap()).collect();
        let def =
            StageDef { outs: outs.iter().map(|o| o.to_string()).collect(), ..StageDef::of_kind("s", "says-kept") };
        let done = execute(&def, &SaysKept(vec![5, 7, 9]), dir.path(), 1, &crate::NoProgress, &crate::NoMemo).unwrap();
        use std::os::unix::fs::MetadataExt;
        let kept: Vec<Option<(u64, u64)>> = done.kept.iter().map(|k| k.as_ref().map(|(m, n)| (m.ino(), *n))).collect();
        assert_eq!(kept, vec![Some((before[0].ino(), 5)), Some((before[1].ino(), 7)), None]);
    }
}
