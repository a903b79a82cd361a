//! A record that could not be read, named by file and position.

use std::fmt;
use std::path::PathBuf;

use dvx_stage_api::StageFailure;

/// What a record's position counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A line of (decompressed) JSONL text.
    Line,
    /// A row of a Parquet or Arrow file.
    Row,
    /// An element of a JSON array.
    Element,
}

/// A record that could not be read.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// The file it came from (the shard, for a folder).
    pub path: PathBuf,
    /// 1-based line, row or element number, per `unit`.
    pub line: usize,
    /// What `line` counts.
    pub unit: Unit,
    /// The raw text, when there is one (a JSONL line).
    pub text: String,
    /// Why it is bad.
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.unit {
            // `file:line:` as compilers and grep print it.
            Unit::Line => write!(f, "{path}:{}: {}", self.line, self.reason),
            Unit::Row => write!(f, "{path}: row {}: {}", self.line, self.reason),
            Unit::Element => write!(f, "{path}: element {}: {}", self.line, self.reason),
        }
    }
}

impl From<BadRecord> for StageFailure {
    fn from(b: BadRecord) -> Self {
        StageFailure::bad_input(b.to_string())
    }
}
