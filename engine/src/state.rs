//! Workspace state (`.dvx/state-v1.json` beside the pipeline): what each
//! stage last produced here. It is what `status` compares against to say
//! *why* a stage is stale, and what lets a no-op run skip the run-cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dvx_cache::{Hash, OutputKind, OutputRef};
use serde::{Deserialize, Serialize};

/// The last result of one stage in this workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    /// Its key.
    pub key: String,
    /// Kind and implementation version.
    pub kind: String,
    /// Implementation version.
    pub version: u32,
    /// Params.
    pub params: serde_json::Value,
    /// Interpolated cmd.
    pub cmd: Option<String>,
    /// Env.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deps with their hashes.
    pub deps: Vec<(String, OutputKind, Hash)>,
    /// Fingerprint.
    #[serde(default)]
    pub fingerprint: Option<serde_json::Value>,
    /// Outputs.
    pub outputs: Vec<OutputRef>,
    /// Metrics of the run that produced them (saves reading the run-cache on no-op runs).
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// All of a workspace's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// Stage name → last result.
    #[serde(default)]
    pub stages: BTreeMap<String, StageState>,
    /// Source path → hash already stored in the cache.
    #[serde(default)]
    pub stored_sources: BTreeMap<String, Hash>,
    /// Pipeline file → its last version.
    #[serde(default)]
    pub last_version: BTreeMap<String, Hash>,
    /// Hit rate of the last run (cached / total), for `dvx cache stats`.
    #[serde(default)]
    pub last_hit_rate: Option<f64>,
    /// Pipeline file → (digest of the last run's stage keys, outputs and
    /// sources, the version they made): lets a no-op run skip rebuilding
    /// the version body.
    #[serde(default)]
    pub last_digest: BTreeMap<String, (String, Hash)>,
    #[serde(skip)]
    file: PathBuf,
}

impl WorkspaceState {
    /// Load from `dir/state-v1.json` (missing → empty).
    pub fn load(dir: &Path) -> WorkspaceState {
        let file = dir.join("state-v1.json");
        let mut s: WorkspaceState =
            std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        s.file = file;
        s
    }

    /// Save atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let dir = self.file.parent().expect("state file has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".state-{}.tmp", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(self).expect("state serialises"))?;
        std::fs::rename(&tmp, &self.file)
    }
}
