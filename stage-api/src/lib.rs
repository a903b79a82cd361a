//! The stage API: what a stage kind implements and what it is handed. The
//! engine runs kinds through it; the kinds (`dvx-stages`) build against it
//! alone, never against the engine or the cache.
//!
//! A kind is written as a [`TypedStage`] (typed params, declared dep and out
//! counts, a `prepare` step), turned into the object-safe [`Stage`] by the
//! one adapter, [`Typed`], and put in a [`Registry`] the engine looks kinds
//! up in by name. When it runs, a stage gets a [`StageContext`]: resolved
//! input and output paths, its params, a log, a thread budget and a
//! [`Progress`] to report how far it is, a [`Cancel`] token to stop early
//! and, when its caller supplies one, the run's shared [`Http`] client. It never
//! sees the cache, keys or versions.
//!
//! ```no_run
//! use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Registry, Shape, StageContext, StageFailure, TypedStage};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Params { copies: usize }
//! impl ParamsDoc for Params {
//!     fn doc() -> Vec<ParamDoc> {
//!         vec![ParamDoc::new("copies", "integer", "required", "How many copies.")]
//!     }
//! }
//!
//! struct Repeat;
//! impl TypedStage for Repeat {
//!     const KIND: &'static str = "repeat";
//!     const VERSION: u32 = 1;
//!     const DEPS: Count = Count::Exactly(1);
//!     const OUTS: Count = Count::Exactly(1);
//!     type Params = Params;
//!     type Prepared = usize;
//!     fn prepare(&self, p: Params, _shape: Shape) -> Result<usize, ParamError> {
//!         Ok(p.copies)
//!     }
//!     fn execute(&self, copies: &usize, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
//!         let text = std::fs::read_to_string(&ctx.deps[0])?;
//!         std::fs::write(&ctx.outs[0], text.repeat(*copies))?;
//!         Ok(Metrics::new())
//!     }
//! }
//!
//! let mut kinds = Registry::new();
//! kinds.register_typed(Repeat);
//! ```

#![deny(missing_docs)]

mod cancel;
mod http;
mod progress;
mod memo;
mod registry;
mod shard;
mod stage;
mod typed;

pub use cancel::Cancel;
pub use http::{Http, HttpError, HttpRequest, HttpResponse};
pub use progress::{NoProgress, Progress};
pub use memo::{Memo, MemoKey, MemoryMemo, NoMemo};
pub use registry::Registry;
pub use shard::RecordShards;
pub use stage::{
    FailureKind, FingerprintContext, KeptPrefix, Metrics, OutError, ParamError, Stage, StageContext, StageFailure, StageShape,
};
pub use typed::{parse_params, Count, ParamDoc, ParamsDoc, Shape, Typed, TypedStage};
