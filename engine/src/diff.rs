//! Comparing two versions: which stages changed, what happened to the
//! records of their JSONL outputs, and how their metrics moved.
//!
//! Three parts, each plain data (rendering is the caller's):
//!
//! - **Stages**, matched by name: only in A, only in B, changed (the keys
//!   differ) or same.
//! - **Records**, for every `.jsonl` output path both versions have (a file
//!   output, or a `.jsonl` file inside a folder output at the same relative
//!   path). A record is identified by the blake3 of its canonical JSON (keys
//!   sorted, no whitespace), so reformatting a line does not change it but
//!   any field does. Records are a multiset: a duplicate kept once is one
//!   kept and one removed. Files are streamed, and only A's record hashes
//!   (with a count and a category number each) are held in memory, never the
//!   records. Lines that are not JSON are identified by their bytes and
//!   counted as `invalid`.
//! - **Metrics**, for every stage both versions have: numbers are flattened
//!   to dotted names (`categories.CRUD.rate`; arrays of objects by index,
//!   `runs.0.loss`), other values (strings, booleans, arrays of scalars) are
//!   compared whole. A metric whose name says higher is better (accuracy,
//!   `acc`, `rate`, score, f1…) and that drops, or one whose name says lower
//!   is better (loss, perplexity, error, fail…) and that rises, is a
//!   [`MetricRow::regression`]. See [`direction`] for the exact words.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};

use dvx_cache::{canonical_json, Cache, Hash, OutputKind, OutputRef, VersionRecord};
use serde::Serialize;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::ops::{body_of, VersionBody};

/// Fields tried, in order, to find a record's category.
pub const CATEGORY_FIELDS: [&str; 4] = ["category", "meta.category", "pattern", "_source"];

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only this stage: its outputs, its metrics, its row in the stage table.
    pub stage: Option<String>,
    /// The category field (dotted path); `None` detects one of [`CATEGORY_FIELDS`].
    pub category_field: Option<String>,
}

/// Everything that differs between version A and version B.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDiff {
    /// The version compared from (`dvx diff A B`).
    pub a: Hash,
    /// The version compared to.
    pub b: Hash,
    /// The stage the diff was restricted to.
    pub stage: Option<String>,
    /// Every stage of either version, A's order first, then B's new ones.
    pub stages: Vec<StageChange>,
    /// Record diffs of the JSONL outputs both versions have.
    pub files: Vec<FileDiff>,
    /// JSONL outputs only A has.
    pub files_only_in_a: Vec<String>,
    /// JSONL outputs only B has.
    pub files_only_in_b: Vec<String>,
    /// Metrics of the stages both versions have (stages without metrics on
    /// either side are left out).
    pub metrics: Vec<StageMetrics>,
    /// Number of metric rows marked as regressions.
    pub regressions: usize,
}

/// How a stage differs between the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageChangeKind {
    /// Only version A has it.
    OnlyInA,
    /// Only version B has it.
    OnlyInB,
    /// Both have it, with different keys.
    Changed,
    /// Both have it, with the same key.
    Same,
}

/// One stage in the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct StageChange {
    /// The stage's name, which is how stages of A and B are paired.
    pub name: String,
    /// Kind (B's when both have it).
    pub kind: String,
    /// Whether it is in one version only, changed, or the same.
    pub state: StageChangeKind,
    /// Key in A.
    pub key_a: Option<dvx_cache::StageKey>,
    /// Key in B.
    pub key_b: Option<dvx_cache::StageKey>,
}

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

/// The metrics of one stage, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct StageMetrics {
    /// The stage whose metrics these are.
    pub stage: String,
    /// One row per flattened metric name, sorted by name.
    pub rows: Vec<MetricRow>,
}

/// How a metric moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricChange {
    /// Equal on both sides.
    Same,
    /// A number that went up.
    Up,
    /// A number that went down.
    Down,
    /// A non-number (or a number against a non-number) that changed.
    Changed,
    /// Only A has it.
    OnlyInA,
    /// Only B has it.
    OnlyInB,
}

/// One flattened metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// The metric's dotted path in the stage's metrics (`eval.pass_rate`).
    pub name: String,
    /// Value in A.
    pub a: Option<Value>,
    /// Value in B.
    pub b: Option<Value>,
    /// B − A, when both are numbers.
    pub delta: Option<f64>,
    /// The delta as a percentage of |A|, when A is a non-zero number.
    pub pct: Option<f64>,
    /// What happened.
    pub change: MetricChange,
    /// Which way is better, guessed from the name.
    pub better: Option<Better>,
    /// It moved the wrong way.
    pub regression: bool,
}

/// Which way a metric should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Accuracy, pass rate, score…
    Higher,
    /// Loss, perplexity, errors…
    Lower,
}

/// Compare versions `a` and `b` of `cache`.
pub fn diff_versions(cache: &Cache, a: &Hash, b: &Hash, opts: &DiffOptions) -> Result<VersionDiff> {
    let rec_a = cache.get_version(a)?;
    let rec_b = cache.get_version(b)?;
    let body_a = body_of(&rec_a)?;
    let body_b = body_of(&rec_b)?;
    if let Some(s) = &opts.stage {
        let names = || body_a.stages.iter().chain(&body_b.stages).map(|s| s.name.as_str());
        if !names().any(|n| n == s) {
            let mut msg = format!("no stage `{s}` in either version");
            if let Some(best) = crate::spec::did_you_mean(s, names()) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            return Err(EngineError::Other(msg));
        }
    }
    let wanted = |name: &str| opts.stage.as_deref().is_none_or(|s| s == name);

    let stages = stage_changes(&body_a, &body_b).into_iter().filter(|c| wanted(&c.name)).collect();

    // JSONL paths of each side → (stage, object).
    let files_a = jsonl_outputs(cache, &body_a)?;
    let files_b = jsonl_outputs(cache, &body_b)?;
    let mut files = Vec::new();
    let mut files_only_in_a = Vec::new();
    let mut files_only_in_b = Vec::new();
    for (path, (stage_a, hash_a)) in &files_a {
        match files_b.get(path) {
            Some((stage_b, hash_b)) if wanted(stage_a) || wanted(stage_b) => {
                files.push(diff_file(cache, stage_b, path, hash_a, hash_b, opts.category_field.as_deref())?);
            }
            None if wanted(stage_a) => files_only_in_a.push(path.clone()),
            _ => {}
        }
    }
    for (path, (stage_b, _)) in &files_b {
        if !files_a.contains_key(path) && wanted(stage_b) {
            files_only_in_b.push(path.clone());
        }
    }

    let mut metrics = Vec::new();
    for s in &body_a.stages {
        if !wanted(&s.name) || !body_b.stages.iter().any(|t| t.name == s.name) {
            continue;
        }
        let ma = metrics_of(&rec_a, &s.name);
        let mb = metrics_of(&rec_b, &s.name);
        if ma.is_empty() && mb.is_empty() {
            continue;
        }
        metrics.push(StageMetrics { stage: s.name.clone(), rows: diff_metrics(&ma, &mb) });
    }
    let regressions = metrics.iter().flat_map(|m| &m.rows).filter(|r| r.regression).count();
    Ok(VersionDiff {
        a: a.clone(),
        b: b.clone(),
        stage: opts.stage.clone(),
        stages,
        files,
        files_only_in_a,
        files_only_in_b,
        metrics,
        regressions,
    })
}

fn stage_changes(a: &VersionBody, b: &VersionBody) -> Vec<StageChange> {
    let mut out = Vec::new();
    for s in &a.stages {
        let other = b.stages.iter().find(|t| t.name == s.name);
        let state = match other {
            None => StageChangeKind::OnlyInA,
            Some(t) if t.key == s.key && t.key.is_some() => StageChangeKind::Same,
            Some(_) => StageChangeKind::Changed,
        };
        out.push(StageChange {
            name: s.name.clone(),
            kind: other.map(|t| &t.kind).unwrap_or(&s.kind).clone(),
            state,
            key_a: s.key.clone(),
            key_b: other.and_then(|t| t.key.clone()),
        });
    }
    for t in &b.stages {
        if !a.stages.iter().any(|s| s.name == t.name) {
            out.push(StageChange {
                name: t.name.clone(),
                kind: t.kind.clone(),
                state: StageChangeKind::OnlyInB,
                key_a: None,
                key_b: t.key.clone(),
            });
        }
    }
    out
}

/// Every JSONL file among a version's outputs: path → (stage, object).
fn jsonl_outputs(cache: &Cache, body: &VersionBody) -> Result<BTreeMap<String, (String, Hash)>> {
    let mut out = BTreeMap::new();
    for s in &body.stages {
        for o in &s.outputs {
            add_jsonl(cache, &s.name, o, &mut out)?;
        }
    }
    Ok(out)
}

fn add_jsonl(cache: &Cache, stage: &str, o: &OutputRef, out: &mut BTreeMap<String, (String, Hash)>) -> Result<()> {
    match o.kind {
        OutputKind::File if is_jsonl(&o.path) => {
            out.insert(o.path.clone(), (stage.to_string(), o.hash.clone()));
        }
        OutputKind::File => {}
        OutputKind::Dir => {
            for e in cache.read_tree(&o.hash)? {
                if is_jsonl(&e.path) {
                    let path = format!("{}/{}", o.path.trim_end_matches('/'), e.path);
                    out.insert(path, (stage.to_string(), e.hash));
                }
            }
        }
    }
    Ok(())
}

fn is_jsonl(path: &str) -> bool {
    path.ends_with(".jsonl")
}

fn metrics_of(rec: &VersionRecord, stage: &str) -> serde_json::Map<String, Value> {
    match rec.meta.metrics.get(stage) {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    }
}

// ---------------------------------------------------------------------------
// Records

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
    let mut reader = BufReader::with_capacity(1 << 16, cache.open_object(hash)?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| reader.get_ref().error(e))?;
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
    let mut reader = BufReader::with_capacity(1 << 16, cache.open_object(hash)?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| reader.get_ref().error(e))?;
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

// ---------------------------------------------------------------------------
// Metrics

/// Compare two metrics maps: one row per flattened name, sorted by name.
pub fn diff_metrics(a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>) -> Vec<MetricRow> {
    let mut fa = BTreeMap::new();
    let mut fb = BTreeMap::new();
    flatten("", &Value::Object(a.clone()), &mut fa);
    flatten("", &Value::Object(b.clone()), &mut fb);
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    names.into_iter().map(|n| metric_row(n, fa.get(n), fb.get(n))).collect()
}

/// Leaves of a metrics value under dotted names. Objects recurse, arrays of
/// objects recurse by index; anything else is a leaf.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
            for (k, x) in m {
                flatten(&join(k), x, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (i, x) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), x, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

fn metric_row(name: &str, a: Option<&Value>, b: Option<&Value>) -> MetricRow {
    let better = direction(name);
    let mut row = MetricRow {
        name: name.to_string(),
        a: a.cloned(),
        b: b.cloned(),
        delta: None,
        pct: None,
        change: MetricChange::Same,
        better,
        regression: false,
    };
    match (a, b) {
        (Some(_), None) => row.change = MetricChange::OnlyInA,
        (None, Some(_)) => row.change = MetricChange::OnlyInB,
        (None, None) => {}
        (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                let d = y - x;
                row.delta = Some(d);
                row.pct = (x != 0.0).then(|| d / x.abs() * 100.0);
                row.change = if d > 0.0 {
                    MetricChange::Up
                } else if d < 0.0 {
                    MetricChange::Down
                } else {
                    MetricChange::Same
                };
                row.regression = matches!(
                    (better, row.change),
                    (Some(Better::Higher), MetricChange::Down) | (Some(Better::Lower), MetricChange::Up)
                );
            }
            _ if x == y => {}
            _ => row.change = MetricChange::Changed,
        },
    }
    row
}

/// Words (of a name split at `.`, `_`, `-`, spaces and lower→upper case
/// steps) that say lower is better; they win over the higher ones, so
/// `error_rate` and `fail_rate` are lower-is-better.
pub const LOWER_IS_BETTER: &[&str] =
    &["loss", "losses", "perplexity", "ppl", "error", "errors", "err", "wer", "cer", "fail", "failure"];

/// Words that say higher is better.
pub const HIGHER_IS_BETTER: &[&str] =
    &["accuracy", "acc", "rate", "score", "f1", "precision", "recall", "auc", "bleu", "rouge", "exact"];

/// Which way a metric should move, from its name: the last dotted segment
/// that contains one of the [`LOWER_IS_BETTER`] or [`HIGHER_IS_BETTER`] words
/// decides (so `categories.CRUD.rate` is a rate, and `accuracy.CRUD` an accuracy).
pub fn direction(name: &str) -> Option<Better> {
    for segment in name.rsplit('.') {
        let words = words(segment);
        if words.iter().any(|w| LOWER_IS_BETTER.contains(&w.as_str())) {
            return Some(Better::Lower);
        }
        if words.iter().any(|w| HIGHER_IS_BETTER.contains(&w.as_str())) {
            return Some(Better::Higher);
        }
    }
    None
}

fn words(segment: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in segment.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn row<'a>(rows: &'a [MetricRow], name: &str) -> &'a MetricRow {
        rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no row `{name}` in {rows:#?}"))
    }

    /// The v2.1 → v2.3 report: the score fell from 8.2 to 4.5 with a
    /// smaller dataset and a lower final loss.
    #[test]
    fn score_drop_is_a_regression() {
        let a = map(json!({"score": 8.2, "examples": 153, "final_loss": 1.95, "epochs": 5, "mix": "curated"}));
        let b =
            map(json!({"score": 4.5, "examples": 148, "final_loss": 2.2643, "epochs": 6, "mix": "curated+synthetic"}));
        let rows = diff_metrics(&a, &b);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["epochs", "examples", "final_loss", "mix", "score"]
        );
        let score = row(&rows, "score");
        assert_eq!(score.change, MetricChange::Down);
        assert_eq!(score.better, Some(Better::Higher));
        assert!(score.regression);
        assert!((score.delta.unwrap() + 3.7).abs() < 1e-9);
        assert!((score.pct.unwrap() + 45.1219).abs() < 1e-3);
        let loss = row(&rows, "final_loss");
        assert_eq!((loss.change, loss.better, loss.regression), (MetricChange::Up, Some(Better::Lower), true));
        let ex = row(&rows, "examples");
        assert_eq!((ex.change, ex.better, ex.regression), (MetricChange::Down, None, false));
        assert_eq!(ex.delta, Some(-5.0));
        let mix = row(&rows, "mix");
        assert_eq!((mix.change, mix.delta, mix.regression), (MetricChange::Changed, None, false));
        assert_eq!(mix.b, Some(json!("curated+synthetic")));
    }

    /// Per-category pass rates, as in the V5.7 → V5.8 tables.
    #[test]
    fn nested_tables_flatten_to_dotted_names() {
        let a = map(json!({
            "pass_rate": 0.814,
            "categories": {"CRUD": {"total": 225, "passed": 141, "rate": 0.627}, "WebSockets": {"total": 225, "passed": 225, "rate": 1.0}},
            "runs": [{"loss": 1.2}, {"loss": 1.1}],
            "tags": ["a", "b"],
        }));
        let b = map(json!({
            "pass_rate": 0.85,
            "categories": {"CRUD": {"total": 225, "passed": 180, "rate": 0.8}, "WebSockets": {"total": 225, "passed": 200, "rate": 0.889}},
            "runs": [{"loss": 1.2}, {"loss": 0.9}],
            "tags": ["a", "b"],
            "new_metric": 3,
        }));
        let rows = diff_metrics(&a, &b);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "categories.CRUD.passed",
                "categories.CRUD.rate",
                "categories.CRUD.total",
                "categories.WebSockets.passed",
                "categories.WebSockets.rate",
                "categories.WebSockets.total",
                "new_metric",
                "pass_rate",
                "runs.0.loss",
                "runs.1.loss",
                "tags",
            ]
        );
        let regressed: Vec<&str> = rows.iter().filter(|r| r.regression).map(|r| r.name.as_str()).collect();
        assert_eq!(regressed, ["categories.WebSockets.rate"]);
        assert!(!row(&rows, "pass_rate").regression);
        assert_eq!(row(&rows, "pass_rate").change, MetricChange::Up);
        assert_eq!(row(&rows, "categories.CRUD.total").change, MetricChange::Same);
        assert_eq!(row(&rows, "runs.1.loss").change, MetricChange::Down);
        assert!(!row(&rows, "runs.1.loss").regression);
        assert_eq!(row(&rows, "tags").change, MetricChange::Same);
        assert_eq!(row(&rows, "new_metric").change, MetricChange::OnlyInB);
    }

    #[test]
    fn direction_from_names() {
        assert_eq!(direction("accuracy"), Some(Better::Higher));
        assert_eq!(direction("eval.acc"), Some(Better::Higher));
        assert_eq!(direction("categories.CRUD.rate"), Some(Better::Higher));
        assert_eq!(direction("accuracy.CRUD"), Some(Better::Higher));
        assert_eq!(direction("passRate"), Some(Better::Higher));
        assert_eq!(direction("error_rate"), Some(Better::Lower));
        assert_eq!(direction("train.final_loss"), Some(Better::Lower));
        assert_eq!(direction("eval.perplexity"), Some(Better::Lower));
        assert_eq!(direction("loss_by_category.CRUD"), Some(Better::Lower));
        assert_eq!(direction("examples"), None);
        assert_eq!(direction("accurate_count"), None);
        assert_eq!(direction("categories.CRUD.total"), None);
    }

    #[test]
    fn zero_baseline_has_no_percentage() {
        let rows = diff_metrics(&map(json!({"errors": 0})), &map(json!({"errors": 2})));
        assert_eq!((rows[0].delta, rows[0].pct, rows[0].regression), (Some(2.0), None, true));
    }

    #[test]
    fn trims_and_reads_fields() {
        assert_eq!(trim(b"  {\"a\":1}\r\n"), b"{\"a\":1}");
        assert_eq!(trim(b" \n"), b"");
        let v = json!({"meta": {"category": "CRUD"}, "category": null});
        assert_eq!(field_at(&v, "meta.category"), Some(&json!("CRUD")));
        assert_eq!(field_at(&v, "category"), None);
    }
}
