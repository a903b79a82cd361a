//! A fast path over plain JSONL files for kinds that only need some lines'
//! text, or copy lines as they stand: lines are found in large blocks and
//! handed out as ranges of the block, not copied one by one into strings.
//! Line numbers and texts are exactly [`super::RecordReader`]'s (its
//! `Lines` rules: a blank line is no item, the first line may start with a
//! byte-order mark, a trailing `\r` is dropped).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;

use crate::error::{BadRecord, Unit};
use crate::format::{detect, Format};

/// Bytes read at a time; a longer line grows the buffer.
const BLOCK: usize = 4 << 20;

/// One item of a block: its line number and where its text lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanLine {
    /// 1-based line number, as the reader counts it.
    pub line: usize,
    /// The item's text in the block (without `\n`, `\r` or a byte-order mark).
    pub text: Range<usize>,
    /// The text is followed in the block by its `\n` and nothing was taken
    /// off it: `block[text.start..text.end + 1]` is its line exactly as a
    /// JSONL out writes it.
    pub whole: bool,
}

impl ScanLine {
    /// The text, or the bad record the reader reports when it is not UTF-8.
    pub fn text<'b>(&self, block: &'b [u8], path: &Path) -> Result<&'b str, BadRecord> {
        let bytes = &block[self.text.clone()];
        // simdutf8 is faster on the way that matters; std says why not.
        simdutf8::basic::from_utf8(bytes).or_else(|_| {
            std::str::from_utf8(bytes)
                .map_err(|e| bad_line(path, self.line, format!("cannot read line: not UTF-8 ({e})")))
        })
    }
}

fn bad_line(path: &Path, line: usize, reason: String) -> BadRecord {
    BadRecord { path: path.to_path_buf(), line, unit: Unit::Line, text: String::new(), reason }
}

/// The lines of one plain JSONL file, a block at a time.
pub struct JsonlScan {
    path: PathBuf,
    file: BufReader<File>,
    /// The bytes read and not yet handed out past `used` (its length:
    /// the valid bytes; read into its spare capacity, never zeroed first).
    buf: Vec<u8>,
    /// Bytes a block is read to (a longer line doubles it).
    cap: usize,
    /// Bytes of `buf` handed out by the last block (the next starts after them).
    used: usize,
    /// Where `buf` starts in the file.
    at: u64,
    /// Where the last block handed out starts in the file.
    block_at: u64,
    /// Lines counted so far.
    line: usize,
    eof: bool,
}

impl JsonlScan {
    /// Open `path` when it is a plain JSONL file; `None` for any other
    /// format (compressed, Parquet, Arrow, a JSON array, a folder), which
    /// [`super::RecordReader`] reads.
    pub fn open(path: &Path) -> Result<Option<JsonlScan>, StageFailure> {
        let cannot = |e: &dyn std::fmt::Display| StageFailure::new(format!("cannot open {}: {e}", path.display()));
        if detect(path).map_err(|e| cannot(&e))? != Format::Jsonl {
            return Ok(None);
        }
        let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| cannot(&e))?);
        // As the reader decides: a file that starts with `[` is an array unless named `.jsonl`.
        let starts_array = match file.fill_buf() {
            Ok(buf) => buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
            Err(e) => return Err(cannot(&e)),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if starts_array && !name.contains(".jsonl") {
            return Ok(None);
        }
        Ok(Some(JsonlScan {
            path: path.to_path_buf(),
            file,
            buf: Vec::with_capacity(BLOCK),
            cap: BLOCK,
            used: 0,
            at: 0,
            block_at: 0,
            line: 0,
            eof: false,
        }))
    }

    /// The next block of whole lines and, in `lines`, its items in order;
    /// `None` at the end of the file.
    pub fn next_block(&mut self, lines: &mut Vec<ScanLine>) -> Result<Option<&[u8]>, StageFailure> {
        let end = self.read_block(lines)?;
        self.used = end;
        Ok((end > 0).then(|| &self.buf[..end]))
    }

    /// [`JsonlScan::next_block`], handing out the block's buffer itself
    /// (no copy): for a caller that keeps the block after the next one.
    pub fn next_block_owned(&mut self, lines: &mut Vec<ScanLine>) -> Result<Option<Vec<u8>>, StageFailure> {
        let end = self.read_block(lines)?;
        if end == 0 {
            return Ok(None);
        }
        // The bytes after the block start the next buffer.
        let mut next = Vec::with_capacity(self.cap);
        next.extend_from_slice(&self.buf[end..]);
        let mut block = std::mem::replace(&mut self.buf, next);
        block.truncate(end);
        self.at += end as u64;
        Ok(Some(block))
    }

    /// Read on a thread of its own, a few blocks ahead of the caller.
    pub fn ahead(mut self) -> Result<ScanAhead, StageFailure> {
        let what = self.path.display().to_string();
        let blocks = super::Ahead::spawn(&what, move || {
            let mut lines = Vec::new();
            Ok(self.next_block_owned(&mut lines)?.map(|block| (block, lines)))
        })?;
        Ok(ScanAhead { blocks, block: Vec::new() })
    }

    /// Where in the file the last block handed out starts: a line's text
    /// lies at this plus its range's start.
    pub fn block_at(&self) -> u64 {
        self.block_at
    }

    /// Drop what the last block handed out, read until `buf` holds `cap`
    /// bytes (or the file is done), find its whole lines (into `lines`) and
    /// return where they end: 0 at the end of the file.
    fn read_block(&mut self, lines: &mut Vec<ScanLine>) -> Result<usize, StageFailure> {
        lines.clear();
        self.buf.drain(..self.used);
        self.at += self.used as u64;
        self.used = 0;
        self.block_at = self.at;
        // Read until the buffer is full (or the file done), then hand out
        // its whole lines; a line longer than the buffer grows it.
        let end = loop {
            if self.eof || self.buf.len() >= self.cap {
                match memchr::memrchr(b'\n', &self.buf) {
                    Some(i) => break i + 1,
                    None if self.eof => break self.buf.len(),
                    None => self.cap *= 2,
                }
            }
            let room = self.cap - self.buf.len();
            self.buf.reserve_exact(room);
            // Into the spare capacity as it is: `read_to_end` does not zero it.
            match (&mut self.file).take(room as u64).read_to_end(&mut self.buf) {
                Ok(n) => self.eof |= n < room,
                Err(e) => return Err(bad_line(&self.path, self.line + 1, format!("cannot read line: {e}")).into()),
            }
        };
        let block = &self.buf[..end];
        let mut start = 0;
        while start < end {
            let stop = memchr::memchr(b'\n', &block[start..]).map_or(end, |i| start + i);
            self.line += 1;
            let mut text = start..stop;
            let mut whole = stop < end;
            if self.line == 1 && block[text.clone()].starts_with(b"\xef\xbb\xbf") {
                text.start += 3;
                whole = false;
            }
            if block[text.clone()].ends_with(b"\r") {
                text.end -= 1;
                whole = false;
            }
            if !block[text.clone()].iter().all(u8::is_ascii_whitespace) {
                lines.push(ScanLine { line: self.line, text, whole });
            }
            start = stop + 1;
        }
        Ok(end)
    }
}

/// A [`JsonlScan`] reading ahead ([`JsonlScan::ahead`]): the same blocks
/// and lines, read while the caller works on the one before.
pub struct ScanAhead {
    blocks: super::Ahead<(Vec<u8>, Vec<ScanLine>)>,
    block: Vec<u8>,
}

impl ScanAhead {
    /// [`JsonlScan::next_block`].
    pub fn next_block(&mut self, lines: &mut Vec<ScanLine>) -> Result<Option<&[u8]>, StageFailure> {
        lines.clear();
        let Some((block, found)) = self.blocks.recv()? else { return Ok(None) };
        self.block = block;
        *lines = found;
        Ok(Some(&self.block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Raw, RecordReader};

    /// Every item the scan finds, as (line, text, whole), with blocks of
    /// `block` bytes; through owned blocks, the same items are checked.
    fn scan(path: &Path, block: usize) -> Vec<(usize, String, bool)> {
        let mut s = JsonlScan::open(path).unwrap().expect("plain JSONL");
        s.cap = block;
        let mut lines = Vec::new();
        let mut out = Vec::new();
        let push = |b: &[u8], lines: &[ScanLine], out: &mut Vec<(usize, String, bool)>| {
            for l in lines {
                let text = l.text(b, path).unwrap().to_string();
                if l.whole {
                    assert_eq!(&b[l.text.start..l.text.end + 1], format!("{text}\n").as_bytes());
                }
                out.push((l.line, text, l.whole));
            }
        };
        let file = std::fs::read(path).unwrap();
        while let Some(b) = s.next_block(&mut lines).unwrap() {
            push(b, &lines, &mut out);
        }
        let mut owned = JsonlScan::open(path).unwrap().expect("plain JSONL");
        owned.cap = block;
        let mut again = Vec::new();
        let mut kept = Vec::new();
        while let Some(b) = owned.next_block_owned(&mut lines).unwrap() {
            push(&b, &lines, &mut again);
            let at = owned.block_at() as usize;
            assert_eq!(&file[at..at + b.len()], &b[..], "where the block lies");
            kept.push(b); // a block handed out stays as it was while others are read
        }
        assert_eq!(again, out, "owned blocks, block size {block}");
        let mut ahead = JsonlScan::open(path).unwrap().expect("plain JSONL");
        ahead.cap = block;
        let mut ahead = ahead.ahead().unwrap();
        let mut read_ahead = Vec::new();
        while let Some(b) = ahead.next_block(&mut lines).unwrap() {
            push(b, &lines, &mut read_ahead);
        }
        assert_eq!(read_ahead, out, "read ahead, block size {block}");
        let joined: Vec<u8> = kept.concat();
        assert_eq!(joined, std::fs::read(path).unwrap(), "the blocks are the file, in order");
        out
    }

    fn read(path: &Path) -> Vec<(usize, String)> {
        let mut r = RecordReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(c) = r.raw_chunk(7).unwrap() {
            for (at, raw) in c.items {
                let Raw::Text(Ok(t)) = raw else { panic!("text") };
                out.push((at, t));
            }
        }
        out
    }

    #[test]
    fn finds_the_readers_items_whatever_the_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let long = "x".repeat(100);
        let text =
            format!("\u{feff}{{\"a\":1}}\n\n  \n{{\"b\":2}}\r\n{{\"c\":\"{long}\"}}\n{{\"d\":4}}\n\r\n{{\"e\":5}}");
        std::fs::write(&path, text).unwrap();
        let want = read(&path);
        assert_eq!(want.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 4, 5, 6, 8]);
        for block in [1, 2, 3, 7, 16, 64, 4096] {
            let got = scan(&path, block);
            let pairs: Vec<(usize, String)> = got.iter().map(|(l, t, _)| (*l, t.clone())).collect();
            assert_eq!(pairs, want, "block {block}");
            // The BOM'd, the \r'd and the unterminated last line are not whole.
            let whole: Vec<bool> = got.iter().map(|x| x.2).collect();
            assert_eq!(whole, [false, false, true, true, false], "block {block}");
        }
    }

    #[test]
    fn other_formats_are_left_to_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let array = dir.path().join("a.json");
        std::fs::write(&array, "[{\"a\":1}]").unwrap();
        assert!(JsonlScan::open(&array).unwrap().is_none());
        let gz = dir.path().join("a.jsonl.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
        assert!(JsonlScan::open(&gz).unwrap().is_none());
        let bad = dir.path().join("b.jsonl");
        std::fs::write(&bad, b"{\"a\":\"\xff\"}\n").unwrap();
        let mut s = JsonlScan::open(&bad).unwrap().unwrap();
        let mut lines = Vec::new();
        let b = s.next_block(&mut lines).unwrap().unwrap();
        assert!(lines[0].text(b, &bad).unwrap_err().to_string().contains("b.jsonl:1: cannot read line: not UTF-8"));
    }
}
