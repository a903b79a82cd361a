use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{IoContext, Result};

/// A blake3 hash, as 64 lowercase hex characters. Deserializing checks the
/// shape, so a record read from a shared cache cannot smuggle a short or
/// path-like "hash" into an object path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Hash(String);

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::parse(&s).ok_or_else(|| {
            let shown: String = s.chars().take(80).collect();
            serde::de::Error::custom(format!("`{shown}` is not a blake3 hash (64 lowercase hex characters)"))
        })
    }
}

impl Hash {
    /// From a finished blake3 hasher.
    pub fn from_blake3(h: blake3::Hash) -> Self {
        Hash(h.to_hex().to_string())
    }
    /// Hash of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Hash::from_blake3(blake3::hash(bytes))
    }
    /// Parse a full hex hash.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| Hash(s.to_string()))
    }
    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 characters, for display.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

/// Hash a file's bytes, streaming.
pub fn hash_file(path: &Path) -> Result<Hash> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Hash::from_blake3(hasher.finalize()))
}

/// Open a file of the store for reading, refusing anything but a regular
/// file: a cache writer could have put a symlink (to a victim's file) or a
/// FIFO (which would block forever) where an object belongs.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Hash a file of the store (see [`open_regular`]), streaming.
pub(crate) fn hash_object(path: &Path) -> Result<Hash> {
    let mut file = open_regular(path).at(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Hash::from_blake3(hasher.finalize()))
}
