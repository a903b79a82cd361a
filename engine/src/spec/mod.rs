//! Pipeline specs: YAML → typed stages with every path resolved, every
//! `${…}` interpolated and every error pointing at its file, line and column.

mod cached;
mod interp;
mod load;
pub(crate) use load::did_you_mean;
mod paths;
pub(crate) use paths::special_file;
mod raw;
mod resources;
mod value;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use load::load_pipeline;
pub use resources::{ExecutorKind, ResourceError, Resources, RESOURCE_FIELDS};

use crate::error::{SourceFile, Span};

/// A pipeline with its imports flattened: every stage of every file.
#[derive(Debug)]
pub struct Pipeline {
    /// `name:` of the root file (or its file stem).
    pub name: String,
    /// The root pipeline file (absolute).
    pub file: PathBuf,
    /// The root working folder (absolute, canonical): every workspace path
    /// in keys, records and versions is relative to it.
    pub wdir: PathBuf,
    /// Stages in definition order (imported files first).
    pub stages: Vec<StageDef>,
    /// Every file read, for error reporting.
    pub sources: Vec<SourceFile>,
    /// Every pipeline file loaded (the root and its imports, canonical
    /// paths, sorted): sources of the version.
    pub files: Vec<PathBuf>,
    /// `cache:` of the root file, resolved against its folder.
    pub cache: Option<PathBuf>,
    /// `link:` of the root file.
    pub link: Option<String>,
    /// `executor:` of the root file.
    pub executor: Option<ExecutorKind>,
    /// The metadata of each out as loading read it (checking that it is
    /// no symlink): [`crate::run()`] takes it, so that its planner does
    /// not state the outs again. A pipeline is run right after it is
    /// loaded; only the first run of it uses these.
    pub(crate) stated_outs: crate::stated::Stated,
}

/// One stage, resolved. Serialisable for the cache of resolved pipelines
/// (`cached.rs`): any change to its fields changes the build, so a file
/// written by another build is never read as this one's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageDef {
    /// How the pipeline, `--force` and messages refer to it; unique in the pipeline.
    pub name: String,
    /// Which registered [`crate::Stage`] executes it (`cmd` when not written).
    pub kind: String,
    /// Folder the stage runs in, relative to the root wdir ("" for the root).
    pub cwd: String,
    /// Deps, relative to the root wdir (or absolute when outside it).
    pub deps: Vec<String>,
    /// Outs, relative to the root wdir: those written under `outs:`, then
    /// the `metrics:` files (never listed under both).
    pub outs: Vec<String>,
    /// `metrics:` files, relative to the root wdir: read after the stage
    /// runs and merged into its metrics. Each is also one of `outs`.
    pub metrics: Vec<String>,
    /// Params (always an object).
    #[serde(with = "cached::json_tree")]
    pub params: serde_json::Value,
    /// `cmd` with every `${…}` filled in.
    pub cmd: Option<String>,
    /// `env:` of the stage, set for it on top of the ambient environment.
    pub env: BTreeMap<String, String>,
    /// `executor:` written on the stage itself (wins over `--executor`).
    pub executor: Option<ExecutorKind>,
    /// `executor:` of the stage's file, else of the root file (`--executor` wins over it).
    pub file_executor: Option<ExecutorKind>,
    /// `resources:` of the stage, validated (used by the Slurm executor).
    pub resources: Option<Resources>,
    /// `threads:` of the stage: the compute threads it uses, counted against
    /// the run's thread budget (`-j`). `None`: it gets a share of what is free.
    pub threads: Option<usize>,
    /// `shards:` of the stage: split its one record dep into this many
    /// ranges, each executed (and cached) as its own unit, the outs merged
    /// in order. Not part of the key: the merged outs are the unsharded bytes.
    pub shards: Option<usize>,
    /// Where it was written.
    pub origin: Origin,
}

/// Locations of a stage's parts, for errors found after loading.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Index into [`Pipeline::sources`].
    pub file: usize,
    /// The stage name.
    pub name: Span,
    /// Each dep, in the order written, for errors about one of them.
    pub deps: Vec<Span>,
    /// Each out, in the order written, for errors about one of them.
    pub outs: Vec<Span>,
}

#[cfg(test)]
impl StageDef {
    /// A stage `name` of `kind` for tests: no deps, outs, params or
    /// settings; tests set what they need with `..StageDef::of_kind(…)`.
    pub(crate) fn of_kind(name: &str, kind: &str) -> StageDef {
        StageDef {
            name: name.into(),
            kind: kind.into(),
            cwd: String::new(),
            deps: vec![],
            outs: vec![],
            metrics: vec![],
            params: serde_json::json!({}),
            cmd: None,
            env: Default::default(),
            executor: None,
            file_executor: None,
            resources: None,
            threads: None,
            shards: None,
            origin: Default::default(),
        }
    }
}

impl StageDef {
    /// The outs the kind writes (what its `StageContext` gets): `outs`
    /// without the metrics files appended after them.
    pub fn kind_outs(&self) -> &[String] {
        &self.outs[..self.outs.len().saturating_sub(self.metrics.len())]
    }
}

impl Pipeline {
    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageDef> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// An error located in a stage's file.
    pub fn error_at(
        &self,
        origin: &Origin,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> crate::error::SpecError {
        self.sources[origin.file].error(span, message, label)
    }
}
