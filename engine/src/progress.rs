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
}
