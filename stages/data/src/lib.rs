//! The dataset kinds: records in, records out. Each is one module
//! implementing [`dvx_stage_api::TypedStage`]; `dvx-stages` registers them.

// The kit's modules under the names the kinds use (`crate::records`, …).
#[cfg(test)]
use dvx_stage_kit::testkit;
#[allow(unused_imports)]
use dvx_stage_kit::{example_record, field_check, projection, records, reuse, seeded, source_files, support, template};

pub mod balance;
pub mod cmd;
pub mod convert;
pub mod dedup;
pub mod export;
pub mod filter;
pub mod merge;
pub mod multiply;
pub mod score;
pub mod shards;
pub mod split;
pub mod validate;
