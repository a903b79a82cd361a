//! Kinds that reach the network: `fetch`, `clone` and the LLM kinds
//! (`generate`, `judge`); `dvx-stages` registers them. Also [`http::Client`],
//! the reqwest implementation of the stage API's `Http` that a run's
//! caller (the CLI) hands to the engine, so every stage shares one
//! connection pool and one retry policy.

// The kit's modules under the names the kinds use (`crate::records`, …).
#[cfg(test)]
use dvx_stage_kit::testkit;
#[allow(unused_imports)]
use dvx_stage_kit::{example_record, field_check, records, reuse, seeded, source_files, support, template};

pub mod clone;
pub mod fetch;
pub mod http;
pub mod llm;
