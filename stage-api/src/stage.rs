//! The one small trait every stage kind implements.
//!
//! A stage gets resolved input paths, its params and the paths it must write;
//! it returns metrics. It never sees the cache: hashing, storing and restoring
//! are the engine's job, so a stage cannot corrupt the store.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Metrics a stage returns: counts, pass rates, losses. Stored in the run-cache
/// and the version record, printed by `dvx show`, compared by `dvx diff`.
pub type Metrics = serde_json::Map<String, serde_json::Value>;

/// What a stage is handed when it executes.
pub struct StageContext<'a> {
    /// The stage's name in the pipeline.
    pub name: &'a str,
    /// The folder the stage runs in (its pipeline's `wdir`).
    pub cwd: &'a Path,
    /// Absolute paths of the declared deps, in declared order.
    pub deps: &'a [PathBuf],
    /// Absolute paths of the declared outs, in declared order. Their parent
    /// folders exist and any previous output has been removed.
    pub outs: &'a [PathBuf],
    /// The stage's params: always a JSON object (empty when none were given).
    pub params: &'a serde_json::Value,
    /// The shell command of `cmd` stages, already interpolated.
    pub cmd: Option<&'a str>,
    /// Extra environment declared on the stage (part of the key).
    pub env: &'a [(String, String)],
    /// Where the stage writes its log (kept as the stage's log).
    pub log: &'a mut dyn Write,
    /// How many threads the stage may use.
    pub threads: usize,
}

/// Why a stage failed; the message is shown in the run summary.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageFailure {
    /// What went wrong, in one or a few lines.
    pub message: String,
}

impl StageFailure {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        StageFailure { message: message.into() }
    }
}

/// A param problem found while running: `params.FIELD: message`.
impl From<ParamError> for StageFailure {
    fn from(e: ParamError) -> Self {
        match e.field {
            Some(f) => StageFailure::new(format!("params.{f}: {}", e.message)),
            None => StageFailure::new(format!("params: {}", e.message)),
        }
    }
}

impl From<std::io::Error> for StageFailure {
    fn from(e: std::io::Error) -> Self {
        StageFailure::new(e.to_string())
    }
}

/// A problem with a stage's params found before anything runs. `field` is the
/// dotted path under `params` (e.g. `rules.0.regex`) so the error can point at
/// the YAML line; `None` means the stage as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Dotted path below `params`, when the problem is one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    /// An error about one field of `params`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError { field: Some(field.into()), message: message.into() }
    }
    /// An error about the stage as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        ParamError { field: None, message: message.into() }
    }
}

/// What `check` sees: the declared shape of a stage, before anything runs.
pub struct StageShape<'a> {
    /// The params object.
    pub params: &'a serde_json::Value,
    /// Number of declared deps.
    pub deps: usize,
    /// Number of declared outs.
    pub outs: usize,
    /// The raw `cmd`, if any.
    pub cmd: Option<&'a str>,
}

/// A kind of stage (`cmd`, `filter`, `dedup`, ...), as the engine sees it.
/// Kinds are written as [`crate::TypedStage`] and reach the engine through
/// the one adapter, [`crate::Typed`].
///
/// Contract: `execute` must be deterministic for the same inputs, params and
/// seed; bump `version` whenever a change to the implementation can change
/// its outputs, so every key of this kind changes and stale results re-run.
pub trait Stage: Send + Sync {
    /// The `kind:` name used in YAML.
    fn kind(&self) -> &'static str;
    /// Implementation version, part of every key of this kind.
    fn version(&self) -> u32;
    /// Validate params (and the number of deps/outs) before anything runs.
    fn check(&self, shape: &StageShape<'_>) -> Result<(), ParamError>;
    /// Extra facts the result depends on beyond params and deps' bytes: a
    /// git rev resolved to its commit id, a remote file's ETag or hash. The
    /// value joins the stage key, so when it changes the stage re-runs.
    /// Called on every plan, so it must be cheap or cached. Default: none.
    fn fingerprint(&self, _ctx: &FingerprintContext<'_>) -> Result<Option<serde_json::Value>, StageFailure> {
        Ok(None)
    }
    /// Files or folders the stage reads that are not deps (the local
    /// repository or bundle of a `clone`, a local file behind a `fetch`), as
    /// absolute paths. Those inside the workspace become sources of the
    /// version, so `checkout --to` and `reproduce` have them. Their effect on
    /// the result must already be in the key (through `fingerprint`).
    /// Default: none.
    fn external_inputs(&self, _ctx: &FingerprintContext<'_>) -> Result<Vec<PathBuf>, StageFailure> {
        Ok(Vec::new())
    }
    /// Do the work: read `deps`, write every path in `outs`, return metrics.
    fn execute(&self, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure>;
    /// The kind's params, for the docs. Default: none documented.
    fn params_doc(&self) -> Vec<crate::typed::ParamDoc> {
        Vec::new()
    }
}

/// What [`Stage::fingerprint`] sees.
pub struct FingerprintContext<'a> {
    /// The folder the stage runs in.
    pub cwd: &'a Path,
    /// Absolute paths of the declared deps.
    pub deps: &'a [PathBuf],
    /// The params object.
    pub params: &'a serde_json::Value,
}
