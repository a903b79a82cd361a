//! The blake3 of a large file as a tree over fixed pieces, so the hash of a
//! file whose first bytes are known costs only its new bytes.
//!
//! blake3 is itself a tree over 1 KiB chunks. Each aligned [`PIECE`] of a
//! file is one of its subtrees; its chaining value (CV) is computed alone
//! (`hazmat`), and the root is rebuilt from the pieces' CVs exactly as
//! blake3 merges them, so [`root`] equals `blake3::hash` of the whole. Two
//! files whose piece CVs agree up to piece `k` have the same bytes up to
//! `k * PIECE` (the CVs are hashes of those bytes at that offset): comparing
//! CVs is how a store finds the unchanged prefix of a grown file without
//! trusting anyone's word for it.

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

pub(crate) type Cv = [u8; 32];

/// Bytes per piece: a power of two of blake3 chunks, large enough for its
/// SIMD to run full width, small enough that an edit costs little to rehash.
pub(crate) const PIECE: usize = 256 << 10;

/// The CV of the piece at `offset` (a multiple of [`PIECE`]) holding `bytes`
/// (at most `PIECE`; only the last piece of a file is shorter).
pub(crate) fn piece_cv(offset: u64, bytes: &[u8]) -> Cv {
    debug_assert!(offset.is_multiple_of(PIECE as u64) && !bytes.is_empty() && bytes.len() <= PIECE);
    blake3::Hasher::new().set_input_offset(offset).update(bytes).finalize_non_root()
}

/// The CVs of the pieces of `bytes`, which start at `offset` (a multiple of
/// [`PIECE`]), computed on two threads.
pub(crate) fn piece_cvs(offset: u64, bytes: &[u8]) -> Vec<Cv> {
    let pieces: Vec<(u64, &[u8])> =
        bytes.chunks(PIECE).enumerate().map(|(i, p)| (offset + (i * PIECE) as u64, p)).collect();
    on_two_threads(&pieces, |&(o, p)| piece_cv(o, p))
}

/// `f` of each item in order, the second half on a second thread (the
/// store's hashing: the other core is idle while a stage's out is stored).
pub(crate) fn on_two_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let all = |part: &[T]| part.iter().map(&f).collect::<Vec<R>>();
    if items.len() < 2 {
        return all(items);
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|s| {
        let later = s.spawn(|| all(second));
        let mut done = all(first);
        done.extend(later.join().expect("hashing thread"));
        done
    })
}

/// The CVs of every piece of what `source` yields, which starts `start`
/// bytes (a multiple of [`PIECE`]) into its file, read in blocks of many
/// pieces, each block hashed on two threads, and how many bytes it yielded;
/// `read` is told how many more bytes were hashed after each block.
pub(crate) fn hash_file_pieces(
    start: u64,
    source: &mut impl std::io::Read,
    path: &std::path::Path,
    read: &mut dyn FnMut(u64),
) -> crate::error::Result<(Vec<Cv>, u64)> {
    use crate::error::IoContext;
    const BLOCK: usize = 32 * PIECE;
    let mut buf = vec![0u8; BLOCK];
    let mut cvs = Vec::new();
    let mut offset = start;
    loop {
        let mut len = 0;
        while len < BLOCK {
            match source.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(path),
            }
        }
        cvs.extend(piece_cvs(offset, &buf[..len]));
        offset += len as u64;
        read(len as u64);
        if len < BLOCK {
            return Ok((cvs, offset - start));
        }
    }
}

/// A file's piece CVs, fed its bytes in order in any sizes.
#[derive(Debug, Default)]
pub(crate) struct PieceHasher {
    cvs: Vec<Cv>,
    /// Bytes of the current (incomplete) piece seen so far.
    current: usize,
    hasher: Option<blake3::Hasher>,
}

impl PieceHasher {
    /// Continue after `cvs`, the CVs of a file's first `cvs.len()` whole pieces.
    pub fn resume(cvs: Vec<Cv>) -> PieceHasher {
        PieceHasher { cvs, current: 0, hasher: None }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let offset = (self.cvs.len() * PIECE) as u64;
            let hasher = self.hasher.get_or_insert_with(|| {
                let mut h = blake3::Hasher::new();
                h.set_input_offset(offset);
                h
            });
            let take = bytes.len().min(PIECE - self.current);
            hasher.update(&bytes[..take]);
            self.current += take;
            bytes = &bytes[take..];
            if self.current == PIECE {
                self.cvs.push(hasher.finalize_non_root());
                self.hasher = None;
                self.current = 0;
            }
        }
    }

    /// The CVs of every piece, the last one short if the length is not a
    /// multiple of [`PIECE`].
    pub fn finish(mut self) -> Vec<Cv> {
        if let Some(h) = self.hasher.take() {
            self.cvs.push(h.finalize_non_root());
        }
        self.cvs
    }
}

/// The blake3 of a file of `len` bytes from its pieces' CVs; `None` when
/// the CVs cannot be those of such a file (wrong count) or the file is one
/// piece or less (its root is not a merge of CVs: hash it whole).
pub(crate) fn root(cvs: &[Cv], len: u64) -> Option<blake3::Hash> {
    if len <= PIECE as u64 || cvs.len() as u64 != len.div_ceil(PIECE as u64) {
        return None;
    }
    let left = left_subtree_len(len);
    Some(merge_subtrees_root(&subtree(cvs, 0, left), &subtree(cvs, left, len - left), Mode::Hash))
}

/// The CV of the subtree of `len` bytes at `start`: a piece, or the merge of
/// the two halves blake3 splits it into (both piece-aligned above a piece).
fn subtree(cvs: &[Cv], start: u64, len: u64) -> Cv {
    if len <= PIECE as u64 {
        return cvs[(start / PIECE as u64) as usize];
    }
    let left = left_subtree_len(len);
    merge_subtrees_non_root(&subtree(cvs, start, left), &subtree(cvs, start + left, len - left), Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::tests::noise;

    #[test]
    fn root_of_piece_cvs_is_the_blake3_of_the_whole() {
        let bytes = noise(3, 9 * PIECE + 77);
        for len in [
            PIECE + 1,
            2 * PIECE - 1,
            2 * PIECE,
            2 * PIECE + 1,
            3 * PIECE,
            3 * PIECE + 1024,
            4 * PIECE,
            5 * PIECE + 1,
            8 * PIECE,
            9 * PIECE + 77,
        ] {
            let bytes = &bytes[..len];
            let cvs = piece_cvs(0, bytes);
            assert_eq!(root(&cvs, len as u64), Some(blake3::hash(bytes)), "{len} bytes");
            // Fed in odd sizes, and resumed after some whole pieces.
            let mut h = PieceHasher::default();
            for part in bytes.chunks(100_003) {
                h.update(part);
            }
            assert_eq!(h.finish(), cvs, "{len} bytes, streamed");
            let mut h = PieceHasher::resume(cvs[..1].to_vec());
            h.update(&bytes[PIECE..]);
            assert_eq!(h.finish(), cvs, "{len} bytes, resumed");
        }
    }

    #[test]
    fn a_one_piece_file_or_a_wrong_count_has_no_root_from_cvs() {
        let bytes = noise(4, 3 * PIECE);
        assert_eq!(root(&piece_cvs(0, &bytes[..PIECE]), PIECE as u64), None);
        let cvs = piece_cvs(0, &bytes);
        assert_eq!(root(&cvs[..2], 3 * PIECE as u64), None);
        assert_eq!(root(&cvs, 2 * PIECE as u64), None);
    }

    #[test]
    fn equal_cvs_mean_equal_bytes_at_that_offset() {
        let a = noise(5, 2 * PIECE);
        let mut b = a.clone();
        b[PIECE + 10] ^= 1;
        assert_eq!(piece_cvs(0, &a)[0], piece_cvs(0, &b)[0]);
        assert_ne!(piece_cvs(0, &a)[1], piece_cvs(0, &b)[1]);
        // The same bytes at another offset are another subtree.
        assert_ne!(piece_cv(0, &a[..PIECE]), piece_cv(PIECE as u64, &a[..PIECE]));
    }
}
