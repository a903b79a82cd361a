//! Engine errors. Where a problem is in a pipeline file, the error carries the
//! source and a span so miette can point at the line and column.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A problem in a pipeline file, with where it is.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(dvx::spec))]
pub struct SpecError {
    /// What is wrong.
    pub message: String,
    #[source_code]
    src: NamedSource<Arc<String>>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[label("{other_label}")]
    other: Option<SourceSpan>,
    other_label: String,
    #[help]
    help: Option<String>,
}

/// A loaded pipeline file: its display name and text, for error reporting.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user.
    pub name: String,
    /// The file's text.
    pub text: Arc<String>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file's name and text.
    pub fn new(name: String, text: String) -> SourceFile {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceFile { name, text: Arc::new(text), line_starts }
    }

    /// Byte offset of a 1-based line and column.
    pub fn offset(&self, line: u64, column: u64) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1) as usize) else { return self.text.len() };
        let end = self.line_starts.get(line as usize).copied().unwrap_or(self.text.len());
        let l = &self.text[start..end];
        start + l.char_indices().nth(column.saturating_sub(1) as usize).map(|(b, _)| b).unwrap_or(l.len())
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    /// An error at `span` with a label.
    pub fn error(&self, span: Span, message: impl Into<String>, label: impl Into<String>) -> SpecError {
        SpecError {
            message: message.into(),
            src: NamedSource::new(self.name.clone(), self.text.clone()),
            span: span.into(),
            label: label.into(),
            other: None,
            other_label: String::new(),
            help: None,
        }
    }
}

impl SpecError {
    /// Add a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// Add a second label in the same file.
    pub fn with_other(mut self, span: Span, label: impl Into<String>) -> Self {
        self.other = Some(span.into());
        self.other_label = label.into();
        self
    }
}

/// A byte range in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// Byte offset of the start in the source text.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl From<Span> for SourceSpan {
    fn from(s: Span) -> SourceSpan {
        (s.offset, s.len).into()
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum EngineError {
    /// A pipeline file is wrong.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] Box<SpecError>),
    /// A pipeline file cannot be read.
    #[error("cannot read pipeline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Cache(#[from] dvx_cache::CacheError),
    /// A config file is wrong.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

impl From<SpecError> for EngineError {
    fn from(e: SpecError) -> Self {
        EngineError::Spec(Box::new(e))
    }
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
