//! Leases: how a run keeps what it uses alive against a concurrent `gc`.
//!
//! A run holds one lease file in `leases-v1/`, locked (OS file lock) for as
//! long as the process lives, and appends to it every object, run entry and
//! version it restores, stores or writes. `gc` takes `locks-v1/gc.lock`
//! exclusively and keeps everything named in a lease whose lock is still
//! held; a lease whose lock it can take belongs to a dead process and is
//! removed. Pinning takes the same lock shared and checks the objects exist
//! while holding it, so a pin either lands before a gc starts (and the gc
//! honours it) or after it ended (and sees what that gc removed).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{IoContext, Result};
use crate::hash::{Hash, StageKey};
use crate::runs::read_dir_sorted;
use crate::store::Cache;

/// A run's lease file; removed when the last handle drops.
#[derive(Debug)]
pub(crate) struct Lease {
    file: Mutex<File>,
    path: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A held lock on `locks-v1/gc.lock` (shared for runs, exclusive for gc).
#[derive(Debug)]
pub(crate) struct GcLock {
    _file: File,
}

/// What live leases name.
#[derive(Debug, Default)]
pub(crate) struct Leased {
    pub objects: BTreeSet<Hash>,
    pub runs: BTreeSet<StageKey>,
    pub versions: BTreeSet<Hash>,
}

impl Cache {
    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.dir(crate::bucket::Bucket::Leases)
    }

    /// This cache with a lease: everything restored, stored or written
    /// through the returned handle (and its clones) is kept by any `gc`
    /// until the handle is dropped or the process dies.
    pub fn with_lease(&self) -> Result<Cache> {
        let dir = self.leases_dir();
        self.ensure_dir(&dir)?;
        let path = crate::atomic::temp_path(&dir).with_extension("lease");
        let file = self.open_lock_file(&path, true)?;
        file.lock().at(&path)?;
        let mut c = self.clone();
        c.lease = Some(Arc::new(Lease { file: Mutex::new(file), path }));
        Ok(c)
    }

    fn gc_lock_file(&self) -> Result<(File, PathBuf)> {
        let path = self.locks_dir().join("gc.lock");
        let file = self.open_lock_file(&path, false)?;
        Ok((file, path))
    }

    /// Hold any gc off (shared: runs do not wait for each other).
    pub(crate) fn gc_shared(&self) -> Result<GcLock> {
        let (file, path) = self.gc_lock_file()?;
        file.lock_shared().at(&path)?;
        Ok(GcLock { _file: file })
    }

    /// Wait for every pinning run to step aside, then hold them off.
    pub(crate) fn gc_exclusive(&self) -> Result<GcLock> {
        let (file, path) = self.gc_lock_file()?;
        file.lock().at(&path)?;
        Ok(GcLock { _file: file })
    }

    /// Record names in this handle's lease (no-op without one). `tag` is
    /// `o` (object), `r` (run entry) or `v` (version). Call while holding
    /// [`Cache::gc_shared`], and check existence under the same lock.
    pub(crate) fn pin<'a>(&self, tag: char, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let Some(lease) = &self.lease else { return Ok(()) };
        let mut text = String::new();
        for n in names {
            text.push(tag);
            text.push(' ');
            text.push_str(n);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        let mut f = lease.file.lock().expect("lease lock");
        f.write_all(text.as_bytes()).at(&lease.path)
    }

    /// Everything named by leases of live processes; leases of dead ones
    /// are removed (unless `dry_run`). Call while holding [`Cache::gc_exclusive`].
    pub(crate) fn live_leases(&self, dry_run: bool) -> Result<Leased> {
        let mut out = Leased::default();
        for path in read_dir_sorted(&self.leases_dir())? {
            let Ok(file) = File::open(&path) else { continue };
            match file.try_lock() {
                Ok(()) => {
                    // Its owner is gone.
                    if !dry_run {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(e).at(&path),
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                let Some((tag, name)) = line.split_once(' ') else { continue };
                match tag {
                    "o" => out.objects.extend(Hash::parse(name)),
                    "v" => out.versions.extend(Hash::parse(name)),
                    "r" => out.runs.extend(StageKey::parse(name)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheOptions;

    #[test]
    fn live_leases_are_read_and_dead_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheOptions::default()).unwrap();
        let leased = cache.with_lease().unwrap();
        let h = Hash::of_bytes(b"x");
        let k = StageKey::from_blake3(blake3::hash(b"k"));
        leased.pin('o', [h.as_str()]).unwrap();
        leased.pin('r', [k.as_str()]).unwrap();
        let live = cache.live_leases(false).unwrap();
        assert!(live.objects.contains(&h));
        assert!(live.runs.contains(&k));
        drop(leased);
        // A lease file nobody holds (a killed run) is removed and ignored.
        let stale = cache.leases_dir().join("dead.lease");
        std::fs::write(&stale, format!("o {h}\n")).unwrap();
        let live = cache.live_leases(false).unwrap();
        assert!(live.objects.is_empty());
        assert!(!stale.exists());
    }
}
