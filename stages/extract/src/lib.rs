//! Kinds that turn source trees into training examples: `ast-extract`
//! (Python, through ruff's parser) and `html-extract` (tl);
//! `dvx-stages` registers them.

// The kit's modules under the names the kinds use (`crate::records`, …).
#[allow(unused_imports)]
use dvx_stage_kit::{example_record, field_check, records, reuse, seeded, source_files, support, template};

pub mod ast_extract;
mod grep_sim;
pub mod html_extract;
