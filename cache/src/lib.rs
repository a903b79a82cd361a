//! The dvx store: content-addressed objects (blake3), the run-cache (stage
//! key → outputs), version records, per-key locks, verify and gc.
//!
//! Layout of a cache directory (every bucket carries a format version; the
//! names live in one place, [`Bucket`]):
//! ```text
//! CACHEDIR.TAG
//! objects-v1/ab/cdef…     file bytes, or a folder manifest (JSON), named by blake3
//! chunked-v1/ab/cdef…     large objects: the chunk list (JSON), named by the blake3 of the whole content
//! chunks-v1/ab/cdef…      their content-defined chunks, named by blake3 (`chunking.rs`)
//! runs-v1/ab/<key>.json   run-cache entries
//! versions-v1/<hash>.json version records
//! locks-v1/<key>.lock     one lock file per stage key (OS file locks)
//! locks-v1/gc.lock        held shared while a run pins, stores or writes a version; exclusively by gc
//! leases-v1/*.lease       one per running process: what it uses, kept by gc while the process lives
//! memo-v1/<ns>/ab/<key>  answers a stage kept per request (LLM responses), verified on read
//! jobs-v1/<key>.*         Slurm job spec, outcome and log of a stage key (kept while it runs or after it failed)
//! tmp/                    temp files, renamed into place when complete
//! quarantine/             objects whose bytes did not match their name
//! workspaces-v1/<h>.json  the version each workspace holds (h: blake3 of its path), kept by gc
//! ```
//! Every write goes to `tmp/` in the same filesystem, is fsynced and renamed,
//! so a reader never sees a partial object and kill -9 at any instant leaves
//! the cache consistent.

mod atomic;
mod bucket;
mod chunked;
mod chunking;
mod error;
mod gc;
mod hash;
mod lease;
mod lock;
mod memo;
mod objects;
mod paths;
mod pieces;
mod reader;
mod resume;
mod runs;
mod stat;
mod store;
mod verify;
mod versions;
mod workspaces;

pub use bucket::Bucket;
pub use chunking::{AVG_CHUNK, CHUNKED_FROM, MAX_CHUNK, MAX_CHUNKS, MIN_CHUNK};
pub use error::{CacheError, Result};
pub use gc::{GcOptions, GcReport, RemovedVersion};
pub use hash::{hash_file, Hash, StageKey};
pub use lock::KeyLock;
pub use memo::MemoGcReport;
pub use objects::{
    hash_listed_folder, hash_path, hash_path_locked, hash_path_reporting, hash_stated_path, list_folder, remove_path, FolderListing, HashProgress, EscapingLinks, LinkMode, OutputKind, OutputRef, TreeEntry,
};
pub use paths::check_rel_path;
pub use reader::ObjectReader;
pub use runs::RunEntry;
pub use stat::StatCache;
pub use store::{Cache, CacheOptions};
pub use verify::VerifyReport;
pub use versions::{canonical_json, VersionMeta, VersionRecord};
pub use workspaces::WorkspaceRecord;
