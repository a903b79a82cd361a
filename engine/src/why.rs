//! Why a stage is stale: data, not an error. Causes are computed by comparing
//! the stage's current key inputs with what it last produced in this
//! workspace, in a fixed order, and rendered separately.
//!
//! Each cause carries the old and new values where the workspace state has
//! them, and serialises tagged by `reason`, for `dvx status --json`:
//! `{"reason": "param_changed", "field": "suffix", "old": "!", "new": "?"}`.
//!
//! The order: forced, never run, kind or implementation, params (sorted by
//! dotted name), cmd (only when no param changed: the cmd interpolates them),
//! env, the deps or outs lists, else each dep in declared order (a produced
//! dep names its upstream stage), upstream stages that re-ran, fingerprint.

use std::collections::BTreeMap;
use std::fmt;

use dvx_cache::{canonical_json, Hash};
use serde::Serialize;

use crate::key::KeyInputs;
use crate::state::StageState;

/// One cause for a stage to run (or be restored).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    /// `--force` / `--force-all`.
    Forced,
    /// No result of this stage in the workspace.
    NeverRun,
    /// Its last run in this workspace failed (in place of `NeverRun` when
    /// it never succeeded here).
    FailedLastRun {
        /// The failure message.
        message: String,
    },
    /// The stage kind's implementation version changed.
    ImplementationChanged {
        /// Stage kind.
        kind: String,
        /// The version that produced the workspace's outputs.
        old: u32,
        /// The version now.
        new: u32,
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
        field: String,
        /// Old value (none: it was not set).
        old: Option<serde_json::Value>,
        /// New value (none: it is no longer set).
        new: Option<serde_json::Value>,
    },
    /// The command changed.
    CmdChanged {
        /// Old interpolated command.
        old: Option<String>,
        /// New interpolated command.
        new: Option<String>,
    },
    /// Declared env changed.
    EnvChanged {
        /// The variables that differ, as they were (one unset then is absent).
        old: BTreeMap<String, String>,
        /// The variables that differ, as they are now (one unset now is absent).
        new: BTreeMap<String, String>,
    },
    /// A source dep's bytes changed.
    DepChanged {
        /// Its path.
        path: String,
        /// Its old hash.
        old: Hash,
        /// Its new hash.
        new: Hash,
        /// How much it changed, for `status` (filled in by [`size_changes`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<SizeChange>,
    },
    /// The list of deps or outs changed.
    DepsListChanged {
        /// Old deps.
        old_deps: Vec<String>,
        /// New deps.
        new_deps: Vec<String>,
        /// Old outs.
        old_outs: Vec<String>,
        /// New outs.
        new_outs: Vec<String>,
    },
    /// An upstream stage produced new outputs.
    UpstreamChanged {
        /// Its name.
        stage: String,
    },
    /// The stage's fingerprint changed (a moved branch, a changed remote file).
    FingerprintChanged {
        /// Old fingerprint.
        old: Option<serde_json::Value>,
        /// New fingerprint.
        new: Option<serde_json::Value>,
    },
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

/// How a changed file's size moved: bytes, and lines when both sides are text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeChange {
    /// Bytes before.
    pub old_bytes: u64,
    /// Bytes now.
    pub new_bytes: u64,
    /// Lines before and now, for text files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<(u64, u64)>,
}

impl fmt::Display for SizeChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = |a: u64, b: u64| {
            let d = b as i128 - a as i128;
            if d > 0 {
                format!("+{d}")
            } else {
                d.to_string()
            }
        };
        let plural = |a: u64, b: u64| if a.abs_diff(b) == 1 { "" } else { "s" };
        let (a, b) = (self.old_bytes, self.new_bytes);
        if a == b {
            write!(f, "same size")?;
        } else {
            write!(f, "{} byte{}", signed(a, b), plural(a, b))?;
        }
        match self.lines {
            Some((a, b)) if a != b => write!(f, ", {} line{} ({a} → {b})", signed(a, b), plural(a, b))?,
            _ => {}
        }
        Ok(())
    }
}

/// Changed deps up to this size are measured.
const COUNT_UP_TO: u64 = 1 << 30;

/// Bytes and, for text (no NUL byte), lines of a stream; `None` when it
/// cannot be read to the end.
fn measure(mut r: impl std::io::Read) -> Option<(u64, Option<u64>)> {
    let mut buf = vec![0u8; 1 << 16];
    let (mut bytes, mut lines, mut text, mut last) = (0u64, 0u64, true, b'\n');
    loop {
        let got = r.read(&mut buf).ok()?;
        if got == 0 {
            break;
        }
        let chunk = &buf[..got];
        bytes += got as u64;
        text &= !chunk.contains(&0);
        if text {
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        last = chunk[got - 1];
    }
    // A last line without a newline still counts.
    Some((bytes, text.then_some(lines + u64::from(last != b'\n'))))
}

/// Fill in [`SizeChange`]s of `DepChanged` reasons, for `status`: the old
/// bytes come from the cache (when it still holds them; a version stores
/// its sources), the new from the workspace. Files up to 1 GiB only; what
/// cannot be read is left out.
pub fn size_changes(reasons: &mut [StaleReason], cache: &dvx_cache::Cache, wdir: &std::path::Path) {
    for r in reasons {
        let StaleReason::DepChanged { path, old, size, .. } = r else { continue };
        let file = crate::executor::local::abs(wdir, path);
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        if !meta.is_file() || meta.len() > COUNT_UP_TO || !cache.has_object(old) {
            continue;
        }
        let Some((old_bytes, old_lines)) = cache.open_object(old).ok().and_then(measure) else { continue };
        let Some((new_bytes, new_lines)) = std::fs::File::open(&file).ok().and_then(measure) else { continue };
        let lines = old_lines.zip(new_lines);
        *size = Some(SizeChange { old_bytes, new_bytes, lines });
    }
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
            StaleReason::FailedLastRun { message } => {
                write!(f, "failed last run: {}", message.lines().next().unwrap_or(""))
            }
            StaleReason::ImplementationChanged { kind, .. } => write!(f, "implementation of {kind} changed"),
            StaleReason::KindChanged { old, new } => write!(f, "kind changed ({old} → {new})"),
            StaleReason::ParamChanged { field, old, new } => {
                write!(f, "params.{field} changed ({} → {})", show(old), show(new))
            }
            StaleReason::CmdChanged { .. } => write!(f, "cmd changed"),
            StaleReason::EnvChanged { .. } => write!(f, "env changed"),
            StaleReason::DepChanged { path, size: None, .. } => write!(f, "deps {path} changed"),
            StaleReason::DepChanged { path, size: Some(s), .. } => write!(f, "deps {path} changed ({s})"),
            StaleReason::DepsListChanged { .. } => write!(f, "deps or outs list changed"),
            StaleReason::UpstreamChanged { stage } => write!(f, "upstream {stage} changed"),
            StaleReason::FingerprintChanged { .. } => write!(f, "external input changed (fingerprint)"),
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
                out.push(StaleReason::ParamChanged { field: prefix.to_string(), old: a.cloned(), new: b.cloned() });
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
        out.push(StaleReason::ImplementationChanged {
            kind: now.kind.to_string(),
            old: prev.version,
            new: now.version,
        });
    }
    param_diffs("", Some(&prev.params), Some(now.params), &mut out);
    if prev.cmd.as_deref() != now.cmd && !out.iter().any(|r| matches!(r, StaleReason::ParamChanged { .. })) {
        out.push(StaleReason::CmdChanged { old: prev.cmd.clone(), new: now.cmd.map(str::to_string) });
    }
    if &prev.env != now.env {
        let differ = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        out.push(StaleReason::EnvChanged { old: differ(&prev.env, now.env), new: differ(now.env, &prev.env) });
    }
    let prev_paths: Vec<&str> = prev.deps.iter().map(|d| d.0.as_str()).collect();
    let now_paths: Vec<&str> = now.deps.iter().map(|d| d.0.as_str()).collect();
    let prev_outs: Vec<&str> = prev.outputs.iter().map(|o| o.path.as_str()).collect();
    let now_outs: Vec<&str> = now.outs.iter().map(String::as_str).collect();
    if prev_paths != now_paths || prev_outs != now_outs {
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        out.push(StaleReason::DepsListChanged {
            old_deps: owned(prev_paths),
            new_deps: owned(now_paths),
            old_outs: owned(prev_outs),
            new_outs: owned(now_outs),
        });
    } else {
        for (i, (d, old)) in now.deps.iter().zip(&prev.deps).enumerate() {
            if d.2 != old.2 {
                match dep_producers.get(i).cloned().flatten() {
                    Some(stage) => {
                        if !upstream_changed.contains(&stage) {
                            out.push(StaleReason::UpstreamChanged { stage });
                        }
                    }
                    None => out.push(StaleReason::DepChanged {
                        path: d.0.clone(),
                        old: old.2.clone(),
                        new: d.2.clone(),
                        size: None,
                    }),
                }
            }
        }
    }
    for s in upstream_changed {
        out.push(StaleReason::UpstreamChanged { stage: s.clone() });
    }
    // A checked-out version does not record fingerprints: unknown, not changed.
    let unknown = prev.checked_out.is_some() && prev.fingerprint.is_none();
    if prev.fingerprint.as_ref() != now.fingerprint && !unknown {
        out.push(StaleReason::FingerprintChanged { old: prev.fingerprint.clone(), new: now.fingerprint.cloned() });
    }
    out
}

#[cfg(test)]
mod tests {
    use dvx_cache::OutputKind;
    use serde_json::json;

    use super::*;

    type Deps = Vec<(String, OutputKind, Hash)>;

    fn dep(path: &str, bytes: &str) -> (String, OutputKind, Hash) {
        (path.to_string(), OutputKind::File, Hash::of_bytes(bytes.as_bytes()))
    }

    /// What `now` describes, as the workspace would have recorded it.
    fn state_of(now: &KeyInputs<'_>) -> StageState {
        StageState {
            key: now.key(),
            kind: now.kind.to_string(),
            version: now.version,
            params: now.params.clone(),
            cmd: now.cmd.map(str::to_string),
            env: now.env.clone(),
            deps: now.deps.to_vec(),
            fingerprint: now.fingerprint.cloned(),
            outputs: now
                .outs
                .iter()
                .map(|o| dvx_cache::OutputRef { path: o.clone(), kind: OutputKind::File, hash: Hash::of_bytes(b"") })
                .collect(),
            metrics: Default::default(),
            checked_out: None,
        }
    }

    fn inputs<'a>(
        params: &'a serde_json::Value,
        env: &'a BTreeMap<String, String>,
        outs: &'a [String],
        deps: &'a Deps,
        cmd: Option<&'a str>,
        fingerprint: Option<&'a serde_json::Value>,
    ) -> KeyInputs<'a> {
        KeyInputs { kind: "cmd", version: 1, params, cmd, env, cwd: "", outs, deps, fingerprint }
    }

    #[test]
    fn never_run_alone_without_state() {
        let (params, env, outs, deps) = (json!({}), BTreeMap::new(), vec!["o".to_string()], vec![dep("i", "x")]);
        let now = inputs(&params, &env, &outs, &deps, Some("c"), None);
        assert_eq!(why_stale(None, &now, &["up".into()], &[None]), vec![StaleReason::NeverRun]);
    }

    #[test]
    fn same_inputs_are_not_stale() {
        let (params, env, outs, deps) = (json!({"a": 1}), BTreeMap::new(), vec!["o".to_string()], vec![dep("i", "x")]);
        let now = inputs(&params, &env, &outs, &deps, Some("c"), None);
        assert_eq!(why_stale(Some(&state_of(&now)), &now, &[], &[None]), vec![]);
    }

    #[test]
    fn causes_come_in_the_documented_order_with_old_and_new() {
        let (params, env, outs) = (json!({"b": 1, "a": {"x": "!"}}), BTreeMap::new(), vec!["o".to_string()]);
        let deps = vec![dep("src.txt", "old"), dep("mid.txt", "old")];
        let fp = json!({"commit": "1"});
        let old = inputs(&params, &env, &outs, &deps, Some("c1"), Some(&fp));
        let mut prev = state_of(&old);
        prev.version = 1;

        let params2 = json!({"a": {"x": "?"}, "c": true});
        let env2: BTreeMap<String, String> = [("K".to_string(), "v".to_string())].into();
        let deps2 = vec![dep("src.txt", "new"), dep("mid.txt", "new")];
        let fp2 = json!({"commit": "2"});
        let mut now = inputs(&params2, &env2, &outs, &deps2, Some("c2"), Some(&fp2));
        now.version = 2;
        let producers = [None, Some("mid".to_string())];
        let got = why_stale(Some(&prev), &now, &["other".into()], &producers);
        assert_eq!(
            got,
            vec![
                StaleReason::ImplementationChanged { kind: "cmd".into(), old: 1, new: 2 },
                StaleReason::ParamChanged { field: "a.x".into(), old: Some(json!("!")), new: Some(json!("?")) },
                StaleReason::ParamChanged { field: "b".into(), old: Some(json!(1)), new: None },
                StaleReason::ParamChanged { field: "c".into(), old: None, new: Some(json!(true)) },
                StaleReason::EnvChanged { old: BTreeMap::new(), new: env2.clone() },
                StaleReason::DepChanged {
                    path: "src.txt".into(),
                    old: Hash::of_bytes(b"old"),
                    new: Hash::of_bytes(b"new"),
                    size: None,
                },
                StaleReason::UpstreamChanged { stage: "mid".into() },
                StaleReason::UpstreamChanged { stage: "other".into() },
                StaleReason::FingerprintChanged { old: Some(fp.clone()), new: Some(fp2.clone()) },
            ]
        );
        // A param change explains the cmd change (the cmd interpolates params).
        assert!(!got.iter().any(|r| matches!(r, StaleReason::CmdChanged { .. })));
    }

    #[test]
    fn cmd_env_and_lists_carry_old_and_new() {
        let (params, outs) = (json!({}), vec!["o".to_string()]);
        let env: BTreeMap<String, String> = [("A".into(), "1".into()), ("B".into(), "same".into())].into();
        let deps = vec![dep("i", "x")];
        let prev = state_of(&inputs(&params, &env, &outs, &deps, Some("old"), None));

        let env2: BTreeMap<String, String> = [("B".into(), "same".into()), ("C".into(), "3".into())].into();
        let now = inputs(&params, &env2, &outs, &deps, Some("new"), None);
        assert_eq!(
            why_stale(Some(&prev), &now, &[], &[None]),
            vec![
                StaleReason::CmdChanged { old: Some("old".into()), new: Some("new".into()) },
                StaleReason::EnvChanged {
                    old: [("A".to_string(), "1".to_string())].into(),
                    new: [("C".to_string(), "3".to_string())].into(),
                },
            ]
        );

        let (outs2, deps2) = (vec!["o2".to_string()], vec![dep("i", "y"), dep("j", "x")]);
        let now = inputs(&params, &env, &outs2, &deps2, Some("old"), None);
        // A changed list hides the per-dep comparison; an upstream that re-ran still shows.
        assert_eq!(
            why_stale(Some(&prev), &now, &["up".into()], &[None, None]),
            vec![
                StaleReason::DepsListChanged {
                    old_deps: vec!["i".into()],
                    new_deps: vec!["i".into(), "j".into()],
                    old_outs: vec!["o".into()],
                    new_outs: vec!["o2".into()],
                },
                StaleReason::UpstreamChanged { stage: "up".into() },
            ]
        );
    }

    #[test]
    fn kind_change_hides_version_and_reasons_serialise_tagged() {
        let (params, env, outs, deps) = (json!({}), BTreeMap::new(), vec![], vec![]);
        let mut prev = state_of(&inputs(&params, &env, &outs, &deps, None, None));
        prev.kind = "filter".into();
        prev.version = 7;
        let now = inputs(&params, &env, &outs, &deps, None, None);
        let got = why_stale(Some(&prev), &now, &[], &[]);
        assert_eq!(got, vec![StaleReason::KindChanged { old: "filter".into(), new: "cmd".into() }]);
        assert_eq!(
            serde_json::to_value(&got[0]).unwrap(),
            json!({"reason": "kind_changed", "old": "filter", "new": "cmd"})
        );
        let p = StaleReason::ParamChanged { field: "suffix".into(), old: Some(json!("!")), new: None };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"reason": "param_changed", "field": "suffix", "old": "!", "new": null})
        );
        assert_eq!(p.to_string(), "params.suffix changed (\"!\" → unset)");
        assert_eq!(serde_json::to_value(StaleReason::Forced).unwrap(), json!({"reason": "forced"}));
    }
}
