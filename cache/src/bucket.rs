//! The folders of a cache directory. Every name on disk comes from here; a
//! bucket whose format changes gets a new version suffix, so old and new
//! dvx builds never misread each other's files.

/// One folder of a cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `objects-v1/ab/cdef…`: file bytes and folder manifests, named by blake3.
    Objects,
    /// `chunked-v1/ab/cdef…`: the chunk list of an object stored as chunks,
    /// named by the blake3 of the object's whole content.
    ChunkLists,
    /// `chunks-v1/ab/cdef…`: the chunks of large objects, named by blake3.
    Chunks,
    /// `runs-v1/ab/<key>.json`: run-cache entries.
    Runs,
    /// `versions-v1/<hash>.json`: version records.
    Versions,
    /// `locks-v1/`: one lock file per stage key, and `gc.lock`.
    Locks,
    /// `leases-v1/`: one lease per running process.
    Leases,
    /// `jobs-v1/`: files of stages run as cluster jobs. The engine's to
    /// fill (see [`crate::Cache::bucket_dir`]); the store only creates it.
    Jobs,
    /// `memo-v1/<ns>/ab/<key>`: answers stages keep per request (see `memo.rs`).
    Memo,
    /// `tmp/`: files being written, renamed into place when complete.
    Tmp,
    /// `quarantine/`: objects whose bytes did not match their name.
    Quarantine,
    /// `workspaces-v1/`: the version each workspace holds, kept by gc.
    Workspaces,
}

impl Bucket {
    /// Every bucket.
    pub const ALL: [Bucket; 12] = [
        Bucket::Objects,
        Bucket::ChunkLists,
        Bucket::Chunks,
        Bucket::Runs,
        Bucket::Versions,
        Bucket::Locks,
        Bucket::Leases,
        Bucket::Jobs,
        Bucket::Memo,
        Bucket::Tmp,
        Bucket::Quarantine,
        Bucket::Workspaces,
    ];

    /// The folder's name inside the cache directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Bucket::Objects => "objects-v1",
            Bucket::ChunkLists => "chunked-v1",
            Bucket::Chunks => "chunks-v1",
            Bucket::Runs => "runs-v1",
            Bucket::Versions => "versions-v1",
            Bucket::Locks => "locks-v1",
            Bucket::Leases => "leases-v1",
            Bucket::Jobs => "jobs-v1",
            Bucket::Memo => "memo-v1",
            Bucket::Tmp => "tmp",
            Bucket::Quarantine => "quarantine",
            Bucket::Workspaces => "workspaces-v1",
        }
    }

    /// Whether [`crate::Cache::open`] creates it; the others are created
    /// on first use.
    pub(crate) fn created_on_open(self) -> bool {
        matches!(self, Bucket::Objects | Bucket::Runs | Bucket::Versions | Bucket::Locks | Bucket::Tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct() {
        let names: std::collections::BTreeSet<&str> = Bucket::ALL.iter().map(|b| b.dir_name()).collect();
        assert_eq!(names.len(), Bucket::ALL.len());
    }
}
