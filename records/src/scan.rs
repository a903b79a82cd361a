//! A byte cursor over one record's JSON text, for the scans that must not
//! pay for a full parse: the shape of a record (`infer.rs`) and the values
//! of a flat one (`flat.rs`). It skips through string bodies with `memchr`
//! and answers `None` for anything it is not sure of; its callers then take
//! a full parser's path, so it checks structure, not every rule of JSON.

/// The kinds of number [`Scan::number`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
    /// An integer that surely fits an `i64` (at most 18 digits, not `-0`).
    Int,
    /// Digits, a point, digits: no exponent.
    Fraction,
    /// A number with an exponent.
    Exponent,
}

pub(crate) struct Scan<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Scan<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scan { b, i: 0 }
    }

    /// The next byte after whitespace.
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    /// Past `word` (`true`, `false`, `null`) if it comes next.
    pub fn word(&mut self, word: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(word).then(|| self.i += word.len())
    }

    /// Past a string; its body as written (escapes undecoded, each one
    /// checked to be a JSON escape).
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i + 1;
        self.i = start;
        loop {
            self.i += memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(&self.b[start..self.i - 1]);
            }
            match self.b.get(self.i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' if self.b.get(self.i + 2..self.i + 6)?.iter().all(u8::is_ascii_hexdigit) => self.i += 6,
                _ => return None,
            }
        }
    }

    /// Past a number; its kind, or `None` for a form left to a parser
    /// (leading zeros, an integer part of 19 or more digits, `-0`).
    pub fn number(&mut self) -> Option<Number> {
        let negative = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(negative);
        let digits = self.digits();
        let int = &self.b[self.i - digits..self.i];
        if digits == 0 || digits > 18 || (digits > 1 && int[0] == b'0') {
            return None;
        }
        let mut kind = Number::Int;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            kind = Number::Fraction;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            kind = Number::Exponent;
        }
        if kind == Number::Int && negative && int == b"0" {
            return None;
        }
        Some(kind)
    }

    fn digits(&mut self) -> usize {
        let n = self.b.get(self.i..).map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        self.i += n;
        n
    }
}

/// The character the JSON escape at `s[at]` (a backslash) stands for, and how
/// many bytes it takes; `None` for a bad escape or a lone surrogate (not
/// text serde_json reads).
pub(crate) fn escape_at(s: &[u8], at: usize) -> Option<(char, usize)> {
    let c = match *s.get(at + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(s, at + 2)?;
            return match hi {
                0xD800..=0xDBFF => {
                    if s.get(at + 6..at + 8)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(s, at + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&lo) {
                        return None;
                    }
                    Some((char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?, 12))
                }
                // `from_u32` refuses a lone low surrogate.
                _ => Some((char::from_u32(hi)?, 6)),
            };
        }
        _ => return None,
    };
    Some((c, 2))
}

fn hex4(s: &[u8], at: usize) -> Option<u32> {
    let digits = s.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}
