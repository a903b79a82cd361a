//! The dvx engine: pipeline specs, the stage graph, planning (what is stale
//! and why) and the scheduler. It knows nothing about datasets: stage kinds
//! come in through [`Registry`].

mod registry;
mod stage;

pub use registry::Registry;
pub use stage::{FingerprintContext, Metrics, ParamError, Stage, StageContext, StageFailure, StageShape};
