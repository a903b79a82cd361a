//! Test harness: run a stage on JSONL written into a temp folder.

use std::path::PathBuf;

use dvx_stage_api::{Cancel, Http, Memo, MemoryMemo, Metrics, Stage, StageContext, StageShape, Typed, TypedStage};
use serde_json::Value;

/// What a stage run left behind.
#[derive(Debug)]
pub struct Run {
    pub metrics: Metrics,
    pub log: String,
    pub outs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Run {
    /// The text of outs[i].
    pub fn text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.outs[i]).unwrap()
    }

    /// The records of outs[i].
    pub fn records(&self, i: usize) -> Vec<Value> {
        self.text(i).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// One string field of each record of outs[i].
    pub fn column(&self, i: usize, key: &str) -> Vec<String> {
        self.records(i).iter().map(|r| r[key].as_str().unwrap_or("").to_string()).collect()
    }

    /// A metric.
    pub fn metric(&self, key: &str) -> &Value {
        &self.metrics[key]
    }
}

/// JSONL text from values, one per line.
pub fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// Check then execute `kind` (through the [`Typed`] adapter) with `inputs`
/// as dep files and `outs` as out names. A check error or a failure comes
/// back as its message.
pub fn run<T: TypedStage>(
    kind: T,
    inputs: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
) -> Result<Run, String> {
    run_with_memo(kind, inputs, outs, params, threads, &MemoryMemo::default())
}

/// [`run`] with the memo the stage gets: pass one [`MemoryMemo`] to two runs
/// to see what the second one is served from it.
pub fn run_with_memo<T: TypedStage>(
    kind: T,
    inputs: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
    memo: &dyn Memo,
) -> Result<Run, String> {
    run_with(kind, inputs, outs, params, threads, Services { memo, ..Services::default() })
}

/// The services a stage run by [`run_with`] gets through its context.
pub struct Services<'a> {
    /// Its memo.
    pub memo: &'a dyn Memo,
    /// Its cancellation token: trip a clone to see the stage stop.
    pub cancel: Cancel,
    /// Its HTTP client (none by default, as a caller that supplies none).
    pub http: Option<&'a dyn Http>,
}

impl Default for Services<'_> {
    fn default() -> Self {
        static NO_MEMO: dvx_stage_api::NoMemo = dvx_stage_api::NoMemo;
        Services { memo: &NO_MEMO, cancel: Cancel::new(), http: None }
    }
}

/// [`run`] with the given services.
pub fn run_with<T: TypedStage>(
    kind: T,
    inputs: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
    services: Services<'_>,
) -> Result<Run, String> {
    let memo = services.memo;
    let stage = Typed::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let deps: Vec<PathBuf> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let p = dir.path().join(format!("in{i}.jsonl"));
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect();
    let out_names = outs;
    let outs: Vec<PathBuf> = outs.iter().map(|o| dir.path().join("out").join(o)).collect();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
    stage.check(&shape).map_err(|e| format!("{}: {}", e.field.unwrap_or_default(), e.message))?;
    stage.check_outs(out_names).map_err(|e| format!("outs.{}: {}", e.index, e.message))?;
    let mut log = Vec::new();
    let mut ctx = StageContext::new("t", dir.path(), &deps, &outs, &params, &mut log)
        .with_threads(threads)
        .with_memo(memo)
        .with_cancel(services.cancel)
        .with_http(services.http);
    let metrics = stage.execute(&mut ctx).map_err(|e| e.message)?;
    Ok(Run { metrics, log: String::from_utf8(log).unwrap(), outs, _dir: dir })
}

/// The params of stage `name` in a shipped pipeline YAML.
pub fn pipeline_params(pipeline: &str, name: &str) -> Value {
    let path = format!("{}/../../pipelines/{pipeline}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    doc["stages"][name]["params"].clone()
}

/// The path of a file shipped under `examples/`.
pub fn example(rel: &str) -> PathBuf {
    PathBuf::from(format!("{}/../../examples/{rel}", env!("CARGO_MANIFEST_DIR")))
}
