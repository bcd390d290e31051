//! The subset of Go's `text/template` that matchbox users write in templates.
//!
//! matchbox renders Butane and generic templates with Go's `text/template` and the option
//! `missingkey=error`, over data built from group metadata (decoded from JSON, so every
//! number is a `float64`), the group selectors and the request query. This crate parses and
//! executes the same template language with the same results, including Go's printing of
//! values (`1e+06`, `map[a:1 b:2]`, `<no value>`), its comparison rules (`eq 1 .n` with a
//! JSON number is an error, exactly as in Go) and its error messages:
//!
//! ```
//! use gotmpl::Template;
//!
//! let t = Template::parse("node", "hostname: {{.name}}\nport: {{.port}}\n").unwrap();
//! let out = t.execute(&serde_json::json!({"name": "n1", "port": 8080})).unwrap();
//! assert_eq!(out, "hostname: n1\nport: 8080\n");
//!
//! let err = t.execute(&serde_json::json!({"port": 1})).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"template: node:1:12: executing "node" at <.name>: map has no entry for key "name""#
//! );
//! ```
//!
//! Supported: text, comments and trim markers; pipelines with fields, variables (`:=`, `=`),
//! literals, parentheses and `|`; `if`/`else if`/`with`/`else with`/`range` (with `else`,
//! `break`, `continue`, ranging over slices, maps in key order and integers);
//! `define`/`template`/`block`; the builtins `and or not len index slice eq ne lt le gt ge
//! print printf println html js urlquery call`. Anything else (complex constants, `printf`
//! argument indexes, strings that are not UTF-8) is a parse or execution error, never
//! different output. `tests/golden.rs` checks thousands of templates against results
//! recorded from Go's own `text/template`.
//!
//! Execution is bounded by [`ExecOptions`]: output size, intermediate string size, nesting
//! depth and a step budget, so that network-supplied data cannot make rendering unbounded.

#![deny(missing_docs)]

mod error;
mod exec;
mod funcs;
mod gofmt;
mod lex;
mod parse;
mod val;
mod value;

use std::collections::HashMap;

pub use error::{ExecError, ExecErrorKind, ParseError};
pub use exec::{ExecOptions, MissingKey};
pub use value::{DataError, Value, matchbox_data};

/// A parsed template, together with the templates it defines with `{{define}}`/`{{block}}`.
///
/// A `Template` is immutable and can be executed concurrently from several threads.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    trees: HashMap<String, parse::List>,
    newlines: Vec<usize>,
}

impl Template {
    /// Parses `text` as a template called `name` (the name appears in error messages).
    pub fn parse(name: &str, text: &str) -> Result<Template, ParseError> {
        let trees = parse::parse(name, text)?;
        Ok(Template {
            name: name.to_string(),
            trees,
            newlines: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        })
    }

    /// The name given to [`Template::parse`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names of all templates in this set (the main one and any `{{define}}`d), sorted.
    pub fn template_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.trees.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Executes the template over JSON data with `missingkey=error` and default limits.
    ///
    /// The JSON is interpreted as Go's `encoding/json` would decode it into an
    /// `interface{}`: objects become `map[string]interface{}` and numbers `float64`.
    pub fn execute(&self, data: &serde_json::Value) -> Result<String, ExecError> {
        self.execute_value(&Value::from(data), &ExecOptions::default())
    }

    /// Executes the template over [`Value`] data with the given options.
    pub fn execute_value(&self, data: &Value, opts: &ExecOptions) -> Result<String, ExecError> {
        self.execute_named(&self.name, data, opts)
    }

    /// Executes the template called `name` from this set (Go's `ExecuteTemplate`).
    pub fn execute_named(
        &self,
        name: &str,
        data: &Value,
        opts: &ExecOptions,
    ) -> Result<String, ExecError> {
        exec::execute(&self.name, &self.trees, &self.newlines, name, data, opts)
    }
}
