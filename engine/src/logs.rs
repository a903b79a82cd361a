//! `dvx logs`: a stage's log as a version recorded it. The version names
//! the stage's key; the run entry at that key names the log object, which
//! is read through the verifying reader (the cache is untrusted input).

use std::path::Path;

use dvx_cache::{Cache, Hash, ObjectReader};

use crate::error::{EngineError, Result};
use crate::version::body_of;

/// The version a workspace holds: the one registered for `wdir` (its last
/// run or checkout), else the newest of its state's last versions, else
/// the newest in the cache. `None` when the cache has no versions.
pub fn current_version(cache: &Cache, wdir: Option<&Path>, state_dir: &Path) -> Result<Option<Hash>> {
    let versions = cache.versions()?; // newest first
    if let Some(wdir) = wdir {
        let at = wdir.canonicalize().unwrap_or_else(|_| wdir.to_path_buf());
        let at = at.to_string_lossy();
        let held = cache.workspaces()?.into_iter().find(|w| w.path == at).map(|w| w.version);
        if let Some(v) = held.filter(|v| cache.has_version(v)) {
            return Ok(Some(v));
        }
        let state = crate::WorkspaceState::load(state_dir);
        let mine: std::collections::BTreeSet<&Hash> = state.last_version.values().collect();
        if let Some(v) = versions.iter().find(|v| mine.contains(&v.hash)) {
            return Ok(Some(v.hash.clone()));
        }
    }
    Ok(versions.into_iter().next().map(|v| v.hash))
}

/// A stage's log in `version`, as a verifying reader; `None` when the
/// stage wrote nothing to its log.
pub fn stage_log(cache: &Cache, version: &Hash, stage: &str) -> Result<Option<ObjectReader>> {
    let body = body_of(&cache.get_version(version)?)?;
    let Some(s) = body.stages.iter().find(|s| s.name == stage) else {
        let names: Vec<&str> = body.stages.iter().map(|s| s.name.as_str()).collect();
        let hint = match crate::spec::did_you_mean(stage, names.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("its stages: {}", names.join(", ")),
        };
        return Err(EngineError::Other(format!("no stage `{stage}` in version {} ({hint})", version.short())));
    };
    let Some(key) = &s.key else {
        return Err(EngineError::Other(format!("stage `{stage}` has no key in version {}", version.short())));
    };
    let entry = cache.get_run(key)?.ok_or_else(|| {
        EngineError::Other(format!(
            "the run of `{stage}` in version {} (key {}) is not in the cache {} (removed by gc?): its log is gone",
            version.short(),
            key.short(),
            cache.root().display()
        ))
    })?;
    match entry.log {
        Some(h) => Ok(Some(cache.open_object(&h)?)),
        None => Ok(None),
    }
}
