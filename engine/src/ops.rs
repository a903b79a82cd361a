//! Operations on stored versions: checkout and reproduce.

use std::path::{Path, PathBuf};

use dvx_cache::{hash_path, Cache, Hash, LinkMode, OutputRef, StatCache};

use crate::error::{EngineError, Result};
use crate::executor::local::abs;
use crate::spec::{Origin, StageDef};
pub use crate::version::{body_of, RecordedStage, VersionBody};
use crate::Registry;

/// Restore every output of a version under `base` (and its sources too when
/// `with_sources`). Returns the number of paths restored. The record is
/// someone else's input: every path was checked to be clean and relative
/// when it was read; here, nothing lands in `.git` or `.dvx`, and an output
/// must be one of its stage's declared outs. All of that is checked before
/// anything is written.
pub fn checkout(cache: &Cache, hash: &Hash, base: &Path, link: LinkMode, with_sources: bool) -> Result<usize> {
    let body = body_of(&cache.get_version(hash)?)?;
    let refuse = |path: &str, why: &str| {
        EngineError::Other(format!("version {} is refused: `{path}` {why}; nothing was restored", hash.short()))
    };
    // A source outside the workspace (an absolute path) is not ours to write.
    let sources: Vec<&OutputRef> = if with_sources {
        body.sources.iter().filter(|s| !Path::new(&s.path).is_absolute()).collect()
    } else {
        Vec::new()
    };
    for s in &body.stages {
        if let Some(o) = s.outputs.iter().find(|o| !s.outs.contains(&o.path)) {
            return Err(refuse(&o.path, &format!("is not an out of its stage `{}`", s.name)));
        }
    }
    let all: Vec<&OutputRef> = body.stages.iter().flat_map(|s| s.outputs.iter()).chain(sources).collect();
    for o in &all {
        if o.path.split('/').any(|c| c == ".git" || c == ".dvx") {
            return Err(refuse(&o.path, "would write into a `.git` or `.dvx` folder"));
        }
    }
    for o in &all {
        cache.restore(o, &base.join(&o.path), link)?;
    }
    Ok(all.len())
}

/// After `checkout` into the workspace: make its state say what is there
/// now, so `status` compares the pipeline as written with the version
/// checked out (a changed param, a changed source) rather than calling
/// every output modified. Each stage of the version becomes the stage's
/// last result, with the dep hashes the version records (a source's, or
/// the producing stage's output); the version is remembered as the one
/// the workspace holds. Stages the version lacks keep their state.
pub fn adopt_checkout(state_dir: &Path, rec: &dvx_cache::VersionRecord, registry: &Registry) -> Result<()> {
    use std::collections::BTreeMap;

    use dvx_cache::OutputKind;

    use crate::state::{StageState, WorkspaceState};

    let (hash, body) = (&rec.hash, body_of(rec)?);
    let mut known: BTreeMap<&str, (OutputKind, Hash)> =
        body.sources.iter().map(|s| (s.path.as_str(), (s.kind, s.hash.clone()))).collect();
    for o in body.stages.iter().flat_map(|s| &s.outputs) {
        known.insert(o.path.as_str(), (o.kind, o.hash.clone()));
    }
    let mut state = WorkspaceState::load(state_dir);
    for s in &body.stages {
        let Some(key) = s.key.clone() else { continue };
        let deps = s
            .deps
            .iter()
            .map(|d| {
                let (k, h) = known.get(d.as_str()).cloned().unwrap_or((OutputKind::File, Hash::of_bytes(b"")));
                (d.clone(), k, h)
            })
            .collect();
        let st = StageState {
            key,
            kind: s.kind.clone(),
            // The version does not record it; the kind's own is the best guess.
            version: registry.get(&s.kind).map(|k| k.version()).unwrap_or(0),
            // Compared with the pipeline's normalised params, so normalise these too.
            params: registry
                .get(&s.kind)
                .and_then(|k| k.normalised_params(&s.params).ok())
                .unwrap_or_else(|| s.params.clone()),
            cmd: s.cmd.clone(),
            env: s.env.clone(),
            deps,
            fingerprint: None,
            outputs: s.outputs.clone(),
            metrics: match rec.meta.metrics.get(&s.name) {
                Some(serde_json::Value::Object(m)) => m.clone(),
                _ => Default::default(),
            },
            checked_out: Some(hash.clone()),
        };
        state.stages.insert(s.name.clone(), std::sync::Arc::new(st));
        state.failed.remove(&s.name);
    }
    state.checked_out = Some(hash.clone());
    state
        .save()
        .map_err(|e| EngineError::Other(format!("cannot save the workspace state in {}: {e}", state_dir.display())))
}

/// The version `dvx checkout` last put in the workspace whose state lives
/// in `state_dir`, unless a run has written one since.
pub fn checked_out(state_dir: &Path) -> Option<Hash> {
    if state_dir.as_os_str().is_empty() {
        return None;
    }
    crate::state::WorkspaceState::load(state_dir).checked_out
}

/// The version the workspace holds: the one checked out, else the newest
/// its runs wrote (that the cache still has); none without a workspace.
pub fn workspace_version(cache: &Cache, state_dir: &Path) -> Option<Hash> {
    if state_dir.as_os_str().is_empty() {
        return None;
    }
    let state = crate::state::WorkspaceState::load(state_dir);
    if let Some(v) = state.checked_out {
        return Some(v);
    }
    state.last_version.values().filter_map(|v| cache.get_version(v).ok()).max_by_key(|r| r.meta.made_at()).map(|r| r.hash)
}

/// The version made before `v` by the same pipeline (by name), if any.
pub fn previous_version(cache: &Cache, v: &Hash) -> Result<Option<Hash>> {
    let rec = cache.get_version(v)?;
    let name = body_of(&rec)?.pipeline;
    // Newest first: the first of the same pipeline after `v` is its predecessor.
    let all = cache.versions()?;
    let after = all.iter().skip_while(|r| &r.hash != v).skip(1);
    for r in after {
        if r.body.get("pipeline").and_then(|p| p.as_str()) == Some(name.as_str()) {
            return Ok(Some(r.hash.clone()));
        }
    }
    Ok(None)
}

/// After `checkout --to base`: when `base` has no `dvx.toml`, write one that
/// names `cache` (absolutely), so that runs there use the same cache and find
/// every stage cached. Returns the file written, if any.
pub fn write_checkout_config(base: &Path, cache: &Cache) -> Result<Option<PathBuf>> {
    let f = base.join("dvx.toml");
    if f.exists() {
        return Ok(None);
    }
    let root = cache
        .root()
        .canonicalize()
        .map_err(|e| EngineError::Other(format!("cannot resolve the cache folder {}: {e}", cache.root().display())))?;
    let root = root
        .to_str()
        .ok_or_else(|| EngineError::Other(format!("the cache folder {} is not valid UTF-8", root.display())))?;
    let text = format!(
        "# written by `dvx checkout --to`: the cache this version came from\ncache = {}\n",
        toml::Value::String(root.to_string())
    );
    std::fs::write(&f, text).map_err(|e| EngineError::Other(format!("cannot write {}: {e}", f.display())))?;
    Ok(Some(f))
}

/// Per stage of a reproduce: did re-executing give the recorded bytes?
#[derive(Debug)]
pub struct Reproduced {
    /// Which stage was re-executed.
    pub name: String,
    /// Outputs whose bytes differ (empty = identical).
    pub differs: Vec<String>,
    /// The stage failed to run.
    pub error: Option<String>,
    /// The kind the stage gave its failure, when it gave one.
    pub error_kind: Option<crate::FailureKind>,
    /// Not run: this upstream stage failed (directly or through others).
    pub skipped: Option<String>,
    /// Seconds it took (0 when skipped).
    pub seconds: f64,
    /// Its kind says it is not deterministic (an LLM call): outputs that
    /// differ are expected, not a failure to reproduce.
    pub nondeterministic: bool,
}

impl Reproduced {
    /// Whether the stage counts as reproduced: it ran, and its outputs are
    /// identical or its kind is not deterministic.
    pub fn reproduced(&self) -> bool {
        self.error.is_none() && self.skipped.is_none() && (self.differs.is_empty() || self.nondeterministic)
    }
}

/// What [`reproduce`] reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The version's sources are being restored into the scratch folder.
    Restoring {
        /// How many.
        sources: usize,
    },
    /// A stage starts executing.
    Started {
        /// Which stage starts.
        name: &'a str,
        /// Its kind.
        kind: &'a str,
        /// Its place among the version's stages, from 1.
        step: usize,
        /// How many stages the version has.
        of: usize,
        /// Whether its kind is non-deterministic (answered from the memo unless fresh).
        nondeterministic: bool,
    },
    /// A stage is done (identical, differs, failed or skipped).
    Finished(&'a Reproduced),
}

/// Whether dep `d` names out `o` or lies inside it (an edge, as in the graph).
fn reads(d: &str, o: &str) -> bool {
    d == o || (d.starts_with(o) && d.as_bytes().get(o.len()) == Some(&b'/'))
}

/// Re-execute every stage of a version in a scratch folder, ignoring the
/// run-cache, and compare each output with the recorded one. A stage whose
/// dep is an out of a stage that failed (or was skipped) is skipped, as in a
/// run. When a stage of a non-deterministic kind differs, its recorded
/// outputs are restored in its place, so the stages after it are checked
/// against the inputs they had. `progress` hears when each stage starts and
/// finishes. Stages are served from the memo of `cache` (an LLM stage
/// answers from the responses it kept) unless `fresh`, when every request
/// is made again and nothing is kept. Stages that reach the network use `http`.
pub fn reproduce(
    cache: &Cache,
    registry: &Registry,
    hash: &Hash,
    fresh: bool,
    http: Option<&dyn crate::Http>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<Reproduced>> {
    let body = body_of(&cache.get_version(hash)?)?;
    let scratch = tempfile::Builder::new()
        .prefix("dvx-reproduce-")
        .tempdir()
        .map_err(|e| EngineError::Other(format!("cannot create a scratch folder: {e}")))?;
    let root = scratch.path();
    progress(Progress::Restoring { sources: body.sources.len() });
    for s in &body.sources {
        if !Path::new(&s.path).is_absolute() {
            cache.restore(s, &root.join(&s.path), LinkMode::Copy)?;
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut report: Vec<Reproduced> = Vec::new();
    let of = body.stages.len();
    for (i, s) in body.stages.iter().enumerate() {
        let at = (i + 1, of);
        let r =
            reproduce_stage(cache, &body.stages[..i], &report, s, registry, root, threads, fresh, http, at, progress);
        progress(Progress::Finished(&r));
        report.push(r);
    }
    Ok(report)
}

/// One stage of [`reproduce`]; `before` and `done` are the stages before it.
#[allow(clippy::too_many_arguments)]
fn reproduce_stage(
    cache: &Cache,
    before: &[RecordedStage],
    done: &[Reproduced],
    s: &RecordedStage,
    registry: &Registry,
    root: &Path,
    threads: usize,
    fresh: bool,
    http: Option<&dyn crate::Http>,
    (step, of): (usize, usize),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Reproduced {
    let mut r = Reproduced {
        name: s.name.clone(),
        differs: vec![],
        error: None,
        error_kind: None,
        skipped: None,
        seconds: 0.0,
        nondeterministic: false,
    };
    let bad_upstream = before.iter().zip(done).find(|(up, res)| {
        (res.error.is_some() || res.skipped.is_some()) && s.deps.iter().any(|d| up.outs.iter().any(|o| reads(d, o)))
    });
    if let Some((up, res)) = bad_upstream {
        // Name the stage that failed, not the one skipped because of it.
        r.skipped = Some(res.skipped.clone().unwrap_or_else(|| up.name.clone()));
        return r;
    }
    let Some(stage) = registry.get(&s.kind) else {
        r.error = Some(format!("unknown kind `{}`", s.kind));
        return r;
    };
    let def = StageDef {
        name: s.name.clone(),
        kind: s.kind.clone(),
        cwd: s.cwd.clone(),
        deps: s.deps.clone(),
        outs: s.outs.clone(),
        metrics: s.metrics.clone(),
        params: s.params.clone(),
        cmd: s.cmd.clone(),
        env: s.env.clone(),
        executor: None,
        file_executor: None,
        resources: None,
        threads: None,
        shards: None,
        origin: Origin::default(),
    };
    r.nondeterministic = !stage.deterministic();
    progress(Progress::Started { name: &s.name, kind: &s.kind, step, of, nondeterministic: r.nondeterministic });
    let t0 = std::time::Instant::now();
    let memo = crate::CacheMemo::new(cache, &s.kind);
    let memo: &dyn crate::Memo = if fresh { &crate::NoMemo } else { &memo };
    let services = crate::Services { progress: &crate::NoProgress, memo, cancel: crate::Cancel::default(), http };
    let executed = crate::execute_with(&def, stage.as_ref(), root, threads, services);
    r.seconds = t0.elapsed().as_secs_f64();
    if let Err(f) = executed {
        r.error = Some(f.message);
        r.error_kind = f.kind;
        return r;
    }
    let mut stat = StatCache::in_memory();
    for o in &s.outputs {
        match hash_path(&abs(root, &o.path), &mut stat) {
            Ok((k, h)) if k == o.kind && h == o.hash => {}
            _ => r.differs.push(o.path.clone()),
        }
    }
    if r.nondeterministic {
        // Later stages are checked against the inputs they had, not fresh ones.
        for o in s.outputs.iter().filter(|o| r.differs.contains(&o.path)) {
            if let Err(e) = cache.restore(o, &abs(root, &o.path), LinkMode::Copy) {
                r.error = Some(format!("cannot restore the recorded `{}` for the stages after it: {e}", o.path));
                break;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use dvx_cache::{CacheOptions, VersionMeta};
    use serde_json::json;

    use super::*;
    use crate::{Metrics, Stage, StageContext, StageFailure, StageShape};

    /// A test kind: writes a fresh number each time (like an LLM call), or
    /// copies its dep; `deterministic` as told.
    struct Kind {
        name: &'static str,
        deterministic: bool,
        calls: AtomicUsize,
    }

    impl Stage for Kind {
        fn kind(&self) -> &'static str {
            self.name
        }
        fn version(&self) -> u32 {
            1
        }
        fn check(&self, _: &StageShape<'_>) -> std::result::Result<(), crate::ParamError> {
            Ok(())
        }
        fn deterministic(&self) -> bool {
            self.deterministic
        }
        fn execute(&self, ctx: &mut StageContext<'_>) -> std::result::Result<Metrics, StageFailure> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            match ctx.deps.first() {
                Some(d) => std::fs::copy(d, &ctx.outs[0]).map(drop)?,
                None => std::fs::write(&ctx.outs[0], format!("answer {n}\n"))?,
            }
            Ok(Metrics::new())
        }
    }

    fn registry(llm_deterministic: bool) -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Kind { name: "llm", deterministic: llm_deterministic, calls: AtomicUsize::new(0) }));
        r.register(Arc::new(Kind { name: "copy", deterministic: true, calls: AtomicUsize::new(0) }));
        r
    }

    /// A version where `ask` (kind `llm`) recorded "recorded\n" and `copy`
    /// copied it: re-running `ask` gives other bytes.
    fn version(cache: &Cache) -> Hash {
        let h = cache.put_bytes(b"recorded\n").unwrap();
        let out = |p: &str| json!([{"path": p, "kind": "file", "hash": h}]);
        let body = json!({
            "dvx_version": 1,
            "pipeline": "t",
            "stages": [
                {"name": "ask", "kind": "llm", "key": null, "outs": ["a.txt"], "params": {}, "outputs": out("a.txt")},
                {"name": "copy", "kind": "copy", "key": null, "deps": ["a.txt"], "outs": ["b.txt"], "params": {},
                 "outputs": out("b.txt")},
            ],
            "sources": [],
        });
        cache.put_version(body, VersionMeta::default()).unwrap()
    }

    #[test]
    fn a_nondeterministic_kind_that_differs_is_not_a_failure_to_reproduce() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheOptions::default()).unwrap();
        let v = version(&cache);

        let report = reproduce(&cache, &registry(false), &v, false, None, &mut |_| {}).unwrap();
        let (ask, copy) = (&report[0], &report[1]);
        assert!(ask.nondeterministic && ask.differs == ["a.txt"] && ask.reproduced(), "{ask:?}");
        // `copy` read the recorded a.txt, so it reproduces exactly.
        assert!(!copy.nondeterministic && copy.differs.is_empty() && copy.reproduced(), "{copy:?}");

        // The same kind claiming to be deterministic fails to reproduce.
        let report = reproduce(&cache, &registry(true), &v, false, None, &mut |_| {}).unwrap();
        assert!(!report[0].reproduced() && report[0].differs == ["a.txt"], "{:?}", report[0]);
        assert!(!report[1].reproduced(), "{:?}", report[1]);
    }
}
