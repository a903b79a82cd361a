//! The job side of the Slurm executor: what `dvx exec-stage` does on a
//! compute node. It re-derives the stage's key from the shared workspace and
//! checks it against the key the scheduler expects (so a node that sees other
//! files, another pipeline file or another dvx build never stores a wrong
//! entry), then executes and stores exactly as [`super::Local`] does. It never
//! takes the key lock: the scheduler holds it while the job runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dvx_cache::{hash_path, Bucket, Cache, CacheOptions, Hash, OutputKind, RunEntry, StageKey, StatCache};
use serde::{Deserialize, Serialize};

use super::local::{self, abs};
use crate::key::KeyInputs;
use crate::spec::load_pipeline;
use crate::Registry;

/// What a job needs to execute one stage key; written by the scheduler to
/// `jobs-v1/<key>.json` in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// Format of this record.
    pub format: u32,
    /// The root pipeline file (absolute).
    pub pipeline: PathBuf,
    /// The pipeline's working folder as the scheduler saw it.
    pub wdir: PathBuf,
    /// The stage's name in the pipeline: the job loads the pipeline and finds it.
    pub stage: String,
    /// The key the job must compute and produce.
    pub key: StageKey,
    /// The deps that went into the key: path, kind, hash.
    pub deps: Vec<(String, OutputKind, Hash)>,
    /// The cache root.
    pub cache: PathBuf,
    /// Whether the cache is in shared (group) mode.
    pub shared: bool,
    /// The machine that submitted the job.
    pub submit_host: String,
}

/// What the job wrote back (`jobs-v1/<key>.outcome.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The node it ran on.
    pub host: String,
    /// The run-cache entry it stored, on success.
    pub entry: Option<RunEntry>,
    /// Why it failed, otherwise.
    pub error: Option<String>,
    /// The stage log's last lines, when it failed.
    #[serde(default)]
    pub log_tail: String,
}

/// Why a job could not do its stage.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The cache folder is not there on this node.
    #[error(
        "the dvx cache `{path}` is not visible from {host}: put the cache (and the workspace) on a filesystem \
         that the submitting machine and the compute nodes share, at the same path"
    )]
    CacheNotVisible {
        /// The cache root.
        path: PathBuf,
        /// This node.
        host: String,
    },
    /// The workspace is not there (or not at the same path) on this node.
    #[error(
        "the workspace `{path}` is not visible from {host}: run dvx from a folder on a filesystem the compute \
         nodes share, at the same path"
    )]
    WorkspaceNotVisible {
        /// The pipeline's folder.
        path: PathBuf,
        /// This node.
        host: String,
    },
    /// The job spec is unreadable.
    #[error("cannot read job spec {path}: {message}")]
    BadSpec {
        /// The spec file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The stage cannot be set up, or the key computed here is not the expected one.
    #[error("stage `{stage}` on {host}: {message}")]
    Setup {
        /// The stage.
        stage: String,
        /// This node.
        host: String,
        /// What is wrong.
        message: String,
    },
    /// The stage itself failed.
    #[error("stage `{stage}` failed on {host}: {message}")]
    Stage {
        /// The stage.
        stage: String,
        /// This node.
        host: String,
        /// Why.
        message: String,
        /// Its log's last lines.
        log_tail: String,
    },
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "this node".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Paths of a job's files in `jobs-v1/`.
pub(crate) fn outcome_path(spec: &Path) -> PathBuf {
    spec.with_extension("outcome.json")
}

/// Write one of a job's files (`path` is in the cache's [`Bucket::Jobs`])
/// atomically, with the cache's permissions.
pub(crate) fn write_job_file(cache: &Cache, path: &Path, bytes: &[u8]) -> dvx_cache::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    cache.write_in(Bucket::Jobs, name, bytes).map(drop)
}

/// Execute the stage described by the job spec at `spec_path` into the
/// shared workspace and store it in the shared cache, as `dvx exec-stage`.
/// Writes the outcome next to the spec, in the cache's `jobs-v1/` (where
/// the cache is visible), and prints the stage's log to stdout (the job's log).
/// The stage gets `cancel` (the binary trips it on SIGTERM, which is how
/// `scancel` asks) and `http`.
pub fn exec_job(
    spec_path: &Path,
    registry: &Registry,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Result<RunEntry, JobError> {
    if super::shard_job::is_shard_spec(spec_path) {
        return super::shard_job::exec_shard_job(spec_path, registry, cancel, http);
    }
    let host = hostname();
    let text = match std::fs::read(spec_path) {
        Ok(t) => t,
        Err(e) => {
            // jobs-v1/<key>.json: the cache is two levels up.
            let root = spec_path.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
            if !root.join("CACHEDIR.TAG").is_file() {
                return Err(JobError::CacheNotVisible { path: root.to_path_buf(), host });
            }
            return Err(JobError::BadSpec { path: spec_path.to_path_buf(), message: e.to_string() });
        }
    };
    let spec: JobSpec = serde_json::from_slice(&text)
        .map_err(|e| JobError::BadSpec { path: spec_path.to_path_buf(), message: e.to_string() })?;
    let result = run_spec(&spec, registry, &host, cancel, http);
    let outcome = match &result {
        Ok(entry) => {
            JobOutcome { host: host.clone(), entry: Some(entry.clone()), error: None, log_tail: String::new() }
        }
        Err(JobError::Stage { message, log_tail, .. }) => {
            JobOutcome { host: host.clone(), entry: None, error: Some(message.clone()), log_tail: log_tail.clone() }
        }
        Err(e) => JobOutcome { host: host.clone(), entry: None, error: Some(e.to_string()), log_tail: String::new() },
    };
    let bytes = serde_json::to_vec_pretty(&outcome).expect("outcome serialises");
    if let Ok(cache) = Cache::open(&spec.cache, CacheOptions { shared_group: spec.shared }) {
        if let Err(e) = write_job_file(&cache, &outcome_path(spec_path), &bytes) {
            eprintln!("dvx exec-stage: cannot write the job outcome: {e}");
        }
    }
    result
}

/// A job spec checked against what this node sees: the pipeline, the stage,
/// the cache and the key inputs, whose key is the one the scheduler expects.
pub(crate) struct Checked {
    pub pipeline: crate::Pipeline,
    pub si: usize,
    pub stage: std::sync::Arc<dyn crate::Stage>,
    pub cache: Cache,
    pub deps: Vec<(String, OutputKind, Hash)>,
    pub params: serde_json::Value,
    pub fingerprint: Option<serde_json::Value>,
}

impl Checked {
    pub fn def(&self) -> &crate::StageDef {
        &self.pipeline.stages[self.si]
    }

    pub fn inputs(&self) -> KeyInputs<'_> {
        KeyInputs::for_stage(self.def(), self.stage.version(), &self.params, &self.deps, self.fingerprint.as_ref())
    }
}

/// Load the pipeline on this node, find the stage, open the cache and
/// re-derive the key; refuse when it is not `spec.key`.
pub(crate) fn check_spec(spec: &JobSpec, registry: &Registry, host: &str) -> Result<Checked, JobError> {
    if !spec.cache.join("CACHEDIR.TAG").is_file() {
        return Err(JobError::CacheNotVisible { path: spec.cache.clone(), host: host.to_string() });
    }
    if !spec.wdir.is_dir() || !spec.pipeline.is_file() {
        return Err(JobError::WorkspaceNotVisible { path: spec.wdir.clone(), host: host.to_string() });
    }
    let setup = |message: String| JobError::Setup { stage: spec.stage.clone(), host: host.to_string(), message };
    let pipeline =
        load_pipeline(&spec.pipeline, registry).map_err(|e| setup(format!("cannot load the pipeline: {e}")))?;
    if pipeline.wdir != spec.wdir {
        return Err(JobError::WorkspaceNotVisible { path: spec.wdir.clone(), host: host.to_string() });
    }
    let si = pipeline
        .stages
        .iter()
        .position(|s| s.name == spec.stage)
        .ok_or_else(|| setup(format!("no stage `{}` in {} any more", spec.stage, spec.pipeline.display())))?;
    let def = &pipeline.stages[si];
    let stage = registry.get(&def.kind).ok_or_else(|| setup(format!("unknown stage kind `{}`", def.kind)))?.clone();
    let cache = Cache::open(&spec.cache, CacheOptions { shared_group: spec.shared })
        .and_then(|c| c.with_lease())
        .map_err(|e| setup(format!("cannot open the cache: {e}")))?;

    // The key, from what this node sees.
    let mut stat = StatCache::in_memory();
    let mut deps = Vec::with_capacity(def.deps.len());
    for (i, d) in def.deps.iter().enumerate() {
        let (kind, hash) = hash_path(&abs(&pipeline.wdir, d), &mut stat)
            .map_err(|e| setup(format!("cannot read dep `{d}` here: {e}")))?;
        if let Some((_, k, h)) = spec.deps.get(i) {
            if (*k, h) != (kind, &hash) {
                return Err(setup(format!(
                    "dep `{d}` differs from what {} hashed ({} here, {} there): the workspace is not the same on both machines, or it changed",
                    spec.submit_host, hash, h
                )));
            }
        }
        deps.push((d.clone(), kind, hash));
    }
    let fingerprint = crate::key::fingerprint(&pipeline.wdir, def, stage.as_ref())
        .map_err(|e| setup(format!("cannot fingerprint: {e}")))?;
    let params = crate::key::normalised_params(def, stage.as_ref()).map_err(|e| setup(e.message))?;
    let checked = Checked { pipeline, si, stage, cache, deps, params, fingerprint };
    let key = checked.inputs().key();
    if key != spec.key {
        return Err(setup(format!(
            "computed key {key}, expected {}: the pipeline file or the dvx build differs between {} and this node",
            spec.key, spec.submit_host
        )));
    }
    Ok(checked)
}

/// The threads a job may use: what Slurm gave it, else the node's.
pub(crate) fn job_threads() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn run_spec(
    spec: &JobSpec,
    registry: &Registry,
    host: &str,
    cancel: &crate::Cancel,
    http: Option<&dyn crate::Http>,
) -> Result<RunEntry, JobError> {
    let checked = check_spec(spec, registry, host)?;
    let (def, stage, cache, pipeline) = (checked.def(), &checked.stage, &checked.cache, &checked.pipeline);
    let key = checked.inputs().key();
    let stat = StatCache::in_memory();

    // Exactly what the local executor does.
    let threads = job_threads();
    let stage_err = |f: local::Failure| JobError::Stage {
        stage: spec.stage.clone(),
        host: host.to_string(),
        message: f.message,
        log_tail: f.log_tail,
    };
    // Progress stays on the node: the job's log holds what the stage logs.
    let memo = super::CacheMemo::new(cache, &def.kind);
    let services = local::Services { progress: &crate::NoProgress, memo: &memo, cancel: cancel.clone(), http };
    let mut done = local::execute_with(def, stage.as_ref(), &pipeline.wdir, threads, services).map_err(stage_err)?;
    done.memo_keys = memo.used();
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&done.log);
        let _ = out.flush();
    }
    let stat = Mutex::new(stat);
    local::store(cache, &stat, def, &pipeline.wdir, &key, done).map_err(stage_err)
}
