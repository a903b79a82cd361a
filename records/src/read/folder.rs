//! Folders of records: Parquet shards, or a `datasets.save_to_disk` folder.

use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde_json::Value;

/// The `.parquet` files under `dir` (at any depth), in path order, so the
/// Hub's `data/train-00000-of-00002.parquet` shards read in sequence.
pub(super) fn parquet_shards(dir: &Path) -> Result<Vec<PathBuf>, StageFailure> {
    let mut out = Vec::new();
    collect(dir, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(StageFailure::bad_input(format!(
            "{}: a folder of records holds .parquet shards or a datasets.save_to_disk dataset (state.json), \
             and this one has neither",
            dir.display()
        )));
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageFailure> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| StageFailure::new(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(|e| StageFailure::new(format!("cannot list {}: {e}", dir.display())))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// The Arrow files of a `save_to_disk` folder, in the order its
/// `state.json` lists them (`_data_files`).
pub(super) fn save_to_disk_files(dir: &Path) -> Result<Vec<PathBuf>, StageFailure> {
    let bad = |msg: String| StageFailure::bad_input(format!("{}: {msg}", dir.display()));
    if dir.join("dataset_dict.json").is_file() {
        return Err(bad("this is a datasets DatasetDict folder (one sub-folder per split); point the dep at one \
                        split's folder, e.g. `train`"
            .into()));
    }
    let state = dir.join("state.json");
    let text = std::fs::read_to_string(&state).map_err(|e| bad(format!("cannot read state.json: {e}")))?;
    let state: Value = serde_json::from_str(&text).map_err(|e| bad(format!("state.json: malformed JSON: {e}")))?;
    let files = state
        .get("_data_files")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("state.json has no `_data_files` list".into()))?;
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = f
                .get("filename")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("state.json: `_data_files.{i}` has no `filename`")))?;
            // Only a plain file name: the folder must not point outside itself.
            if name.contains('/') || name.contains('\\') || name == ".." {
                return Err(bad(format!("state.json: `_data_files.{i}.filename` {name:?} is not a file name")));
            }
            Ok(dir.join(name))
        })
        .collect()
}
