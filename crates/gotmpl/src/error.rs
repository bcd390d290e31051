//! Error types, displayed in Go's `text/template` message formats.

use thiserror::Error;

use crate::gofmt::quote;

/// A template that could not be parsed.
///
/// Displays as Go does: `template: NAME:LINE: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("template: {name}:{line}: {message}")]
pub struct ParseError {
    /// Name the template was parsed under.
    pub name: String,
    /// One-based line of the token where parsing stopped.
    pub line: usize,
    /// Zero-based byte column of that token (Go's convention for template positions).
    pub col: usize,
    /// The message without location, e.g. `unexpected EOF`.
    pub message: String,
}

/// What kind of failure stopped execution, for callers that treat them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecErrorKind {
    /// A map had no entry for a key (Go's `missingkey=error`).
    MissingKey,
    /// A resource limit (output size, steps, nesting depth) was reached.
    Limit,
    /// The template used a Go feature this crate does not implement.
    Unsupported,
    /// Any other execution error Go would also report (wrong types, bad arguments...).
    Other,
}

/// A template that failed during execution.
///
/// Displays as Go does:
/// `template: NAME:LINE:COL: executing "NAME" at <CONTEXT>: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.render())]
pub struct ExecError(Box<ExecErrorInner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecErrorInner {
    parse_name: String,
    name: String,
    location: Option<(usize, usize)>,
    context: String,
    message: String,
    kind: ExecErrorKind,
}

impl ExecError {
    pub(crate) fn new(
        parse_name: &str,
        name: &str,
        location: Option<(usize, usize)>,
        context: String,
        message: String,
        kind: ExecErrorKind,
    ) -> Self {
        ExecError(Box::new(ExecErrorInner {
            parse_name: parse_name.to_string(),
            name: name.to_string(),
            location,
            context,
            message,
            kind,
        }))
    }

    fn render(&self) -> String {
        let e = &self.0;
        match e.location {
            Some((line, col)) => format!(
                "template: {}:{}:{}: executing {} at <{}>: {}",
                e.parse_name,
                line,
                col,
                quote(&e.name),
                e.context,
                e.message
            ),
            None if e.name.is_empty() => format!("template: {}", e.message),
            None => format!("template: {}: {}", e.name, e.message),
        }
    }

    /// Name of the top-level template the text was parsed as (Go's `ParseName`).
    pub fn parse_name(&self) -> &str {
        &self.0.parse_name
    }

    /// Name of the template being executed (differs inside `{{template}}` calls).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// One-based line and zero-based byte column of the node being evaluated, if any.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.0.location
    }

    /// The node being evaluated, as template source (Go's `Node.String()`).
    pub fn context(&self) -> &str {
        &self.0.context
    }

    /// The message without location, e.g. `map has no entry for key "x"`.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Classification of the failure.
    pub fn kind(&self) -> ExecErrorKind {
        self.0.kind
    }

    /// Whether this is a missing map key, which matchbox reports as "not found".
    pub fn is_missing_key(&self) -> bool {
        self.0.kind == ExecErrorKind::MissingKey
    }
}
