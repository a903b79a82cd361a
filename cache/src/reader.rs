//! Reading an object as a stream, checked against its name on the way;
//! whether it is stored whole or as chunks is this module's business.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use crate::chunking::ChunkList;
use crate::error::{CacheError, Result};
use crate::hash::{open_regular, Hash};
use crate::store::Cache;

/// An object's bytes, hashed as they are read. At the end of the object a
/// read fails (kind `InvalidData`, carrying [`CacheError::Corrupt`]) when the
/// bytes do not match the object's name, so whatever a caller built from them
/// must be thrown away; [`ObjectReader::error`] turns a read error back into
/// a [`CacheError`]. Only a caller that reads to the end gets this check.
/// For an object stored as chunks, each chunk is also checked against its
/// own name when its end is reached ([`CacheError::CorruptChunk`]) and a
/// missing chunk fails the read ([`CacheError::MissingChunk`]).
#[derive(Debug)]
pub struct ObjectReader {
    hash: Hash,
    hasher: blake3::Hasher,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Whole { file: File, path: PathBuf },
    Chunked(Box<Chunks>),
}

/// Where a chunked object's read has got to.
#[derive(Debug)]
struct Chunks {
    /// The chunk list's file, for errors between chunks.
    list_path: PathBuf,
    chunks_dir: PathBuf,
    rest: std::vec::IntoIter<(Hash, u32)>,
    current: Option<OpenChunk>,
}

#[derive(Debug)]
struct OpenChunk {
    file: File,
    path: PathBuf,
    hash: Hash,
    hasher: blake3::Hasher,
}

impl ObjectReader {
    /// The store error behind an error this reader returned (or a reader
    /// wrapping it): the mismatch found at the end, or an I/O error on the
    /// object's file.
    pub fn error(&self, e: std::io::Error) -> CacheError {
        if e.get_ref().is_some_and(|inner| inner.is::<CacheError>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<CacheError>().expect("checked above");
        }
        let path = match &self.body {
            Body::Whole { path, .. } => path.clone(),
            Body::Chunked(c) => c.current.as_ref().map_or_else(|| c.list_path.clone(), |o| o.path.clone()),
        };
        CacheError::Io { path, source: e }
    }

    /// Read the rest of the object, only to check it.
    pub(crate) fn check_to_end(mut self) -> Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Fill `buf` from the chunks, moving to the next chunk (and checking
    /// the one finished) as each ends. 0 only at the end of the last chunk.
    fn read_chunks(hash: &Hash, c: &mut Chunks, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(open) = &mut c.current else {
                let Some((chunk, _)) = c.rest.next() else { return Ok(0) };
                let path = crate::store::shard_path(&c.chunks_dir, &chunk);
                let file = open_regular(&path).map_err(|e| {
                    let damage = match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            CacheError::MissingChunk { hash: hash.to_string(), chunk: chunk.to_string() }
                        }
                        _ if e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::Other => {
                            CacheError::CorruptChunk {
                                hash: hash.to_string(),
                                chunk: chunk.to_string(),
                                actual: "(not a regular file)".into(),
                            }
                        }
                        _ => return e,
                    };
                    std::io::Error::new(std::io::ErrorKind::InvalidData, damage)
                })?;
                c.current = Some(OpenChunk { file, path, hash: chunk, hasher: blake3::Hasher::new() });
                continue;
            };
            let n = open.file.read(buf)?;
            if n > 0 {
                open.hasher.update(&buf[..n]);
                return Ok(n);
            }
            let actual = Hash::from_blake3(open.hasher.finalize());
            if actual != open.hash {
                let corrupt = CacheError::CorruptChunk {
                    hash: hash.to_string(),
                    chunk: open.hash.to_string(),
                    actual: actual.to_string(),
                };
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, corrupt));
            }
            c.current = None;
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match &mut self.body {
            Body::Whole { file, .. } => file.read(buf)?,
            Body::Chunked(c) => Self::read_chunks(&self.hash, c, buf)?,
        };
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let actual = Hash::from_blake3(self.hasher.finalize());
        if actual != self.hash {
            let corrupt = CacheError::Corrupt { hash: self.hash.to_string(), actual: actual.to_string() };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, corrupt));
        }
        Ok(0)
    }
}

impl Cache {
    /// Open an object for reading as a stream, checked against its name at
    /// the end (see [`ObjectReader`]), whether it is stored whole or as
    /// chunks. [`CacheError::MissingObject`] if it is absent;
    /// [`CacheError::Corrupt`] if something other than a regular file (a
    /// symlink, a FIFO) sits where it belongs; [`CacheError::BadRecord`] if
    /// its chunk list is malformed.
    pub fn open_object(&self, hash: &Hash) -> Result<ObjectReader> {
        let path = self.object_path(hash);
        let body = match open_regular(&path) {
            Ok(file) => Body::Whole { file, path },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self.read_chunk_list(hash)? {
                Some(list) => Body::Chunked(Box::new(self.chunk_cursor(hash, list))),
                None => return Err(CacheError::MissingObject(hash.to_string())),
            },
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::Other => {
                return Err(CacheError::Corrupt { hash: hash.to_string(), actual: "(not a regular file)".into() })
            }
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        Ok(ObjectReader { hash: hash.clone(), hasher: blake3::Hasher::new(), body })
    }

    /// Read a chunked object through its list even where a whole copy also
    /// exists (verify checks each form).
    pub(crate) fn open_chunked(&self, hash: &Hash, list: ChunkList) -> ObjectReader {
        ObjectReader {
            hash: hash.clone(),
            hasher: blake3::Hasher::new(),
            body: Body::Chunked(Box::new(self.chunk_cursor(hash, list))),
        }
    }

    fn chunk_cursor(&self, hash: &Hash, list: ChunkList) -> Chunks {
        Chunks {
            list_path: self.chunk_list_path(hash),
            chunks_dir: self.dir(crate::bucket::Bucket::Chunks),
            rest: list.chunks.into_iter(),
            current: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::CacheOptions;

    fn read_all(cache: &Cache, h: &Hash) -> Result<Vec<u8>> {
        let mut r = cache.open_object(h)?;
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|e| r.error(e))?;
        Ok(bytes)
    }

    #[test]
    fn streams_checks_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheOptions::default()).unwrap();
        let h = cache.put_bytes(b"hello\nworld\n").unwrap();
        assert_eq!(read_all(&cache, &h).unwrap(), b"hello\nworld\n");

        let absent = Hash::of_bytes(b"absent");
        assert!(matches!(read_all(&cache, &absent), Err(CacheError::MissingObject(_))));

        // Bytes that do not match the name: the error comes at the end.
        let path = cache.object_path(&h);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"hello\nwOrld\n").unwrap();
        match read_all(&cache, &h) {
            Err(CacheError::Corrupt { hash, actual }) => {
                assert_eq!(hash, h.to_string());
                assert_eq!(actual, Hash::of_bytes(b"hello\nwOrld\n").to_string());
            }
            other => panic!("{other:?}"),
        }

        // A symlink where an object belongs is not followed.
        std::fs::remove_file(&path).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"hello\nworld\n").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(matches!(read_all(&cache, &h), Err(CacheError::Corrupt { .. })));
    }
}
