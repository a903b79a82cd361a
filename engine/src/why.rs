//! Why a stage is stale: data, not an error. Causes are computed by comparing
//! the stage's current key inputs with what it last produced in this
//! workspace, in a fixed order, and rendered separately.

use std::fmt;

use dvx_cache::canonical_json;

use crate::key::KeyInputs;
use crate::state::StageState;

/// One cause for a stage to run (or be restored).
#[derive(Debug, Clone, PartialEq)]
pub enum StaleReason {
    /// `--force` / `--force-all`.
    Forced,
    /// No result of this stage in the workspace.
    NeverRun,
    /// The stage kind's implementation version changed.
    ImplementationChanged {
        /// Stage kind.
        kind: String,
    },
    /// The kind itself changed.
    KindChanged {
        /// Old kind.
        old: String,
        /// New kind.
        new: String,
    },
    /// A param changed (added, removed, or new value).
    ParamChanged {
        /// Dotted name below `params`.
        name: String,
        /// Old value.
        old: Option<serde_json::Value>,
        /// New value.
        new: Option<serde_json::Value>,
    },
    /// The command changed.
    CmdChanged,
    /// Declared env changed.
    EnvChanged,
    /// A source dep's bytes changed.
    DepChanged {
        /// Its path.
        path: String,
    },
    /// The list of deps or outs changed.
    DepsListChanged,
    /// An upstream stage produced new outputs.
    UpstreamChanged {
        /// Its name.
        stage: String,
    },
    /// The stage's fingerprint changed (a moved branch, a changed remote file).
    FingerprintChanged,
    /// An output is not in the workspace.
    OutputMissing {
        /// Its path.
        path: String,
    },
    /// An output in the workspace is not what the stage produced.
    OutputModified {
        /// Its path.
        path: String,
    },
}

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "unset".into(),
        Some(v) => v.to_string(),
    }
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::Forced => write!(f, "forced"),
            StaleReason::NeverRun => write!(f, "never run"),
            StaleReason::ImplementationChanged { kind } => write!(f, "implementation of {kind} changed"),
            StaleReason::KindChanged { old, new } => write!(f, "kind changed ({old} → {new})"),
            StaleReason::ParamChanged { name, old, new } => {
                write!(f, "params.{name} changed ({} → {})", show(old), show(new))
            }
            StaleReason::CmdChanged => write!(f, "cmd changed"),
            StaleReason::EnvChanged => write!(f, "env changed"),
            StaleReason::DepChanged { path } => write!(f, "deps {path} changed"),
            StaleReason::DepsListChanged => write!(f, "deps or outs list changed"),
            StaleReason::UpstreamChanged { stage } => write!(f, "upstream {stage} changed"),
            StaleReason::FingerprintChanged => write!(f, "external input changed (fingerprint)"),
            StaleReason::OutputMissing { path } => write!(f, "output missing from workspace ({path})"),
            StaleReason::OutputModified { path } => write!(f, "output modified in workspace ({path})"),
        }
    }
}

/// Params that differ, as dotted names, sorted.
fn param_diffs(
    prefix: &str,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    out: &mut Vec<StaleReason>,
) {
    use serde_json::Value;
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                param_diffs(&name, a.get(k), b.get(k), out);
            }
        }
        (a, b) => {
            let same = match (a, b) {
                (Some(x), Some(y)) => canonical_json(x) == canonical_json(y),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.push(StaleReason::ParamChanged { name: prefix.to_string(), old: a.cloned(), new: b.cloned() });
            }
        }
    }
}

/// Causes, in a fixed order, for a stage whose current inputs are `now`
/// (with `upstream_changed` naming upstream stages that produce new outputs)
/// compared with its last state `prev`.
pub fn why_stale(
    prev: Option<&StageState>,
    now: &KeyInputs<'_>,
    upstream_changed: &[String],
    dep_producers: &[Option<String>],
) -> Vec<StaleReason> {
    let Some(prev) = prev else { return vec![StaleReason::NeverRun] };
    let mut out = Vec::new();
    if prev.kind != now.kind {
        out.push(StaleReason::KindChanged { old: prev.kind.clone(), new: now.kind.to_string() });
    } else if prev.version != now.version {
        out.push(StaleReason::ImplementationChanged { kind: now.kind.to_string() });
    }
    param_diffs("", Some(&prev.params), Some(now.params), &mut out);
    if prev.cmd.as_deref() != now.cmd && !out.iter().any(|r| matches!(r, StaleReason::ParamChanged { .. })) {
        out.push(StaleReason::CmdChanged);
    }
    if &prev.env != now.env {
        out.push(StaleReason::EnvChanged);
    }
    let prev_paths: Vec<&str> = prev.deps.iter().map(|d| d.0.as_str()).collect();
    let now_paths: Vec<&str> = now.deps.iter().map(|d| d.0.as_str()).collect();
    let prev_outs: Vec<&str> = prev.outputs.iter().map(|o| o.path.as_str()).collect();
    let now_outs: Vec<&str> = now.outs.iter().map(String::as_str).collect();
    if prev_paths != now_paths || prev_outs != now_outs {
        out.push(StaleReason::DepsListChanged);
    } else {
        for (i, (d, old)) in now.deps.iter().zip(&prev.deps).enumerate() {
            if d.2 != old.2 {
                match dep_producers.get(i).cloned().flatten() {
                    Some(stage) => {
                        if !upstream_changed.contains(&stage) {
                            out.push(StaleReason::UpstreamChanged { stage });
                        }
                    }
                    None => out.push(StaleReason::DepChanged { path: d.0.clone() }),
                }
            }
        }
    }
    for s in upstream_changed {
        out.push(StaleReason::UpstreamChanged { stage: s.clone() });
    }
    if prev.fingerprint.as_ref() != now.fingerprint {
        out.push(StaleReason::FingerprintChanged);
    }
    out
}
