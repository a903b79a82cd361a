//! The LSH band hashes of every sketched text (`bands` 64-bit hashes per
//! text, in text order): 104 bytes a text with 13 bands, a gigabyte at ten
//! million texts. They are held in memory up to a budget; past it they go to
//! one unnamed file per band (beside the stage's first out), since linking
//! reads them back a band at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use dvx_stage_api::StageFailure;

/// Bytes of band hashes held in memory before they are written to disk.
/// Tests lower it to make small inputs spill; outputs never depend on it.
pub static BUDGET: AtomicUsize = AtomicUsize::new(256 << 20);

enum Store {
    /// A column per band (bucketing reads a band at a time: a column is
    /// contiguous, where rows would make each band's pass stride through
    /// every text's hashes).
    Memory(Vec<Vec<u64>>),
    /// One file per band, being appended to.
    Writing(Vec<BufWriter<File>>),
    /// One file per band, complete.
    Sealed(Vec<File>),
}

/// Band hashes per text, in memory or spilled.
pub struct BandTable {
    bands: usize,
    texts: usize,
    store: Store,
    /// Where spill files go.
    dir: PathBuf,
}

fn io_err(what: &str, dir: &Path, e: std::io::Error) -> StageFailure {
    StageFailure::new(format!("cannot {what} dedup's band-hash spill file in {}: {e}", dir.display()))
}

impl BandTable {
    /// An empty table of `bands` hashes per text, spilling into `dir`.
    pub fn new(bands: usize, dir: &Path) -> Self {
        BandTable { bands, texts: 0, store: Store::Memory(vec![Vec::new(); bands]), dir: dir.to_path_buf() }
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.texts
    }

    /// Whether the hashes went to disk.
    pub fn spilled(&self) -> bool {
        !matches!(self.store, Store::Memory(_))
    }

    /// Room for `texts` more texts, as far as the memory budget goes.
    pub fn reserve(&mut self, texts: usize) {
        if let Store::Memory(columns) = &mut self.store {
            let budget = BUDGET.load(Ordering::Relaxed) / 8 / self.bands.max(1) + 1;
            columns.iter_mut().for_each(|c| c.reserve(texts.min(budget.saturating_sub(c.len()))));
        }
    }

    /// Append one text's `bands` hashes.
    pub fn push(&mut self, hashes: &[u64]) -> Result<(), StageFailure> {
        debug_assert_eq!(hashes.len(), self.bands);
        self.texts += 1;
        match &mut self.store {
            Store::Memory(columns) => {
                columns.iter_mut().zip(hashes).for_each(|(c, h)| c.push(*h));
                if self.texts * self.bands * 8 > BUDGET.load(Ordering::Relaxed) {
                    self.spill()?;
                }
            }
            Store::Writing(files) => {
                for (w, h) in files.iter_mut().zip(hashes) {
                    w.write_all(&h.to_le_bytes()).map_err(|e| io_err("write", &self.dir, e))?;
                }
            }
            Store::Sealed(_) => return Err(StageFailure::new("dedup: band hashes added after linking began")),
        }
        Ok(())
    }

    /// Move the hashes held so far into one file per band.
    fn spill(&mut self) -> Result<(), StageFailure> {
        let Store::Memory(columns) = std::mem::replace(&mut self.store, Store::Memory(Vec::new())) else {
            return Ok(());
        };
        tracing::debug!(texts = self.texts, dir = %self.dir.display(), "dedup spills band hashes to disk");
        let mut files = Vec::with_capacity(self.bands);
        for column in &columns {
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            for h in column {
                w.write_all(&h.to_le_bytes()).map_err(|e| io_err("write", &self.dir, e))?;
            }
            files.push(w);
        }
        self.store = Store::Writing(files);
        Ok(())
    }

    /// No more texts: flush what went to disk.
    pub fn seal(&mut self) -> Result<(), StageFailure> {
        match &mut self.store {
            Store::Memory(columns) => columns.iter_mut().for_each(Vec::shrink_to_fit),
            Store::Writing(files) => {
                let sealed = std::mem::take(files)
                    .into_iter()
                    .map(|w| w.into_inner().map_err(|e| io_err("write", &self.dir, e.into_error())))
                    .collect::<Result<Vec<File>, _>>()?;
                self.store = Store::Sealed(sealed);
            }
            Store::Sealed(_) => {}
        }
        Ok(())
    }

    /// Calls `f(text, hash)` for every text's hash in `band`, in text order.
    pub fn for_each_in_band(&self, band: usize, mut f: impl FnMut(usize, u64)) -> Result<(), StageFailure> {
        match &self.store {
            Store::Memory(columns) => {
                columns[band].iter().enumerate().for_each(|(t, &h)| f(t, h));
                Ok(())
            }
            Store::Writing(_) => Err(StageFailure::new("dedup: band hashes read before they were sealed")),
            Store::Sealed(files) => {
                let file = &files[band];
                let mut buf = vec![0u8; 1 << 20];
                let (mut t, mut at) = (0usize, 0u64);
                while t < self.texts {
                    let n = ((self.texts - t) * 8).min(buf.len());
                    file.read_exact_at(&mut buf[..n], at).map_err(|e| io_err("read", &self.dir, e))?;
                    for c in buf[..n].chunks_exact(8) {
                        f(t, u64::from_le_bytes(c.try_into().expect("8 bytes")));
                        t += 1;
                    }
                    at += n as u64;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(t: &BandTable) -> Vec<Vec<(usize, u64)>> {
        (0..3)
            .map(|b| {
                let mut col = Vec::new();
                t.for_each_in_band(b, |i, h| col.push((i, h))).unwrap();
                col
            })
            .collect()
    }

    #[test]
    fn spilled_table_reads_back_what_memory_holds() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<[u64; 3]> = (0..100_000u64).map(|i| [i, i * 7 + 1, u64::MAX - i]).collect();
        let mut mem = BandTable::new(3, dir.path());
        let mut disk = BandTable::new(3, dir.path());
        for r in &rows {
            mem.push(r).unwrap();
        }
        // Spill after the first 1,000 texts; the rest are appended to the files.
        disk.push(&rows[0]).unwrap();
        for r in &rows[1..1000] {
            disk.push(r).unwrap();
        }
        disk.spill().unwrap();
        for r in &rows[1000..] {
            disk.push(r).unwrap();
        }
        assert!(disk.for_each_in_band(0, |_, _| {}).is_err(), "reading before sealing is refused");
        mem.seal().unwrap();
        disk.seal().unwrap();
        assert!(disk.spilled() && !mem.spilled());
        assert_eq!(disk.len(), 100_000);
        let want: Vec<Vec<(usize, u64)>> =
            (0..3).map(|b| rows.iter().enumerate().map(|(i, r)| (i, r[b])).collect()).collect();
        assert_eq!(columns(&mem), want);
        assert_eq!(columns(&disk), want);
    }
}
