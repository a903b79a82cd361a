//! The dvx engine: pipeline specs, the stage graph, planning (what is stale
//! and why) and the scheduler. It knows nothing about datasets: stage kinds
//! come in through [`Registry`]; the stage API itself lives in
//! `dvx-stage-api` and is re-exported here.

mod budget;
pub mod diff;
mod error;
mod event;
pub mod executor;
pub mod graph;
mod key;
pub mod logs;
mod metrics_file;
mod par;
pub mod ops;
mod plan;
mod prefetch;
mod progress;
mod run;
mod shard;
pub mod spec;
mod state;
mod stated;
pub mod version;
mod why;
mod workspace;

pub use error::{EngineError, Result, SourceFile, Span, SpecError};
pub use event::{Event, Observer, Silent};
pub use executor::local::{abs, execute, execute_with, tail, Failure, Services};
pub use executor::{exec_job, CacheMemo, Executor, JobError};
pub use graph::Graph;
pub use key::KeyInputs;
pub use prefetch::prefetch_workspace_state;
pub use progress::StageProgress;
pub use shard::{ShardResult, ShardStatus};
pub use run::{check_sources, run, Action, RunOptions, RunReport, StageResult, Status};
pub use spec::{load_pipeline, ExecutorKind, Pipeline, Resources, StageDef};
pub use state::{OwnedOuts, StageState, WorkspaceState};
// The stage API, from `dvx-stage-api`, under the names it always had here.
pub use dvx_stage_api::{
    parse_params, Cancel, Http, HttpError, HttpRequest, HttpResponse, Count, FailureKind, FingerprintContext, Memo, MemoKey, Metrics, NoMemo, NoProgress, ParamDoc,
    ParamError, ParamsDoc, Progress, RecordShards, Registry, Shape, Stage, StageContext, StageFailure, StageShape, Typed, TypedStage,
};
pub use why::StaleReason;
pub use workspace::{ProjectConfig, Workspace};
