//! Planning one stage: from its key inputs, what it last produced in this
//! workspace and the run-cache, decide what to do with it — nothing, restore
//! its outputs, or run it — and why. Planning reads (it hashes workspace
//! outputs and reads run entries through [`Lookup`]) but changes nothing;
//! the scheduler acts on the [`Plan`], and `status` and `--dry-run` only show it.

use dvx_cache::{OutputRef, RunEntry, StageKey};

use crate::key::KeyInputs;
use crate::run::Action;
use crate::spec::StageDef;
use crate::state::StageState;
use crate::why::{why_stale, StaleReason};
use crate::Metrics;

/// What planning may look at besides the stage's own inputs.
pub(crate) trait Lookup {
    /// The first of `outputs` that the workspace lacks or holds with other
    /// bytes; none when the workspace holds them all.
    fn workspace_mismatch(&self, outputs: &[OutputRef]) -> Option<StaleReason>;
    /// The run-cache entry for `key`, if any.
    fn run_entry(&self, key: &StageKey) -> dvx_cache::Result<Option<RunEntry>>;
}

/// Everything known about a stage once its deps are hashed.
pub(crate) struct Facts<'a> {
    /// The stage.
    pub def: &'a StageDef,
    /// What it last produced in this workspace.
    pub prev: Option<&'a StageState>,
    /// Its key inputs now.
    pub inputs: &'a KeyInputs<'a>,
    /// Upstream stages that (would) produce new outputs in this run.
    pub upstream_changed: &'a [String],
    /// For each dep, the stage that produces it.
    pub producers: &'a [Option<String>],
    /// `--force` names it (or `--force-all`).
    pub forced: bool,
    /// False when an upstream would run first (in a dry run), so some dep
    /// hashes, and the key, are guesses: the stage is planned to run.
    pub key_known: bool,
    /// Its last run in this workspace failed with this message.
    pub failed: Option<&'a str>,
}

/// What to do with a stage.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// The workspace holds this key's outputs (as its state records).
    UpToDate {
        /// The outputs.
        outputs: Vec<OutputRef>,
        /// Metrics of the run that produced them.
        metrics: Metrics,
    },
    /// The run-cache has this key: put its outputs in the workspace.
    Restore {
        /// The entry.
        entry: Box<RunEntry>,
        /// Why the workspace needs them: the first output missing or
        /// modified; none when it already holds them all (nothing to copy).
        workspace: Option<StaleReason>,
    },
    /// Execute.
    Run,
}

/// A stage's plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Its key (a guess unless `key_known`).
    pub key: StageKey,
    /// See [`Facts::key_known`].
    pub key_known: bool,
    /// Why it is stale, in the order of [`why_stale`], `Forced` first.
    pub reasons: Vec<StaleReason>,
    /// What to do.
    pub decision: Decision,
}

impl Decision {
    /// The action it amounts to.
    pub fn action(&self) -> Action {
        match self {
            Decision::UpToDate { .. } | Decision::Restore { workspace: None, .. } => Action::UpToDate,
            Decision::Restore { workspace: Some(_), .. } => Action::Restore,
            Decision::Run => Action::Run,
        }
    }

    /// The reasons to show for it: none when up to date; for a restore
    /// whose key did not change, what is wrong with the workspace.
    pub fn shown_reasons(&self, reasons: &[StaleReason]) -> Vec<StaleReason> {
        match self {
            Decision::UpToDate { .. } => Vec::new(),
            Decision::Restore { workspace: Some(w), .. } if reasons.is_empty() => vec![w.clone()],
            Decision::Restore { .. } | Decision::Run => reasons.to_vec(),
        }
    }
}

/// Plan a stage: a forced stage, or one whose key is not known yet, runs;
/// one whose workspace state has this key and whose outputs are all in the
/// workspace is up to date; else the run-cache decides ([`from_run_cache`]).
pub(crate) fn plan(look: &dyn Lookup, f: &Facts<'_>) -> Plan {
    let key = f.inputs.key();
    let mut reasons = why_stale(f.prev, f.inputs, f.upstream_changed, f.producers);
    if let Some(message) = f.failed {
        // Said first: it is what the user last saw happen to the stage.
        reasons.retain(|r| *r != StaleReason::NeverRun);
        reasons.insert(0, StaleReason::FailedLastRun { message: message.to_string() });
    }
    if f.forced {
        reasons.insert(0, StaleReason::Forced);
    }
    let decision = if f.forced || !f.key_known {
        Decision::Run
    } else {
        match f.prev.filter(|p| p.key == key) {
            Some(prev) if look.workspace_mismatch(&prev.outputs).is_none() => {
                Decision::UpToDate { outputs: prev.outputs.clone(), metrics: prev.metrics.clone() }
            }
            _ => from_run_cache(look, f.def, &key),
        }
    };
    Plan { key, key_known: f.key_known, reasons, decision }
}

/// What the run-cache offers for `key`: a restore when it has an entry
/// whose outputs are exactly the stage's outs, else a run (an entry naming
/// other paths, or one that cannot be read, is ignored with a warning).
fn from_run_cache(look: &dyn Lookup, def: &StageDef, key: &StageKey) -> Decision {
    match look.run_entry(key) {
        Ok(Some(entry)) if !outputs_are_outs(def, &entry.outputs) => {
            tracing::warn!(
                stage = %def.name,
                "run-cache entry {} names paths that are not this stage's outs ({}); ignoring it",
                key.short(),
                entry.outputs.iter().map(|o| o.path.as_str()).collect::<Vec<_>>().join(", ")
            );
            Decision::Run
        }
        Ok(Some(entry)) => {
            let workspace = look.workspace_mismatch(&entry.outputs);
            Decision::Restore { entry: Box::new(entry), workspace }
        }
        Ok(None) => Decision::Run,
        Err(e) => {
            tracing::warn!(stage = %def.name, "unreadable run-cache entry ({e}); executing instead");
            Decision::Run
        }
    }
}

/// Whether a run entry's outputs are exactly the stage's declared outs, in
/// order: the only paths a restore may write (the entry is someone else's input).
pub(crate) fn outputs_are_outs(def: &StageDef, outputs: &[OutputRef]) -> bool {
    outputs.len() == def.outs.len() && outputs.iter().zip(&def.outs).all(|(o, d)| &o.path == d)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dvx_cache::{CacheError, Hash, OutputKind};
    use serde_json::json;

    use super::*;

    /// A workspace (path → bytes) and a run-cache (key → entry, or unreadable).
    #[derive(Default)]
    struct World {
        files: BTreeMap<String, Hash>,
        runs: BTreeMap<StageKey, Option<RunEntry>>,
    }

    impl Lookup for World {
        fn workspace_mismatch(&self, outputs: &[OutputRef]) -> Option<StaleReason> {
            outputs.iter().find_map(|o| match self.files.get(&o.path) {
                None => Some(StaleReason::OutputMissing { path: o.path.clone() }),
                Some(h) if h != &o.hash => Some(StaleReason::OutputModified { path: o.path.clone() }),
                Some(_) => None,
            })
        }

        fn run_entry(&self, key: &StageKey) -> dvx_cache::Result<Option<RunEntry>> {
            match self.runs.get(key) {
                None => Ok(None),
                Some(Some(e)) => Ok(Some(e.clone())),
                Some(None) => Err(CacheError::BadRecord { path: "runs/x".into(), message: "truncated".into() }),
            }
        }
    }

    fn def(suffix: &str) -> StageDef {
        StageDef {
            deps: vec!["in.txt".into()],
            outs: vec!["a.txt".into()],
            params: json!({ "suffix": suffix }),
            cmd: Some("make a.txt".into()),
            ..StageDef::of_kind("a", "cmd")
        }
    }

    fn out(path: &str, bytes: &str) -> OutputRef {
        OutputRef { path: path.into(), kind: OutputKind::File, hash: Hash::of_bytes(bytes.as_bytes()) }
    }

    fn deps() -> Vec<(String, OutputKind, Hash)> {
        vec![("in.txt".into(), OutputKind::File, Hash::of_bytes(b"in"))]
    }

    /// The state a run of `inputs` producing `a.txt` = `bytes` leaves.
    fn state(inputs: &KeyInputs<'_>, bytes: &str) -> StageState {
        StageState {
            key: inputs.key(),
            kind: inputs.kind.into(),
            version: inputs.version,
            params: inputs.params.clone(),
            cmd: inputs.cmd.map(str::to_string),
            env: inputs.env.clone(),
            deps: inputs.deps.to_vec(),
            fingerprint: None,
            outputs: vec![out("a.txt", bytes)],
            metrics: [("rows".to_string(), json!(3))].into_iter().collect(),
            checked_out: None,
        }
    }

    fn entry(key: &StageKey, outputs: Vec<OutputRef>) -> RunEntry {
        RunEntry {
            key: key.clone(),
            kind: "cmd".into(),
            stage: "a".into(),
            outputs,
            metrics: Default::default(),
            log: None,
            memo: None,
            seconds: 1.0,
        }
    }

    fn facts<'a>(def: &'a StageDef, prev: Option<&'a StageState>, inputs: &'a KeyInputs<'a>) -> Facts<'a> {
        Facts {
            def,
            prev,
            inputs,
            upstream_changed: &[],
            producers: &[None],
            forced: false,
            key_known: true,
            failed: None,
        }
    }

    #[test]
    fn never_run_and_not_cached_runs() {
        let (d, deps) = (def("!"), deps());
        let inputs = KeyInputs::for_stage(&d, 1, &d.params, &deps, None);
        let p = plan(&World::default(), &facts(&d, None, &inputs));
        assert!(matches!(p.decision, Decision::Run));
        assert_eq!(p.decision.action(), Action::Run);
        assert_eq!(p.reasons, vec![StaleReason::NeverRun]);
        assert_eq!(p.key, inputs.key());

        // After a failed run, that is what it says instead.
        let p = plan(&World::default(), &Facts { failed: Some("exit 3\ncaused by: x"), ..facts(&d, None, &inputs) });
        assert_eq!(p.reasons, vec![StaleReason::FailedLastRun { message: "exit 3\ncaused by: x".into() }]);
        assert_eq!(p.reasons[0].to_string(), "failed last run: exit 3");
    }

    #[test]
    fn same_key_with_outputs_in_the_workspace_is_up_to_date() {
        let (d, deps) = (def("!"), deps());
        let inputs = KeyInputs::for_stage(&d, 1, &d.params, &deps, None);
        let prev = state(&inputs, "A!");
        let world = World { files: [("a.txt".into(), Hash::of_bytes(b"A!"))].into(), ..Default::default() };
        let p = plan(&world, &facts(&d, Some(&prev), &inputs));
        match &p.decision {
            Decision::UpToDate { outputs, metrics } => {
                assert_eq!(outputs, &prev.outputs);
                assert_eq!(metrics["rows"], 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.decision.action(), Action::UpToDate);
        assert!(p.reasons.is_empty() && p.decision.shown_reasons(&p.reasons).is_empty());
    }

    #[test]
    fn a_modified_output_is_restored_and_says_why() {
        let (d, deps) = (def("!"), deps());
        let inputs = KeyInputs::for_stage(&d, 1, &d.params, &deps, None);
        let prev = state(&inputs, "A!");
        let mut world = World { files: [("a.txt".into(), Hash::of_bytes(b"edited"))].into(), ..Default::default() };
        // Without a run entry it must run.
        assert!(matches!(plan(&world, &facts(&d, Some(&prev), &inputs)).decision, Decision::Run));
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("a.txt", "A!")])));
        let p = plan(&world, &facts(&d, Some(&prev), &inputs));
        assert!(matches!(&p.decision, Decision::Restore { entry, .. } if entry.outputs == prev.outputs));
        assert_eq!(p.decision.action(), Action::Restore);
        assert!(p.reasons.is_empty());
        assert_eq!(p.decision.shown_reasons(&p.reasons), vec![StaleReason::OutputModified { path: "a.txt".into() }]);
    }

    #[test]
    fn a_reverted_param_restores_from_the_run_cache_with_the_param_as_reason() {
        let (old, new, deps) = (def("?"), def("!"), deps());
        let old_inputs = KeyInputs::for_stage(&old, 1, &old.params, &deps, None);
        let prev = state(&old_inputs, "A?");
        let inputs = KeyInputs::for_stage(&new, 1, &new.params, &deps, None);
        let mut world = World { files: [("a.txt".into(), Hash::of_bytes(b"A?"))].into(), ..Default::default() };
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("a.txt", "A!")])));
        let p = plan(&world, &facts(&new, Some(&prev), &inputs));
        let changed =
            StaleReason::ParamChanged { field: "suffix".into(), old: Some(json!("?")), new: Some(json!("!")) };
        assert_eq!(p.reasons, vec![changed.clone()]);
        assert_eq!(p.decision.action(), Action::Restore);
        assert_eq!(p.decision.shown_reasons(&p.reasons), vec![changed.clone()]);

        // The workspace already holds the entry's bytes: nothing to copy.
        world.files.insert("a.txt".into(), Hash::of_bytes(b"A!"));
        let p = plan(&world, &facts(&new, Some(&prev), &inputs));
        assert!(matches!(p.decision, Decision::Restore { workspace: None, .. }));
        assert_eq!(p.decision.action(), Action::UpToDate);
        assert_eq!(p.decision.shown_reasons(&p.reasons), vec![changed]);
    }

    #[test]
    fn forced_or_unknown_key_runs_whatever_the_workspace_and_cache_hold() {
        let (d, deps) = (def("!"), deps());
        let inputs = KeyInputs::for_stage(&d, 1, &d.params, &deps, None);
        let prev = state(&inputs, "A!");
        let mut world = World { files: [("a.txt".into(), Hash::of_bytes(b"A!"))].into(), ..Default::default() };
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("a.txt", "A!")])));
        let p = plan(&world, &Facts { forced: true, ..facts(&d, Some(&prev), &inputs) });
        assert!(matches!(p.decision, Decision::Run));
        assert_eq!(p.reasons, vec![StaleReason::Forced]);
        let up = ["up".to_string()];
        let f = Facts { key_known: false, upstream_changed: &up, ..facts(&d, Some(&prev), &inputs) };
        let p = plan(&world, &f);
        assert!(matches!(p.decision, Decision::Run) && !p.key_known);
        assert_eq!(p.reasons, vec![StaleReason::UpstreamChanged { stage: "up".into() }]);
    }

    #[test]
    fn an_entry_naming_other_paths_or_an_unreadable_entry_runs() {
        let (d, deps) = (def("!"), deps());
        let inputs = KeyInputs::for_stage(&d, 1, &d.params, &deps, None);
        let mut world = World::default();
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("../../etc/passwd", "x")])));
        assert!(matches!(plan(&world, &facts(&d, None, &inputs)).decision, Decision::Run));
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("a.txt", "A!"), out("b.txt", "B")])));
        assert!(matches!(plan(&world, &facts(&d, None, &inputs)).decision, Decision::Run));
        world.runs.insert(inputs.key(), None);
        assert!(matches!(plan(&world, &facts(&d, None, &inputs)).decision, Decision::Run));
        world.runs.insert(inputs.key(), Some(entry(&inputs.key(), vec![out("a.txt", "A!")])));
        let p = plan(&world, &facts(&d, None, &inputs));
        assert!(matches!(p.decision, Decision::Restore { workspace: Some(StaleReason::OutputMissing { .. }), .. }));
        assert_eq!(p.decision.shown_reasons(&p.reasons), vec![StaleReason::NeverRun]);
    }
}
