//! The stat cache: (path, size, mtime, ctime, inode, device) → hash, so a
//! no-op run over thousands of unchanged files reads none of them.
//!
//! ctime is in the identity as in git's index: `touch -d`, `cp -p`, `tar x`
//! or rsync can put an edited file's size and mtime back, but any write or
//! metadata change moves ctime, which no user call can set.
//!
//! A file modified within the same timestamp tick as it was hashed could look
//! unchanged; entries whose mtime is that close to the moment of hashing are
//! "racy" and re-hashed next time (as git does with its index). The window is
//! 100 ms on filesystems with sub-second timestamps (the kernel's clock tick
//! is a few ms) and 2 s where timestamps are whole seconds.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::error::{IoContext, Result};
use crate::hash::{hash_file, Hash};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    hash: Hash,
}

impl Entry {
    fn new(meta: &std::fs::Metadata, hash: Hash) -> Entry {
        Entry {
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            ctime_ns: ctime_ns(meta),
            ino: meta.ino(),
            dev: meta.dev(),
            hash,
        }
    }

    fn matches(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self.ctime_ns == ctime_ns(meta)
            && self.ino == meta.ino()
            && self.dev == meta.dev()
    }
}

/// The identity of a file as bytes (size, mtime, ctime, inode, device), for
/// digests of many files at once.
pub(crate) fn identity_bytes(meta: &std::fs::Metadata) -> [u8; 72] {
    let mut b = [0u8; 72];
    b[..8].copy_from_slice(&meta.len().to_le_bytes());
    b[8..24].copy_from_slice(&mtime_ns(meta).to_le_bytes());
    b[24..40].copy_from_slice(&ctime_ns(meta).to_le_bytes());
    b[40..48].copy_from_slice(&meta.ino().to_le_bytes());
    b[48..56].copy_from_slice(&meta.dev().to_le_bytes());
    b
}

/// A persistent map from file identity to content hash.
///
/// The file keeps each folder's entries together; a folder's are parsed
/// only when one of its files is looked up or recorded. On a no-op run the
/// folder identities answer for every source folder, so most entries are
/// never parsed (at 10,000 stages: 100,000 of 110,000).
#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    /// Entries parsed so far, by path. A folder is either here or in `unparsed`.
    entries: HashMap<String, Entry>,
    /// The file as read, for the folders not parsed yet.
    text: String,
    /// Folder path → the bytes of `text` holding its entries, not parsed yet.
    unparsed: HashMap<String, Range<usize>>,
    /// Piece CVs of large files hashed this run, by path, with the identity
    /// they were hashed at (never saved).
    pieces: HashMap<String, (Entry, Vec<crate::pieces::Cv>)>,
    /// Outs whose writer kept the first bytes of the previous out: its hash
    /// and how many bytes (never saved).
    kept: HashMap<String, (Hash, u64)>,
    /// Folder path → (identity digest of its files, manifest hash).
    folders: HashMap<String, (Hash, Hash)>,
    dirty: bool,
    /// How many files were actually read and hashed (for tests and benches).
    pub files_hashed: usize,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

const COARSE_RACY_NS: i128 = 2_000_000_000;
const FINE_RACY_NS: i128 = 100_000_000;

impl StatCache {
    /// Load from `file`. Missing, unreadable, of another format or damaged
    /// (its checksum does not match) → empty: every file is hashed again.
    pub fn load(file: &Path) -> StatCache {
        let read = std::fs::read(file).ok().and_then(Read::of).unwrap_or_default();
        StatCache {
            file: Some(file.to_path_buf()),
            entries: HashMap::new(),
            text: read.text,
            unparsed: read.sections,
            folders: read.folders,
            pieces: HashMap::new(),
            kept: HashMap::new(),
            dirty: false,
            files_hashed: 0,
        }
    }

    /// What a store of the large file at `path` resumes from: the folder of
    /// resume records (`resume.rs`), beside the stat cache's file and as
    /// local as it is (none for an in-memory one), and the file's piece CVs
    /// if hashing it this run kept them and its identity is unchanged.
    pub(crate) fn resume(&mut self, path: &Path, meta: &std::fs::Metadata) -> Option<crate::chunked::Resume> {
        let dir = self.file.as_ref()?.parent()?.join("resume");
        let pieces = path
            .to_str()
            .and_then(|key| self.pieces.remove(key))
            // As for the hashes: an identity this fresh may hide a change.
            .and_then(|(identity, cvs)| (identity.matches(meta) && !Self::is_racy(meta)).then_some(cvs));
        let kept = path.to_str().and_then(|key| self.kept.remove(key));
        Some(crate::chunked::Resume { dir, pieces, kept })
    }

    /// The file at `path` was just written over `previous` (an object) and
    /// its first `bytes` bytes are that object's, as its writer compared
    /// them: its store takes the earlier pieces of those bytes instead of
    /// hashing them again.
    pub fn note_kept_prefix(&mut self, path: &Path, previous: Hash, bytes: u64) {
        if let Some(key) = path.to_str() {
            self.kept.insert(key.to_string(), (previous, bytes));
        }
    }

    /// Keep the piece CVs of a large file just hashed, for a store of it
    /// later in this run (memory only: about 130 bytes per MiB).
    pub(crate) fn keep_pieces(&mut self, path: &Path, meta: &std::fs::Metadata, cvs: Vec<crate::pieces::Cv>) {
        if let Some(key) = path.to_str() {
            self.pieces.insert(key.to_string(), (Entry::new(meta, Hash::of_bytes(b"")), cvs));
        }
    }

    /// An in-memory stat cache that is never saved.
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// Hash of the file at `path` whose metadata the caller already has.
    pub fn hash_with_meta(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<Hash> {
        if let Some(h) = self.lookup(path, meta) {
            return Ok(h);
        }
        let hash = hash_file(path)?;
        self.record(path, meta, &hash);
        Ok(hash)
    }

    /// The cached hash of `path`, if its identity (size, mtime, ctime, inode, device) is unchanged.
    pub fn lookup(&mut self, path: &Path, meta: &std::fs::Metadata) -> Option<Hash> {
        let key = path.to_str()?;
        self.parse_folder_of(key);
        let e = self.entries.get(key)?;
        e.matches(meta).then(|| e.hash.clone())
    }

    /// Whether a file changed so recently that its identity cannot be trusted.
    pub fn is_racy(meta: &std::fs::Metadata) -> bool {
        !Self::racy_for(meta).is_zero()
    }

    /// How long until the identity in `meta` can be trusted (zero: now).
    pub fn racy_for(meta: &std::fs::Metadata) -> std::time::Duration {
        let racy_ns = if meta.mtime_nsec() == 0 { COARSE_RACY_NS } else { FINE_RACY_NS };
        let left = mtime_ns(meta).max(ctime_ns(meta)) + racy_ns + 1 - now_ns();
        std::time::Duration::from_nanos(left.clamp(0, racy_ns + 1) as u64)
    }

    /// The manifest hash of a folder whose files' identities digest to `identity`.
    pub fn lookup_folder(&self, path: &Path, identity: &Hash) -> Option<Hash> {
        let (id, h) = self.folders.get(path.to_str()?)?;
        (id == identity).then(|| h.clone())
    }

    /// Remember a folder's manifest hash for the identities of its files.
    pub fn record_folder(&mut self, path: &Path, identity: Hash, manifest: &Hash) {
        let Some(key) = path.to_str().filter(|k| !k.contains(['\n', '\t'])) else { return };
        self.folders.insert(key.to_string(), (identity, manifest.clone()));
        self.dirty = true;
    }

    /// Remember that `path` (as described by `meta`) hashed to `hash`; racy
    /// entries are dropped instead (see the module doc).
    pub fn record(&mut self, path: &Path, meta: &std::fs::Metadata, hash: &Hash) {
        self.files_hashed += 1;
        let Some(key) = path.to_str().filter(|k| !k.contains(['\n', '\t'])) else { return };
        // Its folder's other entries are kept: parse them before adding to them.
        self.parse_folder_of(key);
        if !Self::is_racy(meta) {
            self.entries.insert(key.to_string(), Entry::new(meta, hash.clone()));
            self.dirty = true;
        } else if self.entries.remove(key).is_some() {
            self.dirty = true;
        }
    }

    /// Move the entries of `key`'s folder from the text read into `entries`, once.
    fn parse_folder_of(&mut self, key: &str) {
        if self.unparsed.is_empty() {
            return;
        }
        let Some((folder, _)) = key.rsplit_once('/') else { return };
        if let Some(range) = self.unparsed.remove(folder) {
            parse_section(folder, &self.text[range], &mut self.entries);
        }
    }

    /// Write back if anything changed (atomically, beside the file); whether it wrote.
    pub fn save(&mut self) -> Result<bool> {
        let Some(file) = &self.file else { return Ok(false) };
        if !self.dirty {
            return Ok(false);
        }
        let dir = file.parent().expect("stat cache file has a parent");
        std::fs::create_dir_all(dir).at(dir)?;
        let bytes = format(&self.entries, &self.text, &self.unparsed, &self.folders);
        // A cache of hashes: losing it on power failure only costs re-hashing,
        // so no fsync; the rename still keeps it whole.
        let tmp = atomic::temp_path(dir);
        std::fs::write(&tmp, &bytes).at(&tmp)?;
        std::fs::rename(&tmp, file).at(file)?;
        self.dirty = false;
        Ok(true)
    }
}

/// First line: this and the blake3 of everything after the line, so a
/// damaged or cut file is dropped whole, never read as wrong hashes.
const HEADER: &str = "dvx-stat-v4 ";

/// The layout (text, so it can be read by eye):
///
/// ```text
/// dvx-stat-v4 <blake3 of the rest>
/// D \t <identity digest> \t <manifest hash> \t <folder>       one per folder hash
/// F \t <bytes> \t <folder>                                   then that many bytes of:
/// <size> \t <mtime_ns> \t <ctime_ns> \t <inode> \t <dev> \t <hash> \t <file name>
/// ```
///
/// The folder lines come first and are read at load; each `F` section is
/// skipped by its length and parsed when a file in it is first asked for.
/// Sorted, so the file is stable for the same contents.
fn format(
    entries: &HashMap<String, Entry>,
    text: &str,
    unparsed: &HashMap<String, Range<usize>>,
    folders: &HashMap<String, (Hash, Hash)>,
) -> Vec<u8> {
    use std::fmt::Write;
    enum Section<'a> {
        Raw(&'a str),
        Parsed(Vec<(&'a str, &'a Entry)>),
    }
    let mut body = String::with_capacity(text.len() + entries.len() * 120);
    let sorted: BTreeMap<&String, &(Hash, Hash)> = folders.iter().collect();
    for (path, (id, h)) in sorted {
        let _ = writeln!(body, "D\t{id}\t{h}\t{path}");
    }
    let mut sections: BTreeMap<&str, Section> =
        unparsed.iter().map(|(f, r)| (f.as_str(), Section::Raw(&text[r.clone()]))).collect();
    for (path, e) in entries {
        let Some((folder, name)) = path.rsplit_once('/') else { continue };
        if let Section::Parsed(v) = sections.entry(folder).or_insert_with(|| Section::Parsed(Vec::new())) {
            v.push((name, e));
        }
    }
    let mut lines = String::new();
    for (folder, section) in sections {
        let raw = match section {
            Section::Raw(raw) => raw,
            Section::Parsed(mut v) => {
                v.sort_unstable_by_key(|(name, _)| *name);
                lines.clear();
                for (name, e) in v {
                    let _ = writeln!(
                        lines,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{name}",
                        e.size, e.mtime_ns, e.ctime_ns, e.ino, e.dev, e.hash
                    );
                }
                &lines
            }
        };
        let _ = writeln!(body, "F\t{}\t{folder}", raw.len());
        body.push_str(raw);
    }
    let mut out = format!("{HEADER}{}\n", Hash::of_bytes(body.as_bytes())).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A stat cache file as read: its text, where each folder's entries are in
/// it, and the folder hashes.
#[derive(Default)]
struct Read {
    text: String,
    sections: HashMap<String, Range<usize>>,
    folders: HashMap<String, (Hash, Hash)>,
}

impl Read {
    /// `None` for a file of another format or whose checksum does not match.
    fn of(bytes: Vec<u8>) -> Option<Read> {
        let text = String::from_utf8(bytes).ok()?;
        let (first, _) = text.split_once('\n')?;
        let sum = Hash::parse(first.strip_prefix(HEADER)?)?;
        let start = first.len() + 1;
        if Hash::of_bytes(&text.as_bytes()[start..]) != sum {
            return None;
        }
        let mut read = Read { sections: HashMap::new(), folders: HashMap::new(), text: String::new() };
        let mut at = start;
        while at < text.len() {
            let line_end = text[at..].find('\n').map(|i| at + i)?;
            let line = &text[at..line_end];
            at = line_end + 1;
            if let Some(rest) = line.strip_prefix("D\t") {
                let mut f = rest.splitn(3, '\t');
                let (id, h, path) = (f.next()?, f.next()?, f.next()?);
                read.folders.insert(path.to_string(), (Hash::parse(id)?, Hash::parse(h)?));
            } else if let Some(rest) = line.strip_prefix("F\t") {
                let (len, folder) = rest.split_once('\t')?;
                let end = at.checked_add(len.parse::<usize>().ok()?)?;
                // A section ends at a line's end, inside the file.
                if end > text.len() || (end > at && text.as_bytes()[end - 1] != b'\n') {
                    return None;
                }
                read.sections.insert(folder.to_string(), at..end);
                at = end;
            } else {
                return None;
            }
        }
        read.text = text;
        Some(read)
    }
}

/// Parse one folder's entry lines into `out` (keyed by full path). A line
/// that does not parse is skipped: that file is hashed again.
fn parse_section(folder: &str, lines: &str, out: &mut HashMap<String, Entry>) {
    out.reserve(lines.len() / 100);
    for line in lines.lines() {
        let mut f = line.splitn(7, '\t');
        let mut next = || f.next();
        let (Some(size), Some(mtime), Some(ctime), Some(ino), Some(dev), Some(hash), Some(name)) =
            (next(), next(), next(), next(), next(), next(), next())
        else {
            continue;
        };
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let (Ok(size), Ok(mtime_ns), Ok(ctime_ns), Ok(ino), Ok(dev), Some(hash)) =
            (size.parse(), mtime.parse(), ctime.parse(), ino.parse(), dev.parse(), Hash::parse(hash))
        else {
            continue;
        };
        out.insert(format!("{folder}/{name}"), Entry { size, mtime_ns, ctime_ns, ino, dev, hash });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, hash: &[u8]) -> Entry {
        Entry { size, mtime_ns: -5, ctime_ns: 9, ino: 7, dev: 2, hash: Hash::of_bytes(hash) }
    }

    /// Every entry of a file as read, all sections parsed.
    fn all_entries(read: &Read) -> HashMap<String, Entry> {
        let mut out = HashMap::new();
        for (folder, range) in &read.sections {
            parse_section(folder, &read.text[range.clone()], &mut out);
        }
        out
    }

    fn sample() -> (HashMap<String, Entry>, Folders) {
        let mut m = HashMap::new();
        m.insert("/a b/c.txt".to_string(), entry(3, b"x"));
        m.insert("/a b/d.txt".to_string(), entry(4, b"y"));
        m.insert("/e/f".to_string(), entry(5, b"z"));
        let mut f = HashMap::new();
        f.insert("/a b".to_string(), (Hash::of_bytes(b"id"), Hash::of_bytes(b"m")));
        (m, f)
    }

    type Folders = HashMap<String, (Hash, Hash)>;

    #[test]
    fn a_file_just_written_is_racy_for_at_most_the_window_and_then_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"fresh").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let wait = StatCache::racy_for(&meta);
        assert!(StatCache::is_racy(&meta) && !wait.is_zero(), "{wait:?}");
        assert!(wait <= std::time::Duration::from_nanos(COARSE_RACY_NS as u64 + 1), "{wait:?}");
        std::thread::sleep(wait);
        assert!(!StatCache::is_racy(&meta));
        assert!(StatCache::racy_for(&meta).is_zero());
        let mut stat = StatCache::in_memory();
        stat.record(&path, &meta, &Hash::of_bytes(b"fresh"));
        assert_eq!(stat.lookup(&path, &meta), Some(Hash::of_bytes(b"fresh")), "an entry past the window is kept");
    }

    #[test]
    fn format_round_trips_and_is_stable() {
        let (m, f) = sample();
        let bytes = format(&m, "", &HashMap::new(), &f);
        let read = Read::of(bytes.clone()).unwrap();
        assert_eq!(read.folders, f);
        assert_eq!(read.sections.len(), 2);
        assert_eq!(all_entries(&read), m);
        // Unparsed sections are written back as they were: the same file.
        assert_eq!(format(&HashMap::new(), &read.text, &read.sections, &read.folders), bytes);
    }

    #[test]
    fn a_damaged_cut_or_old_file_is_dropped_whole() {
        let (m, f) = sample();
        let bytes = format(&m, "", &HashMap::new(), &f);
        // Every single-byte change after the header, and every cut.
        for i in HEADER.len()..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(Read::of(bad).is_none(), "byte {i} flipped");
        }
        for n in 0..bytes.len() {
            assert!(Read::of(bytes[..n].to_vec()).is_none(), "cut at {n}");
        }
        // The format before this one (all entries as lines) is not read.
        assert!(Read::of(b"dvx-stat-v3\n3\t-5\t9\t7\t2\tab\t/a\n".to_vec()).is_none());
        assert!(Read::of(vec![0xff, 0xfe]).is_none());
    }

    #[test]
    fn a_section_length_that_lies_is_refused_even_with_a_matching_checksum() {
        for body in ["F\t999\t/a\nx\n", "F\t1\t/a\nxy\n", "F\tnan\t/a\n", "junk\n", "F\t18446744073709551615\t/a\n"] {
            let bytes = format!("{HEADER}{}\n{body}", Hash::of_bytes(body.as_bytes())).into_bytes();
            assert!(Read::of(bytes).is_none(), "{body:?}");
        }
    }

    #[test]
    fn bad_lines_in_a_section_are_skipped_not_misread() {
        let good = "3\t-5\t9\t7\t2\t".to_string() + &Hash::of_bytes(b"x").to_string();
        let lines =
            format!("{good}\tok\n{good}\tsub/dir\n{good}\t\nx\t1\t2\t3\t4\t{}\tbad\n3\t-5\n", Hash::of_bytes(b"x"));
        let mut out = HashMap::new();
        parse_section("/f", &lines, &mut out);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["/f/ok"]);
    }

    #[test]
    fn folders_are_parsed_when_asked_and_the_others_kept_on_save() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        for d in ["one", "two"] {
            std::fs::create_dir(dir.join(d)).unwrap();
            for f in ["a", "b"] {
                std::fs::write(dir.join(d).join(f), format!("{d}{f}")).unwrap();
            }
        }
        // Past the racy window, so the entries are kept.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let file = dir.join("state/stat.txt");
        let mut stat = StatCache::load(&file);
        for d in ["one", "two"] {
            for f in ["a", "b"] {
                let p = dir.join(d).join(f);
                stat.hash_with_meta(&p, &std::fs::metadata(&p).unwrap()).unwrap();
            }
        }
        assert_eq!(stat.files_hashed, 4);
        stat.save().unwrap();

        let mut stat = StatCache::load(&file);
        assert_eq!(stat.unparsed.len(), 2);
        let p = dir.join("one/a");
        assert_eq!(stat.hash_with_meta(&p, &std::fs::metadata(&p).unwrap()).unwrap(), Hash::of_bytes(b"onea"));
        assert_eq!(stat.files_hashed, 0);
        // Only the folder asked for was parsed.
        assert_eq!(stat.unparsed.len(), 1);
        assert_eq!(stat.entries.len(), 2);
        // A change in folder `one` is saved with `two`'s entries, unparsed, kept.
        std::fs::write(dir.join("one/b"), "changed").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let p = dir.join("one/b");
        stat.hash_with_meta(&p, &std::fs::metadata(&p).unwrap()).unwrap();
        stat.save().unwrap();
        let mut stat = StatCache::load(&file);
        for f in ["a", "b"] {
            let p = dir.join("two").join(f);
            assert!(stat.lookup(&p, &std::fs::metadata(&p).unwrap()).is_some(), "two/{f} kept");
        }
        let p = dir.join("one/a");
        assert!(stat.lookup(&p, &std::fs::metadata(&p).unwrap()).is_some());

        // A damaged file: everything is hashed again, with the right hashes.
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x04;
        std::fs::write(&file, bytes).unwrap();
        let mut stat = StatCache::load(&file);
        let p = dir.join("two/a");
        assert_eq!(stat.hash_with_meta(&p, &std::fs::metadata(&p).unwrap()).unwrap(), Hash::of_bytes(b"twoa"));
        assert_eq!(stat.files_hashed, 1);
    }
}
