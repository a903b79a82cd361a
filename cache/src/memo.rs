//! The record memo: `memo-v1/<ns>/<ab>/<key hex>`, one file per answer a
//! stage asked to keep (an LLM response), under the stage kind's namespace.
//!
//! A file is `DVXMEMO1`, the blake3 of the value (32 bytes), then the value.
//! Writes are atomic and durable (tmp, fsync, rename) the moment an answer
//! arrives, so kill -9 loses at most the answers in flight. A read checks
//! the hash: a damaged entry is moved to `quarantine/` and reads as a miss,
//! so the stage asks again. A hit refreshes the file's mtime.
//!
//! A run that used the memo names the keys it read or wrote in a key-list
//! object (`dvx-memo-keys 1`, the namespace, then one hex key a line,
//! sorted) referenced from its run entry. `dvx gc --memo-older-than AGE`
//! keeps every entry a kept version's runs used, whatever its age, and
//! evicts the rest that nobody read or wrote for AGE. Plain gc never
//! removes memo entries: they are what a re-run or `dvx reproduce` is
//! served from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::bucket::Bucket;
use crate::error::{CacheError, IoContext, Result};
use crate::hash::Hash;
use crate::runs::read_dir_sorted;
use crate::store::Cache;
use crate::versions::Refs;

const MAGIC: &[u8; 8] = b"DVXMEMO1";
/// First line of a key-list object.
const KEYS_HEADER: &str = "dvx-memo-keys 1";

/// What [`Cache::memo_gc`] removed (or would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemoGcReport {
    /// Entries removed.
    pub entries: usize,
    /// Their size in bytes.
    pub bytes: u64,
    /// Entries older than the age kept because a kept version's run used them.
    pub kept_used: usize,
}

/// The key-list object's text for namespace `ns`.
fn key_list(ns: &str, keys: &BTreeSet<[u8; 32]>) -> String {
    let mut text = format!("{KEYS_HEADER}\n{ns}\n");
    for k in keys {
        text.push_str(blake3::Hash::from_bytes(*k).to_hex().as_str());
        text.push('\n');
    }
    text
}

/// Parse a key-list object (untrusted): its namespace and keys.
fn parse_key_list(bytes: &[u8]) -> std::result::Result<(String, Vec<[u8; 32]>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(KEYS_HEADER) {
        return Err(format!("does not start with `{KEYS_HEADER}`"));
    }
    let ns = lines.next().ok_or("no namespace line")?.to_string();
    check_ns(&ns).map_err(|_| format!("bad namespace `{ns}`"))?;
    let keys = lines
        .enumerate()
        .map(|(i, l)| blake3::Hash::from_hex(l).map(|h| *h.as_bytes()).map_err(|_| format!("line {}: not a key", i + 3)))
        .collect::<std::result::Result<_, _>>()?;
    Ok((ns, keys))
}

/// Whether `ns` may name a memo namespace (a stage kind: `generate`).
fn check_ns(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad memo namespace `{ns}`"));
        Err(CacheError::Io { path: PathBuf::from(ns), source })
    }
}

/// The value of a memo file, if its header and hash are right.
fn decode(bytes: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err("not a memo entry (bad header)");
    }
    let value = &bytes[40..];
    if blake3::hash(value).as_bytes()[..] != bytes[8..40] {
        return Err("its value does not match its hash");
    }
    Ok(value)
}

impl Cache {
    fn memo_path(&self, ns: &str, key: &[u8; 32]) -> PathBuf {
        let hex = blake3::Hash::from_bytes(*key).to_hex();
        self.dir(Bucket::Memo).join(ns).join(&hex[..2]).join(&hex[..])
    }

    /// The value kept under `key` in namespace `ns`, or `None`. A damaged
    /// entry is quarantined (with a warning) and reads as `None`.
    pub fn memo_get(&self, ns: &str, key: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        check_ns(ns)?;
        let path = self.memo_path(ns, key);
        let mut bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        match decode(&bytes) {
            Ok(_) => {
                // Last used now, for age-based eviction; a read-only entry stays as it was.
                let _ = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                bytes.drain(..40);
                Ok(Some(bytes))
            }
            Err(why) => {
                tracing::warn!("memo entry {}: {why}; quarantined, it will be asked again", path.display());
                self.quarantine_memo(ns, &path)?;
                Ok(None)
            }
        }
    }

    /// Keep `value` under `key` in namespace `ns`: atomic, fsynced, with
    /// the cache's permissions. An existing entry is replaced.
    pub fn memo_put(&self, ns: &str, key: &[u8; 32], value: &[u8]) -> Result<()> {
        self.memo_write(ns, key, value, true)
    }

    /// [`Cache::memo_put`] without the fsync: a crash may lose the entry
    /// or leave it torn, which its checksum turns into a miss on read.
    pub fn memo_put_hint(&self, ns: &str, key: &[u8; 32], value: &[u8]) -> Result<()> {
        self.memo_write(ns, key, value, false)
    }

    fn memo_write(&self, ns: &str, key: &[u8; 32], value: &[u8], durable: bool) -> Result<()> {
        check_ns(ns)?;
        let mut bytes = Vec::with_capacity(40 + value.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(blake3::hash(value).as_bytes());
        bytes.extend_from_slice(value);
        self.write_record_with(&self.memo_path(ns, key), &bytes, durable)
    }

    fn quarantine_memo(&self, ns: &str, path: &Path) -> Result<()> {
        let q = self.dir(Bucket::Quarantine);
        self.ensure_dir(&q)?;
        let name = format!("memo-{ns}-{}", path.file_name().unwrap_or_default().to_string_lossy());
        match std::fs::rename(path, q.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
            _ => Ok(()),
        }
    }

    /// Every file under `memo-v1/` with its namespace (`<ns>/<ab>/<file>`).
    pub(crate) fn memo_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for ns in read_dir_sorted(&self.dir(Bucket::Memo))? {
            let name = ns.file_name().unwrap_or_default().to_string_lossy().into_owned();
            for shard in read_dir_sorted(&ns)? {
                for f in read_dir_sorted(&shard)? {
                    out.push((name.clone(), f));
                }
            }
        }
        Ok(out)
    }

    /// Check every memo entry; returns how many were checked and the
    /// damaged ones (quarantined when `repair`).
    pub(crate) fn verify_memo(&self, repair: bool) -> Result<(usize, Vec<(PathBuf, String)>)> {
        let mut bad = Vec::new();
        let files = self.memo_files()?;
        for (ns, path) in &files {
            let why = match std::fs::read(path) {
                Ok(bytes) => decode(&bytes).err().map(str::to_string),
                Err(e) => Some(e.to_string()),
            };
            let named = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 64);
            let why = why.or_else(|| (!named).then(|| "not a memo entry (its name is not a key)".to_string()));
            if let Some(why) = why {
                if repair {
                    self.quarantine_memo(ns, path)?;
                }
                bad.push((path.clone(), why));
            }
        }
        Ok((files.len(), bad))
    }

    /// Store the list of memo keys a run of kind `ns` used, as an object
    /// its run entry names; `None` when it used none.
    pub fn put_memo_keys(&self, ns: &str, keys: &BTreeSet<[u8; 32]>) -> Result<Option<Hash>> {
        if keys.is_empty() {
            return Ok(None);
        }
        check_ns(ns)?;
        self.put_bytes(key_list(ns, keys).as_bytes()).map(Some)
    }

    /// The keys a list stored by [`Cache::put_memo_keys`] names (with their
    /// namespace): a sharded stage's run lists the union of its shards'.
    pub fn memo_keys(&self, list: &Hash) -> Result<(String, Vec<[u8; 32]>)> {
        let bytes = self.read_object(list)?;
        parse_key_list(&bytes).map_err(|why| CacheError::BadRecord { path: self.object_path(list), message: why })
    }

    /// The memo entries (namespace, key) that the runs of the versions in
    /// the cache, except `going`, used. A run entry or key list that cannot
    /// be read protects nothing (warned): its entries fall back to age.
    fn memo_in_use(&self, going: &BTreeSet<Hash>) -> Result<BTreeSet<(String, [u8; 32])>> {
        let mut used = BTreeSet::new();
        let mut lists = BTreeSet::new();
        for h in self.version_hashes()? {
            if going.contains(&h) {
                continue;
            }
            let Ok(rec) = self.get_version(&h) else { continue };
            for s in Refs::of(&rec.body).unwrap_or_default().stages {
                let Some(key) = &s.key else { continue };
                if let Ok(Some(run)) = self.get_run(key) {
                    lists.extend(run.memo);
                }
            }
        }
        for list in lists {
            match self.read_object(&list).map_err(|e| e.to_string()).and_then(|b| parse_key_list(&b)) {
                Ok((ns, keys)) => used.extend(keys.into_iter().map(|k| (ns.clone(), k))),
                Err(why) => tracing::warn!("memo key list {}: {why}; its entries are kept by age only", list.short()),
            }
        }
        Ok(used)
    }

    /// Remove memo entries not read or written for `older_than` (by mtime)
    /// that no run of a kept version used: every version in the cache but
    /// those in `going` (what a version gc in the same command removes or,
    /// in a dry run, would remove).
    pub fn memo_gc(&self, older_than: Duration, going: &BTreeSet<Hash>, dry_run: bool) -> Result<MemoGcReport> {
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let used = self.memo_in_use(going)?;
        let mut report = MemoGcReport::default();
        for (ns, path) in self.memo_files()? {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.modified().map(|t| t >= cutoff).unwrap_or(true) {
                continue;
            }
            let key = path.file_name().and_then(|n| n.to_str()).and_then(|n| blake3::Hash::from_hex(n).ok());
            if key.is_some_and(|k| used.contains(&(ns.clone(), *k.as_bytes()))) {
                report.kept_used += 1;
                continue;
            }
            report.entries += 1;
            report.bytes += meta.len();
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheOptions;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), CacheOptions::default()).unwrap();
        (dir, cache)
    }

    #[test]
    fn put_then_get_per_namespace() {
        let (_d, c) = cache();
        assert_eq!(c.memo_get("generate", &[7; 32]).unwrap(), None);
        c.memo_put("generate", &[7; 32], b"{\"answer\":1}").unwrap();
        assert_eq!(c.memo_get("generate", &[7; 32]).unwrap().as_deref(), Some(&b"{\"answer\":1}"[..]));
        assert_eq!(c.memo_get("judge", &[7; 32]).unwrap(), None);
        assert!(c.memo_get("../x", &[7; 32]).is_err());
        let (n, bad) = c.verify_memo(false).unwrap();
        assert_eq!((n, bad.len()), (1, 0));
    }

    #[test]
    fn a_hint_reads_back_and_a_torn_one_is_a_miss() {
        let (_d, c) = cache();
        c.memo_put_hint("filter", &[3; 32], b"batch results").unwrap();
        assert_eq!(c.memo_get("filter", &[3; 32]).unwrap().as_deref(), Some(&b"batch results"[..]));
        // What a crash may leave of an entry written without fsync: a cut file.
        let path = c.memo_path("filter", &[3; 32]);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 10, 40, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert_eq!(c.memo_get("filter", &[3; 32]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_entry_is_a_miss_and_quarantined() {
        let (_d, c) = cache();
        c.memo_put("generate", &[1; 32], b"good answer").unwrap();
        let path = c.memo_path("generate", &[1; 32]);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, bad) = c.verify_memo(false).unwrap();
        assert_eq!(bad.len(), 1);
        assert!(path.exists(), "verify without repair removes nothing");
        assert_eq!(c.memo_get("generate", &[1; 32]).unwrap(), None);
        assert!(!path.exists());
        assert!(c.dir(Bucket::Quarantine).read_dir().unwrap().next().is_some());
        assert_eq!(c.verify_memo(false).unwrap().1.len(), 0);
    }

    #[test]
    fn gc_evicts_by_last_use() {
        let (_d, c) = cache();
        c.memo_put("generate", &[1; 32], b"old").unwrap();
        c.memo_put("generate", &[2; 32], b"new").unwrap();
        let old = SystemTime::now() - Duration::from_secs(40 * 86400);
        for k in [[1u8; 32], [2; 32]] {
            let f = std::fs::File::options().write(true).open(c.memo_path("generate", &k)).unwrap();
            f.set_modified(old).unwrap();
        }
        // Reading entry 2 makes it recently used.
        assert!(c.memo_get("generate", &[2; 32]).unwrap().is_some());
        let month = Duration::from_secs(30 * 86400);
        assert_eq!(c.memo_gc(month, &BTreeSet::new(), true).unwrap().entries, 1);
        assert!(c.memo_path("generate", &[1; 32]).exists(), "dry run");
        let r = c.memo_gc(month, &BTreeSet::new(), false).unwrap();
        assert_eq!((r.entries, r.bytes), (1, 43));
        assert_eq!(c.memo_get("generate", &[1; 32]).unwrap(), None);
        assert!(c.memo_get("generate", &[2; 32]).unwrap().is_some());
    }

    fn age(c: &Cache, ns: &str, key: &[u8; 32], days: u64) {
        let f = std::fs::File::options().write(true).open(c.memo_path(ns, key)).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(days * 86400)).unwrap();
    }

    #[test]
    fn gc_keeps_what_kept_versions_used_and_evicts_the_rest_by_age() {
        let (_d, c) = cache();
        for k in 1..=4u8 {
            c.memo_put("generate", &[k; 32], b"answer").unwrap();
            age(&c, "generate", &[k; 32], 40);
        }
        // A run used 1 and 2 (and 9, never kept: a list may name what is gone).
        let list = c.put_memo_keys("generate", &BTreeSet::from([[1; 32], [2; 32], [9; 32]])).unwrap().unwrap();
        assert_eq!(c.put_memo_keys("cmd", &BTreeSet::new()).unwrap(), None);
        let key = crate::StageKey::parse(&"ab".repeat(32)).unwrap();
        let entry = crate::RunEntry {
            key: key.clone(),
            kind: "generate".into(),
            stage: "gen".into(),
            outputs: vec![],
            metrics: Default::default(),
            log: None,
            memo: Some(list),
            seconds: 0.0,
        };
        c.put_run(&entry).unwrap();
        let version = c.put_version(serde_json::json!({"stages": [{"key": key.as_str()}]}), Default::default()).unwrap();
        let month = Duration::from_secs(30 * 86400);
        let r = c.memo_gc(month, &BTreeSet::new(), true).unwrap();
        assert_eq!((r.entries, r.kept_used), (2, 2));
        // With that version going, nothing protects them.
        let r = c.memo_gc(month, &BTreeSet::from([version.clone()]), true).unwrap();
        assert_eq!((r.entries, r.kept_used), (4, 0));
        c.memo_gc(month, &BTreeSet::new(), false).unwrap();
        for (k, kept) in [(1, true), (2, true), (3, false), (4, false)] {
            assert_eq!(c.memo_get("generate", &[k; 32]).unwrap().is_some(), kept, "key {k}");
        }
        // Version gc keeps the key list with the run entry it keeps.
        let report = c.gc(&crate::GcOptions { keep: BTreeSet::from([version]), dry_run: false }).unwrap();
        assert_eq!(report.objects, 0);
        assert!(c.has_object(&entry.memo.unwrap()));
    }

    #[test]
    fn a_bad_key_list_protects_nothing() {
        assert!(parse_key_list(b"dvx-memo-keys 1\ngenerate\nzz\n").unwrap_err().contains("line 3"));
        assert!(parse_key_list(b"other\n").is_err());
        assert!(parse_key_list(b"dvx-memo-keys 1\n../x\n").is_err());
        let keys = BTreeSet::from([[3u8; 32]]);
        assert_eq!(parse_key_list(key_list("judge", &keys).as_bytes()).unwrap(), ("judge".to_string(), vec![[3; 32]]));
    }
}
