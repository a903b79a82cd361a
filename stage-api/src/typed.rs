//! The typed way to write a stage kind: [`TypedStage`], and the one adapter,
//! [`Typed`], that turns any of them into the object-safe [`Stage`] the
//! engine runs.
//!
//! A kind declares its name, version, how many deps and outs it takes and a
//! `Params` type deserialised from the stage's `params`. `prepare` turns
//! those params (and the declared shape) into whatever `execute` needs —
//! checked values, compiled regexes — once: the adapter keeps the prepared
//! value per params, so `check`, `fingerprint` and `execute` of one stage
//! parse and compile once. Every parse error goes through [`parse_params`],
//! so every kind's errors name a field the same way.
//!
//! The key holds the params as parsed, not as written: the adapter hands
//! the engine `serde_json::to_value` of the parsed `Params`
//! ([`Stage::normalised_params`]), so an explicit default and an omitted one
//! are the same key, and so are `1e3` and `1000` for a float field.
//!
//! The crate docs show a whole kind.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::stage::{
    FingerprintContext, Metrics, OutError, ParamError, Stage, StageContext, StageFailure, StageShape,
};

/// How many deps (or outs) a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Exactly this many.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
    /// From the first to the second, both included.
    Between(usize, usize),
}

impl Count {
    /// Whether `n` is allowed.
    pub fn admits(self, n: usize) -> bool {
        match self {
            Count::Exactly(k) => n == k,
            Count::AtLeast(k) => n >= k,
            Count::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }

    /// The fewest allowed.
    pub fn min(self) -> usize {
        match self {
            Count::Exactly(k) | Count::AtLeast(k) | Count::Between(k, _) => k,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Exactly(k) => write!(f, "exactly {k}"),
            Count::AtLeast(k) => write!(f, "at least {k}"),
            Count::Between(lo, hi) => write!(f, "{lo} to {hi}"),
        }
    }
}

/// The declared shape `prepare` sees: how many deps and outs the stage has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of declared deps.
    pub deps: usize,
    /// Number of declared outs. `fingerprint` and `external_inputs` are not
    /// told the outs: they get the value prepared at `check` for the same
    /// params and deps, or else one prepared with the fewest outs allowed.
    pub outs: usize,
}

/// One row of a kind's params table in `docs/stages.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDoc {
    /// The field name (dotted for nested fields).
    pub name: &'static str,
    /// Its type, in words (`string`, `list of strings`, `exact | near`).
    pub ty: &'static str,
    /// The default, as YAML, or `required`, or `-` for "none".
    pub default: &'static str,
    /// One line on what it does.
    pub help: &'static str,
}

impl ParamDoc {
    /// A row.
    pub const fn new(name: &'static str, ty: &'static str, default: &'static str, help: &'static str) -> Self {
        ParamDoc { name, ty, default, help }
    }
}

/// A params type that can describe its fields for the docs.
pub trait ParamsDoc {
    /// The fields, in the order the docs list them.
    fn doc() -> Vec<ParamDoc>;
}

/// A stage kind with typed params. [`Typed`] makes it a [`Stage`].
///
/// Contract as for [`Stage`]: `execute` is deterministic for the same inputs
/// and prepared params; bump `VERSION` whenever a change can change outputs.
pub trait TypedStage: Send + Sync + 'static {
    /// The `kind:` name used in YAML.
    const KIND: &'static str;
    /// Implementation version, part of every key of this kind.
    const VERSION: u32;
    /// How many deps the kind takes.
    const DEPS: Count;
    /// How many outs the kind takes.
    const OUTS: Count;
    /// What the deps are, for messages and docs (`train.jsonl, valid.jsonl`).
    const DEPS_ARE: &'static str = "";
    /// What the outs are, for messages and docs.
    const OUTS_ARE: &'static str = "";
    /// Whether the stage needs a non-empty `cmd`.
    const NEEDS_CMD: bool = false;
    /// Whether the same inputs and params give the same bytes; see
    /// [`Stage::deterministic`].
    const DETERMINISTIC: bool = true;
    /// The params, deserialised from the stage's `params` object (serde
    /// defaults fill what is omitted). Serialised again, they are what the
    /// stage key holds, so `Serialize` must write every field, defaults
    /// included, and nothing that varies between runs (no `HashMap`).
    type Params: DeserializeOwned + Serialize + ParamsDoc;
    /// What `prepare` makes of the params: checked, with anything costly
    /// (regexes) compiled.
    type Prepared: Send + Sync + 'static;

    /// Check the params beyond their types and against the shape, and build
    /// what the other methods need. Runs once per params and shape.
    fn prepare(&self, params: Self::Params, shape: Shape) -> Result<Self::Prepared, ParamError>;

    /// As [`Stage::check_outs`]. Default: any names.
    fn check_outs(&self, _outs: &[&str]) -> Result<(), OutError> {
        Ok(())
    }

    /// As [`Stage::fingerprint`]. Default: none.
    fn fingerprint(
        &self,
        _prepared: &Self::Prepared,
        _ctx: &FingerprintContext<'_>,
    ) -> Result<Option<Value>, StageFailure> {
        Ok(None)
    }

    /// As [`Stage::external_inputs`]. Default: none.
    fn external_inputs(
        &self,
        _prepared: &Self::Prepared,
        _ctx: &FingerprintContext<'_>,
    ) -> Result<Vec<PathBuf>, StageFailure> {
        Ok(Vec::new())
    }

    /// As [`Stage::execute`], with the prepared params.
    fn execute(&self, prepared: &Self::Prepared, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure>;
}

/// Deserialise a stage's params into `T`. An error names the dotted field it
/// is about (`repos.1.url`, list indexes included); a missing field names the
/// field to add, not the object that lacks it. This is the only place params
/// are parsed, so every kind reports alike.
pub fn parse_params<T: DeserializeOwned>(params: &Value) -> Result<T, ParamError> {
    use serde_path_to_error::Segment;
    serde_path_to_error::deserialize(params).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(index.to_string()),
                Segment::Map { key } => Some(key.clone()),
                Segment::Enum { variant } => Some(variant.clone()),
                Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        if let Some(name) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            path.push(name.to_string());
        }
        if path.is_empty() {
            ParamError::whole(message)
        } else {
            ParamError::field(path.join("."), message)
        }
    })
}

/// Prepared values kept at once per kind; past this the cache starts over.
/// A pipeline has a few stages of a kind, so this is never reached in a run.
const CACHE_LIMIT: usize = 256;

/// What a prepared value depends on: the params as given and the shape.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    params: String,
    shape: Shape,
}

/// The adapter: any [`TypedStage`] as a [`Stage`]. It checks the declared
/// counts, parses and prepares the params once per params and shape, and
/// hands the prepared value to the kind.
pub struct Typed<T: TypedStage> {
    kind: T,
    prepared: Mutex<HashMap<CacheKey, Arc<T::Prepared>>>,
}

impl<T: TypedStage> Typed<T> {
    /// Wrap a kind.
    pub fn new(kind: T) -> Self {
        Typed { kind, prepared: Mutex::new(HashMap::new()) }
    }

    /// The prepared params for `params` and `shape`, from the cache or made
    /// now (and then kept).
    fn prepared(&self, params: &Value, shape: Shape) -> Result<Arc<T::Prepared>, ParamError> {
        let key = CacheKey { params: params.to_string(), shape };
        if let Some(p) = self.cache().get(&key) {
            return Ok(p.clone());
        }
        // Prepared outside the lock: stages of one kind may be planned in parallel.
        let p = Arc::new(self.kind.prepare(parse_params(params)?, shape)?);
        let mut cache = self.cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// The value prepared for `params` with `deps` deps and any number of
    /// outs, else one prepared with the fewest outs allowed.
    fn prepared_for_deps(&self, params: &Value, deps: usize) -> Result<Arc<T::Prepared>, ParamError> {
        let text = params.to_string();
        let found = self.cache().iter().find(|(k, _)| k.shape.deps == deps && k.params == text).map(|(_, p)| p.clone());
        match found {
            Some(p) => Ok(p),
            None => self.prepared(params, Shape { deps, outs: T::OUTS.min() }),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<T::Prepared>>> {
        // A panic while holding the lock leaves the map whole.
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_shape(deps: usize, outs: usize, cmd: Option<&str>) -> Result<(), ParamError> {
        let kind = T::KIND;
        let plural = |c: Count, one: &'static str, many: &'static str| match c {
            Count::Exactly(1) | Count::AtLeast(1) => one,
            _ => many,
        };
        let are = |what: &str| if what.is_empty() { String::new() } else { format!(" ({what})") };
        if !T::DEPS.admits(deps) {
            let (what, are) = (plural(T::DEPS, "dep", "deps"), are(T::DEPS_ARE));
            return Err(ParamError::whole(format!("a `{kind}` stage takes {} {what}{are}, got {deps}", T::DEPS)));
        }
        if !T::OUTS.admits(outs) {
            let (what, are) = (plural(T::OUTS, "out", "outs"), are(T::OUTS_ARE));
            return Err(ParamError::whole(format!("a `{kind}` stage takes {} {what}{are}, got {outs}", T::OUTS)));
        }
        if T::NEEDS_CMD && cmd.is_none_or(|c| c.trim().is_empty()) {
            return Err(ParamError::whole(format!("a `{kind}` stage needs a non-empty `cmd`")));
        }
        Ok(())
    }
}

impl<T: TypedStage> Stage for Typed<T> {
    fn kind(&self) -> &'static str {
        T::KIND
    }

    fn version(&self) -> u32 {
        T::VERSION
    }

    fn check(&self, shape: &StageShape<'_>) -> Result<(), ParamError> {
        Self::check_shape(shape.deps, shape.outs, shape.cmd)?;
        self.prepared(shape.params, Shape { deps: shape.deps, outs: shape.outs }).map(|_| ())
    }

    fn check_outs(&self, outs: &[&str]) -> Result<(), OutError> {
        self.kind.check_outs(outs)
    }

    fn fingerprint(&self, ctx: &FingerprintContext<'_>) -> Result<Option<Value>, StageFailure> {
        let p = self.prepared_for_deps(ctx.params, ctx.deps.len())?;
        self.kind.fingerprint(&p, ctx)
    }

    fn external_inputs(&self, ctx: &FingerprintContext<'_>) -> Result<Vec<PathBuf>, StageFailure> {
        let p = self.prepared_for_deps(ctx.params, ctx.deps.len())?;
        self.kind.external_inputs(&p, ctx)
    }

    fn execute(&self, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        Self::check_shape(ctx.deps.len(), ctx.outs.len(), ctx.cmd)?;
        let p = self.prepared(ctx.params, Shape { deps: ctx.deps.len(), outs: ctx.outs.len() })?;
        self.kind.execute(&p, ctx)
    }

    fn deterministic(&self) -> bool {
        T::DETERMINISTIC
    }

    fn params_doc(&self) -> Vec<ParamDoc> {
        T::Params::doc()
    }

    fn normalised_params(&self, params: &Value) -> Result<Value, ParamError> {
        let parsed: T::Params = parse_params(params)?;
        serde_json::to_value(parsed)
            .map_err(|e| ParamError::whole(format!("the parsed params of a `{}` stage do not serialise: {e}", T::KIND)))
    }

    fn takes_cmd(&self) -> bool {
        T::NEEDS_CMD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        url: String,
        n: Option<u32>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        items: Vec<Item>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    impl ParamsDoc for P {
        fn doc() -> Vec<ParamDoc> {
            vec![ParamDoc::new("items", "list", "required", "Things.")]
        }
    }

    #[test]
    fn errors_name_dotted_fields() {
        let field = |v: Value| parse_params::<P>(&v).unwrap_err().field;
        assert_eq!(field(json!({"items": [{"url": "a"}, {"n": 1}]})).as_deref(), Some("items.1.url"));
        assert_eq!(field(json!({"items": [{"url": "a", "n": "x"}]})).as_deref(), Some("items.0.n"));
        assert_eq!(field(json!({"items": [], "extra": 1})).as_deref(), Some("extra"));
        assert_eq!(field(json!({"items": [], "inner": {"n": "x"}})).as_deref(), Some("inner.n"));
        assert_eq!(field(json!({"items": [], "inner": {}})).as_deref(), Some("inner.n"));
        assert_eq!(field(json!({})).as_deref(), Some("items"));
        assert_eq!(parse_params::<P>(&json!([])).unwrap_err().field, None);
        let e = parse_params::<P>(&json!({"items": [], "bogus": 1})).unwrap_err();
        assert!(e.message.contains("unknown field `bogus`"), "{e:?}");
        let f = StageFailure::from(parse_params::<P>(&json!({})).unwrap_err());
        assert!(f.message.starts_with("params.items: missing field"), "{}", f.message);
    }

    struct Counting(AtomicUsize);

    impl TypedStage for Counting {
        const KIND: &'static str = "counting";
        const VERSION: u32 = 3;
        const DEPS: Count = Count::AtLeast(1);
        const OUTS: Count = Count::Between(1, 2);
        const OUTS_ARE: &'static str = "data, then optionally a report";
        type Params = P;
        type Prepared = usize;

        fn prepare(&self, p: P, shape: Shape) -> Result<usize, ParamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if p.items.len() > shape.deps {
                return Err(ParamError::field("items", "more items than deps"));
            }
            Ok(p.items.len())
        }

        fn fingerprint(&self, n: &usize, _ctx: &FingerprintContext<'_>) -> Result<Option<Value>, StageFailure> {
            Ok(Some(json!(n)))
        }

        fn execute(&self, n: &usize, _ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
            let mut m = Metrics::new();
            m.insert("items".into(), json!(n));
            Ok(m)
        }
    }

    #[test]
    fn adapter_checks_counts_and_prepares_once() {
        let s = Typed::new(Counting(AtomicUsize::new(0)));
        assert_eq!((s.kind(), s.version()), ("counting", 3));
        assert_eq!(s.params_doc()[0].name, "items");
        assert!(s.deterministic());
        let params = json!({"items": [{"url": "a"}]});
        let shape = |deps, outs| StageShape { params: &params, deps, outs, cmd: None };
        assert_eq!(s.check(&shape(0, 1)).unwrap_err().message, "a `counting` stage takes at least 1 dep, got 0");
        assert_eq!(
            s.check(&shape(1, 3)).unwrap_err().message,
            "a `counting` stage takes 1 to 2 outs (data, then optionally a report), got 3"
        );
        s.check(&shape(1, 2)).unwrap();
        let deps = vec![PathBuf::from("/d")];
        let outs = vec![PathBuf::from("/o1"), PathBuf::from("/o2")];
        let fp = FingerprintContext { cwd: std::path::Path::new("/"), deps: &deps, params: &params };
        assert_eq!(s.fingerprint(&fp).unwrap(), Some(json!(1)));
        let mut log = Vec::new();
        let mut ctx = StageContext::new("t", std::path::Path::new("/"), &deps, &outs, &params, &mut log);
        assert_eq!(s.execute(&mut ctx).unwrap()["items"], json!(1));
        assert_eq!(s.kind.0.load(Ordering::SeqCst), 1, "check, fingerprint and execute share one prepare");

        let two = json!({"items": [{"url": "a"}, {"url": "b"}]});
        let e = s.check(&StageShape { params: &two, deps: 1, outs: 1, cmd: None }).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items"));
        let fp = FingerprintContext { cwd: std::path::Path::new("/"), deps: &deps, params: &two };
        assert_eq!(s.fingerprint(&fp).unwrap_err().message, "params.items: more items than deps");
    }

    #[test]
    fn normalised_params_fill_defaults_in_one_form() {
        let s = Typed::new(Counting(AtomicUsize::new(0)));
        let omitted = s.normalised_params(&json!({"items": [{"url": "a"}]})).unwrap();
        let explicit = s.normalised_params(&json!({"inner": null, "items": [{"n": null, "url": "a"}]})).unwrap();
        assert_eq!(omitted, json!({"items": [{"url": "a", "n": null}], "inner": null}));
        assert_eq!(omitted, explicit);
        let other = s.normalised_params(&json!({"items": [{"url": "a", "n": 2}]})).unwrap();
        assert_ne!(omitted, other);
        assert!(s.normalised_params(&json!({"items": 3})).is_err());
        assert!(!s.takes_cmd());
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(Count::Exactly(1).to_string(), "exactly 1");
        assert_eq!(Count::AtLeast(0).to_string(), "at least 0");
        assert_eq!(Count::Between(2, 3).to_string(), "2 to 3");
        assert!(Count::AtLeast(1).admits(9) && !Count::Between(1, 2).admits(0));
    }
}
