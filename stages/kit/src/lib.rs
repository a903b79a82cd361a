//! What the built-in kinds share, so that each kind crate
//! (`dvx-stages-data`, `-extract`, `-net`, `-ml`) builds against the stage
//! API, the records crate and this kit alone: records as stages see them,
//! chunked parallel processing, record-wise reuse through the memo, field
//! typo checks, `{field}` templates, source file listing and the example
//! record shape. Feature `testkit`: the harness kinds' tests run a stage
//! with.

pub mod example_record;
pub mod field_check;
pub mod projection;
pub mod records;
pub mod reuse;
pub mod seeded;
pub mod source_files;
pub mod support;
pub mod template;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
