//! Comparing two versions: which stages changed, how their params differ
//! and how their metrics moved. Plain data; rendering is the caller's, and
//! so is anything that looks inside outputs (the CLI compares JSONL
//! records) — the engine knows no dataset.
//!
//! - **Stages**, matched by name, in B's order (the newer run's, which is
//!   the pipeline's), then those only A has: only in A, only in B, changed
//!   (the keys differ) or same.
//! - **Params** of every stage, flattened to dotted names
//!   (`optimizer.lr`), one row per name either side has.
//! - **Metrics** of every stage both versions have, flattened the same way
//!   (arrays of objects by index, `runs.0.loss`); other values (strings,
//!   booleans, arrays of scalars) are compared whole. A number that moved
//!   by no more than its [`Tolerance`] (relative to A) is `within_tolerance`
//!   and never a regression; beyond it, a metric that moved against its
//!   [`Better`] direction is a [`MetricRow::regression`]. Which way is better
//!   is the caller's to say ([`DiffOptions::direction`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dvx_cache::{Cache, Hash, OutputKind, VersionRecord};
use serde::Serialize;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::version::{body_of, VersionBody};

/// Says which way a metric should move, from its stage and dotted name.
pub type Direction = Arc<dyn Fn(&str, &str) -> Option<Better> + Send + Sync>;

/// What to compare, and how strictly.
#[derive(Clone, Default)]
pub struct DiffOptions {
    /// Only this stage: its row in the stage table, its params and metrics.
    pub stage: Option<String>,
    /// How far a number may move before it counts as moved for the worse.
    pub tolerance: Tolerance,
    /// Which way each metric should move; none: no metric is a regression.
    pub direction: Option<Direction>,
}

impl std::fmt::Debug for DiffOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffOptions")
            .field("stage", &self.stage)
            .field("tolerance", &self.tolerance)
            .field("direction", &self.direction.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Relative tolerances: `|B − A| ≤ tol × |A|` is within tolerance (with
/// A = 0, `|B| ≤ tol`).
#[derive(Debug, Clone, Serialize)]
pub struct Tolerance {
    /// For every metric not named in `per_metric`.
    pub default: f64,
    /// Per metric: a dotted name (`eval.loss`), a name's last part (`loss`,
    /// which matches `eval.loss` too) or `STAGE:NAME` for one stage's.
    pub per_metric: BTreeMap<String, f64>,
}

/// The default relative tolerance: 1% (a loss from 5.5067 to 5.5088, a
/// pass rate from 0.850 to 0.848 are noise, not regressions).
pub const DEFAULT_TOLERANCE: f64 = 0.01;

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { default: DEFAULT_TOLERANCE, per_metric: BTreeMap::new() }
    }
}

impl Tolerance {
    /// The tolerance of metric `name` of `stage` (see [`per_metric`]).
    pub fn of(&self, stage: &str, name: &str) -> f64 {
        per_metric(&self.per_metric, stage, name).copied().unwrap_or(self.default)
    }
}

/// What `given` says for metric `name` of `stage`: under `STAGE:NAME`
/// first, then the whole dotted name, then ever shorter tails of it (so
/// `loss` also matches `eval.loss`).
pub fn per_metric<'a, T>(given: &'a BTreeMap<String, T>, stage: &str, name: &str) -> Option<&'a T> {
    if let Some(t) = given.get(&format!("{stage}:{name}")) {
        return Some(t);
    }
    let mut tail = name;
    loop {
        if let Some(t) = given.get(tail) {
            return Some(t);
        }
        tail = tail.split_once('.')?.1;
    }
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
    /// Every stage of either version, B's order first, then A's others.
    pub stages: Vec<StageChange>,
    /// Params of every stage either version has, in the stages' order.
    pub params: Vec<ParamRow>,
    /// Metrics of the stages both versions have (stages without metrics on
    /// either side are left out), in the stages' order.
    pub metrics: Vec<StageMetrics>,
    /// The tolerances applied.
    pub tolerance: Tolerance,
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

/// One flattened param of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct ParamRow {
    /// The stage.
    pub stage: String,
    /// Dotted name below `params`.
    pub name: String,
    /// Value in A (none: not set, or no such stage).
    pub a: Option<Value>,
    /// Value in B.
    pub b: Option<Value>,
    /// A and B differ.
    pub changed: bool,
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
    /// A number that moved, but no further than its tolerance.
    pub within_tolerance: bool,
    /// Which way is better, as [`DiffOptions::direction`] says.
    pub better: Option<Better>,
    /// It moved the wrong way, beyond its tolerance.
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

    let stages: Vec<StageChange> = stage_changes(&body_a, &body_b).into_iter().filter(|c| wanted(&c.name)).collect();

    let params_of = |body: &VersionBody, name: &str| {
        body.stages.iter().find(|s| s.name == name).map(|s| flattened(&s.params)).unwrap_or_default()
    };
    let mut params = Vec::new();
    for c in &stages {
        let (pa, pb) = (params_of(&body_a, &c.name), params_of(&body_b, &c.name));
        let names: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
        for n in names {
            let (a, b) = (pa.get(n).cloned(), pb.get(n).cloned());
            params.push(ParamRow { stage: c.name.clone(), name: n.clone(), changed: a != b, a, b });
        }
    }

    let mut metrics = Vec::new();
    for c in stages.iter().filter(|c| matches!(c.state, StageChangeKind::Same | StageChangeKind::Changed)) {
        let ma = metrics_of(&rec_a, &c.name);
        let mb = metrics_of(&rec_b, &c.name);
        if ma.is_empty() && mb.is_empty() {
            continue;
        }
        metrics.push(StageMetrics { stage: c.name.clone(), rows: diff_metrics(&c.name, &ma, &mb, opts) });
    }
    let regressions = metrics.iter().flat_map(|m| &m.rows).filter(|r| r.regression).count();
    Ok(VersionDiff {
        a: a.clone(),
        b: b.clone(),
        stage: opts.stage.clone(),
        stages,
        params,
        metrics,
        tolerance: opts.tolerance.clone(),
        regressions,
    })
}

/// Stages in B's order, then those only A has.
fn stage_changes(a: &VersionBody, b: &VersionBody) -> Vec<StageChange> {
    let mut out = Vec::new();
    for t in &b.stages {
        let other = a.stages.iter().find(|s| s.name == t.name);
        let state = match other {
            None => StageChangeKind::OnlyInB,
            Some(s) if t.key == s.key && t.key.is_some() => StageChangeKind::Same,
            Some(_) => StageChangeKind::Changed,
        };
        out.push(StageChange {
            name: t.name.clone(),
            kind: t.kind.clone(),
            state,
            key_a: other.and_then(|s| s.key.clone()),
            key_b: t.key.clone(),
        });
    }
    for s in &a.stages {
        if !b.stages.iter().any(|t| t.name == s.name) {
            out.push(StageChange {
                name: s.name.clone(),
                kind: s.kind.clone(),
                state: StageChangeKind::OnlyInA,
                key_a: s.key.clone(),
                key_b: None,
            });
        }
    }
    out
}

/// Every file among a version's outputs, folder outputs listed file by
/// file: workspace path (`out.jsonl`, `folder/part.jsonl`) → (stage, object).
/// For callers that look inside outputs.
pub fn output_files(cache: &Cache, body: &VersionBody) -> Result<BTreeMap<String, (String, Hash)>> {
    let mut out = BTreeMap::new();
    for s in &body.stages {
        for o in &s.outputs {
            match o.kind {
                OutputKind::File => {
                    out.insert(o.path.clone(), (s.name.clone(), o.hash.clone()));
                }
                OutputKind::Dir => {
                    for e in cache.read_tree(&o.hash)? {
                        let path = format!("{}/{}", o.path.trim_end_matches('/'), e.path);
                        out.insert(path, (s.name.clone(), e.hash));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A stage's metrics in a version (empty when it has none).
pub fn metrics_of(rec: &VersionRecord, stage: &str) -> serde_json::Map<String, Value> {
    match rec.meta.metrics.get(stage) {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    }
}

/// Compare two metrics maps of `stage`: one row per flattened name, sorted by name.
pub fn diff_metrics(
    stage: &str,
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
    opts: &DiffOptions,
) -> Vec<MetricRow> {
    let fa = flattened(&Value::Object(a.clone()));
    let fb = flattened(&Value::Object(b.clone()));
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    names.into_iter().map(|n| metric_row(stage, n, fa.get(n), fb.get(n), opts)).collect()
}

/// The leaves of a value under dotted names. Objects recurse, arrays of
/// objects recurse by index; anything else is a leaf.
pub fn flattened(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    flatten("", v, &mut out);
    out
}

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

fn metric_row(stage: &str, name: &str, a: Option<&Value>, b: Option<&Value>, opts: &DiffOptions) -> MetricRow {
    let better = opts.direction.as_ref().and_then(|d| d(stage, name));
    let mut row = MetricRow {
        name: name.to_string(),
        a: a.cloned(),
        b: b.cloned(),
        delta: None,
        pct: None,
        change: MetricChange::Same,
        within_tolerance: false,
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
                let tol = opts.tolerance.of(stage, name);
                let allowed = if x == 0.0 { tol } else { tol * x.abs() };
                row.within_tolerance = d != 0.0 && d.abs() <= allowed;
                row.regression = !row.within_tolerance
                    && matches!(
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

    /// A caller's direction: `score` higher, `*loss` lower.
    fn opts(tolerance: Tolerance) -> DiffOptions {
        let direction: Direction = Arc::new(|_: &str, n: &str| {
            if n.ends_with("score") || n.ends_with("rate") {
                Some(Better::Higher)
            } else if n.ends_with("loss") {
                Some(Better::Lower)
            } else {
                None
            }
        });
        DiffOptions { stage: None, tolerance, direction: Some(direction) }
    }

    /// The v2.1 → v2.3 report: the score fell from 8.2 to 4.5 with a
    /// smaller dataset and a lower final loss.
    #[test]
    fn score_drop_is_a_regression() {
        let a = map(json!({"score": 8.2, "examples": 153, "final_loss": 1.95, "epochs": 5, "mix": "curated"}));
        let b =
            map(json!({"score": 4.5, "examples": 148, "final_loss": 2.2643, "epochs": 6, "mix": "curated+synthetic"}));
        let rows = diff_metrics("train", &a, &b, &opts(Tolerance::default()));
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

    /// 5.5067 → 5.5088 is +0.04%: within the default 1%, not a regression;
    /// with a tighter tolerance for that metric, it is.
    #[test]
    fn small_moves_are_within_tolerance() {
        let a = map(json!({"initial_valid_loss": 5.5067, "pass_rate": 0.851, "other_loss": 0.0}));
        let b = map(json!({"initial_valid_loss": 5.5088, "pass_rate": 0.848, "other_loss": 0.005}));
        let rows = diff_metrics("train", &a, &b, &opts(Tolerance::default()));
        for r in &rows {
            assert!(r.within_tolerance && !r.regression, "{r:?}");
        }
        let mut tight = Tolerance::default();
        tight.per_metric.insert("initial_valid_loss".into(), 0.0001);
        tight.per_metric.insert("train:pass_rate".into(), 0.0);
        let rows = diff_metrics("train", &a, &b, &opts(tight.clone()));
        assert!(row(&rows, "initial_valid_loss").regression);
        assert!(row(&rows, "pass_rate").regression);
        assert!(!row(&rows, "other_loss").regression);
        // Per-stage names only apply to that stage; tails match nested names.
        assert_eq!(tight.of("eval", "pass_rate"), DEFAULT_TOLERANCE);
        assert_eq!(tight.of("eval", "x.initial_valid_loss"), 0.0001);
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
        let rows = diff_metrics("bench", &a, &b, &opts(Tolerance::default()));
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
        assert_eq!(row(&rows, "pass_rate").change, MetricChange::Up);
        assert_eq!(row(&rows, "categories.CRUD.total").change, MetricChange::Same);
        assert_eq!(row(&rows, "runs.1.loss").change, MetricChange::Down);
        assert_eq!(row(&rows, "tags").change, MetricChange::Same);
        assert_eq!(row(&rows, "new_metric").change, MetricChange::OnlyInB);
    }

    #[test]
    fn without_a_direction_nothing_regresses() {
        let rows = diff_metrics("s", &map(json!({"loss": 1})), &map(json!({"loss": 9})), &DiffOptions::default());
        assert_eq!((rows[0].change, rows[0].better, rows[0].regression), (MetricChange::Up, None, false));
    }

    #[test]
    fn zero_baseline_has_no_percentage() {
        let rows = diff_metrics("s", &map(json!({"loss": 0})), &map(json!({"loss": 2})), &opts(Tolerance::default()));
        assert_eq!((rows[0].delta, rows[0].pct, rows[0].regression), (Some(2.0), None, true));
    }
}
