//! Where a pipeline's cache and state live.

use std::path::{Path, PathBuf};

use dvx_cache::{Cache, CacheOptions, LinkMode};

use crate::error::{EngineError, Result};
use crate::spec::{ExecutorKind, Pipeline};

/// Settings from `dvx.toml` (searched upward from the pipeline's folder).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Cache directory, relative to the dvx.toml.
    pub cache: Option<String>,
    /// `group` for a cache shared by a Unix group.
    pub shared: Option<String>,
    /// `link` in dvx.toml: how outputs are restored from the cache (`auto`, `copy`, …).
    pub link: Option<String>,
    /// `executor` in dvx.toml: where stages run when nothing closer says.
    pub executor: Option<String>,
}

/// The cache, state folder and restore mode a run uses.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The cache this workspace reads and writes.
    pub cache: Cache,
    /// Where workspace state lives (`.dvx/` beside the pipeline).
    pub state_dir: PathBuf,
    /// How outputs are restored.
    pub link: LinkMode,
    /// Where the cache location came from (for `dvx cache dir`).
    pub cache_origin: String,
    /// `executor` of dvx.toml: the default where neither the stage, the
    /// command line nor the pipeline names one.
    pub executor: Option<ExecutorKind>,
}

fn find_config(start: &Path) -> Result<Option<(PathBuf, ProjectConfig)>> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let f = d.join("dvx.toml");
        if f.is_file() {
            let text = std::fs::read_to_string(&f).map_err(|source| EngineError::Read { path: f.clone(), source })?;
            let cfg: ProjectConfig =
                toml::from_str(&text).map_err(|e| EngineError::Config { path: f.clone(), message: e.to_string() })?;
            return Ok(Some((f, cfg)));
        }
        dir = d.parent();
    }
    Ok(None)
}

impl Workspace {
    /// Resolve the cache for `pipeline`: `--cache`, then `DVX_CACHE_DIR`, then
    /// `cache:` in the pipeline, then `dvx.toml` found upward, then
    /// `.dvx/cache` beside the pipeline.
    pub fn for_pipeline(pipeline: &Pipeline, cli_cache: Option<&Path>) -> Result<Workspace> {
        let dir = pipeline.file.parent().expect("a file has a parent");
        let in_pipeline = pipeline.cache.as_ref().map(|c| (c.clone(), pipeline.file.as_path()));
        Self::resolve(Some(dir), in_pipeline, pipeline.link.clone(), cli_cache)
    }

    /// The workspace of a project with no pipeline to read (a `dvx.toml`
    /// alone), or of no project at all (`dir` is `None`): for the commands
    /// that only need the cache. `--cache`, then `DVX_CACHE_DIR`, then
    /// `dvx.toml` found upward from `dir`, then `.dvx/cache` in `dir`.
    /// Without `dir`, the cache must come from `--cache` or `DVX_CACHE_DIR`,
    /// and `state_dir` is empty (there is no workspace state).
    pub fn for_dir(dir: Option<&Path>, cli_cache: Option<&Path>) -> Result<Workspace> {
        Self::resolve(dir, None, None, cli_cache)
    }

    fn resolve(
        dir: Option<&Path>,
        in_pipeline: Option<(PathBuf, &Path)>,
        pipeline_link: Option<String>,
        cli_cache: Option<&Path>,
    ) -> Result<Workspace> {
        let config = match dir {
            Some(d) => find_config(d)?,
            None => None,
        };
        let (root, origin) = if let Some(c) = cli_cache {
            (c.to_path_buf(), "--cache".to_string())
        } else if let Some(c) = std::env::var_os("DVX_CACHE_DIR").filter(|v| !v.is_empty()) {
            (PathBuf::from(c), "DVX_CACHE_DIR".to_string())
        } else if let Some((c, file)) = &in_pipeline {
            (c.clone(), format!("`cache:` in {}", file.display()))
        } else if let Some((f, cfg)) = config.as_ref().filter(|(_, c)| c.cache.is_some()) {
            let base = f.parent().expect("a file has a parent");
            (base.join(cfg.cache.as_deref().expect("filtered")), f.display().to_string())
        } else if let Some(dir) = dir {
            (dir.join(".dvx").join("cache"), "default (.dvx/cache beside the pipeline)".to_string())
        } else {
            return Err(EngineError::Other("no project and no cache given".to_string()));
        };
        let shared = config.as_ref().and_then(|(_, c)| c.shared.as_deref()) == Some("group");
        let link_name = pipeline_link.or_else(|| config.as_ref().and_then(|(_, c)| c.link.clone()));
        let link = match link_name {
            Some(l) => LinkMode::parse(&l).ok_or_else(|| {
                EngineError::Other(format!("unknown link mode `{l}` (auto, reflink, hardlink, symlink, copy)"))
            })?,
            None => LinkMode::Auto,
        };
        let executor = match config.as_ref().and_then(|(f, c)| c.executor.as_deref().map(|e| (f, e))) {
            None => None,
            Some((f, e)) => Some(ExecutorKind::parse(e).ok_or_else(|| EngineError::Config {
                path: f.clone(),
                message: format!("unknown executor `{e}` (local, slurm)"),
            })?),
        };
        let cache = Cache::open(&root, CacheOptions { shared_group: shared })?;
        let state_dir = dir.map(|d| d.join(".dvx")).unwrap_or_default();
        Ok(Workspace { cache, state_dir, link, cache_origin: origin, executor })
    }
}
