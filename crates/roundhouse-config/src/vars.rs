//! `variable` blocks and the values that override their defaults: the environment, var files
//! and `--var`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hcl::edit::expr::Expression;
use hcl::edit::structure::Block;

use crate::LoadOptions;
use crate::diagnostic::did_you_mean;
use crate::eval::{Kind, Scope, Sink, Source, Value, Vars, eval, span_of};
use crate::load::parse_error;
use crate::model::SnippetOrigin;
use crate::schema::{Reader, VARIABLE_ATTRS, check_labels, fields, header_span};

/// Declared variables resolved: default, then environment, var files and `--var`, later wins.
pub(crate) fn resolve_variables(
    blocks: &[&Block],
    src: &Source,
    options: &LoadOptions,
    sink: &mut Sink,
) -> Vars {
    struct Decl<'a> {
        block: &'a Block,
        default: Option<Value>,
        default_failed: bool,
    }
    let mut decls: BTreeMap<String, Decl<'_>> = BTreeMap::new();
    let mut vars = Vars::default();
    for block in blocks {
        if !check_labels(block, 1, "variable \"NAME\" { default = ... }", src, sink) {
            continue;
        }
        let name = block.labels[0].as_str().to_string();
        let label_span = span_of(&block.labels[0]);
        if !is_identifier(&name) {
            sink.error(src, &label_span, format!("invalid variable name {name:?}"))
                .help = Some(
                "variable names are letters, digits, `_` and `-`, starting with a letter".into(),
            );
            vars.failed.push(name);
            continue;
        }
        if let Some(prev) = decls.get(&name) {
            let line = src.line_of(span_of(&prev.block.ident).start);
            sink.error(
                src,
                &label_span,
                format!("variable `{name}` is declared twice (first on line {line})"),
            );
            continue;
        }
        let (f, _) = fields(
            &block.body,
            format!("variable \"{name}\""),
            header_span(block),
            VARIABLE_ATTRS,
            &[],
            src,
            sink,
        );
        let mut r = Reader {
            scope: Scope::new(src, None),
            sink: &mut *sink,
        };
        r.string(&f, "description");
        let (default, default_failed) = match f.get("default") {
            Some(attr) => {
                let v = r.eval(attr);
                let failed = v.is_none();
                (v, failed)
            }
            None => (None, false),
        };
        decls.insert(
            name,
            Decl {
                block,
                default,
                default_failed,
            },
        );
    }

    let declared: Vec<&str> = decls.keys().map(String::as_str).collect();
    // `None`: an override was given but is invalid (reported); the variable then has no value,
    // silently, rather than falling back to its default.
    let mut overrides: BTreeMap<String, Option<Value>> = BTreeMap::new();

    // Environment first: it is the weakest override, as TF_VAR_ is in Terraform.
    let env: Vec<(String, String)> = match &options.env {
        Some(env) => env.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    for (name, decl) in &decls {
        let exact = format!("ROUNDHOUSE_VAR_{name}");
        let upper = format!("ROUNDHOUSE_VAR_{}", name.to_uppercase());
        let found = env
            .iter()
            .find(|(k, _)| *k == exact)
            .or_else(|| env.iter().find(|(k, _)| *k == upper));
        if let Some((key, text)) = found {
            let origin = format!("<environment {key}>");
            let v = cli_value(text, decl.default.as_ref(), &origin, sink);
            overrides.insert(name.clone(), v);
        }
    }

    for file in &options.var_files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                sink.error_in_file(file, format!("reading var file: {e}"));
                continue;
            }
        };
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        let vsrc = Source::new(file.clone(), text);
        let body = match hcl::edit::parser::parse_body(&vsrc.text) {
            Ok(b) => b,
            Err(e) => {
                sink.diags.push(parse_error(&vsrc, &e));
                continue;
            }
        };
        for block in body.blocks() {
            sink.error(
                &vsrc,
                &span_of(&block.ident),
                "var files hold only `name = value` lines, not blocks",
            );
        }
        for attr in body.attributes() {
            let name = attr.key.value().to_string();
            if !decls.contains_key(&name) {
                let d = sink.error(
                    &vsrc,
                    &span_of(&attr.key),
                    format!("var file sets `{name}`, which the cluster file does not declare"),
                );
                d.help = did_you_mean(&name, &declared).map(|c| format!("did you mean `{c}`?"));
                continue;
            }
            let scope = Scope::new(&vsrc, None);
            let v = eval(&attr.value, &scope, sink);
            overrides.insert(name, v);
        }
    }

    for (name, text) in &options.vars {
        let Some(decl) = decls.get(name) else {
            let d = sink.error_in_file(
                &src.path,
                format!("--var sets `{name}`, which the cluster file does not declare"),
            );
            d.help = did_you_mean(name, &declared).map(|c| format!("did you mean `{c}`?"));
            continue;
        };
        let origin = format!("<--var {name}>");
        let v = cli_value(text, decl.default.as_ref(), &origin, sink);
        overrides.insert(name.clone(), v);
    }

    for (name, decl) in decls {
        let (value, reported) = match overrides.remove(&name) {
            Some(v) => (v, true),
            None => (decl.default, decl.default_failed),
        };
        match value {
            Some(v) => {
                vars.values.insert(name, v);
            }
            None => {
                if !reported {
                    let d = sink.error(
                        src,
                        &header_span(decl.block),
                        format!("variable `{name}` has no value"),
                    );
                    d.help = Some(format!(
                        "give it a `default`, or pass --var {name}=VALUE, a --var-file, or set ROUNDHOUSE_VAR_{name}"
                    ));
                }
                vars.failed.push(name);
            }
        }
    }
    vars
}

/// A value given on the command line or in the environment. Like Terraform, it is a plain
/// string, except for a variable whose default is a bool, number, list or object: then it is
/// an HCL expression (`true`, `3`, `["a", "b"]`).
fn cli_value(text: &str, default: Option<&Value>, origin: &str, sink: &mut Sink) -> Option<Value> {
    let vsrc = Source::new(PathBuf::from(origin), text.to_string());
    let typed = matches!(
        default.map(|d| &d.kind),
        Some(Kind::Bool(_) | Kind::Number(_) | Kind::List(_) | Kind::Object(_))
    );
    if !typed {
        return Some(Value {
            kind: Kind::String(
                text.to_string(),
                SnippetOrigin::Inline {
                    file: vsrc.path.clone(),
                    line: 1,
                },
            ),
            span: 0..text.len(),
        });
    }
    let expr: Expression = match hcl::edit::parser::parse_expr(text) {
        Ok(e) => e,
        Err(e) => {
            sink.diags.push(parse_error(&vsrc, &e));
            return None;
        }
    };
    eval(&expr, &Scope::new(&vsrc, None), sink)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
