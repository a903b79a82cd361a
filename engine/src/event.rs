//! What a run tells whoever watches it. The engine prints nothing: it sends
//! [`Event`]s to an [`Observer`], and the command line renders them (a
//! progress bar, a line per Slurm job submitted).

use crate::run::StageResult;

/// Something that happened in a run.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The stages are about to be scheduled: this many are selected.
    Started {
        /// How many stages were selected, to size a progress bar.
        stages: usize,
    },
    /// A stage is being planned and, unless it is a dry run, acted upon.
    StageStarted {
        /// Its name.
        stage: &'a str,
    },
    /// A short note on a stage in flight ("job 12 RUNNING").
    Note {
        /// Its name.
        stage: &'a str,
        /// The note.
        note: &'a str,
    },
    /// A stage said how far it is (see [`crate::StageProgress`]).
    Progress {
        /// Its name.
        stage: &'a str,
        /// Units done.
        done: u64,
        /// Units to do, when the stage said.
        total: Option<u64>,
        /// What a unit is ("steps", "records").
        unit: &'a str,
        /// Its latest status text (may be empty).
        message: &'a str,
        /// Time since the total was set (or the first report).
        elapsed: std::time::Duration,
    },
    /// A line worth printing (a Slurm job submitted).
    Message {
        /// The line.
        line: &'a str,
    },
    /// A stage is done.
    StageFinished {
        /// Its result.
        result: &'a StageResult,
    },
    /// Stages that planning settled, with nothing to do (up to date,
    /// planned in a dry run, skipped, failed before anything was done), in
    /// the order planned: for each, what [`Event::StageStarted`] and then
    /// [`Event::StageFinished`] would tell. Told in batches, so a no-op run
    /// of thousands of stages writes their lines in a few writes.
    StagesPlanned {
        /// Their results.
        results: &'a [StageResult],
    },
    /// Every selected stage is done; the version is written next.
    StagesDone,
}

/// Hears a run's events, from any of its threads.
pub trait Observer: Send + Sync {
    /// Called for each event as it happens, from whichever thread it happens on.
    fn event(&self, event: Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: Event<'_>) {}
}
