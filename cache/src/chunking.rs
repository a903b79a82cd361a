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
use crate::pieces::PieceHasher;

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
/// every byte to `pieces` on the way. The cut points are those of
/// `fastcdc::v2020` with the sizes above, whatever the read sizes; `path`
/// names the source in read errors.
///
/// A cut depends only on the bytes since the previous cut, as long as a
/// whole maximal chunk lay ahead when it was found (see [`stable_prefix`]),
/// so splitting may start at any such cut of an earlier version.
///
/// Reading and finding the cut points run on a thread of their own, a
/// buffer ahead of `each` (hashing and writing the chunks), with `pieces`
/// updated on a third beside the cut search: a large store costs about the
/// slower of the two, not their sum.
pub(crate) fn split(
    source: impl Read + Send,
    path: &Path,
    pieces: &mut PieceHasher,
    mut each: impl FnMut(&[&[u8]]) -> Result<()>,
) -> Result<()> {
    let (rounds, next_round) = std::sync::mpsc::sync_channel::<Result<Round>>(1);
    let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        s.spawn(move || cut_rounds(source, path, pieces, &rounds, &spare));
        for round in next_round {
            let round = round?;
            let chunks: Vec<&[u8]> = round.cuts.iter().map(|&(a, b)| &round.buf[a..b]).collect();
            each(&chunks)?;
            // The buffer goes round again rather than a new one faulted in.
            let _ = give_back.send(round.buf);
        }
        // Returning drops the receiver: a cutting thread still sending
        // (after an error here) then stops.
        Ok(())
    })
}

/// A buffer read from the source and the chunks (ranges of it) cut in it.
struct Round {
    buf: Vec<u8>,
    cuts: Vec<(usize, usize)>,
}

/// The cutting thread of [`split`]: sends each buffer's final chunks, or
/// the read error that ends it, reusing buffers handed back on `spare`.
/// Ends with the source, or when nobody receives.
fn cut_rounds(
    mut source: impl Read,
    path: &Path,
    pieces: &mut PieceHasher,
    rounds: &std::sync::mpsc::SyncSender<Result<Round>>,
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut buf = vec![0u8; READ_AHEAD];
    let mut len = 0; // valid bytes in `buf`
    let mut eof = false;
    loop {
        let fresh_from = len;
        while !eof && len < buf.len() {
            match source.read(&mut buf[len..]) {
                Ok(0) => eof = true,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = rounds.send(Err(e).at(path));
                    return;
                }
            }
        }
        let filled = &buf[..len];
        let mut cuts = Vec::new();
        std::thread::scope(|s| {
            s.spawn(|| pieces.update(&filled[fresh_from..]));
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
        // What lies after the last cut starts the next buffer.
        let consumed = cuts.last().map_or(0, |c| c.1);
        let mut next = spare.try_recv().unwrap_or_else(|_| vec![0u8; READ_AHEAD]);
        next[..len - consumed].copy_from_slice(&buf[consumed..len]);
        len -= consumed;
        if rounds.send(Ok(Round { buf, cuts })).is_err() || eof {
            return;
        }
        buf = next;
    }
}

/// How many of `chunks` (an earlier version's, `size` bytes in all) a
/// version whose first `same` bytes are those bytes can take as they are:
/// each must end within the shared bytes and have started at least a
/// maximal chunk before the earlier end (nearer the end, FastCDC found the
/// cut with less ahead, and a longer file may cut elsewhere). Returns the
/// count and where the next chunk starts.
pub(crate) fn stable_prefix(chunks: &[(Hash, u32)], size: u64, same: u64) -> (usize, u64) {
    let mut start = 0u64;
    for (i, (_, len)) in chunks.iter().enumerate() {
        let end = start + u64::from(*len);
        if end > same || size - start < u64::from(MAX_CHUNK) {
            return (i, start);
        }
        start = end;
    }
    (chunks.len(), start)
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
        let mut pieces = PieceHasher::default();
        split(Trickle(bytes, read_size), Path::new("test"), &mut pieces, |round| {
            v.extend(round.iter().map(|c| c.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(pieces.finish(), crate::pieces::piece_cvs(0, bytes), "every byte is hashed, in order");
        v
    }

    fn fastcdc_chunks(bytes: &[u8]) -> Vec<(Hash, u32)> {
        fastcdc::v2020::FastCDC::new(bytes, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
            .map(|c| (Hash::of_bytes(&bytes[c.offset..c.offset + c.length]), c.length as u32))
            .collect()
    }

    #[test]
    fn splitting_from_a_stable_cut_of_an_earlier_version_gives_a_full_splits_chunks() {
        let old = noise(7, 12 << 20);
        let mut appended = old.clone();
        appended.extend(noise(8, 3 << 20));
        let mut edited = old.clone();
        edited[6 << 20] ^= 0x55;
        let mut grown_by_little = old.clone();
        grown_by_little.extend(b"one more line\n");
        let cut_short = old[..(9 << 20) + 4321].to_vec();
        let earlier = fastcdc_chunks(&old);
        for (name, new) in
            [("appended", &appended), ("edited", &edited), ("a line more", &grown_by_little), ("cut", &cut_short)]
        {
            let same = old.iter().zip(new.iter()).take_while(|(a, b)| a == b).count() as u64;
            let (n, from) = stable_prefix(&earlier, old.len() as u64, same);
            assert!(n > 0 && from <= same, "{name}: some chunks reused");
            let mut chunks = earlier[..n].to_vec();
            let mut pieces = PieceHasher::default();
            split(&new[from as usize..], Path::new("test"), &mut pieces, |round| {
                chunks.extend(round.iter().map(|c| (Hash::of_bytes(c), c.len() as u32)));
                Ok(())
            })
            .unwrap();
            assert_eq!(chunks, fastcdc_chunks(new), "{name}");
        }
        // Nothing shared, nothing taken.
        assert_eq!(stable_prefix(&earlier, old.len() as u64, 0), (0, 0));
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
    fn a_read_error_or_a_failing_caller_ends_a_split() {
        /// Yields `ok` bytes of noise, then fails.
        struct Failing(std::io::Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(std::io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let path = Path::new("big.bin");
        let mut seen = 0;
        let err = split(Failing(std::io::Cursor::new(noise(2, 20 << 20))), path, &mut PieceHasher::default(), |c| {
            seen += c.len();
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk on fire") && err.to_string().contains("big.bin"), "{err}");
        assert!(seen > 0, "the chunks before the error were handed on");
        // The caller's error ends it too, however much is left to read.
        let mut calls = 0;
        let err = split(&noise(3, 40 << 20)[..], path, &mut PieceHasher::default(), |_| {
            calls += 1;
            Err(std::io::Error::other("full")).at(path)
        })
        .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(calls, 1);
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
