//! Metadata read earlier in the same run, handed on so that a path is
//! stated once: the loader's symlink check of each out and the source
//! check of each source dep read what the planner would read again
//! (at 10,000 stages, 20,000 `statx` of 140,000).
//!
//! Each entry is taken at most once, by the planner, for the path's first
//! use in the run: a source before it is hashed, an out when its stage is
//! planned (before anything of the run can have written it, since only
//! its stage writes it). Everything after that (restores, checks after a
//! stage ran) states the path afresh. Only what followed no symlink is
//! kept, so the metadata is what `std::fs::metadata` would give.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dvx_cache::FolderListing;

/// Absolute path → its metadata, read in this run; and source folders
/// listed (not stated) by the source check → what was in them.
#[derive(Debug, Default)]
pub(crate) struct Stated(Mutex<HashMap<PathBuf, Metadata>>, Mutex<HashMap<PathBuf, FolderListing>>);

impl Stated {
    /// Remember what `path` was a moment ago; a symlink is not kept (what
    /// the planner wants is its target's).
    pub fn keep(&self, path: &Path, meta: Metadata) {
        if !meta.file_type().is_symlink() {
            self.0.lock().expect("stated lock").insert(path.to_path_buf(), meta);
        }
    }

    /// Remember many at once.
    pub fn extend(&self, all: impl IntoIterator<Item = (PathBuf, Metadata)>) {
        let mut map = self.0.lock().expect("stated lock");
        map.extend(all.into_iter().filter(|(_, m)| !m.file_type().is_symlink()));
    }

    /// What `path` was, once: a second call states it again.
    pub fn take(&self, path: &Path) -> Option<Metadata> {
        let mut map = self.0.lock().expect("stated lock");
        if map.is_empty() {
            return None;
        }
        map.remove(path)
    }

    /// Remember what was in the folders listed a moment ago.
    pub fn extend_listed(&self, all: impl IntoIterator<Item = (PathBuf, FolderListing)>) {
        self.1.lock().expect("stated lock").extend(all);
    }

    /// What was in the folder at `path`, once, when it was listed.
    pub fn take_listed(&self, path: &Path) -> Option<FolderListing> {
        let mut map = self.1.lock().expect("stated lock");
        if map.is_empty() {
            return None;
        }
        map.remove(path)
    }

    /// Everything `other` kept, added to this.
    pub fn absorb(&self, other: Stated) {
        self.extend(other.0.into_inner().expect("stated lock"));
        self.extend_listed(other.1.into_inner().expect("stated lock"));
    }

    /// Everything kept, leaving this empty: a run takes the loader's at its
    /// start, so a second run of the same pipeline states everything afresh.
    pub fn take_all(&self) -> Stated {
        Stated(
            Mutex::new(std::mem::take(&mut *self.0.lock().expect("stated lock"))),
            Mutex::new(std::mem::take(&mut *self.1.lock().expect("stated lock"))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_is_handed_out_once_and_symlinks_are_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, link) = (tmp.path().join("f"), tmp.path().join("l"));
        std::fs::write(&file, "x").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let stated = Stated::default();
        stated.keep(&file, std::fs::symlink_metadata(&file).unwrap());
        stated.keep(&link, std::fs::symlink_metadata(&link).unwrap());
        assert!(stated.take(&link).is_none());
        let all = stated.take_all();
        assert!(stated.take(&file).is_none(), "taken by take_all");
        assert_eq!(all.take(&file).map(|m| m.len()), Some(1));
        assert!(all.take(&file).is_none(), "once only");
    }
}
