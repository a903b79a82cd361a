//! Operations on stored versions: checkout and reproduce.

use std::path::Path;

use dvx_cache::{hash_path, Cache, Hash, LinkMode, OutputRef, StatCache, VersionRecord};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::exec::{abs, execute};
use crate::registry::Registry;
use crate::spec::{Origin, StageDef};

/// A stage as recorded in a version body.
#[derive(Debug, Deserialize)]
pub struct RecordedStage {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Key.
    pub key: Option<String>,
    /// Stage folder.
    #[serde(default)]
    pub cwd: String,
    /// Deps.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Outs.
    #[serde(default)]
    pub outs: Vec<String>,
    /// Params.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Command.
    #[serde(default)]
    pub cmd: Option<String>,
    /// Env.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Outputs.
    #[serde(default)]
    pub outputs: Vec<OutputRef>,
}

/// A version body, as the engine writes it.
#[derive(Debug, Deserialize)]
pub struct VersionBody {
    /// Pipeline name.
    pub pipeline: String,
    /// Stages in the order they were scheduled (topological).
    pub stages: Vec<RecordedStage>,
    /// Sources.
    #[serde(default)]
    pub sources: Vec<OutputRef>,
}

/// Parse a version's body.
pub fn body_of(rec: &VersionRecord) -> Result<VersionBody> {
    serde_json::from_value(rec.body.clone())
        .map_err(|e| EngineError::Other(format!("version {} has an unreadable body: {e}", rec.hash.short())))
}

/// Restore every output of a version under `base` (and its sources too when
/// `with_sources`). Returns the number of paths restored.
pub fn checkout(cache: &Cache, hash: &Hash, base: &Path, link: LinkMode, with_sources: bool) -> Result<usize> {
    let body = body_of(&cache.get_version(hash)?)?;
    let mut n = 0;
    let sources = if with_sources { body.sources.clone() } else { Vec::new() };
    for o in body.stages.iter().flat_map(|s| s.outputs.iter()).chain(sources.iter()) {
        if Path::new(&o.path).is_absolute() {
            continue; // a source outside the workspace is not ours to write
        }
        cache.restore(o, &base.join(&o.path), link)?;
        n += 1;
    }
    Ok(n)
}

/// Per stage of a reproduce: did re-executing give the recorded bytes?
#[derive(Debug)]
pub struct Reproduced {
    /// Stage name.
    pub name: String,
    /// Outputs whose bytes differ (empty = identical).
    pub differs: Vec<String>,
    /// The stage failed to run.
    pub error: Option<String>,
}

/// Re-execute every stage of a version in a scratch folder, ignoring the
/// run-cache, and compare each output with the recorded one.
pub fn reproduce(cache: &Cache, registry: &Registry, hash: &Hash) -> Result<Vec<Reproduced>> {
    let body = body_of(&cache.get_version(hash)?)?;
    let scratch = tempfile::Builder::new()
        .prefix("dvx-reproduce-")
        .tempdir()
        .map_err(|e| EngineError::Other(format!("cannot create a scratch folder: {e}")))?;
    let root = scratch.path();
    for s in &body.sources {
        if !Path::new(&s.path).is_absolute() {
            cache.restore(s, &root.join(&s.path), LinkMode::Copy)?;
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut report = Vec::new();
    for s in &body.stages {
        let Some(stage) = registry.get(&s.kind) else {
            report.push(Reproduced {
                name: s.name.clone(),
                differs: vec![],
                error: Some(format!("unknown kind `{}`", s.kind)),
            });
            continue;
        };
        let def = StageDef {
            name: s.name.clone(),
            kind: s.kind.clone(),
            cwd: s.cwd.clone(),
            deps: s.deps.clone(),
            outs: s.outs.clone(),
            params: s.params.clone(),
            cmd: s.cmd.clone(),
            env: s.env.clone(),
            executor: None,
            file_executor: None,
            resources: None,
            origin: Origin::default(),
        };
        if let Err(f) = execute(&def, stage.as_ref(), root, threads) {
            report.push(Reproduced { name: s.name.clone(), differs: vec![], error: Some(f.message) });
            continue;
        }
        let mut stat = StatCache::in_memory();
        let mut differs = Vec::new();
        for o in &s.outputs {
            match hash_path(&abs(root, &o.path), &mut stat) {
                Ok((k, h)) if k == o.kind && h == o.hash => {}
                _ => differs.push(o.path.clone()),
            }
        }
        report.push(Reproduced { name: s.name.clone(), differs, error: None });
    }
    Ok(report)
}
