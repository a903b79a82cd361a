//! Lexical path handling: workspace paths are normalised (no `.`/`..`) and
//! stored relative to the root wdir with `/` separators.

use std::path::{Component, Path, PathBuf};

/// Remove `.` and resolve `..` lexically.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `abs` relative to `root` with `/` separators, or None when outside it.
pub(crate) fn relative_to(abs: &Path, root: &Path) -> Option<String> {
    abs.strip_prefix(root).ok().map(|r| r.to_string_lossy().replace('\\', "/"))
}

/// What `meta` is when it is neither a file, a folder nor a symlink: reading
/// a FIFO, device or socket can block forever or never end.
pub(crate) fn special_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    }
}
