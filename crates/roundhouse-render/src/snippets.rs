//! Butane snippets: translation (with diagnostics mapped back onto the user's files) and merging
//! into a node's config by Ignition's merge rules.

use std::path::PathBuf;

use roundhouse_config::{
    Cluster, Diagnostic, Diagnostics, Severity, Snippet, SnippetOrigin, SnippetOverride,
};
use serde_json::Value;

use crate::{RenderOptions, contract};

/// Cluster-wide snippets, translated once per render rather than once per node.
pub struct SharedSnippets {
    /// The cluster-wide final snippets merged into one config, once per render: Ignition's
    /// merge is associative, so merging this into a node's base gives the same config as
    /// merging each snippet in turn, with one merge per node instead of one per snippet.
    pub final_merged: Option<Value>,
    /// The cluster-wide installer snippets, merged the same way.
    pub installer_merged: Option<Value>,
    pub warnings: Vec<Diagnostic>,
    /// What the cluster-wide final snippets change of the base config; an error for each node
    /// that does not allow it.
    pub final_violations: Vec<Guarded>,
}

/// A snippet's change to a protected part of the base config, located in the snippet.
pub type Guarded = (SnippetOverride, Diagnostic);

/// The errors for the `violations` a node does not allow, or `Ok` when there are none.
pub fn check_contract(
    violations: &[Guarded],
    allowed: &[SnippetOverride],
) -> Result<(), Diagnostics> {
    let errors: Vec<Diagnostic> = violations
        .iter()
        .filter(|(item, _)| !allowed.contains(item))
        .map(|(_, d)| d.clone())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(errors))
    }
}

/// The configs merged in order into one, or `None` when there are none.
fn merge_all(configs: &[Value]) -> Option<Value> {
    let (first, rest) = configs.split_first()?;
    Some(rest.iter().fold(first.clone(), |acc, c| merge(&acc, c)))
}

impl SharedSnippets {
    pub fn translate(cluster: &Cluster, options: &RenderOptions) -> Result<Self, Diagnostics> {
        let mut warnings = Vec::new();
        let mut final_violations = Vec::new();
        let final_configs = translate_all(
            &cluster.snippets,
            cluster,
            options,
            &mut warnings,
            &mut final_violations,
        );
        let installer_configs = translate_all(
            &cluster.installer_snippets,
            cluster,
            options,
            &mut warnings,
            // The installer's config has its own base, which has none of the protected parts.
            &mut Vec::new(),
        );
        match (final_configs, installer_configs) {
            (Ok(final_configs), Ok(installer_configs)) => Ok(SharedSnippets {
                final_merged: merge_all(&final_configs),
                installer_merged: merge_all(&installer_configs),
                warnings,
                final_violations,
            }),
            (Err(a), Err(b)) => Err(Diagnostics([a.0, b.0].concat())),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

/// Translates each snippet; collects the errors of all of them before failing. What each
/// snippet changes of the protected parts of the base config goes to `violations`.
pub fn translate_all(
    snippets: &[Snippet],
    cluster: &Cluster,
    options: &RenderOptions,
    warnings: &mut Vec<Diagnostic>,
    violations: &mut Vec<Guarded>,
) -> Result<Vec<Value>, Diagnostics> {
    let mut configs = Vec::with_capacity(snippets.len());
    let mut errors = Vec::new();
    for snippet in snippets {
        match translate(snippet, cluster, options) {
            Ok((t, w)) => {
                violations.extend(contract::violations(&t.config).into_iter().map(|v| {
                    let (path, pos) = t.locate(&v.json_path);
                    let entry = butane::Entry {
                        kind: butane::Kind::Error,
                        message: v.message,
                        path,
                        line: pos.map(|p| p.0),
                        column: pos.map(|p| p.1),
                    };
                    let mut d = to_diagnostic(snippet, &entry).with_help(contract::help(v.item));
                    d.span_len = scalar_len(&d.source_line, d.column);
                    (v.item, d)
                }));
                configs.push(t.config);
                warnings.extend(w);
            }
            Err(d) => errors.extend(d),
        }
    }
    if errors.is_empty() {
        Ok(configs)
    } else {
        Err(Diagnostics(errors))
    }
}

fn translate(
    snippet: &Snippet,
    cluster: &Cluster,
    options: &RenderOptions,
) -> Result<(butane::Translation, Vec<Diagnostic>), Vec<Diagnostic>> {
    // `local:` files are relative to the cluster file's directory. A cluster file named
    // without a directory (`cluster.hcl`) has an empty parent, which Butane reads as "no files
    // directory": use `.` so `cluster.hcl` and `./cluster.hcl` behave the same.
    let base_dir = match cluster.source.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let butane_options = butane::Options {
        files_dir: Some(base_dir),
        strict: options.strict,
    };
    match butane::translate(&snippet.text, &butane_options) {
        Ok(t) => {
            let warnings = t
                .report
                .entries
                .iter()
                .map(|e| to_diagnostic(snippet, e))
                .collect();
            Ok((t, warnings))
        }
        Err(error) => Err(error_diagnostics(snippet, &error)),
    }
}

/// Every error entry of a failed translation as a diagnostic; errors that carry no entries
/// (a missing `variant`, an unknown version, YAML syntax) become one diagnostic of their own.
fn error_diagnostics(snippet: &Snippet, error: &butane::Error) -> Vec<Diagnostic> {
    if let butane::Error::Syntax {
        message,
        problem_line,
        column,
        ..
    } = error
    {
        // The line go-yaml would print is often the enclosing collection's (and 0-based):
        // point at the problem itself.
        let entry = butane::Entry {
            kind: butane::Kind::Error,
            message: format!("invalid YAML: {message}"),
            path: String::new(),
            line: Some((*problem_line).max(1)),
            column: Some((*column).max(1)),
        };
        let mut d = to_diagnostic(snippet, &entry);
        d.help = yaml_hint(message).map(String::from);
        return vec![d];
    }
    let mut out: Vec<Diagnostic> = error
        .report()
        .map(|r| {
            r.entries
                .iter()
                .map(|e| to_diagnostic(snippet, e))
                .collect()
        })
        .unwrap_or_default();
    if !out.iter().any(|d| d.severity == Severity::Error) {
        // e.g. --strict with only warnings: say why the warnings became fatal, at the top.
        let entry = butane::Entry {
            kind: butane::Kind::Error,
            message: format!("translating Butane snippet: {error}"),
            path: String::new(),
            line: Some(1),
            column: Some(1),
        };
        out.insert(0, to_diagnostic(snippet, &entry));
    }
    out
}

/// The length in characters of the plain YAML scalar starting at 1-based `column` of `line`
/// (up to a comment or the end of the line), at least 1.
fn scalar_len(line: &str, column: usize) -> usize {
    let rest: String = line.chars().skip(column.saturating_sub(1)).collect();
    let value = rest.split(" #").next().unwrap_or("").trim_end();
    value.chars().count().max(1)
}

/// A hint for the YAML mistakes people make most.
fn yaml_hint(message: &str) -> Option<&'static str> {
    if message.contains("tab") || message == "found character that cannot start any token" {
        Some("YAML is indented with spaces; tabs are not allowed")
    } else if message.starts_with("did not find expected '-' indicator")
        || message.starts_with("did not find expected key")
    {
        Some("check this line's indentation: the keys of one mapping start in the same column")
    } else if message == "found unexpected end of stream" {
        Some("is a closing quote or bracket missing?")
    } else {
        None
    }
}

fn origin_file(snippet: &Snippet) -> PathBuf {
    match &snippet.origin {
        SnippetOrigin::File(p) => p.clone(),
        SnippetOrigin::Inline { file, .. } => file.clone(),
    }
}

/// Places a Butane report entry (line/column within the snippet text) onto the file the user
/// edits: the snippet's own file, or the cluster file around an inline heredoc.
fn to_diagnostic(snippet: &Snippet, entry: &butane::Entry) -> Diagnostic {
    let severity = match entry.kind {
        butane::Kind::Warning => Severity::Warning,
        _ => Severity::Error,
    };
    let message = if entry.path.is_empty() {
        entry.message.clone()
    } else {
        format!("{} (at {})", entry.message, entry.path)
    };
    let (Some(line), Some(column)) = (entry.line, entry.column) else {
        let mut d = Diagnostic::error_in_file(&origin_file(snippet), message);
        d.severity = severity;
        return d;
    };
    let mut d = match &snippet.origin {
        SnippetOrigin::File(path) => {
            Diagnostic::error_at_line_col(path, &snippet.text, line, column, 1, message)
        }
        SnippetOrigin::Inline {
            file,
            line: first_line,
        } => {
            // The heredoc's indentation was stripped: find the snippet line inside the cluster
            // file's line to recover the column the user sees.
            let snippet_line = snippet
                .text
                .lines()
                .nth(line.saturating_sub(1))
                .unwrap_or("");
            let file_line_no = first_line + line - 1;
            let file_text = std::fs::read_to_string(file).unwrap_or_default();
            let file_line = file_text.lines().nth(file_line_no - 1).unwrap_or("");
            let indent = if snippet_line.is_empty() {
                0
            } else {
                file_line
                    .find(snippet_line)
                    .map_or(0, |i| file_line[..i].chars().count())
            };
            if file_text.is_empty() {
                Diagnostic::error_at_line_col(file, &snippet.text, line, column, 1, message)
            } else {
                Diagnostic::error_at_line_col(
                    file,
                    &file_text,
                    file_line_no,
                    column + indent,
                    1,
                    message,
                )
            }
        }
    };
    d.severity = severity;
    d
}

/// Ignition's merge of `child` into `parent`; the result carries the newer of the two spec
/// versions, since a 3.3.0 config is also valid under 3.4.0 but not the other way round.
pub fn merge(parent: &Value, child: &Value) -> Value {
    let mut merged = butane::merge::merge(parent, child);
    let version = |v: &Value| {
        v.pointer("/ignition/version")
            .and_then(Value::as_str)
            .map(parse_version)
    };
    if let (Some(a), Some(b)) = (version(parent), version(child)) {
        let newest = if a >= b { parent } else { child };
        if let (Some(slot), Some(v)) = (
            merged.pointer_mut("/ignition/version"),
            newest.pointer("/ignition/version"),
        ) {
            *slot = v.clone();
        }
    }
    merged
}

fn parse_version(v: &str) -> (u32, u32, u32, bool) {
    let (core, pre) = match v.split_once('-') {
        Some((c, _)) => (c, true),
        None => (v, false),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        // A release sorts after its own pre-releases.
        !pre,
    )
}
