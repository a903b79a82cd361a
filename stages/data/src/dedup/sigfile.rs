//! The signature file written by `minhash-index` and read by `dedup` as a
//! reference: each distinct reference text's exact key, MinHash signature
//! and shingle hashes, so a large reference set is sketched once (and cached
//! by dvx as an ordinary output).
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic      8 bytes   "DVXMHSIG"
//! format     u32       FORMAT (layout version of this file)
//! hlen       u32       length of the header
//! header     hlen      UTF-8 JSON: {"scheme", "num_perm", "seed", "fields",
//!                      "normalize", "shingle", "sources": [path, ...]}
//! count      u64       number of records
//! count records:
//!   source   u32       index into header.sources
//!   line     u64       1-based line in that source
//!   exact    16 bytes  exact-match key (u128)
//!   sig      num_perm × u32
//!   n        u32       number of shingle hashes
//!   shingles n × u64   sorted, distinct
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde::{Deserialize, Serialize};

use super::params::SketchSpec;

/// First bytes of every signature file.
pub const MAGIC: &[u8; 8] = b"DVXMHSIG";
/// Layout version after the magic; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// The header: settings plus the names of the sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// How the signatures were made: a query must use the same to compare.
    #[serde(flatten)]
    pub spec: SketchSpec,
    /// Source names, as the building stage saw them.
    pub sources: Vec<String>,
}

/// One stored record.
pub struct Entry {
    /// Index into [`Header::sources`].
    pub source: u32,
    /// 1-based line.
    pub line: u64,
    /// Digest of the normalised text: equal keys are exact duplicates.
    pub exact: u128,
    /// Signature (`num_perm` values).
    pub sig: Vec<u32>,
    /// Sorted, distinct shingle hashes.
    pub shingles: Vec<u64>,
}

/// Whether `path` starts with the signature-file magic.
pub fn is_signature_file(path: &Path) -> bool {
    let mut head = [0u8; 8];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == MAGIC
}

/// Writes a signature file.
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    count_at: u64,
    count: u64,
}

fn write_err(path: &Path, e: std::io::Error) -> StageFailure {
    StageFailure::new(format!("cannot write {}: {e}", path.display()))
}

impl Writer {
    /// Create `path` and write the header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, StageFailure> {
        let json = serde_json::to_vec(header).map_err(|e| StageFailure::new(e.to_string()))?;
        let file = File::create(path).map_err(|e| write_err(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(24 + json.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&FORMAT.to_le_bytes());
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        let count_at = head.len() as u64;
        head.extend_from_slice(&0u64.to_le_bytes());
        out.write_all(&head).map_err(|e| write_err(path, e))?;
        Ok(Writer { path: path.to_path_buf(), out, count_at, count: 0 })
    }

    /// Append one record.
    pub fn write(&mut self, e: &Entry) -> Result<(), StageFailure> {
        let mut buf = Vec::with_capacity(36 + e.sig.len() * 4 + e.shingles.len() * 8);
        buf.extend_from_slice(&e.source.to_le_bytes());
        buf.extend_from_slice(&e.line.to_le_bytes());
        buf.extend_from_slice(&e.exact.to_le_bytes());
        for v in &e.sig {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&(e.shingles.len() as u32).to_le_bytes());
        for v in &e.shingles {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&buf).map_err(|err| write_err(&self.path, err))?;
        self.count += 1;
        Ok(())
    }

    /// Write the record count and close; returns the count.
    pub fn finish(self) -> Result<u64, StageFailure> {
        let path = self.path;
        let mut file = self.out.into_inner().map_err(|e| write_err(&path, e.into_error()))?;
        file.seek(SeekFrom::Start(self.count_at)).map_err(|e| write_err(&path, e))?;
        file.write_all(&self.count.to_le_bytes()).map_err(|e| write_err(&path, e))?;
        file.sync_all().ok();
        Ok(self.count)
    }
}

/// Reads a signature file.
pub struct Reader {
    path: PathBuf,
    input: BufReader<File>,
    /// The file's header.
    pub header: Header,
    /// Records in the file.
    pub count: u64,
    read: u64,
}

impl Reader {
    /// Open `path` and read its header.
    pub fn open(path: &Path) -> Result<Self, StageFailure> {
        let bad =
            |what: &str| StageFailure::bad_input(format!("{}: not a dvx signature file ({what})", path.display()));
        let file = File::open(path).map_err(|e| StageFailure::new(format!("cannot open {}: {e}", path.display())))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 16];
        input.read_exact(&mut head).map_err(|_| bad("too short"))?;
        if &head[..8] != MAGIC {
            return Err(bad("wrong magic bytes"));
        }
        let format = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(StageFailure::bad_input(format!(
                "{}: signature file format {format}, this dvx reads format {FORMAT}; rebuild it",
                path.display()
            )));
        }
        let hlen = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
        let mut json = vec![0u8; hlen];
        input.read_exact(&mut json).map_err(|_| bad("truncated header"))?;
        let header: Header = serde_json::from_slice(&json).map_err(|e| bad(&format!("bad header: {e}")))?;
        let mut count = [0u8; 8];
        input.read_exact(&mut count).map_err(|_| bad("truncated header"))?;
        Ok(Reader { path: path.to_path_buf(), input, header, count: u64::from_le_bytes(count), read: 0 })
    }

    /// The next record, or `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, StageFailure> {
        if self.read == self.count {
            return Ok(None);
        }
        let truncated =
            |path: &Path, k: u64| StageFailure::bad_input(format!("{}: truncated at record {k}", path.display()));
        let num_perm = self.header.spec.num_perm;
        let mut fixed = vec![0u8; 28 + num_perm * 4 + 4];
        self.input.read_exact(&mut fixed).map_err(|_| truncated(&self.path, self.read))?;
        let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
        let source = u32_at(0);
        let line = u64::from_le_bytes(fixed[4..12].try_into().expect("8 bytes"));
        let exact = u128::from_le_bytes(fixed[12..28].try_into().expect("16 bytes"));
        let sig: Vec<u32> = (0..num_perm).map(|i| u32_at(28 + i * 4)).collect();
        let n = u32_at(28 + num_perm * 4) as usize;
        let mut raw = vec![0u8; n * 8];
        self.input.read_exact(&mut raw).map_err(|_| truncated(&self.path, self.read))?;
        let shingles = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        if source as usize >= self.header.sources.len() || n == 0 {
            return Err(StageFailure::bad_input(format!("{}: corrupt record {}", self.path.display(), self.read)));
        }
        self.read += 1;
        Ok(Some(Entry { source, line, exact, sig, shingles }))
    }
}
