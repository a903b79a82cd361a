//! End-to-end tests: they drive the real `dvx` binary in temp folders.

mod support;

mod core_run;
mod errors;
mod slurm;
mod team_cache;
mod versions;
