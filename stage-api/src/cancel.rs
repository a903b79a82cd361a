//! Cancellation: the engine asks running stages to stop (another stage
//! failed and the run stops early, or dvx got SIGINT/SIGTERM). A stage that
//! can stop early checks its context's [`Cancel`] between units of work
//! (a chunk, a step, a request) and returns [`Cancel::check`]'s failure; one
//! that never checks runs to its end. A cancelled stage's outputs are never
//! stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::StageFailure;

/// A token shared by everyone a run hands it to: tripped once, it stays
/// tripped. Cloning is cheap and every clone sees the same state. The
/// default is a fresh token nobody has tripped.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tripped: AtomicBool,
    /// Why, as the first caller of [`Cancel::cancel`] said.
    reason: Mutex<Option<String>>,
}

impl Cancel {
    /// A token nobody has tripped.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Ask everyone holding this token to stop, saying why ("interrupted by
    /// SIGINT", "stage `x` failed"). Only the first reason is kept.
    pub fn cancel(&self, reason: impl Into<String>) {
        let mut r = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.into());
        }
        self.inner.tripped.store(true, Ordering::SeqCst);
    }

    /// Whether the token was tripped: a cheap load, fine in a hot loop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.tripped.load(Ordering::Relaxed)
    }

    /// Why it was tripped, if it was.
    pub fn reason(&self) -> Option<String> {
        if !self.is_cancelled() {
            return None;
        }
        self.inner.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `Ok` while running may go on; once tripped, the failure a stage
    /// returns to stop (of kind [`crate::FailureKind::Cancelled`]).
    pub fn check(&self) -> Result<(), StageFailure> {
        if !self.is_cancelled() {
            return Ok(());
        }
        let why = self.reason().unwrap_or_else(|| "the run was cancelled".into());
        Err(StageFailure::cancelled(format!("cancelled: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureKind;

    #[test]
    fn a_fresh_token_lets_work_go_on() {
        let c = Cancel::new();
        assert!(!c.is_cancelled());
        assert_eq!(c.reason(), None);
        assert!(c.check().is_ok());
    }

    #[test]
    fn every_clone_sees_the_trip_and_the_first_reason_stays() {
        let c = Cancel::new();
        let seen_by_worker = c.clone();
        c.cancel("stage `boom` failed");
        c.cancel("interrupted by SIGINT");
        assert!(seen_by_worker.is_cancelled());
        assert_eq!(seen_by_worker.reason().as_deref(), Some("stage `boom` failed"));
        let f = seen_by_worker.check().unwrap_err();
        assert_eq!(f.kind, FailureKind::Cancelled);
        assert_eq!(f.message, "cancelled: stage `boom` failed");
        // Another token is not touched.
        assert!(!Cancel::new().is_cancelled());
    }

    #[test]
    fn a_trip_from_another_thread_is_seen() {
        let c = Cancel::new();
        let w = c.clone();
        let worker = std::thread::spawn(move || {
            let mut units = 0u64;
            while w.check().is_ok() {
                units += 1;
                std::thread::yield_now();
            }
            units
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.cancel("stop");
        assert!(worker.join().unwrap() > 0);
    }
}
