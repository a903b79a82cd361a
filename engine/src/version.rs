//! The version body schema, one definition for the run that writes it and
//! the commands that read it. Its canonical JSON is what the version hash
//! covers (the cache checks paths and hashes when it reads a record).

use dvx_cache::{OutputRef, StageKey, VersionRecord};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

fn format_one() -> u32 {
    1
}

/// A stage as recorded in a version body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedStage {
    /// The stage's name in that version.
    pub name: String,
    /// The stage's kind, for `show` and `reproduce`.
    pub kind: String,
    /// Its stage key, as the version recorded it.
    pub key: Option<StageKey>,
    /// The folder it ran in, relative to the workspace.
    #[serde(default)]
    pub cwd: String,
    /// Its deps as written, relative to the workspace.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Its outs, relative to the workspace.
    #[serde(default)]
    pub outs: Vec<String>,
    /// Its `metrics:` files (also the last of `outs`); left out of the
    /// body when there are none, so older versions keep their hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// Its params, so `reproduce` can run it again as it was.
    #[serde(default)]
    pub params: serde_json::Value,
    /// The interpolated `cmd` it ran.
    #[serde(default)]
    pub cmd: Option<String>,
    /// Its declared env.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// What it produced: the objects `checkout` restores.
    #[serde(default)]
    pub outputs: Vec<OutputRef>,
}

/// A version body: what its hash covers. Written by a run, read by
/// `show`, `checkout`, `reproduce` and `diff`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionBody {
    /// The body format (1).
    #[serde(default = "format_one")]
    pub dvx_version: u32,
    /// The name of the pipeline that made the version.
    pub pipeline: String,
    /// Stages in the order they were scheduled (topological).
    pub stages: Vec<RecordedStage>,
    /// The source files (deps no stage produces) with their hashes.
    #[serde(default)]
    pub sources: Vec<OutputRef>,
}

/// Parse a version's body.
pub fn body_of(rec: &VersionRecord) -> Result<VersionBody> {
    serde_json::from_value(rec.body.clone())
        .map_err(|e| EngineError::Other(format!("version {} has an unreadable body: {e}", rec.hash.short())))
}
