//! Butane to Ignition translation (variant `flatcar`), behaving like CoreOS's Butane.
//!
//! Standalone: knows nothing of roundhouse. Supports `variant: flatcar` with `version: 1.0.0`
//! (→ Ignition 3.3.0) and `1.1.0` (→ Ignition 3.4.0), Butane's diagnostics with YAML line and
//! column ([`Report`], printed like the `butane` CLI), and Ignition's config merge
//! ([`merge::merge`]).
//!
//! ```
//! let bu = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hi\n";
//! let t = butane::translate(bu, &butane::Options::default()).unwrap();
//! assert_eq!(
//!     butane::to_json(&t.config, false),
//!     r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"compression":"","source":"data:,hi"}}]}}"#
//! );
//! ```
//!
//! Pipeline (each step as in Butane's Go code): YAML with positions → `variant` /
//! `version` → decoding into the spec's shape with go-yaml's type errors → unused-key
//! warnings → Butane's own checks → translation (data URLs, `*_local`, mount units, trees) →
//! the flatcar field filter → Ignition's duplicate and semantic validation, mapped back to
//! YAML paths and positions.
//!
//! Known differences from CoreOS Butane:
//! - gzip data URLs: same header, different deflate stream (Go's `compress/flate` vs
//!   miniz_oxide), so the base64 text differs and, for inputs where the gzip form and another
//!   form are within a few bytes, the chosen form can differ (8 of 3000 files of a Debian
//!   system in one measurement). Decoded contents are identical.
//! - YAML syntax errors come from yaml-rust2 and are reworded to libyaml's text and go-yaml's
//!   line choice for the common mistakes (tabs, bad indentation, unclosed quotes or
//!   brackets, unknown anchors); rarer ones keep yaml-rust2's wording.
//! - Only the `flatcar` variant exists; others get "No translator exists ...".
//! - Inline configs under `ignition.config` are validated like Butane v0.24+, but JSON parse
//!   errors use serde_json's wording instead of Go's.

use std::path::PathBuf;

use serde_json::Value;

mod dataurl;
mod decode;
mod json;
pub mod merge;
mod path;
mod report;
mod schema;
mod translate;
mod unit;
mod util;
mod validate;
mod yaml;

pub use dataurl::{decode as decode_data_url, make_data_url};
pub use json::to_json;
pub use report::{Entry, Kind, Report};

use path::{Elem, Path};
use schema::Spec;
use translate::{Diag, Translations, Translator};

/// Translation settings (the `butane` CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--files-dir`: root for `local:` file contents and `trees`. `None` forbids local files.
    pub files_dir: Option<PathBuf>,
    /// `--strict`: warnings fail the translation.
    pub strict: bool,
}

/// A successful translation.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The Ignition config.
    pub config: Value,
    /// Warnings (empty when the input is clean).
    pub report: Report,
    /// The YAML tree and where generated output came from, for [`Translation::locate`].
    root: Option<yaml::Node>,
    translations: Translations,
}

impl Translation {
    /// Where the output at `ignition_path` came from in the Butane document: `ignition_path`
    /// is a JSON path of the Ignition config in steps separated by dots (`storage.files.2.path`,
    /// camelCase keys, list indices as numbers). Returns the YAML path (`$.storage.files.2.path`)
    /// and the 1-based line and column of the deepest YAML node on it, as diagnostics of
    /// [`translate`] are placed.
    pub fn locate(&self, ignition_path: &str) -> (String, Option<(usize, usize)>) {
        let steps: Vec<&str> = ignition_path.split('.').filter(|s| !s.is_empty()).collect();
        let yaml_path = self.translations.to_yaml(&Path::from_steps(&steps));
        let pos = locate(self.root.as_ref(), &yaml_path).map(|p| (p.line, p.column));
        (yaml_path.to_string(), pos)
    }
}

/// Why a translation failed. The `Display` text is what the `butane` CLI prints after
/// `Error translating config: `.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The YAML is not well-formed. `line` is what go-yaml prints (0 when it prints none),
    /// `column` where the parser stopped.
    #[error("Error unmarshaling yaml: yaml: {}{message}", if *.line > 0 { format!("line {line}: ") } else { String::new() })]
    Syntax {
        /// The parser's message.
        message: String,
        /// The line go-yaml prints: for parser errors the 0-based line of the enclosing
        /// collection, else the 1-based line of the problem (0 when it prints none).
        line: usize,
        /// 1-based line where the parser found the problem, in the input as given: where an
        /// editor should put the cursor (unlike `line`, which follows go-yaml's choice).
        problem_line: usize,
        /// 1-based column where the parser found the problem, on `problem_line`.
        column: usize,
    },
    /// Values of the wrong YAML type (go-yaml's unmarshal errors); entries carry positions.
    #[error("{}yaml: unmarshal errors:{}", if *.header { "Error unmarshaling yaml: " } else { "" },
        .report.entries.iter().map(|e| format!("\n  line {}: {}", e.line.unwrap_or(0), e.message)).collect::<String>())]
    Types {
        /// One error entry per go-yaml error.
        report: Report,
        /// Raised while reading `variant`/`version` (Butane words that case differently).
        header: bool,
    },
    /// `variant` is missing.
    #[error("error parsing variant; must be specified")]
    NoVariant,
    /// `version` is not a semantic version.
    #[error("error parsing version; must be a valid semver")]
    InvalidVersion,
    /// Not `flatcar` 1.0.0 or 1.1.0.
    #[error("No translator exists for variant {variant} with version {version}")]
    UnknownVersion {
        /// The variant given.
        variant: String,
        /// The version given.
        version: String,
    },
    /// The Butane config is invalid; the report has the errors (and any warnings).
    #[error("source config is invalid")]
    Report(Report),
    /// The generated Ignition config failed Ignition's validation.
    #[error("config generated was invalid")]
    GeneratedInvalid(Report),
    /// `strict` is set and there were warnings.
    #[error("Config produced warnings and --strict was specified")]
    Strict(Report),
}

impl Error {
    /// The diagnostics that come with this error, if any.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Error::Types { report, .. }
            | Error::Report(report)
            | Error::GeneratedInvalid(report)
            | Error::Strict(report) => Some(report),
            _ => None,
        }
    }
}

/// Rewords a yaml-rust2 error the way go-yaml (libyaml) reports the same mistake: libyaml's
/// problem text without the "while parsing ..." context, and go-yaml's line choice (for
/// parser errors the 0-based line of the enclosing collection, else of the problem; for
/// scanner errors the 1-based line).
fn go_yaml_syntax_error(e: yaml::SyntaxError, input: &str) -> Error {
    let (problem_line, problem_column) = problem_position(&e, input);
    let problem = match e.message.split_once(", ") {
        Some((ctx, p)) if ctx.starts_with("while ") => p.to_string(),
        _ => e.message.clone(),
    };
    let problem = match problem.as_str() {
        "expected ',' or ']'" => "did not find expected ',' or ']'".to_string(),
        "tabs disallowed within this context (block indentation)" => {
            "found character that cannot start any token".to_string()
        }
        "invalid indentation in quoted scalar" => "found unexpected end of stream".to_string(),
        p if p.starts_with("unexpected character: ") => {
            "found character that cannot start any token".to_string()
        }
        _ => problem,
    };
    if problem == "found unknown anchor" {
        let line = input
            .lines()
            .nth(e.pos.line.saturating_sub(1))
            .unwrap_or("");
        let rest: String = line.chars().skip(e.pos.column.saturating_sub(1)).collect();
        let name: String = rest
            .trim_start_matches('*')
            .chars()
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .collect();
        return Error::Syntax {
            message: format!("unknown anchor '{name}' referenced"),
            line: 0,
            problem_line,
            column: problem_column,
        };
    }
    let parser_error = problem.starts_with("did not find expected");
    let line = if parser_error {
        match e.context_line.map(|l| l - 1) {
            Some(ctx) if ctx > 0 => ctx,
            _ => e.pos.line.saturating_sub(1),
        }
    } else {
        e.pos.line
    };
    Error::Syntax {
        message: problem,
        line,
        problem_line,
        column: problem_column,
    }
}

/// Where an editor should put the cursor for a syntax error. yaml-rust2 reports a tab in the
/// indentation at the scalar it was scanning (often the line before), and an indentation
/// mistake after the key it could not place: the tab itself, and the start of the key, are
/// what the user must change.
fn problem_position(e: &yaml::SyntaxError, input: &str) -> (usize, usize) {
    let lines: Vec<&str> = input.lines().collect();
    if e.message.contains("tab") {
        for (i, line) in lines.iter().enumerate().skip(e.pos.line.saturating_sub(1)) {
            let indent: String = line
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect();
            if let Some(col) = indent.chars().position(|c| c == '\t') {
                return (i + 1, col + 1);
            }
        }
    }
    let indentation = e.message.contains("did not find expected '-' indicator")
        || e.message.contains("did not find expected key");
    if indentation && let Some(line) = lines.get(e.pos.line.saturating_sub(1)) {
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if indent < line.chars().count() {
            return (e.pos.line, indent + 1);
        }
    }
    (e.pos.line, e.pos.column)
}

/// go-yaml's unmarshal errors (message, line, column) as report entries; they have no path.
fn type_errors(errors: Vec<(String, usize, usize)>) -> Report {
    Report {
        entries: errors
            .into_iter()
            .map(|(message, line, column)| Entry {
                kind: Kind::Error,
                message,
                path: String::new(),
                line: Some(line),
                column: Some(column),
            })
            .collect(),
    }
}

/// Position of the deepest YAML node on `path` (vcontext's `Correlate`).
fn locate(root: Option<&yaml::Node>, path: &Path) -> Option<yaml::Pos> {
    let mut node = root?;
    for e in &path.0 {
        if node.alias {
            break;
        }
        let next = match (e, &node.kind) {
            (Elem::Field(f), yaml::NodeKind::Map(_)) => node.get(f),
            (Elem::Index(i), yaml::NodeKind::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    Some(node.pos)
}

fn to_entries(root: Option<&yaml::Node>, diags: Vec<Diag>) -> Vec<Entry> {
    diags
        .into_iter()
        .map(|d| Entry::new(d.kind, d.message, d.path.to_string(), locate(root, &d.path)))
        .collect()
}

/// `variant` and `version` as go-yaml reads them into strings (null = empty); non-scalars are
/// type errors, all reported together in source order.
fn common_fields(root: Option<&yaml::Node>) -> Result<(String, String), Error> {
    let mut variant = String::new();
    let mut version = String::new();
    let mut report = Report::default();
    if let Some(yaml::Node {
        kind: yaml::NodeKind::Map(entries),
        ..
    }) = root
    {
        for (k, _, n) in entries {
            let slot = match k.as_str() {
                "variant" => &mut variant,
                "version" => &mut version,
                _ => continue,
            };
            match &n.kind {
                yaml::NodeKind::Scalar { value, style, .. } => {
                    let null = *style == yaml::Style::Plain
                        && decode::resolve_plain(value) == decode::Scalar::Null;
                    *slot = if null { String::new() } else { value.clone() };
                }
                _ => report.entries.push(Entry::new(
                    Kind::Error,
                    decode::cannot_unmarshal(n, "string"),
                    String::new(),
                    Some(n.pos),
                )),
            }
        }
    }
    if report.is_empty() {
        Ok((variant, version))
    } else {
        Err(Error::Types {
            report,
            header: true,
        })
    }
}

/// A strict semantic version (go-semver): `MAJOR.MINOR.PATCH[-pre][+build]`.
pub(crate) fn parse_semver(v: &str) -> Option<String> {
    let (core, build) = v.split_once('+').unwrap_or((v, ""));
    let (nums, pre) = core.split_once('-').unwrap_or((core, ""));
    let parts: Vec<&str> = nums.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n: Vec<u64> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    // go-semver's String(): empty pre-release or build parts are dropped, others kept (so
    // "1.0.0+build" is a version no translator knows).
    let mut s = format!("{}.{}.{}", n[0], n[1], n[2]);
    if !pre.is_empty() {
        s.push('-');
        s.push_str(pre);
    }
    if !build.is_empty() {
        s.push('+');
        s.push_str(build);
    }
    Some(s)
}

/// Translates a Butane config (YAML text) into an Ignition config.
pub fn translate(input: &str, options: &Options) -> Result<Translation, Error> {
    // libyaml skips a byte-order mark without counting it in positions.
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let root = yaml::parse(input).map_err(|e| go_yaml_syntax_error(e, input))?;
    let root = root.as_ref();
    if let Some(n) = root
        && let yaml::NodeKind::Map(entries) = &n.kind
    {
        // go-yaml rejects duplicate keys even while reading only variant/version.
        let report = type_errors(decode::duplicate_keys(entries));
        if !report.is_empty() {
            return Err(Error::Types {
                report,
                header: true,
            });
        }
    }
    if let Some(n) = root {
        let null = matches!(&n.kind, yaml::NodeKind::Scalar { value, style: yaml::Style::Plain, .. }
            if decode::resolve_plain(value) == decode::Scalar::Null);
        if !null && !matches!(n.kind, yaml::NodeKind::Map(_)) {
            return Err(Error::Types {
                report: Report {
                    entries: vec![Entry::new(
                        Kind::Error,
                        decode::cannot_unmarshal(n, "config.commonFields"),
                        String::new(),
                        Some(n.pos),
                    )],
                },
                header: true,
            });
        }
    }
    let (variant, version) = common_fields(root)?;
    if variant.is_empty() {
        return Err(Error::NoVariant);
    }
    let version = parse_semver(&version).ok_or(Error::InvalidVersion)?;
    let spec = match (variant.as_str(), version.as_str()) {
        ("flatcar", "1.0.0") => Spec::V1_0,
        ("flatcar", "1.1.0") => Spec::V1_1,
        _ => return Err(Error::UnknownVersion { variant, version }),
    };

    let decoded = decode::decode(root, spec);
    if !decoded.errors.is_empty() {
        return Err(Error::Types {
            report: type_errors(decoded.errors),
            header: false,
        });
    }
    let mut report = Report::default();
    decode::unused_keys(&decoded.value, root, spec, &mut report);

    let butane_diags = validate::validate_butane(&decoded.value, spec);
    report.entries.extend(to_entries(root, butane_diags));
    if report.is_fatal() {
        return Err(Error::Report(report));
    }

    let mut tr = Translator {
        spec,
        files_dir: options.files_dir.as_deref(),
        diags: Vec::new(),
        translations: Translations::default(),
    };
    let config = tr.translate(&decoded.value);
    report.entries.extend(to_entries(root, tr.diags));
    if report.is_fatal() {
        return Err(Error::Report(report));
    }
    let translations = tr.translations;
    let to_yaml = |diags: Vec<Diag>| -> Vec<Entry> {
        let mapped = diags
            .into_iter()
            .map(|d| Diag {
                path: translations.to_yaml(&d.path),
                ..d
            })
            .collect();
        to_entries(root, mapped)
    };
    report
        .entries
        .extend(to_yaml(validate::flatcar_filter(&config)));
    if report.is_fatal() {
        return Err(Error::Report(report));
    }
    report
        .entries
        .extend(to_yaml(validate::validate_dups(&config)));
    report
        .entries
        .extend(to_yaml(validate::validate_ignition(&config, spec)));
    if report.is_fatal() {
        return Err(Error::GeneratedInvalid(report));
    }
    if options.strict && !report.is_empty() {
        return Err(Error::Strict(report));
    }
    let root = root.cloned();
    Ok(Translation {
        config,
        report,
        root,
        translations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_parsing() {
        assert_eq!(parse_semver("1.0.0").as_deref(), Some("1.0.0"));
        assert_eq!(parse_semver("1.1.0+x").as_deref(), Some("1.1.0+x"));
        assert_eq!(parse_semver("1.0.0-").as_deref(), Some("1.0.0"));
        assert_eq!(parse_semver("01.0.0").as_deref(), Some("1.0.0"));
        assert_eq!(parse_semver("1.0"), None);
    }
}
