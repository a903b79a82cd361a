use std::path::{Path, PathBuf};

use crate::atomic;
use crate::bucket::Bucket;
use crate::error::{CacheError, IoContext, Result};
use crate::hash::Hash;

/// How a cache directory is opened.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Shared mode: folders setgid and group-writable, files group-readable,
    /// so several users of one Unix group can read and write the cache.
    pub shared_group: bool,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    opts: CacheOptions,
    /// The run's lease, when this handle pins what it uses (see `lease.rs`).
    pub(crate) lease: Option<std::sync::Arc<crate::lease::Lease>>,
}

/// `dir/ab/cdef…`: where a file named by a hash lives in a sharded bucket.
pub(crate) fn shard_path(dir: &Path, hash: &Hash) -> PathBuf {
    let h = hash.as_str();
    dir.join(&h[..2]).join(&h[2..])
}

const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by dvx.\n";

impl Cache {
    /// Open (creating if needed) the cache at `root`.
    pub fn open(root: &Path, opts: CacheOptions) -> Result<Cache> {
        let cache = Cache { root: root.to_path_buf(), opts, lease: None };
        for bucket in Bucket::ALL.into_iter().filter(|b| b.created_on_open()) {
            cache.ensure_dir(&cache.dir(bucket))?;
        }
        let tag = cache.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            atomic::write_atomic(&cache.tmp_dir(), &tag, TAG.as_bytes(), cache.file_mode(false))?;
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the cache is in shared (group) mode.
    pub fn is_shared(&self) -> bool {
        self.opts.shared_group
    }

    /// Where a bucket lives (not created).
    pub(crate) fn dir(&self, bucket: Bucket) -> PathBuf {
        self.root.join(bucket.dir_name())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir(Bucket::Tmp)
    }

    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.dir(Bucket::Objects)
    }

    pub(crate) fn runs_dir(&self) -> PathBuf {
        self.dir(Bucket::Runs)
    }

    pub(crate) fn versions_dir(&self) -> PathBuf {
        self.dir(Bucket::Versions)
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.dir(Bucket::Locks)
    }

    /// A bucket's folder, created (with the cache's permissions) if needed.
    /// For buckets whose files the caller owns ([`Bucket::Jobs`]); the
    /// store's own are read and written only through `Cache`'s methods.
    pub fn bucket_dir(&self, bucket: Bucket) -> Result<PathBuf> {
        let dir = self.dir(bucket);
        self.ensure_dir(&dir)?;
        Ok(dir)
    }

    /// Write the file `name` (a plain file name) of a bucket atomically,
    /// with the cache's permissions; returns its path. For buckets whose
    /// files the caller owns (a job spec, a job outcome in [`Bucket::Jobs`]).
    pub fn write_in(&self, bucket: Bucket, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let dest = self.dir(bucket).join(name);
        if name.contains('/') || crate::paths::check_rel_path(name).is_err() {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain file name");
            return Err(CacheError::Io { path: dest, source });
        }
        self.write_record(&dest, bytes)?;
        Ok(dest)
    }

    /// Where the object named `hash` lives when stored whole.
    pub(crate) fn object_path(&self, hash: &Hash) -> PathBuf {
        shard_path(&self.objects_dir(), hash)
    }

    /// Where the chunk list of the object named `hash` lives when it is
    /// stored as chunks.
    pub(crate) fn chunk_list_path(&self, hash: &Hash) -> PathBuf {
        shard_path(&self.dir(Bucket::ChunkLists), hash)
    }

    /// Where the chunk named `hash` lives.
    pub(crate) fn chunk_path(&self, hash: &Hash) -> PathBuf {
        shard_path(&self.dir(Bucket::Chunks), hash)
    }

    /// Create a folder (and parents) with the cache's permissions. In
    /// shared mode every folder it creates is set to `2775` explicitly (the
    /// process umask is left alone: it is not the library's to change).
    pub(crate) fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if !self.opts.shared_group {
            return std::fs::create_dir_all(dir).at(dir);
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.ensure_dir(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => atomic::set_mode(dir, 0o2775),
            // Another process made it first; it set the mode.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e).at(dir),
        }
    }

    /// Open (creating if needed) a lock or lease file for writing, with the
    /// cache's file mode: in shared mode group members must be able to open
    /// it for writing to lock it. `create_new` makes a fresh file (a lease)
    /// or fails; otherwise an existing one is opened as it is.
    pub(crate) fn open_lock_file(&self, path: &Path, create_new: bool) -> Result<std::fs::File> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let mode = self.file_mode(false);
        let mut options = std::fs::OpenOptions::new();
        if create_new {
            options.create_new(true).append(true);
        } else {
            options.create(true).truncate(false).write(true);
        }
        let file = options.mode(mode).open(path).at(path)?;
        // The mode given to open passes through the process umask; set it on
        // the file itself when it is ours and differs (only its owner may).
        let meta = file.metadata().at(path)?;
        if meta.mode() & 0o777 != mode && meta.uid() == unsafe { libc::geteuid() } {
            file.set_permissions(std::fs::Permissions::from_mode(mode)).at(path)?;
        }
        Ok(file)
    }

    /// Mode for files the cache writes. Objects are read-only so a file
    /// restored by hard link cannot be edited in place by accident.
    pub(crate) fn file_mode(&self, read_only: bool) -> u32 {
        match (read_only, self.opts.shared_group) {
            (true, true) => 0o444,
            (true, false) => 0o444,
            (false, true) => 0o664,
            (false, false) => 0o644,
        }
    }

    /// Write a small file of the cache (a record) atomically.
    pub(crate) fn write_record(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        self.write_record_with(dest, bytes, true)
    }

    /// [`Cache::write_record`]; `durable: false` skips the fsync, for
    /// records that carry their own checksum.
    pub(crate) fn write_record_with(&self, dest: &Path, bytes: &[u8], durable: bool) -> Result<()> {
        if let Some(parent) = dest.parent() {
            self.ensure_dir(parent)?;
        }
        atomic::write_atomic_with(&self.tmp_dir(), dest, bytes, self.file_mode(false), durable)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{KeyLock, StageKey};

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn shared_mode_sets_modes_without_touching_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let before = unsafe { libc::umask(0o022) };
        let cache = Cache::open(&dir.path().join("c"), CacheOptions { shared_group: true }).unwrap();
        let leased = cache.with_lease().unwrap();
        let hash = leased.put_bytes(b"shared").unwrap();
        let key = StageKey::from_blake3(blake3::hash(b"k"));
        let _lock = KeyLock::acquire(&cache, &key).unwrap();
        let record = cache.write_in(Bucket::Jobs, "j.json", b"{}").unwrap();
        let after = unsafe { libc::umask(before) };
        assert_eq!(after, 0o022, "the cache changed the process umask");

        assert_eq!(mode(cache.root()), 0o2775);
        for bucket in Bucket::ALL.into_iter().filter(|b| b.created_on_open()) {
            assert_eq!(mode(&cache.dir(bucket)), 0o2775, "{bucket:?}");
        }
        let object = cache.object_path(&hash);
        assert_eq!(mode(object.parent().unwrap()), 0o2775);
        assert_eq!(mode(&object), 0o444);
        assert_eq!(mode(record.parent().unwrap()), 0o2775);
        assert_eq!(mode(&record), 0o664);
        assert_eq!(mode(&cache.locks_dir().join(format!("{key}.lock"))), 0o664);
        let lease = std::fs::read_dir(cache.leases_dir()).unwrap().next().unwrap().unwrap().path();
        assert_eq!(mode(&lease), 0o664);
        assert_eq!(mode(&cache.root().join("CACHEDIR.TAG")), 0o664);
    }
}
