//! Writing dedup's outs: kept records (verbatim lines), clusters, lineage.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dvx_stage_api::StageFailure;
use serde_json::{json, Value};

use super::cluster::{Cluster, Dropped};
use super::corpus::Corpus;
use super::sketch::for_each_line;
use crate::records::RecordWriter;
use dvx_records::JsonlScan;

/// Similarities are reported to four decimals.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Out {
    fn create(path: &Path) -> Result<Self, StageFailure> {
        let file =
            File::create(path).map_err(|e| StageFailure::new(format!("cannot create {}: {e}", path.display())))?;
        Ok(Out { path: path.to_path_buf(), w: BufWriter::with_capacity(1 << 20, file) })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), StageFailure> {
        self.w
            .write_all(bytes)
            .and_then(|_| self.w.write_all(b"\n"))
            .map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))
    }

    fn json(&mut self, v: &Value) -> Result<(), StageFailure> {
        self.line(v.to_string().as_bytes())
    }

    fn finish(mut self) -> Result<(), StageFailure> {
        self.w.flush().map_err(|e| StageFailure::new(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// [`write_kept`] for a plain JSONL input: runs of kept lines that stand in
/// the input as the out writes them are copied in one write each, the way
/// the line-by-line path would write them. Returns how many were kept.
fn copy_kept(
    scan: JsonlScan,
    input: &Path,
    drops: &[Option<Dropped>],
    index: &mut usize,
    out: &mut RecordWriter,
) -> Result<usize, StageFailure> {
    let changed = || StageFailure::new(format!("{} changed while dedup was running", input.display()));
    let mut lines = Vec::new();
    let mut kept = 0;
    // Read ahead: the input is read while the writer compares and writes.
    let mut scan = scan.ahead()?;
    while let Some(block) = scan.next_block(&mut lines)? {
        // The run of whole kept lines not yet written: its bytes and count.
        let mut run = (0..0, 0);
        let flush = |run: &mut (std::ops::Range<usize>, usize), out: &mut RecordWriter| {
            let (bytes, n) = std::mem::replace(run, (0..0, 0));
            if n == 0 {
                return Ok(());
            }
            let text = simdutf8::basic::from_utf8(&block[bytes]).map_err(|_| changed())?;
            out.write_json_lines(text, n)
        };
        for l in &lines {
            let dropped = drops.get(*index).ok_or_else(changed)?;
            *index += 1;
            if dropped.is_some() {
                flush(&mut run, out)?;
                continue;
            }
            kept += 1;
            if l.whole && (run.1 == 0 || run.0.end == l.text.start) {
                run = (if run.1 == 0 { l.text.start } else { run.0.start }..l.text.end + 1, run.1 + 1);
                continue;
            }
            flush(&mut run, out)?;
            if l.whole {
                run = (l.text.start..l.text.end + 1, 1);
            } else {
                let text = l.text(block, input)?;
                out.write_json_line(text)?;
            }
        }
        flush(&mut run, out)?;
    }
    Ok(kept)
}

/// Copy the kept records in input order: a JSONL input's lines byte for
/// byte, other inputs as their records' JSON; the out's format follows its
/// extension, and `over` is the out's earlier content to write over
/// ([`RecordWriter::create_over`]) and where to say how much of it was
/// kept. `input_done` is called after each input.
pub fn write_kept(
    inputs: &[PathBuf],
    drops: &[Option<Dropped>],
    path: &Path,
    over: (Option<&Path>, Option<dvx_stage_api::KeptPrefix>),
    input_done: &dyn Fn(&PathBuf),
) -> Result<usize, StageFailure> {
    let mut out = RecordWriter::create_over(path, over.0)?.reporting_kept(over.1);
    let mut index = 0usize;
    let mut kept = 0usize;
    for input in inputs {
        if let Some(scan) = JsonlScan::open(input)? {
            kept += copy_kept(scan, input, drops, &mut index, &mut out)?;
            input_done(input);
            continue;
        }
        for_each_line(input, |_, text| {
            let dropped = drops
                .get(index)
                .ok_or_else(|| StageFailure::new(format!("{} changed while dedup was running", input.display())))?;
            if dropped.is_none() {
                out.write_json_line(text)?;
                kept += 1;
            }
            index += 1;
            Ok(())
        })?;
        input_done(input);
    }
    if index != drops.len() {
        return Err(StageFailure::new("an input changed while dedup was running"));
    }
    out.finish()?;
    Ok(kept)
}

/// Where a record is, as lineage and clusters show it.
fn place(corpus: &Corpus, id: u32) -> Value {
    let i = id as usize;
    let mut v = json!({
        "source": corpus.sources[corpus.source[i] as usize],
        "line": corpus.line[i],
    });
    if corpus.is_ref(id) {
        v["reference"] = json!(true);
    } else {
        v["index"] = json!(i);
    }
    v
}

/// One line per cluster: `{"kept", "dropped", "jaccard"}` with 0-based input
/// indices; a cluster kept by a reference has `"kept": null` and `"reference"`.
pub fn write_clusters(
    corpus: &Corpus,
    clusters: &[Cluster],
    drops: &[Option<Dropped>],
    path: &Path,
) -> Result<(), StageFailure> {
    let mut out = Out::create(path)?;
    for c in clusters {
        let jaccard: Vec<f64> =
            c.dropped.iter().map(|&d| round4(drops[d as usize].map_or(0.0, |x| x.jaccard))).collect();
        let mut v = json!({});
        if corpus.is_ref(c.keeper) {
            v["kept"] = Value::Null;
            let k = c.keeper as usize;
            v["reference"] = json!({"source": corpus.sources[corpus.source[k] as usize], "line": corpus.line[k]});
        } else {
            v["kept"] = json!(c.keeper);
        }
        v["dropped"] = json!(c.dropped);
        v["jaccard"] = json!(jaccard);
        out.json(&v)?;
    }
    out.finish()
}

/// One line per dropped record, in input order: where it is, how it matched
/// and the record kept in its place.
pub fn write_lineage(corpus: &Corpus, drops: &[Option<Dropped>], path: &Path) -> Result<(), StageFailure> {
    let mut out = Out::create(path)?;
    for (i, d) in drops.iter().enumerate() {
        let Some(d) = d else { continue };
        let v = json!({
            "index": i,
            "source": corpus.sources[corpus.source[i] as usize],
            "line": corpus.line[i],
            "match": if d.exact { "exact" } else { "near" },
            "jaccard": round4(d.jaccard),
            "duplicate_of": place(corpus, d.keeper),
        });
        out.json(&v)?;
    }
    out.finish()
}
