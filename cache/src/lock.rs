//! One lock per stage key, so a key is executed by at most one process at a
//! time. OS file locks: released by the kernel when the holder dies, even by
//! SIGKILL, so a crashed run never blocks others.

use std::fs::File;

use crate::error::{IoContext, Result};
use crate::hash::StageKey;
use crate::store::Cache;

/// A held lock on a stage key; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

impl KeyLock {
    fn open(cache: &Cache, key: &StageKey) -> Result<(File, std::path::PathBuf)> {
        let path = cache.locks_dir().join(format!("{key}.lock"));
        let file = cache.open_lock_file(&path, false)?;
        Ok((file, path))
    }

    /// Take the lock, waiting while another process holds it.
    pub fn acquire(cache: &Cache, key: &StageKey) -> Result<KeyLock> {
        let (file, path) = Self::open(cache, key)?;
        file.lock().at(&path)?;
        Ok(KeyLock { _file: file })
    }

    /// Take the lock if free.
    pub fn try_acquire(cache: &Cache, key: &StageKey) -> Result<Option<KeyLock>> {
        let (file, path) = Self::open(cache, key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).at(&path),
        }
    }
}
