//! The dvx engine: pipeline specs, the stage graph, planning (what is stale
//! and why) and the scheduler. It knows nothing about datasets: stage kinds
//! come in through [`Registry`].

pub mod diff;
mod error;
mod event;
pub mod executor;
pub mod graph;
mod key;
pub mod ops;
mod plan;
mod registry;
mod run;
pub mod spec;
mod stage;
mod state;
pub mod typed;
pub mod version;
mod why;
mod workspace;

pub use error::{EngineError, Result, SourceFile, Span, SpecError};
pub use event::{Event, Observer, Silent};
pub use executor::local::{abs, execute, tail, Failure};
pub use executor::{exec_job, Executor, JobError};
pub use graph::Graph;
pub use key::KeyInputs;
pub use registry::Registry;
pub use run::{check_sources, run, Action, RunOptions, RunReport, StageResult, Status};
pub use spec::{load_pipeline, ExecutorKind, Pipeline, Resources, StageDef};
pub use stage::{FingerprintContext, Metrics, ParamError, Stage, StageContext, StageFailure, StageShape};
pub use state::{OwnedOuts, StageState, WorkspaceState};
pub use typed::{Count, ParamDoc, ParamsDoc, Shape, Typed, TypedStage};
pub use why::StaleReason;
pub use workspace::{ProjectConfig, Workspace};
