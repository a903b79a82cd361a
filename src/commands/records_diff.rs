//! Comparing the records of the JSONL outputs two versions both have (a
//! file output, or a `.jsonl` file inside a folder output at the same
//! relative path). Dataset logic, so it lives here and not in the engine.
//!
//! A record is identified by the blake3 of its canonical JSON (keys sorted,
//! no whitespace), so reformatting a line does not change it but any field
//! does. Records are a multiset: a duplicate kept once is one kept and one
//! removed. Files are streamed from the cache (which checks their bytes),
//! and only A's record hashes (with a count and a category number each) are
//! held in memory, never the records. Lines that are not JSON are
//! identified by their bytes and counted as `invalid`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};

use dvx_cache::{canonical_json, Cache, Hash};
use dvx_engine::version::VersionBody;
use dvx_engine::{diff, EngineError};
use serde::Serialize;
use serde_json::Value;

type Result<T> = std::result::Result<T, EngineError>;

/// Fields tried, in order, to find a record's category.
pub const CATEGORY_FIELDS: [&str; 4] = ["category", "meta.category", "pattern", "_source"];

/// The records of one JSONL path in A and in B.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    /// The stage that writes it (B's name when the versions disagree).
    pub stage: String,
    /// Workspace path (`out.jsonl`, or `folder/part.jsonl` inside a folder output).
    pub path: String,
    /// The bytes are the same: every record kept.
    pub identical: bool,
    /// The category field used, if any.
    pub category_field: Option<String>,
    /// Records in A.
    pub before: u64,
    /// Records in B.
    pub after: u64,
    /// Records in B but not A.
    pub added: u64,
    /// Records in A but not B.
    pub removed: u64,
    /// Records in both.
    pub kept: u64,
    /// Lines of A that are not JSON (included in the counts above).
    pub invalid_a: u64,
    /// Lines of B that are not JSON.
    pub invalid_b: u64,
    /// Per category, sorted by name; empty without a category field.
    pub categories: Vec<CategoryCount>,
}

/// Counts of one category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CategoryCount {
    /// The category (`(none)` for records without the field).
    pub name: String,
    /// Records in A.
    pub before: u64,
    /// Records in B.
    pub after: u64,
    /// Added in B.
    pub added: u64,
    /// Removed from A.
    pub removed: u64,
}

/// Record diffs of the JSONL files of two versions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Records {
    /// JSONL paths both have.
    pub files: Vec<FileDiff>,
    /// JSONL paths only A has.
    pub files_only_in_a: Vec<String>,
    /// JSONL paths only B has.
    pub files_only_in_b: Vec<String>,
}

/// Compare the JSONL outputs of two versions, only those of `stage` if given.
pub fn diff_records(
    cache: &Cache,
    a: &VersionBody,
    b: &VersionBody,
    stage: Option<&str>,
    category_field: Option<&str>,
) -> Result<Records> {
    let wanted = |name: &str| stage.is_none_or(|s| s == name);
    let jsonl = |body| -> Result<BTreeMap<String, (String, Hash)>> {
        Ok(diff::output_files(cache, body)?.into_iter().filter(|(p, _)| p.ends_with(".jsonl")).collect())
    };
    let (files_a, files_b) = (jsonl(a)?, jsonl(b)?);
    let mut out = Records::default();
    for (path, (stage_a, hash_a)) in &files_a {
        match files_b.get(path) {
            Some((stage_b, hash_b)) if wanted(stage_a) || wanted(stage_b) => {
                out.files.push(diff_file(cache, stage_b, path, hash_a, hash_b, category_field)?);
            }
            None if wanted(stage_a) => out.files_only_in_a.push(path.clone()),
            _ => {}
        }
    }
    for (path, (stage_b, _)) in &files_b {
        if !files_a.contains_key(path) && wanted(stage_b) {
            out.files_only_in_b.push(path.clone());
        }
    }
    Ok(out)
}

/// A record's identity: blake3 of its canonical JSON, or of the raw line
/// when it is not JSON.
type RecordId = [u8; 32];

/// What is held of A while B streams past: per record id, how many of A's
/// records have it and their category number.
struct Side {
    counts: HashMap<RecordId, (u64, u32)>,
}

/// Category names, numbered in order of first sight.
#[derive(Default)]
struct Categories {
    names: Vec<String>,
    index: HashMap<String, u32>,
    counts: Vec<CategoryCount>,
}

impl Categories {
    fn id(&mut self, name: String) -> u32 {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.clone(), i);
        self.counts.push(CategoryCount { name: name.clone(), ..Default::default() });
        self.names.push(name);
        i
    }
}

/// One parsed line.
struct Line {
    id: RecordId,
    category: Option<String>,
    valid: bool,
}

/// Compare the records of two JSONL objects.
fn diff_file(cache: &Cache, stage: &str, path: &str, a: &Hash, b: &Hash, field: Option<&str>) -> Result<FileDiff> {
    let field = match field {
        Some(f) => Some(f.to_string()),
        None => match detect_category(cache, a)? {
            Some(f) => Some(f),
            None => detect_category(cache, b)?,
        },
    };
    let field = field.as_deref();
    let mut cats = Categories::default();
    let mut side = Side { counts: HashMap::new() };
    let mut invalid_a = 0;
    let mut before = 0;
    for_each_line(cache, a, field, |line| {
        let c = cats.id(line.category.unwrap_or_else(|| "(none)".into()));
        cats.counts[c as usize].before += 1;
        before += 1;
        invalid_a += u64::from(!line.valid);
        side.counts.entry(line.id).or_insert((0, c)).0 += 1;
    })?;

    let identical = a == b;
    let (mut after, mut added, mut kept, mut invalid_b) = (0, 0, 0, 0);
    if identical {
        for c in &mut cats.counts {
            c.after = c.before;
        }
        (after, kept, invalid_b) = (before, before, invalid_a);
        side.counts.clear();
    } else {
        for_each_line(cache, b, field, |line| {
            let c = cats.id(line.category.unwrap_or_else(|| "(none)".into()));
            cats.counts[c as usize].after += 1;
            after += 1;
            invalid_b += u64::from(!line.valid);
            match side.counts.get_mut(&line.id) {
                Some((n, _)) if *n > 0 => {
                    *n -= 1;
                    kept += 1;
                }
                _ => {
                    added += 1;
                    cats.counts[c as usize].added += 1;
                }
            }
        })?;
    }
    let mut removed = 0;
    for (n, c) in side.counts.values() {
        removed += n;
        cats.counts[*c as usize].removed += n;
    }
    let mut categories = if field.is_some() { cats.counts } else { Vec::new() };
    categories.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(FileDiff {
        stage: stage.to_string(),
        path: path.to_string(),
        identical,
        category_field: field.map(str::to_string),
        before,
        after,
        added,
        removed,
        kept,
        invalid_a,
        invalid_b,
        categories,
    })
}

/// The first of [`CATEGORY_FIELDS`] present in the first JSON record of an object.
fn detect_category(cache: &Cache, hash: &Hash) -> Result<Option<String>> {
    let mut reader = BufReader::with_capacity(1 << 16, cache.open_object(hash).map_err(EngineError::Cache)?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| EngineError::Cache(reader.get_ref().error(e)))?;
        if n == 0 {
            return Ok(None);
        }
        if trim(&buf).is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(trim(&buf)) else { continue };
        return Ok(CATEGORY_FIELDS.iter().find(|f| field_at(&v, f).is_some()).map(|f| f.to_string()));
    }
}

/// Stream an object line by line (blank lines skipped); the store checks its
/// bytes against its name at the end.
fn for_each_line(cache: &Cache, hash: &Hash, field: Option<&str>, mut f: impl FnMut(Line)) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, cache.open_object(hash).map_err(EngineError::Cache)?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| EngineError::Cache(reader.get_ref().error(e)))?;
        if n == 0 {
            break;
        }
        let bytes = trim(&buf);
        if bytes.is_empty() {
            continue;
        }
        f(match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Line {
                id: *blake3::hash(&canonical_json(&v)).as_bytes(),
                category: field.and_then(|p| field_at(&v, p)).map(category_text),
                valid: true,
            },
            Err(_) => Line { id: *blake3::hash(bytes).as_bytes(), category: None, valid: false },
        });
    }
    Ok(())
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    let start = line[..end].iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(end);
    &line[start..end]
}

/// The value at a dotted path of a record.
fn field_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

fn category_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trims_and_reads_fields() {
        assert_eq!(trim(b"  {\"a\":1}\r\n"), b"{\"a\":1}");
        assert_eq!(trim(b" \n"), b"");
        let v = json!({"meta": {"category": "CRUD"}, "category": null});
        assert_eq!(field_at(&v, "meta.category"), Some(&json!("CRUD")));
        assert_eq!(field_at(&v, "category"), None);
    }
}
