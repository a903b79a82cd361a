//! SIGINT and SIGTERM for a command-line run, as one mechanism for every
//! executor: the first signal trips the run's [`Cancel`] token (local
//! stages stop where they check it, `cmd` children are killed, the Slurm
//! executor cancels its jobs with `scancel`), the run ends as usual (leases
//! released, no cancelled stage cached) and the caller exits with
//! [`Interrupt::exit_code`]. A second signal calls the caller's `hard_stop`
//! (a command-line dvx exits at once; the cache is safe against that).
//!
//! Listening is process-wide, so only a binary starts it ([`listen`]); a
//! library caller such as `dvx serve` trips tokens of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Cancel;

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Ctrl-C.
    Sigint,
    /// A polite kill (`kill`, Slurm's own time limits, a shutdown).
    Sigterm,
}

impl Interrupt {
    /// The signal's name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Sigint => "SIGINT",
            Interrupt::Sigterm => "SIGTERM",
        }
    }

    /// The conventional exit status of a process stopped by it (128 + signal number).
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Sigint => 130,
            Interrupt::Sigterm => 143,
        }
    }
}

/// What [`listen`] heard.
#[derive(Debug, Clone, Default)]
pub struct Interrupts {
    first: Arc<Mutex<Option<Interrupt>>>,
}

impl Interrupts {
    /// The first signal received, if any.
    pub fn received(&self) -> Option<Interrupt> {
        *self.first.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Listen for SIGINT and SIGTERM on a thread of its own: the first trips
/// `cancel` (with "interrupted by SIGINT" as the reason), the second calls
/// `hard_stop`. Call once per process, before the run starts.
pub fn listen(cancel: Cancel, hard_stop: impl Fn(Interrupt) + Send + 'static) -> Interrupts {
    let heard = Interrupts::default();
    let first = heard.first.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("dvx-signals".into()).spawn(move || {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = ready_tx.send(());
            return;
        };
        rt.block_on(async move {
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                let _ = ready_tx.send(());
                return;
            };
            let _ = ready_tx.send(());
            let mut count = 0;
            loop {
                let which = tokio::select! {
                    _ = int.recv() => Interrupt::Sigint,
                    _ = term.recv() => Interrupt::Sigterm,
                };
                count += 1;
                if count == 1 {
                    *first.lock().unwrap_or_else(|p| p.into_inner()) = Some(which);
                    eprintln!("\ndvx: {}: stopping (stages are asked to stop; a second signal quits at once)", which.name());
                    cancel.cancel(format!("interrupted by {}", which.name()));
                } else {
                    hard_stop(which);
                }
            }
        });
    });
    if spawned.is_ok() {
        // The handlers are in place before the run starts.
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    }
    heard
}
