//! Reading ahead on a thread of its own: while a stage works on one block
//! or batch, the next ones are read (and cut, and hashed) beside it. On a
//! re-run that replays most records, reading is most of a stage's work.

use std::sync::mpsc::{sync_channel, Receiver};

use dvx_stage_api::StageFailure;

/// How many items the thread may be ahead: each a block of a few MiB.
const AHEAD: usize = 2;

/// Items made by a producer on its own thread, in order.
pub struct Ahead<T> {
    next: Receiver<Made<T>>,
    done: bool,
}

enum Made<T> {
    Item(T),
    Failed(StageFailure),
    End,
}

impl<T: Send + 'static> Ahead<T> {
    /// Start calling `produce` on a new thread until it returns `None` or
    /// fails; `what` names what it reads, for errors.
    pub fn spawn(
        what: &str,
        mut produce: impl FnMut() -> Result<Option<T>, StageFailure> + Send + 'static,
    ) -> Result<Ahead<T>, StageFailure> {
        let (tx, next) = sync_channel(AHEAD);
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("dvx-read-ahead".into())
            .spawn(move || {
                let _in = span.enter();
                loop {
                    let made = match produce() {
                        Ok(Some(item)) => Made::Item(item),
                        Ok(None) => Made::End,
                        Err(e) => Made::Failed(e),
                    };
                    let last = !matches!(made, Made::Item(_));
                    // A send fails only when the reader stopped reading.
                    if tx.send(made).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(|e| StageFailure::new(format!("cannot start reading {what}: {e}")))?;
        Ok(Ahead { next, done: false })
    }

    /// The next item; `None` once the producer is done.
    pub fn recv(&mut self) -> Result<Option<T>, StageFailure> {
        if self.done {
            return Ok(None);
        }
        let made = self.next.recv();
        self.done = !matches!(made, Ok(Made::Item(_)));
        match made {
            Ok(Made::Item(item)) => Ok(Some(item)),
            Ok(Made::End) => Ok(None),
            Ok(Made::Failed(e)) => Err(e),
            // Gone without saying it ended: it panicked. Never a short input.
            Err(_) => Err(StageFailure::new("the thread reading ahead stopped unexpectedly")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_in_order_then_the_end_or_the_failure() {
        let mut n = 0;
        let mut a = Ahead::spawn("numbers", move || {
            n += 1;
            Ok((n <= 5).then_some(n))
        })
        .unwrap();
        let got: Vec<i32> = std::iter::from_fn(|| a.recv().unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert!(a.recv().unwrap().is_none(), "and stays done");
        let mut n = 0;
        let mut failing = Ahead::spawn("numbers", move || {
            n += 1;
            if n == 3 {
                return Err(StageFailure::new("bad line 3"));
            }
            Ok(Some(n))
        })
        .unwrap();
        assert_eq!(failing.recv().unwrap(), Some(1));
        assert_eq!(failing.recv().unwrap(), Some(2));
        assert!(failing.recv().unwrap_err().to_string().contains("bad line 3"));
        assert!(failing.recv().unwrap().is_none());
    }

    #[test]
    fn a_producer_that_panics_is_an_error_not_a_short_input() {
        let mut n = 0;
        let mut a = Ahead::spawn("numbers", move || {
            n += 1;
            assert!(n < 2, "producer bug");
            Ok(Some(n))
        })
        .unwrap();
        assert_eq!(a.recv().unwrap(), Some(1));
        let err = a.recv().unwrap_err();
        assert!(err.to_string().contains("stopped unexpectedly"), "{err}");
    }

    #[test]
    fn a_reader_that_stops_early_lets_the_thread_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut a = Ahead::spawn("numbers", move || {
            let _ = tx.send(());
            Ok(Some(0u8))
        })
        .unwrap();
        assert_eq!(a.recv().unwrap(), Some(0));
        drop(a);
        // The producer runs at most a few more times, then its send fails and it returns.
        let mut calls = 0;
        while rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok() {
            calls += 1;
            assert!(calls < 10, "the producer kept going");
        }
    }
}
