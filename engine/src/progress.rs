//! A stage's [`Progress`] calls, turned into [`Event::Progress`] for the
//! run's observer: at most every 100 ms per stage (a loop calling `inc` per
//! record must not flood the renderer), and always when the total is reached.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{Event, Observer};
use crate::Progress;

/// What the renderer needs between two reports.
struct Count {
    total: Option<u64>,
    unit: String,
    done: u64,
    message: String,
    started: Instant,
    last_sent: Option<Instant>,
}

/// One stage's progress, reported to an observer as events.
pub struct StageProgress<'a> {
    stage: &'a str,
    observer: &'a dyn Observer,
    count: Mutex<Count>,
}

const EVERY: Duration = Duration::from_millis(100);

impl<'a> StageProgress<'a> {
    /// Progress of `stage`, told to `observer`.
    pub fn new(stage: &'a str, observer: &'a dyn Observer) -> Self {
        let count = Count {
            total: None,
            unit: String::new(),
            done: 0,
            message: String::new(),
            started: Instant::now(),
            last_sent: None,
        };
        StageProgress { stage, observer, count: Mutex::new(count) }
    }

    fn send(&self, c: &mut Count, force: bool) {
        let now = Instant::now();
        if !force && c.last_sent.is_some_and(|t| now.duration_since(t) < EVERY) {
            return;
        }
        c.last_sent = Some(now);
        self.observer.event(Event::Progress {
            stage: self.stage,
            done: c.done,
            total: c.total,
            unit: &c.unit,
            message: &c.message,
            elapsed: now.duration_since(c.started),
        });
    }
}

impl Progress for StageProgress<'_> {
    fn set_total(&self, total: u64, unit: &str) {
        let mut c = self.count.lock().expect("progress lock");
        c.total = Some(total);
        c.unit = unit.to_string();
        c.done = 0;
        c.started = Instant::now();
        self.send(&mut c, true);
    }

    fn inc(&self, n: u64) {
        let mut c = self.count.lock().expect("progress lock");
        c.done = c.done.saturating_add(n);
        let finished = c.total == Some(c.done);
        self.send(&mut c, finished);
    }

    fn message(&self, message: &str) {
        let mut c = self.count.lock().expect("progress lock");
        c.message = message.to_string();
        self.send(&mut c, false);
    }
}

/// Deps smaller than this hash in well under a second: no progress for them.
pub(crate) const HASH_PROGRESS_FROM: u64 = 64 << 20;

const MIB: u64 = 1 << 20;

/// Hashing a stage's large dep, shown as that stage's progress in MiB
/// (`MiB 512/1480 (34%) hashing dep raw.jsonl ETA 3s`).
pub(crate) struct HashingProgress<'a> {
    progress: StageProgress<'a>,
    dep: &'a str,
    /// MiB reported so far; `None` until the first report (or forever, for a small dep).
    reported: Mutex<Option<u64>>,
}

impl<'a> HashingProgress<'a> {
    pub(crate) fn new(stage: &'a str, dep: &'a str, observer: &'a dyn Observer) -> Self {
        HashingProgress { progress: StageProgress::new(stage, observer), dep, reported: Mutex::new(None) }
    }

    pub(crate) fn report(&self, p: dvx_cache::HashProgress) {
        if p.total < HASH_PROGRESS_FROM {
            return;
        }
        let mut reported = self.reported.lock().expect("hashing progress lock");
        let done = if p.done >= p.total { p.total.div_ceil(MIB) } else { p.done / MIB };
        let before = match *reported {
            Some(r) => r,
            None => {
                self.progress.set_total(p.total.div_ceil(MIB), "MiB");
                self.progress.message(&format!("hashing dep {}", self.dep));
                0
            }
        };
        if done > before {
            self.progress.inc(done - before);
        }
        *reported = Some(done.max(before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(u64, Option<u64>, String)>>);
    impl Observer for Seen {
        fn event(&self, e: Event<'_>) {
            if let Event::Progress { done, total, message, .. } = e {
                self.0.lock().unwrap().push((done, total, message.to_string()));
            }
        }
    }

    #[test]
    fn reports_total_throttles_and_reports_the_end() {
        let seen = Seen::default();
        let p = StageProgress::new("s", &seen);
        p.set_total(1000, "records");
        for _ in 0..1000 {
            p.inc(1);
        }
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got.first(), Some(&(0, Some(1000), String::new())));
        assert_eq!(got.last(), Some(&(1000, Some(1000), String::new())));
        assert!(got.len() < 10, "a tight loop must not send an event per call: {}", got.len());
    }

    #[test]
    fn hashing_a_large_dep_reports_mib_to_the_end_and_a_small_one_nothing() {
        let seen = Seen::default();
        let h = HashingProgress::new("s", "raw.jsonl", &seen);
        let total = 100 * MIB + 5;
        for done in (0..=total).step_by(8 << 20).chain([total]) {
            h.report(dvx_cache::HashProgress { done, total });
        }
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got.first().map(|g| (g.0, g.1)), Some((0, Some(101))));
        assert_eq!(got.last(), Some(&(101, Some(101), "hashing dep raw.jsonl".to_string())));

        let seen = Seen::default();
        let h = HashingProgress::new("s", "small.jsonl", &seen);
        h.report(dvx_cache::HashProgress { done: MIB, total: MIB });
        assert!(seen.0.lock().unwrap().is_empty());
    }
}
