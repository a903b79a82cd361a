//! The scheduler's loop. Stages whose upstreams are done are planned in
//! batches, one batch at a time per planner (a core), each batch costing
//! one thread of the budget as planning a stage did: a no-op of 10,000
//! stages is some hundred tasks, wakes and writes of stage lines, not
//! 10,000 of each. What planning settles (up to date,
//! planned in a dry run, skipped, failed before anything was done) is
//! reported a batch at a time ([`Event::StagesPlanned`]); a stage to restore
//! or run ends its batch and waits for the thread budget, then acts in a
//! task of its own, between its `start` and its end as before.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{act_planned, plan_stage, Planned, Shared, StageResult, Status, Step};
use crate::budget;
use crate::event::{Event, Observer};
use crate::spec::ExecutorKind;

/// The most stages planned in one task: small enough that planners share a
/// wave evenly and lines keep coming, large enough that a task's cost is lost
/// in the planning.
const BATCH: usize = 128;

/// What a task of the run ended with.
#[allow(clippy::large_enum_variant)] // one a task, moved once
enum Finished {
    /// A batch planned: the results it settled, in order, and the stage it
    /// stopped at to act on, with the stages it did not get to.
    Batch { done: Vec<(usize, StageResult)>, act: Option<Box<Planned>>, left: Vec<usize> },
    /// A stage acted: what it cost the budget, and its result.
    Acted { si: usize, charge: usize, result: StageResult },
}

/// Run the `selected` stages to the end, `budget` threads of them at a
/// time, planning with `planners` tasks at most.
pub(super) async fn schedule(sh: Arc<Shared>, selected: &[usize], budget: usize, planners: usize) {
    let in_sel: BTreeSet<usize> = selected.iter().copied().collect();
    let mut waiting: Vec<usize> =
        (0..sh.p.stages.len()).map(|i| sh.graph.upstream[i].iter().filter(|u| in_sel.contains(u)).count()).collect();
    // Ready to plan, in the order they became ready.
    let mut ready: VecDeque<usize> = selected.iter().copied().filter(|&i| waiting[i] == 0).collect();
    // Planned, waiting for the budget to act.
    let mut to_act: VecDeque<usize> = VecDeque::new();
    let mut planned: HashMap<usize, Box<Planned>> = HashMap::new();
    let mut set = tokio::task::JoinSet::new();
    let (mut free, mut planning, mut done) = (budget, 0, 0);
    let planners = planners.max(1);
    while done < selected.len() {
        // A Slurm stage's threads are its node's: here it costs one, for the process waiting on it.
        let declared =
            |si: usize| if sh.executors[si] == ExecutorKind::Slurm { Some(1) } else { sh.p.stages[si].threads };
        for budget::Grant { stage: si, threads, charge } in budget::grant(&mut to_act, declared, &mut free, budget) {
            let p = planned.remove(&si).expect("a stage to act on was planned");
            tracing::debug!(stage = %sh.p.stages[si].name, threads, "starting");
            if !p.started {
                sh.observer.event(Event::StageStarted { stage: &sh.p.stages[si].name });
            }
            let sh2 = sh.clone();
            set.spawn_blocking(move || {
                let result = act_planned(&sh2, *p, threads);
                sh2.observer.event(Event::StageFinished { result: &result });
                Finished::Acted { si, charge, result }
            });
        }
        // Planning waits behind a stage waiting for threads, so a wide
        // stage is not starved by planners.
        while planning < planners && free > 0 && to_act.is_empty() && !ready.is_empty() {
            let n = ready.len().div_ceil((planners - planning).min(free)).min(BATCH);
            free -= 1;
            let batch: Vec<usize> = ready.drain(..n).collect();
            planning += 1;
            let sh2 = sh.clone();
            set.spawn_blocking(move || plan_batch(&sh2, batch));
        }
        let Some(joined) = set.join_next().await else { break };
        let finished = match joined {
            Ok(x) => x,
            Err(e) => panic!("stage task panicked: {e}"),
        };
        let settled = match finished {
            Finished::Acted { si, charge, result } => {
                free += charge;
                vec![(si, result)]
            }
            Finished::Batch { done, act, left } => {
                planning -= 1;
                free += 1;
                if let Some(p) = act {
                    to_act.push_back(p.si);
                    planned.insert(p.si, p);
                }
                // Not planned yet: first in line again, in their order.
                for si in left.into_iter().rev() {
                    ready.push_front(si);
                }
                done
            }
        };
        for (si, result) in settled {
            if result.status == Status::Failed && !sh.keep_going && !sh.dry_run {
                // Fail fast: the stages in flight are asked to stop, no new one starts.
                sh.cancel.cancel(format!("stage `{}` failed", result.name));
            }
            sh.results.lock().expect("results lock")[si] = Some(result);
            done += 1;
            for &d in &sh.graph.downstream[si] {
                if in_sel.contains(&d) {
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        ready.push_back(d);
                    }
                }
            }
        }
    }
}

/// The results of a batch so far, and how many of them were told.
#[derive(Default)]
struct Told {
    stages: Vec<usize>,
    results: Vec<StageResult>,
    told: usize,
}

impl Told {
    /// Tell the observer the results not told yet, as one batch.
    fn flush(&mut self, observer: &dyn Observer) {
        if self.told < self.results.len() {
            observer.event(Event::StagesPlanned { results: &self.results[self.told..] });
            self.told = self.results.len();
        }
    }
}

/// Plan `batch` in order, until a stage needs to act (it and the stages
/// after it go back). A failure settled here stops the run at once (unless
/// `keep_going`), as it would have had the stage been planned alone: the
/// stages after it are not started.
fn plan_batch(sh: &Shared, batch: Vec<usize>) -> Finished {
    let told = Mutex::new(Told::default());
    for (i, &si) in batch.iter().enumerate() {
        let observer = Starting {
            inner: sh.observer.as_ref(),
            stage: &sh.p.stages[si].name,
            started: AtomicBool::new(false),
            told: &told,
        };
        let step = plan_stage(sh, si, &observer);
        let started = observer.started.load(Ordering::SeqCst);
        match step {
            Step::Done(r) => {
                if r.status == Status::Failed && !sh.keep_going && !sh.dry_run {
                    sh.cancel.cancel(format!("stage `{}` failed", r.name));
                }
                let mut t = told.lock().expect("told lock");
                if started {
                    // Its `start` went out on its own: so does its end.
                    sh.observer.event(Event::StageFinished { result: &r });
                    t.told += 1;
                }
                t.stages.push(si);
                t.results.push(r);
            }
            Step::Act(mut p) => {
                p.started = started;
                let done = finish(told, sh.observer.as_ref());
                return Finished::Batch { done, act: Some(p), left: batch[i + 1..].to_vec() };
            }
        }
    }
    Finished::Batch { done: finish(told, sh.observer.as_ref()), act: None, left: Vec::new() }
}

/// Tell what is left to tell of a batch; its results for the scheduler.
fn finish(told: Mutex<Told>, observer: &dyn Observer) -> Vec<(usize, StageResult)> {
    let mut t = told.into_inner().expect("told lock");
    t.flush(observer);
    t.stages.into_iter().zip(t.results).collect()
}

/// What a stage planned in a batch reports through. The first thing it
/// reports (progress hashing a large dep) is told after the batch's
/// results so far and after the stage's own `start`, so it shows as
/// started while it works, and lines keep their order.
struct Starting<'a> {
    inner: &'a dyn Observer,
    stage: &'a str,
    started: AtomicBool,
    told: &'a Mutex<Told>,
}

impl Observer for Starting<'_> {
    fn event(&self, event: Event<'_>) {
        if !self.started.swap(true, Ordering::SeqCst) {
            self.told.lock().expect("told lock").flush(self.inner);
            self.inner.event(Event::StageStarted { stage: self.stage });
        }
        self.inner.event(event);
    }
}
