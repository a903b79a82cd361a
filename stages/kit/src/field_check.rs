//! Typo safety for params that name record fields (`category_field`,
//! `stratify_by`, a rule's `field`, `text_fields` …): a field named there
//! that occurs in no input record is almost always a misspelling, and
//! running on would silently drop or misfile every record. [`FieldsSeen`]
//! watches the records as a kind streams them and, at the end, turns such a
//! field into a bad-input failure that names it, lists the fields the
//! records do have and suggests the closest.
//!
//! A field missing from some records but present in others is fine, and so
//! is an empty input: only "in no record at all" is an error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use dvx_stage_api::StageFailure;
use serde_json::Value;

use crate::records::{field, Record, TextSources};

/// Records whose field names are collected for the message; enough to show
/// what the data looks like without holding on to a whole file's keys.
const SAMPLED_RECORDS: usize = 1000;
/// Field names listed in the message at most.
const LISTED_FIELDS: usize = 30;

/// One field named in params.
struct Named {
    /// Where in params it is named (`category_field`, `rules.CRUD.field`).
    param: String,
    /// The dotted field path.
    field: String,
    found: AtomicBool,
}

/// Which named fields occur in at least one record. `observe` takes `&self`
/// and may be called from the threads of a pool; once every named field has
/// been found it costs one atomic load per record.
#[derive(Default)]
pub struct FieldsSeen {
    named: Vec<Named>,
    pending: AtomicUsize,
    /// Records observed while some field was still pending.
    sampled: AtomicUsize,
    /// Field names of the sampled records (top level, and the siblings of a
    /// pending nested path), for the message.
    keys: Mutex<BTreeSet<String>>,
    /// Where the records' text came from, when the kind reads their text.
    text: Option<TextSources>,
}

impl FieldsSeen {
    /// Nothing named yet.
    pub fn new() -> Self {
        FieldsSeen::default()
    }

    /// Expect `field` (a dotted path), named in params at `param`.
    pub fn name(mut self, param: impl Into<String>, field: &str) -> Self {
        self.named.push(Named { param: param.into(), field: field.to_string(), found: AtomicBool::new(false) });
        *self.pending.get_mut() += 1;
        self
    }

    /// Expect each of `fields`, named in params at `param.0`, `param.1` ….
    pub fn name_all(self, param: &str, fields: &[String]) -> Self {
        fields.iter().enumerate().fold(self, |s, (i, f)| s.name(format!("{param}.{i}"), f))
    }

    /// Also tally where the records' text comes from (`fields`, or their
    /// turns when empty), for [`FieldsSeen::text_report`].
    pub fn text_from(mut self, fields: &[String]) -> Self {
        self.text = Some(TextSources::new(fields));
        self
    }

    /// The log lines saying which shape and fields the records' text came
    /// from, with a warning when some texts hold no answer.
    pub fn text_report(&self, stage: &str) -> Option<String> {
        self.text.as_ref()?.report(stage)
    }

    /// Note which named fields `record` has.
    pub fn observe(&self, record: &Record) {
        if let Some(t) = &self.text {
            t.observe(record);
        }
        if self.pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let sample = self.sampled.fetch_add(1, Ordering::Relaxed) < SAMPLED_RECORDS;
        let mut keys = sample.then(|| self.keys.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(k) = keys.as_mut() {
            k.extend(record.keys().cloned());
        }
        for n in &self.named {
            if n.found.load(Ordering::Relaxed) {
                continue;
            }
            if field(record, &n.field).is_some() {
                if !n.found.swap(true, Ordering::Relaxed) {
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                }
            } else if let (Some(k), Some((parent, _))) = (keys.as_mut(), n.field.rsplit_once('.')) {
                // A nested path: its siblings are the likely fix.
                if let Some(Value::Object(m)) = field(record, parent) {
                    k.extend(m.keys().map(|c| format!("{parent}.{c}")));
                }
            }
        }
    }

    /// Which named fields (the first 64, by position) `record` has, as a
    /// bit set: what a memoised record contributes when it is replayed
    /// through [`FieldsSeen::mark`] instead of observed.
    pub fn present(&self, record: &Record) -> u64 {
        self.named
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, n)| field(record, &n.field).is_some())
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// Whether [`FieldsSeen::present`] covers every named field.
    pub fn fits_mask(&self) -> bool {
        self.named.len() <= 64
    }

    /// Count a record seen earlier that had the fields in `mask`.
    pub fn mark(&self, mask: u64) {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.sampled.fetch_add(1, Ordering::Relaxed);
        for (i, n) in self.named.iter().take(64).enumerate() {
            if mask & (1 << i) != 0 && !n.found.swap(true, Ordering::Relaxed) {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Every named field that occurs in no record, as one bad-input failure;
    /// fine when no record was observed at all.
    pub fn check(&self) -> Result<(), StageFailure> {
        let missing: Vec<&Named> = self.named.iter().filter(|n| !n.found.load(Ordering::Relaxed)).collect();
        if missing.is_empty() || self.sampled.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<String> = missing
            .iter()
            .map(|n| {
                let hint = match closest(&n.field, keys.iter().map(String::as_str)) {
                    Some(best) => format!(" (did you mean `{best}`?)"),
                    None => String::new(),
                };
                format!("params.{}: no input record has a field `{}`{hint}", n.param, n.field)
            })
            .collect();
        let mut listed: Vec<&str> = keys.iter().map(String::as_str).take(LISTED_FIELDS).collect();
        if keys.len() > LISTED_FIELDS {
            listed.push("…");
        }
        Err(StageFailure::bad_input(format!(
            "{}\nthe records have the fields: {}",
            lines.join("\n"),
            listed.join(", ")
        )))
    }
}

/// The candidate closest to `word`, if any is close enough to be a likely
/// misspelling (Jaro-Winkler, or an edit distance of a third of the word,
/// which catches short transpositions).
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, c)| *score > 0.8 || strsim::damerau_levenshtein(word, c) <= (word.len() / 3).max(1))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_field_in_some_records_is_fine() {
        let seen = FieldsSeen::new().name("category_field", "category").name("rules.x.field", "meta.score");
        seen.observe(&rec(json!({"text": "a"})));
        seen.observe(&rec(json!({"text": "b", "category": null, "meta": {"score": 1}})));
        seen.observe(&rec(json!({"text": "c"})));
        seen.check().unwrap();
    }

    #[test]
    fn an_empty_input_is_fine() {
        FieldsSeen::new().name("stratify_by", "categroy").check().unwrap();
    }

    #[test]
    fn a_field_in_no_record_is_named_with_a_suggestion() {
        let seen = FieldsSeen::new().name("category_field", "categroy").name_all("text_fields", &["text".into()]);
        seen.observe(&rec(json!({"category": "A", "text": "x"})));
        seen.observe(&rec(json!({"category": "B", "text": "y", "id": 2})));
        let e = seen.check().unwrap_err();
        assert_eq!(e.kind, dvx_stage_api::FailureKind::BadInput);
        assert_eq!(
            e.message,
            "params.category_field: no input record has a field `categroy` (did you mean `category`?)\n\
             the records have the fields: category, id, text"
        );
    }

    #[test]
    fn nested_paths_suggest_their_siblings_and_every_miss_is_listed() {
        let seen = FieldsSeen::new().name("rules.A.field", "meta.qualty").name_all("hash_fields", &["zzz".into()]);
        seen.observe(&rec(json!({"meta": {"quality": 3}, "text": "x"})));
        let e = seen.check().unwrap_err();
        let lines: Vec<&str> = e.message.lines().collect();
        assert_eq!(
            lines,
            [
                "params.rules.A.field: no input record has a field `meta.qualty` (did you mean `meta.quality`?)",
                "params.hash_fields.0: no input record has a field `zzz`",
                "the records have the fields: meta, meta.quality, text",
            ]
        );
    }

    #[test]
    fn observing_from_many_threads_agrees() {
        let seen = FieldsSeen::new().name("f", "late");
        let recs: Vec<Record> =
            (0..5000).map(|i| rec(if i == 4321 { json!({"late": 1}) } else { json!({"a": i}) })).collect();
        std::thread::scope(|s| {
            for part in recs.chunks(1000) {
                let seen = &seen;
                s.spawn(move || part.iter().for_each(|r| seen.observe(r)));
            }
        });
        seen.check().unwrap();
    }
}
