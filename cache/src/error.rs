use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An object is missing from the store.
    #[error("object {0} is not in the cache")]
    MissingObject(String),
    /// An object's bytes do not match its name.
    #[error("object {hash} is corrupt (its bytes hash to {actual})")]
    Corrupt {
        /// The name of the object.
        hash: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// A chunk of a chunked object is missing, so the object is too.
    #[error("object {hash} is incomplete (its chunk {chunk} is not in the cache)")]
    MissingChunk {
        /// The name of the object.
        hash: String,
        /// The chunk that is absent.
        chunk: String,
    },
    /// A chunk's bytes do not match its name.
    #[error("object {hash} is corrupt (its chunk {chunk} hashes to {actual})")]
    CorruptChunk {
        /// The name of the object being read.
        hash: String,
        /// The name of the chunk.
        chunk: String,
        /// What the chunk's bytes hash to.
        actual: String,
    },
    /// A stored record cannot be read.
    #[error("{path}: bad record: {message}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A hash prefix names no version, or several.
    #[error("{0}")]
    Resolve(String),
}

impl CacheError {
    /// Whether the error is about the cache's content (a missing or corrupt
    /// object, a damaged record), as opposed to a local failure such as a
    /// full workspace disk. Only the former justifies dropping a run entry.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            CacheError::MissingObject(_)
                | CacheError::Corrupt { .. }
                | CacheError::MissingChunk { .. }
                | CacheError::CorruptChunk { .. }
                | CacheError::BadRecord { .. }
        )
    }
}

/// Result with [`CacheError`].
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| CacheError::Io { path: path.to_path_buf(), source })
    }
}
