use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{IoContext, Result};

/// Whether `s` is 64 lowercase hex characters (the text of a blake3 hash).
fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A name that is a blake3 hash as 64 lowercase hex characters; `what` is
/// how a malformed one is described.
macro_rules! hex_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    let shown: String = s.chars().take(80).collect();
                    serde::de::Error::custom(format!(concat!("`{}` is not ", $what, " (64 lowercase hex characters)"), shown))
                })
            }
        }

        impl $name {
            /// From a finished blake3 hasher.
            pub fn from_blake3(h: blake3::Hash) -> Self {
                $name(h.to_hex().to_string())
            }
            /// Parse the full hex text.
            pub fn parse(s: &str) -> Option<Self> {
                is_hex64(s).then(|| $name(s.to_string()))
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }
    };
}

hex_name!(
    /// A blake3 hash, as 64 lowercase hex characters. Deserializing checks the
    /// shape, so a record read from a shared cache cannot smuggle a short or
    /// path-like "hash" into an object path.
    Hash,
    "a blake3 hash"
);

hex_name!(
    /// A stage key: the blake3 of everything that determines a stage's
    /// result (the engine's `key.rs` says what), as 64 lowercase hex
    /// characters. A type of its own so a key and an object name are never
    /// confused; deserializing checks the shape, as for [`Hash`], since keys
    /// name files in `runs-v1/` and `locks-v1/`.
    StageKey,
    "a stage key"
);

impl Hash {
    /// Hash of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Hash::from_blake3(blake3::hash(bytes))
    }
}

/// Hash a file's bytes, streaming.
pub fn hash_file(path: &Path) -> Result<Hash> {
    hash_file_reporting(path, &mut |_| {})
}

/// [`hash_file`], telling `read` how many more bytes were hashed every
/// [`REPORT_EVERY`] bytes (and at the end), for progress on large files.
pub(crate) fn hash_file_reporting(path: &Path, read: &mut dyn FnMut(u64)) -> Result<Hash> {
    hash_reader(std::fs::File::open(path).at(path)?, path, read)
}

/// How many bytes are hashed between two progress reports.
pub(crate) const REPORT_EVERY: u64 = 8 << 20;

fn hash_reader(mut file: impl Read, path: &Path, read: &mut dyn FnMut(u64)) -> Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut unreported = 0u64;
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        unreported += n as u64;
        if unreported >= REPORT_EVERY {
            read(std::mem::take(&mut unreported));
        }
    }
    if unreported > 0 {
        read(unreported);
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
    hash_reader(open_regular(path).at(path)?, path, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes_check_their_shape() {
        let h = Hash::of_bytes(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        let k: StageKey = serde_json::from_str(&json).unwrap();
        assert_eq!(k.as_str(), h.as_str());
        for bad in ["\"../../etc/passwd\"", "\"ABC\"", &json.to_uppercase()] {
            let e = serde_json::from_str::<StageKey>(bad).unwrap_err().to_string();
            assert!(e.contains("is not a stage key"), "{e}");
            assert!(serde_json::from_str::<Hash>(bad).is_err());
        }
    }
}
