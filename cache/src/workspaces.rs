//! Which version each workspace holds (`workspaces-v1/<blake3 of its path>.json`).
//!
//! A run that writes a version and a checkout into a workspace register it
//! here, so a gc from any workspace of a shared cache keeps what the others
//! hold. A record is one small JSON object; like everything in the cache it
//! is other people's input: a record that does not parse, or that is not
//! named after the path it states, is skipped (and reported by verify).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bucket::Bucket;
use crate::error::Result;
use crate::hash::Hash;
use crate::runs::read_dir_sorted;
use crate::store::Cache;

/// One workspace and the version it last held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRecord {
    /// The workspace folder (absolute).
    pub path: String,
    /// The version it holds: the last one a run wrote there, or checked out.
    pub version: Hash,
    /// When it was registered (seconds since the Unix epoch).
    pub time: u64,
}

/// The file name of a workspace's record: the blake3 of its path.
fn record_name(path: &str) -> String {
    format!("{}.json", Hash::of_bytes(path.as_bytes()))
}

impl Cache {
    /// Record that the workspace at `path` holds `version` (replacing what
    /// it held before).
    pub fn register_workspace(&self, path: &Path, version: &Hash) -> Result<()> {
        let path = path.to_string_lossy().into_owned();
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let rec = WorkspaceRecord { version: version.clone(), time, path };
        let bytes = serde_json::to_vec_pretty(&rec).expect("a workspace record serialises");
        self.bucket_dir(Bucket::Workspaces)?;
        self.write_in(Bucket::Workspaces, &record_name(&rec.path), &bytes).map(|_| ())
    }

    /// Every well-formed workspace record. Bad ones are skipped with a
    /// warning; [`Cache::workspace_files`] lists them for verify.
    pub fn workspaces(&self) -> Result<Vec<WorkspaceRecord>> {
        let mut out = Vec::new();
        for (path, rec) in self.workspace_files()? {
            match rec {
                Ok(r) => out.push(r),
                Err(why) => tracing::warn!("skipping workspace record {}: {why}", path.display()),
            }
        }
        Ok(out)
    }

    /// Every file under `workspaces-v1/`, parsed and checked.
    pub(crate) fn workspace_files(&self) -> Result<Vec<(PathBuf, std::result::Result<WorkspaceRecord, String>)>> {
        let dir = self.dir(Bucket::Workspaces);
        let mut out = Vec::new();
        for path in read_dir_sorted(&dir)? {
            let rec = parse_record(&path);
            out.push((path, rec));
        }
        Ok(out)
    }
}

fn parse_record(path: &Path) -> std::result::Result<WorkspaceRecord, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    // A record is a few hundred bytes; anything else is not one, and is not read whole.
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err("not a workspace record (not a small regular file)".into());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let rec: WorkspaceRecord = serde_json::from_slice(&bytes).map_err(|e| format!("not a workspace record: {e}"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name != record_name(&rec.path) {
        return Err(format!("named for another path than the one it states (`{}`)", rec.path));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheOptions;

    #[test]
    fn registers_replaces_and_skips_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), CacheOptions::default()).unwrap();
        assert!(cache.workspaces().unwrap().is_empty(), "no bucket yet: no workspaces");
        let (a, b) = (Hash::of_bytes(b"a"), Hash::of_bytes(b"b"));
        cache.register_workspace(Path::new("/w/one"), &a).unwrap();
        cache.register_workspace(Path::new("/w/two"), &a).unwrap();
        cache.register_workspace(Path::new("/w/one"), &b).unwrap();
        let mut got: Vec<(String, Hash)> =
            cache.workspaces().unwrap().into_iter().map(|r| (r.path, r.version)).collect();
        got.sort();
        assert_eq!(got, vec![("/w/one".into(), b.clone()), ("/w/two".into(), a.clone())]);

        // A record copied under another workspace's name, and garbage: skipped, listed as bad.
        let ws = cache.dir(Bucket::Workspaces);
        std::fs::copy(ws.join(record_name("/w/one")), ws.join(record_name("/w/three"))).unwrap();
        std::fs::write(ws.join("junk.json"), b"{").unwrap();
        assert_eq!(cache.workspaces().unwrap().len(), 2);
        let bad = cache.workspace_files().unwrap().into_iter().filter(|(_, r)| r.is_err()).count();
        assert_eq!(bad, 2);
    }
}
