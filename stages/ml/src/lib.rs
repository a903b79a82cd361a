//! Kinds over models: `train`, `benchmark` and `export-model` (through
//! `dvx-model` and candle), `scores` over benchmark's filled sheets, and
//! their charts; `dvx-stages` registers them.

// The kit's modules under the names the kinds use (`crate::records`, …).
#[allow(unused_imports)]
use dvx_stage_kit::{example_record, field_check, records, reuse, seeded, source_files, support, template};

pub mod benchmark;
pub mod export_model;
mod plots;
pub mod scores;
pub mod train;
