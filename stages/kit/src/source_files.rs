//! Listing the source files of a stage's deps (folders or single files) in a
//! stable order, with the path each one is known by in generated examples.

use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;

/// One file found under a dep.
#[derive(Debug, Clone)]
pub struct DepFile {
    /// Absolute path on disk.
    pub abs: PathBuf,
    /// The dep folder it was found under (its parent, for a file dep).
    pub root: PathBuf,
    /// Path relative to `root`, with `/` separators: what examples show.
    pub rel: String,
    /// Index of the dep it came from.
    pub dep: usize,
    /// The dep is this file itself (not a folder).
    pub file_dep: bool,
}

/// Every file whose name ends in one of `exts` (e.g. `".py"`) under the
/// folder deps, plus file deps with such names. Sorted by dep then path so the
/// order never depends on the file system. Hidden folders are walked too,
/// because `grep -r` walks them as well.
pub fn list_files(deps: &[PathBuf], exts: &[&str]) -> Result<Vec<DepFile>, StageFailure> {
    let mut out = Vec::new();
    for (dep_index, dep) in deps.iter().enumerate() {
        if dep.is_file() {
            let name = dep.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if matches_ext(&name, exts) {
                let root = dep.parent().map(Path::to_path_buf).unwrap_or_default();
                out.push(DepFile { abs: dep.clone(), root, rel: name, dep: dep_index, file_dep: true });
            }
            continue;
        }
        if !dep.is_dir() {
            return Err(StageFailure::new(format!("dep {} does not exist", dep.display())));
        }
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(dep).sort_by_file_name() {
            let entry = entry.map_err(|e| StageFailure::new(format!("cannot walk {}: {e}", dep.display())))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if !matches_ext(&name, exts) {
                continue;
            }
            let rel = rel_slash(entry.path(), dep);
            found.push(DepFile {
                abs: entry.path().to_path_buf(),
                root: dep.clone(),
                rel,
                dep: dep_index,
                file_dep: false,
            });
        }
        // walkdir sorts siblings, but a byte-wise sort of the full relative
        // path is what readers (and tests) expect.
        found.sort_by(|a, b| a.rel.cmp(&b.rel));
        out.extend(found);
    }
    Ok(out)
}

fn matches_ext(name: &str, exts: &[&str]) -> bool {
    exts.iter().any(|e| name.len() > e.len() && name.ends_with(e))
}

/// `path` relative to `root`, `/`-separated.
pub fn rel_slash(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// Byte offsets of the start of every line of `text` (the first is 0).
pub fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
    starts
}

/// 1-based line number of byte `offset`, given [`line_starts`].
pub fn line_of(starts: &[usize], offset: usize) -> usize {
    match starts.binary_search(&offset) {
        Ok(i) => i + 1,
        Err(i) => i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_with_rel_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg/sub")).unwrap();
        std::fs::write(root.join("pkg/b.py"), "").unwrap();
        std::fs::write(root.join("pkg/a.py"), "").unwrap();
        std::fs::write(root.join("pkg/sub/c.py"), "").unwrap();
        std::fs::write(root.join("pkg/notes.txt"), "").unwrap();
        let files = list_files(&[root.to_path_buf()], &[".py"]).unwrap();
        let rels: Vec<_> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["pkg/a.py", "pkg/b.py", "pkg/sub/c.py"]);
        let missing = list_files(&[root.join("nope")], &[".py"]).unwrap_err();
        assert!(missing.message.contains("does not exist"), "{}", missing.message);
    }

    #[test]
    fn lines() {
        let s = line_starts("ab\ncd\n\nx");
        assert_eq!(s, vec![0, 3, 6, 7]);
        assert_eq!(line_of(&s, 0), 1);
        assert_eq!(line_of(&s, 4), 2);
        assert_eq!(line_of(&s, 7), 4);
    }
}

/// Running a stage in unit tests without the engine.
#[cfg(any(test, feature = "testkit"))]
pub mod testing {
    use std::path::{Path, PathBuf};

    use dvx_stage_api::{Metrics, Stage, StageContext, StageFailure, StageShape, Typed, TypedStage};
    use serde_json::Value;

    /// Check then execute `kind` (through the [`Typed`] adapter) in `cwd`;
    /// the log is returned too.
    pub fn run<T: TypedStage>(
        kind: T,
        cwd: &Path,
        deps: &[PathBuf],
        outs: &[PathBuf],
        params: Value,
    ) -> (Result<Metrics, StageFailure>, String) {
        let stage = Typed::new(kind);
        let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
        if let Err(e) = stage.check(&shape) {
            return (Err(StageFailure::new(format!("check: {:?}: {}", e.field, e.message))), String::new());
        }
        for o in outs {
            if let Some(p) = o.parent() {
                std::fs::create_dir_all(p).unwrap();
            }
        }
        let mut log = Vec::new();
        let mut ctx = StageContext::new("test", cwd, deps, outs, &params, &mut log).with_threads(2);
        let r = stage.execute(&mut ctx);
        (r, String::from_utf8_lossy(&log).into_owned())
    }
}
