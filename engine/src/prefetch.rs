//! Reading a workspace's stat cache and state ahead. At 10,000 stages they
//! are 16 MB and 6 MB (the stat cache's entries are parsed a folder at a
//! time, when asked for, but the file is read and checked whole); neither
//! depends on the pipeline, so `dvx run` and `dvx status` start reading them
//! on another thread ([`prefetch_workspace_state`]) while the YAML is parsed,
//! and [`run`](crate::run()) takes them ([`take`]) instead of reading them again.
//!
//! Both are read as they are when the thread reads them, a few hundred
//! milliseconds before the run would: what a run does with them is the same
//! (stat cache entries are checked against each file's identity; the state
//! is whatever the last run saved).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;

use dvx_cache::StatCache;

use crate::state::WorkspaceState;

/// The stat cache file in a workspace's state folder.
pub(crate) const STAT_FILE: &str = "stat-v4.txt";

/// The stat cache file of earlier versions (all entries parsed at load):
/// not read, removed when the new one is saved.
pub(crate) const OLD_STAT_FILE: &str = "stat-v3.txt";

type Read = (StatCache, WorkspaceState);

/// The one read under way: its state folder and the thread reading it.
static PENDING: Mutex<Option<(PathBuf, JoinHandle<Read>)>> = Mutex::new(None);

/// Start reading the stat cache and state of the workspace of the pipeline
/// at `pipeline_file` (its `.dvx/` folder) on another thread. Nothing
/// happens when the file cannot be resolved; a read not taken is dropped.
pub fn prefetch_workspace_state(pipeline_file: &Path) {
    let Some(dir) = std::fs::canonicalize(pipeline_file).ok().and_then(|f| f.parent().map(|d| d.join(".dvx"))) else {
        return;
    };
    let from = dir.clone();
    let Ok(handle) = std::thread::Builder::new()
        .name("dvx-prefetch".into())
        .spawn(move || (StatCache::load(&from.join(STAT_FILE)), WorkspaceState::load(&from)))
    else {
        return;
    };
    *PENDING.lock().expect("prefetch lock") = Some((dir, handle));
}

/// The stat cache and state of `state_dir`: read ahead if a read of this
/// folder is under way or done, else read now.
pub(crate) fn take(state_dir: &Path) -> Read {
    let pending = PENDING.lock().expect("prefetch lock").take();
    if let Some((dir, handle)) = pending {
        if dir == state_dir {
            if let Ok(read) = handle.join() {
                return read;
            }
        }
    }
    (StatCache::load(&state_dir.join(STAT_FILE)), WorkspaceState::load(state_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetched_read_is_what_a_read_now_gives_and_only_for_its_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("dvx.yaml");
        std::fs::write(&file, "stages: {}\n").unwrap();
        let dir = tmp.path().canonicalize().unwrap().join(".dvx");
        std::fs::create_dir_all(&dir).unwrap();
        let mut state = WorkspaceState::load(&dir);
        state.last_hit_rate = Some(0.5);
        state.save().unwrap();

        prefetch_workspace_state(&file);
        let (_, read) = take(&dir);
        assert_eq!(read.last_hit_rate, Some(0.5));
        // Taken once: the next take reads the folder again.
        assert!(PENDING.lock().unwrap().is_none());

        // A read of another folder is not handed out for this one.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("dvx.yaml"), "stages: {}\n").unwrap();
        prefetch_workspace_state(&other.path().join("dvx.yaml"));
        let (_, read) = take(&dir);
        assert_eq!(read.last_hit_rate, Some(0.5));
    }
}
