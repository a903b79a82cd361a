//! A record's JSON text in the compact form `serde_json` writes, without
//! building the record.
//!
//! Stages that keep records as they read them write each one as one compact
//! line: what `serde_json::to_string` gives for the parsed record. Parsing
//! and serialising every kept record costs more than the rest of a `filter`
//! run; [`compact_into`] re-encodes the text in one pass instead: it drops
//! the whitespace between tokens, writes strings with the escapes
//! `serde_json` uses (decoding `\uXXXX`, `\/` and friends first), copies
//! integers and hands each float to `serde_json` itself. Where the bytes
//! could differ from the parse-and-serialise route (a key repeated in one
//! object, which the parsed record keeps once; a key with an escape; an
//! integer out of range or `-0`; anything malformed) it gives up and the
//! caller takes that route: the result is always the same bytes.

/// Append the compact form of the JSON `text` to `out`; `false` (with `out`
/// as it was) when the text is not one the fast route promises to get right.
pub fn compact_into(text: &str, out: &mut String) -> bool {
    let start = out.len();
    let mut c = Compactor { s: text.as_bytes(), at: 0, out: std::mem::take(out), keys: Vec::new() };
    let ok = c.value(0).is_some() && {
        c.ws();
        c.at == c.s.len()
    };
    *out = c.out;
    if !ok {
        out.truncate(start);
    }
    ok
}

/// The compact form of the JSON object `text`, by the fast route when it
/// can and by parsing and serialising when it cannot; `None` for text that
/// is not JSON.
pub fn compact(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    if compact_into(text, &mut out) {
        return Some(out);
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    serde_json::to_string(&v).ok()
}

/// Nesting deeper than this goes the slow route (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;
/// Objects with more keys than this go the slow route: duplicates are looked for by a linear scan.
const MAX_KEYS: usize = 64;

struct Compactor<'a> {
    s: &'a [u8],
    at: usize,
    out: String,
    /// Keys of the objects being read, innermost last, as `(start, end)` in `s`.
    keys: Vec<(usize, usize)>,
}

impl Compactor<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.s.get(self.at)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.s[self.at..].starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            self.out.push_str(word);
        })
    }

    /// If the next byte is `b`, copy it out and move past it.
    fn take(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        if hit {
            self.at += 1;
            self.out.push(b as char);
        }
        hit
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.take(b'{');
        let first_key = self.keys.len();
        self.ws();
        if self.take(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            if self.s.get(self.at) != Some(&b'"') {
                return None;
            }
            let key = self.plain_key()?;
            let name = &self.s[key.0..key.1];
            if self.keys.len() - first_key >= MAX_KEYS
                || self.keys[first_key..].iter().any(|&(a, b)| &self.s[a..b] == name)
            {
                return None;
            }
            self.keys.push(key);
            self.ws();
            if !self.take(b':') {
                return None;
            }
            self.value(depth + 1)?;
            self.ws();
            if self.take(b'}') {
                self.keys.truncate(first_key);
                return Some(());
            }
            if !self.take(b',') {
                return None;
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.take(b'[');
        self.ws();
        if self.take(b']') {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            self.ws();
            if self.take(b']') {
                return Some(());
            }
            if !self.take(b',') {
                return None;
            }
        }
    }

    /// A key without escapes or control characters, copied; its span
    /// (between the quotes) for the duplicate check.
    fn plain_key(&mut self) -> Option<(usize, usize)> {
        let begin = self.at + 1;
        let len = self.s[begin..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = begin + len;
        if self.s[end] != b'"' {
            return None;
        }
        self.push_bytes(self.at, end + 1);
        self.at = end + 1;
        Some((begin, end))
    }

    fn string(&mut self) -> Option<()> {
        self.at += 1;
        self.out.push('"');
        loop {
            // Runs of bytes written as they are: everything but `"`, `\` and controls.
            let run = self.s[self.at..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            self.push_bytes(self.at, self.at + run);
            self.at += run;
            match self.s[self.at] {
                b'"' => {
                    self.at += 1;
                    self.out.push('"');
                    return Some(());
                }
                b'\\' => {
                    let c = self.escape()?;
                    write_escaped(c, &mut self.out);
                }
                _ => return None, // a raw control character: not JSON
            }
        }
    }

    /// The character an escape at `at` stands for; moves past it.
    fn escape(&mut self) -> Option<char> {
        let (c, len) = crate::scan::escape_at(self.s, self.at)?;
        self.at += len;
        Some(c)
    }

    fn number(&mut self) -> Option<()> {
        let begin = self.at;
        let len = self.s[begin..]
            .iter()
            .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            .unwrap_or(self.s.len() - begin);
        let token = std::str::from_utf8(&self.s[begin..begin + len]).ok()?;
        self.at += len;
        let digits = token.strip_prefix('-').unwrap_or(token);
        let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        if integer {
            // serde_json reads `-0` and integers past 64 bits as floats.
            let fits = if token.starts_with('-') {
                token.parse::<i64>().is_ok_and(|v| v != 0)
            } else {
                token.parse::<u64>().is_ok()
            };
            if !fits || (digits.len() > 1 && digits.starts_with('0')) {
                return None;
            }
            self.out.push_str(token);
            return Some(());
        }
        // Floats: whatever serde_json reads and writes, exactly.
        let n: serde_json::Number = serde_json::from_str(token).ok()?;
        self.out.push_str(&n.to_string());
        Some(())
    }

    fn push_bytes(&mut self, from: usize, to: usize) {
        // The input is a `str` and runs never split a character: they end at ASCII bytes.
        self.out.push_str(std::str::from_utf8(&self.s[from..to]).expect("runs end at ASCII bytes"));
    }
}

/// `c` inside a JSON string as serde_json writes it.
fn write_escaped(c: char, out: &mut String) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(c as usize) >> 4] as char);
            out.push(HEX[(c as usize) & 0xF] as char);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_form(text: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap()
    }

    /// The fast route takes `text` and writes serde_json's bytes.
    fn fast(text: &str) {
        let mut out = String::from("prefix");
        assert!(compact_into(text, &mut out), "fast route refused {text}");
        assert_eq!(&out["prefix".len()..], serde_form(text), "{text}");
    }

    #[test]
    fn common_shapes_take_the_fast_route_and_match_serde() {
        fast(
            r#"{"instruction": "Sum 2 + 2?", "response": "4 ✓", "source": "wizardlm", "quality_score": 0.7609, "category": "math"}"#,
        );
        fast(r#"{"a":1,"b":-2,"c":18446744073709551615,"d":-9223372036854775808,"e":true,"f":false,"g":null}"#);
        fast(" {\n\t\"x\" : [ 1 , 2.50 , 1e5 , -0.0 , 3E-2 , 1.0 ] ,\r\n \"y\" : { } , \"z\" : [ ] } \n");
        fast(
            r#"{"messages": [{"role": "user", "content": "caf\u00e9 \ud83d\ude00 \/ \"q\" \\ \b\f\n\r\t \u0001 \u001F \u007f \u2028"}]}"#,
        );
        fast(r#"{"deep": [[[[{"k": [{"k": "v"}]}]]]], "k": "same key name inside is fine"}"#);
        fast(r#""a bare string""#);
        fast("123");
    }

    #[test]
    fn refuses_what_would_differ_and_compact_still_matches() {
        for text in [
            r#"{"a": 1, "a": 2}"#,            // serde keeps one of them
            r#"{"a\u0062": 1}"#,              // an escaped key
            r#"{"n": -0}"#,                   // read as a float
            r#"{"n": 18446744073709551616}"#, // past u64
            r#"{"n": -9223372036854775809}"#, // past i64
            r#"{"s": "\ud800"}"#,             // a lone surrogate: not readable at all
            r#"{"a": 1} x"#,
            r#"{"a": 01}"#,
            "{\"s\": \"raw\u{1}control\"}",
        ] {
            let mut out = String::from("kept");
            assert!(!compact_into(text, &mut out), "fast route took {text}");
            assert_eq!(out, "kept", "out left as it was");
            let slow = serde_json::from_str::<serde_json::Value>(text).ok().map(|v| v.to_string());
            assert_eq!(compact(text), slow, "{text}");
        }
    }

    /// Random JSON texts, spaced and escaped in random ways: wherever the
    /// fast route answers, it answers what serde_json does.
    #[test]
    fn random_texts_match_serde() {
        let mut next = crate::test_rng::below(0x9E37_79B9_7F4A_7C15);
        let mut taken = 0;
        for _ in 0..3000 {
            let mut text = String::new();
            crate::test_rng::json_value(&mut next, &mut text, 0);
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let mut out = String::new();
            if compact_into(&text, &mut out) {
                taken += 1;
                assert_eq!(out, v.to_string(), "{text}");
            }
        }
        assert!(taken > 2000, "the fast route took only {taken} of 3000");
    }
}
