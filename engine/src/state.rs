//! Workspace state (`.dvx/state-v1.json` beside the pipeline): what each
//! stage last produced here. It is what `status` compares against to say
//! *why* a stage is stale, and what lets a no-op run skip the run-cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dvx_cache::{Hash, OutputKind, OutputRef, StageKey};
use serde::{Deserialize, Serialize};

/// The last result of one stage in this workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    /// The key of the run that produced the workspace's outputs: equal key, nothing to do.
    pub key: StageKey,
    /// Kind and implementation version.
    pub kind: String,
    /// The kind's implementation version then, for `why` to say it changed.
    pub version: u32,
    /// The params then, for `why` to name the param that changed.
    pub params: serde_json::Value,
    /// The interpolated `cmd` then, for `why`.
    pub cmd: Option<String>,
    /// The declared env then, for `why`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Deps with their hashes.
    pub deps: Vec<(String, OutputKind, Hash)>,
    /// The stage's fingerprint then, for `why`.
    #[serde(default)]
    pub fingerprint: Option<serde_json::Value>,
    /// What it produced, to tell a missing or edited output in the workspace.
    pub outputs: Vec<OutputRef>,
    /// Metrics of the run that produced them (saves reading the run-cache on no-op runs).
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Set when `dvx checkout` put these outputs here from that version
    /// (then the kind's fingerprint then is not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_out: Option<Hash>,
}

/// A stage whose last run in this workspace failed, so `status` can say
/// so instead of `never run`. Cleared when the stage next succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedRun {
    /// The key it failed with, when it got that far.
    pub key: Option<StageKey>,
    /// The failure message (its first line is what `status` shows).
    pub message: String,
    /// Unix seconds of the failure.
    pub at: u64,
    /// Of a sharded stage: the keys of the shards that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<StageKey>,
}

/// All of a workspace's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// Stage name → last result. Shared: planning a stage reads its entry
    /// without copying it (at 10,000 stages a copy each was ~3% of a no-op).
    #[serde(default, with = "shared_states")]
    pub stages: BTreeMap<String, Arc<StageState>>,
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
    /// Stage name → its last run here, when that failed.
    #[serde(default)]
    pub failed: BTreeMap<String, FailedRun>,
    /// The version `dvx checkout` last put in this workspace; cleared by
    /// the next run that writes a version.
    #[serde(default)]
    pub checked_out: Option<Hash>,
    #[serde(skip)]
    file: PathBuf,
    /// Digest of the file as loaded: a save that would write the same bytes
    /// (every no-op run) writes nothing.
    #[serde(skip)]
    loaded: Option<blake3::Hash>,
}

impl WorkspaceState {
    /// Load from `dir/state-v1.json` (missing → empty).
    pub fn load(dir: &Path) -> WorkspaceState {
        let file = dir.join("state-v1.json");
        let bytes = std::fs::read(&file).ok();
        let mut s: WorkspaceState =
            bytes.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
        s.loaded = bytes.map(|b| blake3::hash(&b));
        s.file = file;
        s
    }

    /// Save atomically; nothing to do when the file already holds these bytes.
    pub fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("state serialises");
        if self.loaded == Some(blake3::hash(&bytes)) && self.file.is_file() {
            return Ok(());
        }
        let dir = self.file.parent().expect("state file has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".state-{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.file)
    }
}

/// [`WorkspaceState::stages`] in the file as a plain map of states (serde
/// has no `Arc` without its `rc` feature, which would rebuild every crate).
mod shared_states {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::StageState;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Arc<StageState>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, v.as_ref())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Arc<StageState>>, D::Error> {
        let m = BTreeMap::<String, StageState>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

/// The out paths runs in this workspace have written or restored
/// (`.dvx/outs-v1.txt`, one per line): dvx may replace what is there.
/// Anything else found at an out path is the user's, and is never deleted.
/// Claimed before a stage writes, so a failed or killed stage's leftovers
/// stay dvx's to clean up.
#[derive(Debug)]
pub struct OwnedOuts {
    file: PathBuf,
    paths: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OwnedOuts {
    /// Load from `dir/outs-v1.txt` (missing → none).
    pub fn load(dir: &Path) -> OwnedOuts {
        let file = dir.join("outs-v1.txt");
        let paths = std::fs::read_to_string(&file).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default();
        OwnedOuts { file, paths: std::sync::Mutex::new(paths) }
    }

    /// Whether dvx wrote `path` here before.
    pub fn contains(&self, path: &str) -> bool {
        self.paths.lock().expect("owned outs lock").contains(path)
    }

    /// Record that dvx is about to write these paths (appended before it does).
    pub fn claim(&self, paths: &[String]) -> std::io::Result<()> {
        use std::io::Write;
        let mut set = self.paths.lock().expect("owned outs lock");
        let new: Vec<&String> = paths.iter().filter(|p| !set.contains(*p) && !p.contains('\n')).collect();
        if new.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text: String = new.iter().map(|p| format!("{p}\n")).collect();
        std::fs::OpenOptions::new().create(true).append(true).open(&self.file)?.write_all(text.as_bytes())?;
        set.extend(new.into_iter().cloned());
        Ok(())
    }
}
