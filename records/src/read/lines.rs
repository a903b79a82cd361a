//! Text feeds: JSONL (one object per line) and a JSON array of objects,
//! both streamed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde::Deserialize;
use serde_json::Value;

use super::{Feed, Raw};
use crate::error::{BadRecord, Unit};

type Text = BufReader<Box<dyn Read + Send>>;

/// JSONL: each non-blank line is an item. A line of bad UTF-8 is a bad
/// item (it can be skipped); any other read error ends the file, since it
/// would repeat forever.
pub(super) struct Lines {
    path: PathBuf,
    text: Text,
    line: usize,
    buf: Vec<u8>,
}

impl Lines {
    pub(super) fn new(path: &Path, text: Text) -> Self {
        Lines { path: path.to_path_buf(), text, line: 0, buf: Vec::new() }
    }
}

impl Feed for Lines {
    fn unit(&self) -> Unit {
        Unit::Line
    }

    fn next_items(&mut self, max: usize) -> Result<Vec<(usize, Raw)>, StageFailure> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            let failed = |e: std::io::Error, line: usize| {
                StageFailure::from(BadRecord {
                    path: self.path.clone(),
                    line,
                    unit: Unit::Line,
                    text: String::new(),
                    reason: format!("cannot read line: {e}"),
                })
            };
            // A line whole in the reader's buffer is taken from there; one
            // that runs past it is gathered in `buf`.
            let buffered = self.text.fill_buf().map_err(|e| failed(e, self.line + 1))?;
            let (item, used) = match memchr::memchr(b'\n', buffered) {
                Some(end) => (line_item(&buffered[..end], self.line + 1), end + 1),
                None => {
                    self.buf.clear();
                    let n = self.text.read_until(b'\n', &mut self.buf).map_err(|e| failed(e, self.line + 1))?;
                    if n == 0 {
                        break;
                    }
                    let bytes = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    (line_item(bytes, self.line + 1), 0)
                }
            };
            self.text.consume(used);
            self.line += 1;
            if let Some(item) = item {
                out.push((self.line, Raw::Text(item)));
            }
        }
        Ok(out)
    }
}

/// Line number `line` (its `\n` taken off) as an item; `None` for a blank
/// line. The first line may start with a byte-order mark.
fn line_item(mut bytes: &[u8], line: usize) -> Option<Result<String, String>> {
    if line == 1 {
        bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    }
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => Err(format!("cannot read line: not UTF-8 ({e})")),
    })
}

/// A JSON array of objects, read one element at a time. Anything but an
/// object as an element ends the read: past a malformed value there is no
/// safe place to resume.
pub(super) struct JsonArray {
    path: PathBuf,
    text: Text,
    element: usize,
    done: bool,
    /// An error met after some good elements: reported on the next call,
    /// so the elements before it are not lost.
    failed: Option<StageFailure>,
}

impl JsonArray {
    pub(super) fn new(path: &Path, text: Text) -> Self {
        JsonArray { path: path.to_path_buf(), text, element: 0, done: false, failed: None }
    }

    fn fail(&self, reason: String) -> StageFailure {
        fail_at(&self.path, self.element, reason)
    }

    /// The next non-whitespace byte, consumed, or `None` at the end.
    fn next_byte(&mut self) -> Result<Option<u8>, StageFailure> {
        let b = self.peek_byte()?;
        if b.is_some() {
            self.text.consume(1);
        }
        Ok(b)
    }

    /// The next non-whitespace byte, left unread, or `None` at the end.
    fn peek_byte(&mut self) -> Result<Option<u8>, StageFailure> {
        loop {
            let buf = match self.text.fill_buf() {
                Ok(buf) => buf,
                Err(e) => return Err(fail_at(&self.path, self.element, format!("cannot read: {e}"))),
            };
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let b = buf[i];
                    self.text.consume(i);
                    return Ok(Some(b));
                }
                None => {
                    let n = buf.len();
                    self.text.consume(n);
                }
            }
        }
    }
}

impl Feed for JsonArray {
    fn unit(&self) -> Unit {
        Unit::Element
    }

    fn next_items(&mut self, max: usize) -> Result<Vec<(usize, Raw)>, StageFailure> {
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Err(e);
        }
        let mut out = Vec::new();
        match self.read_elements(max, &mut out) {
            Ok(()) => Ok(out),
            Err(e) if out.is_empty() => {
                self.done = true;
                Err(e)
            }
            Err(e) => {
                self.failed = Some(e);
                Ok(out)
            }
        }
    }
}

impl JsonArray {
    fn read_elements(&mut self, max: usize, out: &mut Vec<(usize, Raw)>) -> Result<(), StageFailure> {
        while out.len() < max && !self.done {
            // Before the first element: `[`; after each: `,` or `]`.
            let sep = self.next_byte()?;
            match (self.element, sep) {
                (0, Some(b'[')) => {
                    if self.peek_byte()? == Some(b']') {
                        self.next_byte()?;
                        self.done = true;
                        break;
                    }
                }
                (0, _) => return Err(self.fail("expected a JSON array of objects".into())),
                (_, Some(b',')) => {}
                (_, Some(b']')) => {
                    self.done = true;
                    break;
                }
                (_, None) => return Err(self.fail("the array ends without `]`".into())),
                (_, Some(b)) => {
                    return Err(self.fail(format!("expected `,` or `]` after an element, found `{}`", b as char)))
                }
            }
            if self.peek_byte()? != Some(b'{') {
                return Err(self.fail("not a JSON object".into()));
            }
            // An object ends at its `}`, so the parser reads nothing past it.
            let value = Value::deserialize(&mut serde_json::Deserializer::from_reader(&mut self.text))
                .map_err(|e| self.fail(format!("malformed JSON: {e}")))?;
            self.element += 1;
            out.push((self.element, Raw::Value(value)));
        }
        Ok(())
    }
}

/// An error in the element after the `element`th.
fn fail_at(path: &Path, element: usize, reason: String) -> StageFailure {
    BadRecord { path: path.to_path_buf(), line: element + 1, unit: Unit::Element, text: String::new(), reason }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line and its number, whichever reader buffer the lines cross.
    #[test]
    fn lines_are_the_same_whatever_the_buffer() {
        let text: &[u8] = b"\xef\xbb\xbf{\"a\": 1}\r\n\n  \n{\"b\": \"two\"}\n\xff\xfe\n{\"long\": \"0123456789012345678901234567890\"}\r\n{\"last\": true}";
        let want: Vec<(usize, Result<String, String>)> = vec![
            (1, Ok("{\"a\": 1}".into())),
            (4, Ok("{\"b\": \"two\"}".into())),
            (5, Err("not UTF-8".into())),
            (6, Ok("{\"long\": \"0123456789012345678901234567890\"}".into())),
            (7, Ok("{\"last\": true}".into())),
        ];
        for capacity in [1, 2, 3, 7, 16, 64, 1 << 20] {
            let reader: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.to_vec()));
            let mut lines = Lines::new(Path::new("x.jsonl"), BufReader::with_capacity(capacity, reader));
            let mut got = Vec::new();
            loop {
                let items = lines.next_items(2).unwrap();
                if items.is_empty() {
                    break;
                }
                got.extend(items);
            }
            let got: Vec<(usize, Result<String, String>)> = got
                .into_iter()
                .map(|(n, raw)| match raw {
                    Raw::Text(Err(e)) if e.contains("not UTF-8") => (n, Err("not UTF-8".to_string())),
                    Raw::Text(t) => (n, t),
                    Raw::Value(v) => (n, Ok(format!("value {v}"))),
                })
                .collect();
            assert_eq!(got, want, "buffer of {capacity} bytes");
        }
    }
}
