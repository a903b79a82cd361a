//! End-to-end tests: they drive the real `dvx` binary in temp folders.

mod support;

mod core_run;
mod diff;
mod errors;
mod pipelines;
mod self_contained;
mod slurm;
mod team_cache;
mod versions;
