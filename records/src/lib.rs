//! Dataset records, read and written in one place.
//!
//! A record is a JSON object. Stages read them through [`RecordReader`],
//! whatever the container: JSONL (plain, `.gz`, `.zst`), a JSON array,
//! Parquet (one file or a folder of shards), Arrow IPC, or a
//! `datasets.save_to_disk` folder; the format is found from the content
//! (magic bytes), then the name. They write them through [`RecordWriter`],
//! whose format follows the out's extension (`.jsonl`, `.jsonl.gz`,
//! `.jsonl.zst`, `.parquet`); any other extension is refused up front by
//! [`check_writable`]. A record's identity ([`record_hash`]) is its canonical
//! JSON, so it does not depend on the container it came from.

mod compact;
mod error;
mod features;
mod flat;
mod format;
mod hash;
mod infer;
mod parquet_sink;
mod read;
mod scan;
mod write;

pub use compact::{compact, compact_into};
pub use error::{BadRecord, Unit};
pub use features::hf_features;
pub use format::{check_writable, detect, Format, WriteFormat};
pub use hash::{field, record_hash};
pub use read::{read_all, Ahead, JsonlScan, ScanAhead, Raw, RawChunk, RecordReader, ScanLine, Source};
pub use parquet_sink::PARQUET_ROW_GROUP;
pub use write::RecordWriter;

/// One record: a JSON object, keys in the order they were read.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// A small seeded generator for the randomised tests.
#[cfg(test)]
mod test_rng;
