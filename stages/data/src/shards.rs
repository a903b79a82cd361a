//! How the record-wise kinds are sharded (`shards: N`, see
//! [`dvx_stage_api::RecordShards`]): one splitter and one merger for all of
//! them, and per kind only what differs — which params make the output of a
//! record depend on other records (then the stage cannot be sharded), and
//! how the shards' metrics add up.
//!
//! Splitting keeps a JSONL input's lines byte for byte (blank lines are
//! dropped: no reader yields a record for them); any other container is
//! read as records and written as JSONL. A part file keeps the dep's file
//! name, so records that name their file (`_file`) name the same one.
//! Merging concatenates plain JSONL outs (the writer's bytes for a record do
//! not depend on its neighbours) and re-writes the records of any other
//! container through the same writer.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dvx_records::{Format, WriteFormat};
use dvx_stage_api::{Metrics, RecordShards, Registry, StageFailure};
use serde_json::{json, Map, Value};

use crate::records::{RecordReader, RecordWriter};
use crate::support::round4;

/// Register the shardable kinds' [`RecordShards`].
pub fn register(r: &mut Registry) {
    r.register_shards("filter", Arc::new(RecordWise { refuse: skip_with_rejects, metrics: filter_metrics }));
    r.register_shards("convert", Arc::new(RecordWise { refuse: skip_with_rejects, metrics: sum_counts }));
    r.register_shards("score", Arc::new(RecordWise { refuse: score_refuses, metrics: score_metrics }));
}

/// A record-wise kind: the shared split and merge, and its own checks and metrics.
struct RecordWise {
    /// Why these params (with this many outs) cannot be sharded.
    refuse: fn(&Value, usize) -> Option<String>,
    /// The stage's metrics from its shards'.
    metrics: fn(&[Metrics]) -> Metrics,
}

impl RecordShards for RecordWise {
    fn check(&self, params: &Value, deps: usize, outs: usize) -> Result<(), String> {
        if deps != 1 {
            return Err(format!("a sharded stage reads one dep (its records), not {deps}"));
        }
        (self.refuse)(params, outs).map_or(Ok(()), Err)
    }

    fn split(&self, input: &Path, parts: &[PathBuf]) -> Result<Vec<usize>, StageFailure> {
        let format = dvx_records::detect(input).map_err(|e| io_failure(input, e))?;
        if format == Format::Jsonl {
            split_lines(input, parts)
        } else {
            split_records(input, parts)
        }
    }

    fn merge(&self, parts: &[PathBuf], out: &Path) -> Result<(), StageFailure> {
        if WriteFormat::for_path(out) == Ok(WriteFormat::Jsonl) {
            let mut w = BufWriter::new(File::create(out).map_err(|e| io_failure(out, e))?);
            for p in parts {
                let mut r = File::open(p).map_err(|e| io_failure(p, e))?;
                std::io::copy(&mut r, &mut w).map_err(|e| io_failure(out, e))?;
            }
            return w.flush().map_err(|e| io_failure(out, e));
        }
        let mut w = RecordWriter::create(out)?;
        for p in parts {
            for item in RecordReader::open(p)? {
                w.write(&item?.1)?;
            }
        }
        w.finish().map(drop)
    }

    fn merge_metrics(&self, parts: &[Metrics]) -> Metrics {
        (self.metrics)(parts)
    }
}

fn io_failure(path: &Path, e: std::io::Error) -> StageFailure {
    StageFailure::new(format!("{}: {e}", path.display()))
}

/// Where record `k` of `total` goes among `n` parts: part `i` holds `[i·total/n, (i+1)·total/n)`.
fn bounds(total: usize, n: usize) -> Vec<usize> {
    (0..=n).map(|i| (i as u128 * total as u128 / n as u128) as usize).collect()
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// JSONL by lines, bytes untouched (the last line gains a newline if it had none).
fn split_lines(input: &Path, parts: &[PathBuf]) -> Result<Vec<usize>, StageFailure> {
    let open = || File::open(input).map(BufReader::new).map_err(|e| io_failure(input, e));
    let mut total = 0;
    let mut line = Vec::new();
    let mut r = open()?;
    while r.read_until(b'\n', &mut line).map_err(|e| io_failure(input, e))? > 0 {
        total += usize::from(!is_blank(&line));
        line.clear();
    }
    let ends = bounds(total, parts.len());
    let mut counts = vec![0; parts.len()];
    let mut r = open()?;
    let mut seen = 0;
    for (i, part) in parts.iter().enumerate() {
        let mut w = BufWriter::new(File::create(part).map_err(|e| io_failure(part, e))?);
        while seen < ends[i + 1] {
            line.clear();
            if r.read_until(b'\n', &mut line).map_err(|e| io_failure(input, e))? == 0 {
                return Err(StageFailure::new(format!("{} changed while it was being split", input.display())));
            }
            if is_blank(&line) {
                continue;
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            w.write_all(&line).map_err(|e| io_failure(part, e))?;
            seen += 1;
            counts[i] += 1;
        }
        w.flush().map_err(|e| io_failure(part, e))?;
    }
    Ok(counts)
}

/// Any other container: records, written as JSONL lines.
fn split_records(input: &Path, parts: &[PathBuf]) -> Result<Vec<usize>, StageFailure> {
    let mut total = 0;
    for item in RecordReader::open(input)? {
        item?;
        total += 1;
    }
    let ends = bounds(total, parts.len());
    let mut counts = vec![0; parts.len()];
    let mut records = RecordReader::open(input)?;
    for (i, part) in parts.iter().enumerate() {
        let mut w = BufWriter::new(File::create(part).map_err(|e| io_failure(part, e))?);
        while counts[i] < ends[i + 1] - ends[i] {
            let Some(item) = records.next() else {
                return Err(StageFailure::new(format!("{} changed while it was being split", input.display())));
            };
            let text = serde_json::to_string(&item?.1).expect("a record serialises");
            writeln!(w, "{text}").map_err(|e| io_failure(part, e))?;
            counts[i] += 1;
        }
        w.flush().map_err(|e| io_failure(part, e))?;
    }
    Ok(counts)
}

/// `filter` and `convert` write malformed or rejected records with their
/// line in the input (`_line`) to the second out: a shard's line is not the
/// whole input's.
fn skip_with_rejects(params: &Value, outs: usize) -> Option<String> {
    (outs > 1 && params.get("on_error").and_then(Value::as_str) == Some("skip")).then(|| {
        "with `on_error: skip` and a second out, rejected records carry their input line, which a shard does not \
         know; drop the second out or `shards:`"
            .to_string()
    })
}

/// `score` with `top_k` keeps the best of all records: not record-wise.
fn score_refuses(params: &Value, _outs: usize) -> Option<String> {
    params.get("top_k").is_some_and(|v| !v.is_null()).then(|| {
        "`top_k` keeps the best of all records, so the stage cannot be split into record ranges; use `min_score` \
         or drop `shards:`"
            .to_string()
    })
}

/// Metrics added up: integers summed, objects merged key by key (in first
/// appearance order), anything else kept from the first shard that has it.
fn sum_counts(parts: &[Metrics]) -> Metrics {
    let mut out = Map::new();
    for m in parts {
        add_into(&mut out, m);
    }
    out
}

fn add_into(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
            (Some(Value::Object(a)), Value::Object(b)) => add_into(a, b),
            (Some(a @ Value::Number(_)), Value::Number(b)) if a.is_u64() && b.is_u64() => {
                *a = json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0));
            }
            (Some(a @ Value::Number(_)), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                *a = json!(a.as_i64().unwrap_or(0) + b.as_i64().unwrap_or(0));
            }
            _ => {}
        }
    }
}

/// `filter`: counts add up; each `rate` is passed / total again.
fn filter_metrics(parts: &[Metrics]) -> Metrics {
    let mut m = sum_counts(parts);
    fn rate(t: &mut Map<String, Value>) {
        let (total, passed) = (t.get("total").and_then(Value::as_u64), t.get("passed").and_then(Value::as_u64));
        if let (Some(total), Some(passed)) = (total, passed) {
            let r = if total == 0 { 0.0 } else { passed as f64 / total as f64 };
            t.insert("rate".into(), json!(round4(r)));
        }
    }
    rate(&mut m);
    if let Some(Value::Object(cats)) = m.get_mut("categories") {
        cats.values_mut().filter_map(Value::as_object_mut).for_each(rate);
    }
    m
}

/// `score`: counts add up; `score`/`kept_score` take the least min, the
/// greatest max and the mean weighted by the shards' records; so do
/// `feature_means`. A mean comes from the shards' rounded means, so its
/// last decimal may differ from an unsharded run's.
fn score_metrics(parts: &[Metrics]) -> Metrics {
    let mut m = sum_counts(parts);
    let n_in: Vec<f64> = parts.iter().map(|p| p.get("records_in").and_then(Value::as_f64).unwrap_or(0.0)).collect();
    let n_out: Vec<f64> = parts.iter().map(|p| p.get("records_out").and_then(Value::as_f64).unwrap_or(0.0)).collect();
    for (field, weights) in [("score", &n_in), ("kept_score", &n_out)] {
        let stats: Vec<(&Map<String, Value>, f64)> = parts
            .iter()
            .zip(weights.iter())
            .filter_map(|(p, w)| p.get(field).and_then(Value::as_object).map(|s| (s, *w)))
            .collect();
        if stats.is_empty() {
            continue;
        }
        let get = |s: &Map<String, Value>, k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let min = stats.iter().map(|(s, _)| get(s, "min")).fold(f64::INFINITY, f64::min);
        let max = stats.iter().map(|(s, _)| get(s, "max")).fold(f64::NEG_INFINITY, f64::max);
        let n: f64 = stats.iter().map(|(_, w)| w).sum();
        let mean = stats.iter().map(|(s, w)| get(s, "mean") * w).sum::<f64>() / n.max(1.0);
        m.insert(field.into(), json!({"min": round4(min), "mean": round4(mean), "max": round4(max)}));
    }
    let total: f64 = n_in.iter().sum();
    if let Some(Value::Object(means)) = m.get_mut("feature_means") {
        for (label, v) in means.iter_mut() {
            let sum: f64 = parts
                .iter()
                .zip(&n_in)
                .filter_map(|(p, w)| p.get("feature_means")?.get(label)?.as_f64().map(|x| x * w))
                .sum();
            *v = json!(round4(sum / total.max(1.0)));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(kind: &str) -> Arc<dyn RecordShards> {
        let mut r = Registry::new();
        register(&mut r);
        r.shards(kind).unwrap().clone()
    }

    #[test]
    fn split_then_merge_gives_the_input_back_and_ranges_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let lines: Vec<String> = (0..10).map(|i| format!("{{\"i\": {i},  \"s\":\"\\u00e9\"}}")).collect();
        std::fs::write(&input, format!("{}\n\n{}", lines[..5].join("\n"), lines[5..].join("\n"))).unwrap();
        let parts: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("p{i}.jsonl"))).collect();
        let s = shards("filter");
        assert_eq!(s.split(&input, &parts).unwrap(), vec![3, 3, 4]);
        assert_eq!(std::fs::read_to_string(&parts[0]).unwrap(), format!("{}\n", lines[..3].join("\n")));
        let out = dir.path().join("out.jsonl");
        s.merge(&parts, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("{}\n", lines.join("\n")));
        // More parts than records: the first ones are empty.
        let many: Vec<PathBuf> = (0..12).map(|i| dir.path().join(format!("m{i}.jsonl"))).collect();
        let counts = s.split(&input, &many).unwrap();
        assert_eq!(counts.iter().sum::<usize>(), 10);
        assert_eq!(counts[0], 0);
    }

    #[test]
    fn params_that_need_every_record_are_refused() {
        assert!(shards("score").check(&json!({"top_k": 3}), 1, 1).unwrap_err().contains("top_k"));
        assert!(shards("score").check(&json!({"min_score": 1.0}), 1, 1).is_ok());
        assert!(shards("filter").check(&json!({"on_error": "skip"}), 1, 2).is_err());
        assert!(shards("filter").check(&json!({"on_error": "skip"}), 1, 1).is_ok());
        assert!(shards("convert").check(&json!({}), 2, 1).unwrap_err().contains("one dep"));
    }

    #[test]
    fn filter_metrics_add_up_and_rates_are_recomputed() {
        let a = json!({"total": 3, "passed": 1, "failed": 2, "rate": 0.3333, "categories": {"x": {"total": 3, "passed": 1, "failed": 2, "rate": 0.3333}}, "rejected_by": {"x": 2}});
        let b = json!({"total": 1, "passed": 1, "failed": 0, "rate": 1.0, "categories": {"x": {"total": 1, "passed": 1, "failed": 0, "rate": 1.0}}, "rejected_by": {}});
        let m = shards("filter").merge_metrics(&[a.as_object().unwrap().clone(), b.as_object().unwrap().clone()]);
        assert_eq!(
            Value::Object(m),
            json!({"total": 4, "passed": 2, "failed": 2, "rate": 0.5, "categories": {"x": {"total": 4, "passed": 2, "failed": 2, "rate": 0.5}}, "rejected_by": {"x": 2}})
        );
    }
}
