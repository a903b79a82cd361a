//! Answers `grep -rn --include='*.ext' 'LITERAL' DIR` exactly, in memory, so
//! generated examples carry the real result lines of the command they show.
//!
//! The pattern is matched as literal bytes on each line; [`bre_quote`] writes
//! it so grep's basic regex syntax matches the same thing. Files that grep
//! would call binary (a NUL byte, or invalid UTF-8 under a UTF-8 locale) are
//! flagged; a search touching one is reported as unusable rather than guessed.
//! grep prints files in directory order, which differs between file
//! systems, so the command shown pipes into `LC_ALL=C sort -t: -k1,1 -k2,2n`
//! (path, then line number): the order the results are given in here.

use std::sync::Arc;

use memchr::memmem;

/// One searchable file.
#[derive(Debug, Clone)]
pub struct IndexedFile {
    /// Path relative to the search root, `/`-separated.
    pub rel: String,
    /// Raw bytes.
    pub bytes: Arc<Vec<u8>>,
    /// grep would treat it as binary.
    pub binary: bool,
}

/// One result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrepHit {
    /// The path as grep prints it (`DIR/rel`, or `./rel` for `.`).
    pub path: String,
    /// Path relative to the search root.
    pub rel: String,
    /// 1-based line number.
    pub line: usize,
    /// The line, without its newline.
    pub text: String,
}

impl GrepHit {
    /// `path:line:text`, as grep prints it.
    pub fn render(&self) -> String {
        format!("{}:{}:{}", self.path, self.line, self.text)
    }
}

/// The files of one search root, sorted by path.
#[derive(Debug, Default)]
pub struct GrepIndex {
    files: Vec<IndexedFile>,
}

impl GrepIndex {
    /// Index files (any order; kept sorted by `rel`).
    pub fn new(mut files: Vec<IndexedFile>) -> Self {
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        GrepIndex { files }
    }

    /// Whether grep would treat `bytes` as binary.
    pub fn is_binary(bytes: &[u8]) -> bool {
        memchr::memchr(0, bytes).is_some() || std::str::from_utf8(bytes).is_err()
    }

    /// Lines containing `pattern` under `dir` (`"."` for the whole root, or a
    /// top-level folder name). `None` when a binary file matches (grep would
    /// print a "binary file matches" note instead of lines).
    pub fn search(&self, dir: &str, pattern: &str) -> Option<Vec<GrepHit>> {
        let finder = memmem::Finder::new(pattern.as_bytes());
        let prefix = format!("{dir}/");
        let mut hits = Vec::new();
        for f in &self.files {
            if dir != "." && !f.rel.starts_with(&prefix) {
                continue;
            }
            if finder.find(&f.bytes).is_none() {
                continue;
            }
            if f.binary {
                return None;
            }
            let shown = if dir == "." { format!("./{}", f.rel) } else { f.rel.clone() };
            for (i, line) in f.bytes.split(|b| *b == b'\n').enumerate() {
                if finder.find(line).is_some() {
                    hits.push(GrepHit {
                        path: shown.clone(),
                        rel: f.rel.clone(),
                        line: i + 1,
                        text: String::from_utf8_lossy(line).into_owned(),
                    });
                }
            }
        }
        Some(hits)
    }
}

/// `pattern` quoted for a shell and escaped for grep's basic regex syntax,
/// so `grep 'QUOTED'` matches it literally. `None` when it holds a single
/// quote or a newline (we never need those).
pub fn bre_quote(pattern: &str) -> Option<String> {
    if pattern.contains('\'') || pattern.contains('\n') || pattern.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    out.push('\'');
    for (i, c) in pattern.chars().enumerate() {
        // `*` is literal at the very start of a BRE but escaping it there is
        // still a literal star, so escape uniformly.
        if matches!(c, '.' | '[' | ']' | '\\' | '*' | '$') || (c == '^' && i == 0) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    Some(out)
}

/// The full command line for a search, sorted as [`GrepIndex::search`]
/// orders its hits, so running it prints the example's lines byte for byte.
pub fn command(ext: &str, pattern: &str, dir: &str) -> Option<String> {
    Some(format!("grep -rn --include='*{ext}' {} {dir} | LC_ALL=C sort -t: -k1,1 -k2,2n", bre_quote(pattern)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, text: &str) -> IndexedFile {
        IndexedFile {
            rel: rel.into(),
            bytes: Arc::new(text.as_bytes().to_vec()),
            binary: GrepIndex::is_binary(text.as_bytes()),
        }
    }

    #[test]
    fn searches_literally_under_a_dir() {
        let idx = GrepIndex::new(vec![
            file("b/x.py", "def run(a):\n    run(1)\n"),
            file("a/y.py", "x = 1\ndef run(b): pass\n"),
        ]);
        let hits = idx.search("a", "def run(").unwrap();
        assert_eq!(hits.iter().map(GrepHit::render).collect::<Vec<_>>(), ["a/y.py:2:def run(b): pass"]);
        let all = idx.search(".", "run(").unwrap();
        assert_eq!(
            all.iter().map(GrepHit::render).collect::<Vec<_>>(),
            ["./a/y.py:2:def run(b): pass", "./b/x.py:1:def run(a):", "./b/x.py:2:    run(1)"]
        );
        let bin = GrepIndex::new(vec![file("a/z.py", "run(\0")]);
        assert_eq!(bin.search("a", "run("), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(bre_quote("@app.route").unwrap(), r"'@app\.route'");
        assert_eq!(bre_quote("a[0]*$").unwrap(), r"'a\[0\]\*\$'");
        assert_eq!(bre_quote("it's"), None);
        assert_eq!(
            command(".py", "class A(", "pkg").unwrap(),
            "grep -rn --include='*.py' 'class A(' pkg | LC_ALL=C sort -t: -k1,1 -k2,2n"
        );
    }
}
