//! Atomic writes: temp file in the cache's own `tmp/`, fsync, rename.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp path in `tmp_dir`, unique across processes and threads.
pub(crate) fn temp_path(tmp_dir: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    tmp_dir.join(format!("{}-{}-{}.tmp", std::process::id(), n, nanos))
}

/// Write `bytes` to `dest` atomically with `mode`.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_atomic_with(tmp_dir, dest, bytes, mode, true)
}

/// Write `bytes` to `dest` atomically with `mode`; `durable`: fsync them
/// before the rename (without it a crash may leave a torn file under
/// `dest`, so only for files whose readers check their own checksum).
pub(crate) fn write_atomic_with(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<()> {
    let tmp = temp_path(tmp_dir);
    let result = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        if durable {
            f.sync_all().at(&tmp)?;
        }
        set_mode(&tmp, mode)?;
        rename_into_place(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Rename a complete temp file into place, creating the parent folder.
pub(crate) fn rename_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
    }
    std::fs::rename(tmp, dest).at(dest)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).at(path)
}

/// Make one written file's bytes durable (fdatasync).
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_data()).at(path)
}

/// Start writing `f`'s dirty pages to disk without waiting for them: a
/// later sync of the batch (syncfs) then finds most of them written,
/// having overlapped the writing with the hashing of what follows. Only a
/// hint: an error, or a system without it, changes nothing.
pub(crate) fn start_writeback(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; offsets 0, 0 mean the whole file.
        unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

/// Flush the filesystem holding `dir` (syncfs): one call makes every file
/// written there durable, instead of one fsync per file.
pub(crate) fn sync_filesystem(dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(dir).at(dir)?;
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).at(dir);
    }
    Ok(())
}
