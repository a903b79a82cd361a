//! `kind: minhash-index` — sketch JSONL records into a signature file (see
//! [`super::sigfile`]) that `dedup` accepts as a reference dep, so a large
//! reference set is sketched once and cached like any output. Each distinct
//! normalised text is stored once (its first record), which is all a dedup
//! reference needs.

use std::collections::HashSet;

use dvx_stage_api::{Count, Metrics, ParamError, Shape, StageContext, StageFailure, TypedStage};
use serde_json::json;

use super::params::IndexParams;
use super::sigfile::{self, Entry, Header};
use super::sketch::{read_chunks, Sketcher};
use super::{source_name, SCHEME_VERSION};
use crate::field_check::FieldsSeen;

/// The `minhash-index` stage kind.
pub struct MinhashIndex;

impl TypedStage for MinhashIndex {
    const KIND: &'static str = "minhash-index";
    const VERSION: u32 = SCHEME_VERSION * 1000 + sigfile::FORMAT;
    const DEPS: Count = Count::AtLeast(1);
    const OUTS: Count = Count::Exactly(1);
    const DEPS_ARE: &'static str = "JSONL";
    const OUTS_ARE: &'static str = "the signature file";
    type Params = IndexParams;
    type Prepared = IndexParams;

    fn prepare(&self, p: IndexParams, _shape: Shape) -> Result<IndexParams, ParamError> {
        p.validate()?;
        Ok(p)
    }

    fn execute(&self, p: &IndexParams, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let pool = crate::support::pool(ctx.threads)?;
        let (deps, out, cwd) = (ctx.deps, &ctx.outs[0], ctx.cwd);
        let sources = deps.iter().map(|d| source_name(cwd, d)).collect();
        let header = Header { spec: p.spec(), sources };
        let sk = Sketcher::new(header.spec.clone(), p.num_perm, None)
            .watching(FieldsSeen::new().name_all("fields", &header.spec.fields));
        let mut writer = sigfile::Writer::create(out, &header)?;
        let mut seen = HashSet::new();
        let mut records = 0usize;
        pool.install(|| {
            for (source, dep) in deps.iter().enumerate() {
                if sigfile::is_signature_file(dep) {
                    return Err(StageFailure::bad_input(format!("{} is already a signature file", dep.display())));
                }
                read_chunks(dep, |file, chunk| {
                    let parsed = sk.parse_chunk(file, &chunk)?;
                    records += parsed.len();
                    let fresh: Vec<_> = parsed.iter().filter(|p| seen.insert(p.exact)).collect();
                    let norms: Vec<&str> = fresh.iter().map(|p| p.norm.as_str()).collect();
                    for (p, s) in fresh.iter().zip(sk.sketch_all(&norms)) {
                        writer.write(&Entry {
                            source: source as u32,
                            line: p.line,
                            exact: p.exact,
                            sig: s.sig,
                            shingles: s.shingles,
                        })?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        sk.check_fields()?;
        let distinct = writer.finish()?;
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        writeln!(ctx.log, "minhash-index: {records} records, {distinct} distinct texts, {bytes} bytes")?;
        let mut m = Metrics::new();
        m.insert("records".into(), json!(records));
        m.insert("distinct".into(), json!(distinct));
        m.insert("bytes".into(), json!(bytes));
        Ok(m)
    }
}
