//! Model errors: each names the file, line, column and key path, and says what is allowed.

use crate::spans::{Pos, Spans};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.path, self.message
        )
    }
}

/// Every error found in one model, in document order.
#[derive(Debug)]
pub struct ModelErrors(pub Vec<ModelError>);

impl fmt::Display for ModelErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} in the model", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ModelErrors {}

/// Collects errors against one file's spans.
pub struct Diagnostics<'a> {
    file: &'a str,
    spans: &'a Spans,
    errors: Vec<ModelError>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a str, spans: &'a Spans) -> Self {
        Self {
            file,
            spans,
            errors: Vec::new(),
        }
    }

    /// An error about the value at `path`.
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let pos = self.spans.value(&path);
        self.push(pos, path, message.into());
    }

    /// An error about the key at `path` (a name that is not allowed).
    pub fn at_key(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let pos = self.spans.key(&path);
        self.push(pos, path, message.into());
    }

    fn push(&mut self, pos: Pos, path: String, message: String) {
        self.errors.push(ModelError {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            path,
            message,
        });
    }

    pub fn finish(mut self) -> Result<(), ModelErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors
            .sort_by(|a, b| (a.line, a.column, &a.path).cmp(&(b.line, b.column, &b.path)));
        self.errors.dedup();
        Err(ModelErrors(self.errors))
    }
}

/// Quotes a list of allowed values for a message: `one of "a", "b"`.
pub fn one_of<S: AsRef<str>>(values: &[S]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.as_ref()))
        .collect();
    format!("expected one of {}", quoted.join(", "))
}
