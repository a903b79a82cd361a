//! Content-defined chunks for large objects: where the cut points fall
//! (FastCDC, 2020 algorithm) and the chunk list stored per chunked object.
//!
//! An object of at least [`CHUNKED_FROM`] bytes is stored as chunks, each a
//! blob named by its own blake3, plus a chunk list named by the blake3 of the
//! whole content, so an object's name does not depend on how it is stored.
//! Cut points depend only on nearby bytes, so two versions of a file that
//! differ by an append or an insertion share every chunk away from the edit.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::hash::Hash;

/// Objects this large or larger are stored as chunks; smaller ones whole
/// (a chunk list would cost more than it saves).
pub const CHUNKED_FROM: u64 = 4 << 20;
/// Smallest chunk (except an object's last).
pub const MIN_CHUNK: u32 = 64 << 10;
/// Chunk size FastCDC aims at.
pub const AVG_CHUNK: u32 = 256 << 10;
/// Largest chunk: a cut is forced here.
pub const MAX_CHUNK: u32 = 1 << 20;
/// Most chunks one list may hold (at the average size, objects up to about
/// 256 GiB); a larger object is stored whole. Bounds what a reader of an
/// untrusted list allocates.
pub const MAX_CHUNKS: usize = 1 << 20;
/// Largest chunk-list file read: one entry is at most about 80 bytes of JSON.
pub(crate) const MAX_LIST_BYTES: u64 = MAX_CHUNKS as u64 * 96 + 4096;

/// Bytes read from the source at a time: several maximal chunks, so cut
/// points are found without re-reading.
const READ_AHEAD: usize = 8 * MAX_CHUNK as usize;

/// Split everything `source` yields into content-defined chunks, calling
/// `each` with the chunks found in each buffer read (in order), and feed
/// every byte to `whole` on the way. The cut points are those of
/// `fastcdc::v2020` with the sizes above, whatever the read sizes; `path`
/// names the source in read errors.
///
/// `whole` is updated on a second thread while this one looks for the cut
/// points (the slower of the two), so hashing the whole content costs little
/// wall time on top of chunking it.
pub(crate) fn split(
    mut source: impl Read,
    path: &Path,
    whole: &mut blake3::Hasher,
    mut each: impl FnMut(&[&[u8]]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; READ_AHEAD];
    let mut len = 0; // valid bytes in `buf`
    let mut eof = false;
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    loop {
        let fresh_from = len;
        while !eof && len < buf.len() {
            match source.read(&mut buf[len..]) {
                Ok(0) => eof = true,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(path),
            }
        }
        let filled = &buf[..len];
        cuts.clear();
        std::thread::scope(|s| {
            s.spawn(|| whole.update(&filled[fresh_from..]));
            let cdc = fastcdc::v2020::FastCDC::new(filled, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
            let mut start = 0;
            // Before the end of the source a cut is only final when a whole
            // maximal chunk lies ahead; otherwise read more first.
            while start < len && (eof || len - start >= MAX_CHUNK as usize) {
                let (_, end) = cdc.cut(start, len - start);
                cuts.push((start, end));
                start = end;
            }
        });
        let round: Vec<&[u8]> = cuts.iter().map(|&(a, b)| &filled[a..b]).collect();
        each(&round)?;
        if eof {
            return Ok(());
        }
        let consumed = cuts.last().map_or(0, |c| c.1);
        buf.copy_within(consumed..len, 0);
        len -= consumed;
    }
}

/// The stored list of a chunked object: its size and its chunks in order.
/// Read from a shared cache, so [`ChunkList::parse`] checks it all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkList {
    dvx_chunks: u32,
    /// Total bytes of the object.
    pub size: u64,
    /// Each chunk's name and length.
    pub chunks: Vec<(Hash, u32)>,
}

impl ChunkList {
    pub fn new(chunks: Vec<(Hash, u32)>) -> ChunkList {
        let size = chunks.iter().map(|(_, n)| u64::from(*n)).sum();
        ChunkList { dvx_chunks: 1, size, chunks }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("chunk list serialises")
    }

    /// Parse and check a list: the format version, hash shapes (by the
    /// [`Hash`] type), every length within `1..=MAX_CHUNK`, no more than
    /// [`MAX_CHUNKS`] entries, and lengths that add up to the size.
    pub fn parse(bytes: &[u8]) -> std::result::Result<ChunkList, String> {
        if bytes.len() as u64 > MAX_LIST_BYTES {
            return Err(format!("chunk list of {} bytes is larger than the {MAX_LIST_BYTES} allowed", bytes.len()));
        }
        let list: ChunkList = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if list.dvx_chunks != 1 {
            return Err(format!("unknown chunk list format {}", list.dvx_chunks));
        }
        if list.chunks.len() > MAX_CHUNKS {
            return Err(format!("{} chunks, more than the {MAX_CHUNKS} allowed", list.chunks.len()));
        }
        let mut total: u64 = 0;
        for (i, (_, n)) in list.chunks.iter().enumerate() {
            if *n == 0 || *n > MAX_CHUNK {
                return Err(format!("chunk {i} has length {n}, outside 1..={MAX_CHUNK}"));
            }
            total += u64::from(*n);
        }
        if total != list.size {
            return Err(format!("chunk lengths add up to {total}, not the stated size {}", list.size));
        }
        Ok(list)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (no repeats for FastCDC to latch on).
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn cuts(bytes: &[u8], read_size: usize) -> Vec<usize> {
        /// A reader that hands out at most `n` bytes per read.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut v = Vec::new();
        let mut whole = blake3::Hasher::new();
        split(Trickle(bytes, read_size), Path::new("test"), &mut whole, |round| {
            v.extend(round.iter().map(|c| c.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(whole.finalize(), blake3::hash(bytes), "every byte is hashed, in order");
        v
    }

    #[test]
    fn cut_points_match_fastcdc_whatever_the_read_size() {
        let bytes = noise(1, 20 << 20);
        let reference: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&bytes, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| c.length).collect();
        assert!(reference.len() > 40, "{} chunks", reference.len());
        assert_eq!(cuts(&bytes, 1 << 30), reference);
        assert_eq!(cuts(&bytes, 12_345), reference);
        assert_eq!(reference.iter().sum::<usize>(), bytes.len());
        assert!(reference.iter().all(|n| *n <= MAX_CHUNK as usize));
        assert!(cuts(&[], 10).is_empty());
    }

    #[test]
    fn lists_are_checked() {
        let h = Hash::of_bytes(b"c");
        let good = ChunkList::new(vec![(h.clone(), 10), (h.clone(), 5)]);
        assert_eq!(ChunkList::parse(&good.to_bytes()).unwrap(), good);
        let bad = |json: String| ChunkList::parse(json.as_bytes()).unwrap_err();
        assert!(bad(format!(r#"{{"dvx_chunks":1,"size":16,"chunks":[["{h}",10],["{h}",5]]}}"#)).contains("add up"));
        assert!(bad(format!(r#"{{"dvx_chunks":1,"size":0,"chunks":[["{h}",0]]}}"#)).contains("outside"));
        let huge = MAX_CHUNK + 1;
        assert!(bad(format!(r#"{{"dvx_chunks":1,"size":{huge},"chunks":[["{h}",{huge}]]}}"#)).contains("outside"));
        assert!(bad(r#"{"dvx_chunks":1,"size":1,"chunks":[["../../etc/passwd",1]]}"#.into()).contains("blake3"));
        assert!(bad(format!(r#"{{"dvx_chunks":2,"size":1,"chunks":[["{h}",1]]}}"#)).contains("format"));
        assert!(ChunkList::parse(&vec![b' '; MAX_LIST_BYTES as usize + 1]).unwrap_err().contains("larger"));
    }
}
