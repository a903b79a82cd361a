//! End-to-end tests: they drive the real `dvx` binary in temp folders.

mod support;

mod cli_discovery;
mod core_run;
mod deps;
mod diff;
mod errors;
mod formats;
mod fuzz;
mod pipelines;
mod restorable;
mod self_contained;
mod slurm;
mod snapshots;
mod team_cache;
mod trust;
mod versions;
mod workspace_safety;
