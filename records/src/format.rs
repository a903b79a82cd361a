//! Which format a dep is in (from its content, then its name) and which
//! format an out is written in (from its extension).

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A container records can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// JSONL compressed with gzip.
    JsonlGz,
    /// JSONL compressed with zstd.
    JsonlZst,
    /// One JSON array of objects.
    JsonArray,
    /// One Parquet file.
    Parquet,
    /// One Arrow IPC file or stream (`.arrow`, as `datasets` writes them).
    Arrow,
    /// A folder of Parquet shards, read in name order.
    ParquetFolder,
    /// A `datasets.save_to_disk` folder: `state.json` lists its Arrow files.
    HfDisk,
}

impl Format {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "JSONL",
            Format::JsonlGz => "gzip JSONL",
            Format::JsonlZst => "zstd JSONL",
            Format::JsonArray => "JSON array",
            Format::Parquet => "Parquet",
            Format::Arrow => "Arrow IPC",
            Format::ParquetFolder => "Parquet folder",
            Format::HfDisk => "datasets save_to_disk folder",
        }
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const PARQUET: &[u8] = b"PAR1";
const ARROW_FILE: &[u8] = b"ARROW1";
/// An Arrow IPC stream starts with a continuation marker.
const ARROW_STREAM: &[u8] = &[0xff, 0xff, 0xff, 0xff];

/// The format of `path`: a folder by what it holds, a file by its first
/// bytes (so a mis-named file still reads), else by its name. Text that is
/// not a known binary format is JSONL, or a JSON array when it is named
/// `.json` or starts with `[` (decided when read).
pub fn detect(path: &Path) -> std::io::Result<Format> {
    if path.is_dir() {
        let hf = ["state.json", "dataset_info.json", "dataset_dict.json"];
        return Ok(if hf.iter().any(|f| path.join(f).is_file()) { Format::HfDisk } else { Format::ParquetFolder });
    }
    let mut head = [0u8; 6];
    let mut file = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(GZIP) {
        Format::JsonlGz
    } else if head.starts_with(ZSTD) {
        Format::JsonlZst
    } else if head.starts_with(PARQUET) {
        Format::Parquet
    } else if head.starts_with(ARROW_FILE) || head.starts_with(ARROW_STREAM) {
        Format::Arrow
    } else if path.extension().is_some_and(|e| e == "json") {
        Format::JsonArray
    } else {
        Format::Jsonl
    })
}

/// A format records can be written in, chosen by the out's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    /// `.jsonl`
    Jsonl,
    /// `.jsonl.gz`
    JsonlGz,
    /// `.jsonl.zst`
    JsonlZst,
    /// `.parquet`
    Parquet,
}

impl WriteFormat {
    /// The format for an out named `path`, or why there is none.
    pub fn for_path(path: &Path) -> Result<WriteFormat, String> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".jsonl") {
            Ok(WriteFormat::Jsonl)
        } else if name.ends_with(".jsonl.gz") {
            Ok(WriteFormat::JsonlGz)
        } else if name.ends_with(".jsonl.zst") {
            Ok(WriteFormat::JsonlZst)
        } else if name.ends_with(".parquet") {
            Ok(WriteFormat::Parquet)
        } else if !name.contains('.') {
            // No extension at all names no other format: JSONL, as before formats existed.
            Ok(WriteFormat::Jsonl)
        } else {
            Err(format!(
                "`{}`: records are written as .jsonl, .jsonl.gz, .jsonl.zst or .parquet, chosen by the out's \
                 extension; rename the out to one of those",
                path.display()
            ))
        }
    }
}

/// Checks that every out in `outs` names a format records can be written in.
pub fn check_writable<P: AsRef<Path>>(outs: &[P]) -> Result<(), String> {
    outs.iter().try_for_each(|o| WriteFormat::for_path(o.as_ref()).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_format_by_extension() {
        assert_eq!(WriteFormat::for_path(Path::new("a/b.jsonl")), Ok(WriteFormat::Jsonl));
        assert_eq!(WriteFormat::for_path(Path::new("b.JSONL.GZ")), Ok(WriteFormat::JsonlGz));
        assert_eq!(WriteFormat::for_path(Path::new("b.jsonl.zst")), Ok(WriteFormat::JsonlZst));
        assert_eq!(WriteFormat::for_path(Path::new("b.parquet")), Ok(WriteFormat::Parquet));
        assert_eq!(WriteFormat::for_path(Path::new("out/kept")), Ok(WriteFormat::Jsonl));
        for bad in ["b.csv", "b.arrow", "b.json", "b.gz", "b.txt"] {
            let e = WriteFormat::for_path(Path::new(bad)).unwrap_err();
            assert!(e.starts_with(&format!("`{bad}`: records are written as")), "{e}");
        }
    }
}
