//! Writing records in the format the out's extension names.
//!
//! JSONL forms write each record as one compact line, keys in the order
//! they were inserted. `.jsonl.gz` uses gzip level 6 with a zero mtime and
//! no file name in the header; `.jsonl.zst` uses zstd level 3, single
//! threaded: both give the same bytes for the same records.
//!
//! `.parquet` needs one schema for the whole file: see `parquet_sink.rs`
//! for how it is inferred and how the file is made in one pass where it can
//! be, with fixed settings so the bytes are reproducible. A field whose
//! values have two JSON types that do not convert (a string and a number)
//! is an error naming the field: Parquet cannot hold it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dvx_stage_api::{KeptPrefix, StageFailure};
use flate2::write::GzEncoder;

use crate::format::WriteFormat;
use crate::parquet_sink::ParquetSink;
use crate::Record;

enum Sink {
    Jsonl(BufWriter<OutFile>),
    Gz(BufWriter<GzEncoder<OutFile>>),
    Zst(BufWriter<zstd::Encoder<'static, OutFile>>),
    Parquet(Box<ParquetSink>),
}

impl Sink {
    /// The JSONL stream of a JSONL sink (plain or compressed).
    fn jsonl(&mut self) -> Option<&mut dyn Write> {
        match self {
            Sink::Jsonl(w) => Some(w),
            Sink::Gz(w) => Some(w),
            Sink::Zst(w) => Some(w),
            Sink::Parquet(_) => None,
        }
    }
}

/// Writes records to one out, in the format its extension names.
pub struct RecordWriter {
    path: PathBuf,
    sink: Sink,
    count: usize,
    /// A line's buffer, kept between records.
    scratch: String,
    /// Where to say how much of a taken-over previous out was kept.
    kept: Option<KeptPrefix>,
}

impl RecordWriter {
    /// Create (truncate) `path`, creating parent folders. An extension no
    /// writer supports is an error (see [`WriteFormat::for_path`]).
    pub fn create(path: &Path) -> Result<Self, StageFailure> {
        Self::create_over(path, None)
    }

    /// [`RecordWriter::create`], taking over `previous` (the out's earlier
    /// content, moved aside: `StageContext::previous_outs`) when the out is
    /// plain JSONL: the file is moved back and bytes are written only from
    /// where they first differ from it, so records that come out as before
    /// cost a read, not a write. The bytes on disk are the same either way.
    pub fn create_over(path: &Path, previous: Option<&Path>) -> Result<Self, StageFailure> {
        let format = WriteFormat::for_path(path).map_err(StageFailure::new)?;
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot create {}: {e}", path.display()));
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| cannot(&e))?;
        const BUF: usize = 1 << 20;
        let sink = if format == WriteFormat::Parquet {
            Sink::Parquet(Box::new(ParquetSink::new(path, parent)))
        } else {
            let over = previous.filter(|_| format == WriteFormat::Jsonl).and_then(|p| Reuse::take(p, path));
            let file = match over {
                Some(reuse) => OutFile::Over(reuse),
                None => OutFile::Fresh(File::create(path).map_err(|e| cannot(&e))?),
            };
            match format {
                WriteFormat::Jsonl => Sink::Jsonl(BufWriter::with_capacity(BUF, file)),
                WriteFormat::JsonlGz => {
                    // GzBuilder's header has mtime 0 and no name unless asked.
                    let gz = flate2::GzBuilder::new().write(file.fresh(), flate2::Compression::new(6));
                    Sink::Gz(BufWriter::with_capacity(BUF, gz))
                }
                WriteFormat::JsonlZst => {
                    let zst = zstd::Encoder::new(file.fresh(), 3).map_err(|e| cannot(&e))?;
                    Sink::Zst(BufWriter::with_capacity(BUF, zst))
                }
                WriteFormat::Parquet => unreachable!("handled above"),
            }
        };
        Ok(RecordWriter { path: path.to_path_buf(), sink, count: 0, scratch: String::new(), kept: None })
    }

    /// Say through `kept`, when the writer finishes, how many first bytes
    /// of the previous out it took over it kept as they were (nothing is
    /// said when it took none over).
    pub fn reporting_kept(mut self, kept: Option<KeptPrefix>) -> Self {
        // A writer that starts afresh takes back what an earlier one said.
        let takes_over = matches!(&self.sink, Sink::Jsonl(w) if matches!(w.get_ref(), OutFile::Over(_)));
        if let Some(k) = kept.as_ref().filter(|_| !takes_over) {
            k.clear();
        }
        self.kept = kept;
        self
    }

    /// Append one record.
    pub fn write(&mut self, record: &Record) -> Result<(), StageFailure> {
        let failed =
            |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", self.path.display()));
        if let Sink::Parquet(_) = self.sink {
            // The schema is inferred from the text, so it is made first.
            return self.put(&serde_json::to_string(record).map_err(|e| failed(&e))?);
        }
        let out = self.sink.jsonl().expect("not Parquet");
        serde_json::to_writer(&mut *out, record)
            .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
            .map_err(|e| failed(&e))?;
        self.count += 1;
        Ok(())
    }

    /// Append one record given as its JSON text on one line (a JSONL
    /// input's line kept byte for byte). The caller has parsed it as an
    /// object; Parquet outs re-read it when encoding.
    pub fn write_json_line(&mut self, json: &str) -> Result<(), StageFailure> {
        self.put(json)
    }

    /// Append one record given as JSON object text in any layout (any
    /// spacing, escapes of any kind): JSONL outs get the compact line
    /// `serde_json` writes for the parsed record, without parsing it where
    /// [`crate::compact_into`] can; Parquet outs take the text as it is.
    pub fn write_json_text(&mut self, json: &str) -> Result<(), StageFailure> {
        if matches!(self.sink, Sink::Parquet(_)) {
            return self.put(json);
        }
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        if !crate::compact_into(json, &mut line) {
            line = crate::compact(json).ok_or_else(|| {
                StageFailure::new(format!("cannot write {}: a record is not JSON", self.path.display()))
            })?;
        }
        let put = self.put(&line);
        self.scratch = line;
        put
    }

    /// Write one record's JSON text, on one line, and its newline.
    fn put(&mut self, line: &str) -> Result<(), StageFailure> {
        let out = match &mut self.sink {
            Sink::Parquet(p) => {
                p.put(line)?;
                self.count += 1;
                return Ok(());
            }
            sink => sink.jsonl().expect("not Parquet"),
        };
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.count += 1;
        Ok(())
    }

    /// Append `records` consecutive JSONL lines given as they stand in a
    /// JSONL input, each ending in `\n` (the caller read them as records:
    /// [`crate::ScanLine::whole`] lines): JSONL outs copy the bytes in one
    /// write, Parquet outs take them line by line.
    pub fn write_json_lines(&mut self, lines: &str, records: usize) -> Result<(), StageFailure> {
        debug_assert_eq!(lines.bytes().filter(|&b| b == b'\n').count(), records);
        let out = match &mut self.sink {
            Sink::Parquet(_) => return lines.lines().try_for_each(|l| self.put(l)),
            sink => sink.jsonl().expect("not Parquet"),
        };
        out.write_all(lines.as_bytes())
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))?;
        self.count += records;
        Ok(())
    }

    /// Whether the out is JSONL (plain or compressed): lines as
    /// [`RecordWriter::write_json_line`] takes them.
    pub fn writes_jsonl(&self) -> bool {
        !matches!(self.sink, Sink::Parquet(_))
    }

    /// How many records were written.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Finish the file (flush, write trailers, encode Parquet); returns the
    /// number of records. Dropping a writer without finishing leaves the
    /// out incomplete.
    pub fn finish(self) -> Result<usize, StageFailure> {
        let path = self.path;
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot write {}: {e}", path.display()));
        match self.sink {
            // Flushed, not synced: the cache makes its own copy durable
            // when it stores the out, and an fsync here would wait for the
            // whole file to reach the disk (0.5-0.9 s for 500 MB) on every run.
            Sink::Jsonl(w) => {
                let kept = w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
                if let (Some(bytes), Some(to)) = (kept, &self.kept) {
                    to.set(bytes);
                }
            }
            Sink::Gz(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Zst(w) => {
                w.into_inner().map_err(|e| cannot(&e.into_error()))?.finish().map_err(|e| cannot(&e))?;
            }
            Sink::Parquet(p) => p.finish()?,
        }
        Ok(self.count)
    }
}

/// The file under a JSONL sink: created afresh, or an earlier version of
/// the out taken over.
enum OutFile {
    Fresh(File),
    Over(Reuse),
}

impl OutFile {
    /// A fresh file (compressed outs are never taken over).
    fn fresh(self) -> OutFile {
        debug_assert!(matches!(self, OutFile::Fresh(_)));
        self
    }

    /// Cut off what is left of an earlier version past the last byte
    /// written; how many first bytes of it were kept, when taken over.
    fn finish(self) -> std::io::Result<Option<u64>> {
        match self {
            OutFile::Fresh(_) => Ok(None),
            OutFile::Over(r) => r.finish().map(Some),
        }
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            OutFile::Fresh(f) => f.write(buf),
            OutFile::Over(r) => r.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OutFile::Fresh(f) => f.flush(),
            OutFile::Over(r) => r.file.flush(),
        }
    }
}

/// An out's earlier version, compared with what is written until the first
/// difference, then overwritten from there.
struct Reuse {
    file: File,
    /// Reads the earlier bytes ahead of `pos` while they still match.
    old: Option<std::io::BufReader<File>>,
    /// Bytes written (or found the same) so far.
    pos: u64,
    old_len: u64,
    /// Where the first difference was: the earlier bytes before it are kept.
    kept: Option<u64>,
}

impl Reuse {
    /// Move `previous` to `path` and open it for reading and writing; `None`
    /// (and `previous` left for the caller to remove) when that fails.
    fn take(previous: &Path, path: &Path) -> Option<Reuse> {
        std::fs::rename(previous, path).ok()?;
        let opened = (|| {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
            let old = std::io::BufReader::with_capacity(1 << 20, file.try_clone()?);
            let old_len = file.metadata()?.len();
            Ok::<_, std::io::Error>(Reuse { file, old: Some(old), pos: 0, old_len, kept: None })
        })();
        match opened {
            Ok(reuse) => Some(reuse),
            // A file it cannot write (read-only, for one) is written afresh.
            Err(_) => {
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::{BufRead, Seek};
        let Some(old) = &mut self.old else {
            return self.file.write(buf);
        };
        // How much of `buf` the earlier bytes at `pos` match.
        let mut same = 0;
        while same < buf.len() {
            let have = old.fill_buf()?;
            if have.is_empty() {
                break;
            }
            let n = have.len().min(buf.len() - same);
            let (a, b) = (&have[..n], &buf[same..same + n]);
            // Whole slices compare at memcmp speed; only a mismatch is looked for byte by byte.
            let m = if a == b { n } else { a.iter().zip(b).take_while(|(x, y)| x == y).count() };
            old.consume(m);
            same += m;
            if m < n {
                break;
            }
        }
        self.pos += same as u64;
        if same == buf.len() {
            return Ok(same);
        }
        // The first difference: from here on the file is written.
        self.old = None;
        self.kept = Some(self.pos);
        self.file.seek(std::io::SeekFrom::Start(self.pos))?;
        self.file.set_len(self.pos)?;
        self.old_len = self.pos;
        let n = self.file.write(&buf[same..])?;
        self.pos += n as u64;
        Ok(same + n)
    }

    fn finish(self) -> std::io::Result<u64> {
        // Still matching: the earlier version may run on past the end.
        if self.old.is_some() && self.old_len != self.pos {
            self.file.set_len(self.pos)?;
        }
        Ok(self.kept.unwrap_or(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Write `lines` to `name` over a previous file holding `before`
    /// (none when `None`); returns the bytes, whether the inode is the
    /// previous file's, and whether its mtime is unchanged.
    fn over(dir: &Path, name: &str, before: Option<&str>, lines: &[&str]) -> (Vec<u8>, bool, bool) {
        let path = dir.join(name);
        let prev = dir.join(format!(".{name}.prev"));
        let old = before.map(|b| {
            std::fs::write(&prev, b).unwrap();
            let m = std::fs::metadata(&prev).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            (m.ino(), m.mtime_nsec(), m.mtime())
        });
        let mut w = RecordWriter::create_over(&path, before.map(|_| prev.as_path())).unwrap();
        for l in lines {
            w.write_json_line(l).unwrap();
        }
        assert_eq!(w.finish().unwrap(), lines.len());
        let m = std::fs::metadata(&path).unwrap();
        let same_inode = old.is_some_and(|o| o.0 == m.ino());
        let untouched = old.is_some_and(|o| (o.2, o.1) == (m.mtime(), m.mtime_nsec()));
        (std::fs::read(&path).unwrap(), same_inode, untouched)
    }

    #[test]
    fn a_writer_over_an_earlier_version_says_how_many_first_bytes_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let kept = |before: Option<&str>, lines: &[&str]| {
            let (path, prev) = (dir.path().join("k.jsonl"), dir.path().join(".k.jsonl.prev"));
            if let Some(b) = before {
                std::fs::write(&prev, b).unwrap();
            }
            let said = KeptPrefix::default();
            let mut w = RecordWriter::create_over(&path, before.map(|_| prev.as_path()))
                .unwrap()
                .reporting_kept(Some(said.clone()));
            for l in lines {
                w.write_json_line(l).unwrap();
            }
            w.finish().unwrap();
            said.get()
        };
        let old = "{\"a\":1}\n{\"b\":2}\n";
        assert_eq!(kept(Some(old), &["{\"a\":1}", "{\"b\":2}"]), Some(16), "all of it");
        assert_eq!(kept(Some(old), &["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]), Some(16), "an append");
        assert_eq!(kept(Some(old), &["{\"a\":1}", "{\"b\":3}"]), Some(13), "up to the first difference");
        assert_eq!(kept(Some(old), &["{\"a\":1}"]), Some(8), "cut short");
        assert_eq!(kept(Some(old), &["{\"z\":1}"]), Some(2));
        assert_eq!(kept(None, &["{\"a\":1}"]), None, "nothing taken over, nothing said");
        // A writer that starts afresh takes back what an earlier one said.
        let said = KeptPrefix::default();
        said.set(16);
        let path = dir.path().join("again.jsonl");
        RecordWriter::create_over(&path, None).unwrap().reporting_kept(Some(said.clone())).finish().unwrap();
        assert_eq!(said.get(), None);
    }

    #[test]
    fn writing_over_an_earlier_version_gives_the_new_bytes_and_writes_from_the_first_difference() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{{\"t\":\"{}\"}}", "x".repeat(3 << 20)); // past the writer's 1 MiB buffer
        let (a, b, c) = ("{\"a\":1}", "{\"b\":2}", "{\"c\":3}");
        let want = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        let old = format!("{a}\n{long}\n{b}\n");
        // The same bytes: nothing is written, not even the file's time.
        let (bytes, inode, untouched) = over(dir.path(), "same.jsonl", Some(&old), &[a, &long, b]);
        assert_eq!((bytes, inode, untouched), (want(&[a, &long, b]), true, true));
        // Appended, cut short, changed in the middle, changed at once.
        for (name, lines) in [
            ("grown.jsonl", vec![a, &long, b, c]),
            ("cut.jsonl", vec![a, &long]),
            ("mid.jsonl", vec![a, c, b]),
            ("first.jsonl", vec![c]),
            ("empty.jsonl", vec![]),
        ] {
            let (bytes, inode, untouched) = over(dir.path(), name, Some(&old), &lines);
            assert_eq!(bytes, want(&lines), "{name}");
            assert!(inode && !untouched, "{name}: the earlier file is taken over and written");
        }
        // No earlier version; a compressed out ignores one.
        assert_eq!(over(dir.path(), "new.jsonl", None, &[a]).0, want(&[a]));
        let gz = dir.path().join("z.jsonl.gz");
        let prev = dir.path().join(".z.prev");
        std::fs::write(&prev, "junk").unwrap();
        let mut w = RecordWriter::create_over(&gz, Some(&prev)).unwrap();
        w.write_json_line(a).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&gz).unwrap()[..2], [0x1f, 0x8b]);
        assert!(prev.exists(), "left for the caller to remove");
    }
}
