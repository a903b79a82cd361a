//! Run a stage body on a rayon pool of the stage's thread count (candle's
//! CPU kernels parallelise on the current pool) while its log lines stream
//! to the stage log, which is not `Send`.

use std::io::Write;
use std::sync::mpsc::{channel, Sender};

use dvx_stage_api::StageFailure;

/// A `Write` that forwards each chunk over a channel.
struct ChanWriter(Sender<Vec<u8>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The receiver only goes away once the body has returned.
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `body` on `threads` threads, copying what it logs into `log` as it comes.
pub fn run_on_pool<T: Send>(
    threads: usize,
    log: &mut dyn Write,
    body: impl FnOnce(&mut dyn Write) -> Result<T, StageFailure> + Send,
) -> Result<T, StageFailure> {
    let pool = crate::support::pool(threads)?;
    let (tx, rx) = channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut w = ChanWriter(tx);
            pool.install(|| body(&mut w))
        });
        for chunk in rx {
            log.write_all(&chunk)?;
        }
        worker.join().map_err(|_| StageFailure::new("the stage panicked"))?
    })
}
