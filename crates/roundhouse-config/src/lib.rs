//! roundhouse's cluster file: HCL text in, a validated [`Cluster`] out.
//!
//! Loading is all-or-nothing: either every setting is read, defaulted and checked, or the caller
//! gets [`Diagnostics`] naming file, line and column of each problem. Nothing here writes files.

mod checks;
pub mod diagnostic;
mod eval;
mod hooks;
mod load;
pub mod model;
mod power;
mod schema;
mod vars;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::*;

use std::path::{Path, PathBuf};

/// Inputs besides the cluster file itself.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var name=value` overrides, applied after var files.
    pub vars: Vec<(String, String)>,
    /// `--var-file PATH` files (HCL `name = value` lines), in order.
    pub var_files: Vec<PathBuf>,
    /// The environment `ROUNDHOUSE_VAR_<name>` values are looked up in; `None` means the
    /// process environment. Tests pass their own so they don't depend on the caller's.
    pub env: Option<Vec<(String, String)>>,
}

/// Reads, evaluates and validates the cluster file at `path`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Cluster, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error_in_file(
            path,
            format!("reading cluster file: {e}"),
        )])
    })?;
    load_str(path, &text, options)
}

/// Like [`load`] with the file's text already read; `path` is used for messages and for
/// resolving relative paths.
pub fn load_str(path: &Path, text: &str, options: &LoadOptions) -> Result<Cluster, Diagnostics> {
    load::load(path, text, options)
}
