//! How a long stage says how far it is. The engine turns these calls into
//! events its caller renders (a bar on a terminal, a line every few seconds
//! in a log file); a stage never prints progress itself.

/// Where a stage reports progress: a total, steps done, a short status.
/// Calls are cheap and may come from any thread of the stage.
pub trait Progress: Send + Sync {
    /// The work to do, in `unit`s ("steps", "records", "bytes"); replaces
    /// any earlier total and restarts the count.
    fn set_total(&self, total: u64, unit: &str);
    /// `n` more units done.
    fn inc(&self, n: u64);
    /// A short status shown beside the count ("loss 3.21, 1.2k tokens/s").
    fn message(&self, message: &str);
}

/// Progress that goes nowhere: for tests, benches and one-off runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64, _unit: &str) {}
    fn inc(&self, _n: u64) {}
    fn message(&self, _message: &str) {}
}
