//! End-to-end tests: they drive the real `dvx` binary in temp folders.

mod support;

mod benchmark;
mod cancel;
mod chunks;
mod cli_discovery;
mod core_run;
mod deps;
mod diff;
mod errors;
mod export;
mod export_model;
mod formats;
mod fuzz;
mod gc_scope;
mod incremental;
mod logs;
mod metrics;
mod noop_cache;
mod phase0;
mod llm;
mod pipelines;
mod pipeline_cache;
mod planned_batches;
mod restorable;
mod self_contained;
mod shards;
mod slurm;
mod snapshots;
mod source_folders;
mod status_truth;
mod team_cache;
mod trust;
mod typos;
mod versions;
mod workspace_safety;
