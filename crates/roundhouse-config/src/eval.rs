//! Evaluation of HCL expressions into [`Value`]s.
//!
//! We evaluate `hcl-edit` syntax trees ourselves instead of going through `hcl::eval`, because
//! only the syntax tree knows where each sub-expression is: an unreadable `file("x")` or an
//! unknown `var.y` is reported at that call or reference, not at the whole attribute.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl::edit::Span as _;
use hcl::edit::expr::{
    BinaryOperator, Expression, FuncCall, ObjectKey, Traversal, TraversalOperator, UnaryOperator,
};
use hcl::edit::template::{
    Directive, Element, ForTemplateExpr, HeredocTemplate, Interpolation, Strip, Template,
};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::model::SnippetOrigin;

/// A file being read: the cluster file or a var file.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of the start of each line. Every string value records its line, so looking
    /// lines up must not scan the text: a 10,000-node file has tens of thousands of strings.
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// An error at a byte span, rendered like [`Diagnostic::error_at`] but using the line index.
    pub fn diagnostic(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let text = self.text.as_str();
        let mut offset = span.start.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_of(offset);
        let line_start = self.line_starts[line - 1];
        let line_end = self
            .line_starts
            .get(line)
            .map_or(text.len(), |next| next - 1);
        let mut end = span.end.max(offset).min(line_end);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Diagnostic {
            severity: crate::diagnostic::Severity::Error,
            message: message.into(),
            file: self.path.clone(),
            line,
            column: text[line_start..offset].chars().count() + 1,
            source_line: text[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            span_len: text[offset..end].chars().count().max(1),
            help: None,
        }
    }

    /// The text of a span, or "" when the span is not within the text.
    pub fn slice(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }

    /// Directory that relative paths in this file are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Collects diagnostics; loading fails if any were collected.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub diags: Vec<Diagnostic>,
}

impl Sink {
    /// Records an error at `span` of `src` and returns it so a hint can be attached.
    pub fn error(
        &mut self,
        src: &Source,
        span: &Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags.push(src.diagnostic(span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// Records an error without a position.
    pub fn error_in_file(&mut self, path: &Path, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error_in_file(path, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }
}

/// The span of any syntax node; nodes built by the parser always have one.
pub(crate) fn span_of(node: &impl hcl::edit::Span) -> Range<usize> {
    node.span().unwrap_or(0..0)
}

/// An evaluated value with the place in the cluster file it stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub kind: Kind,
    /// Where diagnostics about this value point (in the file being evaluated).
    pub span: Range<usize>,
}

/// The HCL value types roundhouse uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Number(f64),
    /// A string and where its text came from, for mapping snippet diagnostics back.
    String(String, SnippetOrigin),
    List(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Kind {
    /// The type's name as diagnostics spell it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "bool",
            Kind::Number(_) => "number",
            Kind::String(..) => "string",
            Kind::List(_) => "list",
            Kind::Object(_) => "object",
        }
    }

    /// The type name with the value when it is short enough to help, e.g. `string "abc"`.
    pub fn describe(&self) -> String {
        match self {
            Kind::Bool(b) => format!("bool {b}"),
            Kind::Number(n) => format!("number {}", format_number(*n)),
            Kind::String(s, _) if s.chars().count() <= 40 && !s.contains('\n') => {
                format!("string {s:?}")
            }
            other => other.type_name().to_string(),
        }
    }
}

/// Numbers print like Terraform prints them: integers without a fraction.
pub(crate) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl Value {
    /// The same value pointing at `span`, recursively: a variable's value is reported where the
    /// variable is used, since its definition may be in another file.
    pub fn respan(mut self, span: &Range<usize>) -> Value {
        self.span = span.clone();
        match &mut self.kind {
            Kind::List(items) => {
                for item in items {
                    *item = item.clone().respan(span);
                }
            }
            Kind::Object(fields) => {
                for (_, v) in fields {
                    *v = v.clone().respan(span);
                }
            }
            _ => {}
        }
        self
    }

    /// Terraform's automatic conversion to string: numbers and bools convert, others don't.
    pub fn as_string(&self) -> Option<String> {
        match &self.kind {
            Kind::String(s, _) => Some(s.clone()),
            Kind::Number(n) => Some(format_number(*n)),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Where expressions are evaluated: which file, which variables are visible.
pub(crate) struct Scope<'a> {
    pub src: &'a Source,
    /// `None` where variables may not be referenced (defaults and var files, as in Terraform).
    pub vars: Option<&'a Vars>,
    /// Names bound by `%{ for }` directives around the expression, innermost last.
    pub locals: &'a [(String, Value)],
}

impl<'a> Scope<'a> {
    /// A scope without template locals.
    pub fn new(src: &'a Source, vars: Option<&'a Vars>) -> Scope<'a> {
        Scope {
            src,
            vars,
            locals: &[],
        }
    }
}

/// Variables resolved so far.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    pub values: BTreeMap<String, Value>,
    /// Declared variables whose value failed to evaluate: references to them stay silent since
    /// the failure was already reported.
    pub failed: Vec<String>,
}

/// Functions available in expressions, for "did you mean" and the documentation.
pub(crate) const FUNCTIONS: &[&str] = &[
    "file",
    "trimspace",
    "chomp",
    "join",
    "format",
    "lower",
    "upper",
    "concat",
    "length",
    "replace",
];

/// Evaluates `expr`; on failure the reason has been recorded in `sink` and `None` returned.
pub(crate) fn eval(expr: &Expression, scope: &Scope<'_>, sink: &mut Sink) -> Option<Value> {
    let span = span_of(expr);
    let src = scope.src;
    let inline = |offset: usize| SnippetOrigin::Inline {
        file: src.path.clone(),
        line: src.line_of(offset),
    };
    let kind = match expr {
        Expression::Null(_) => Kind::Null,
        Expression::Bool(b) => Kind::Bool(*b.value()),
        Expression::Number(n) => match n.value().as_f64() {
            Some(f) => Kind::Number(f),
            None => {
                sink.error(
                    src,
                    &span,
                    format!("number {} is out of range", shorten(src.slice(&span))),
                )
                .help = Some(NUMBER_RANGE_HELP.into());
                return None;
            }
        },
        Expression::String(s) => {
            if src.slice(&span).contains('\n') {
                return multi_line_string(src, &span, sink);
            }
            Kind::String(s.value().clone(), inline(span.start))
        }
        Expression::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items.iter() {
                match eval(item, scope, sink) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            Kind::List(out)
        }
        Expression::Object(object) => {
            let mut out: Vec<(String, Value)> = Vec::new();
            let mut ok = true;
            for (key, value) in object.iter() {
                let name = match key {
                    ObjectKey::Ident(ident) => Some(ident.value().to_string()),
                    ObjectKey::Expression(e) => match eval(e, scope, sink) {
                        Some(v) => match v.as_string() {
                            Some(s) => Some(s),
                            None => {
                                sink.error(
                                    src,
                                    &v.span,
                                    format!(
                                        "object keys must be strings, found {}",
                                        v.kind.type_name()
                                    ),
                                );
                                None
                            }
                        },
                        None => None,
                    },
                };
                let value = eval(value.expr(), scope, sink);
                match (name, value) {
                    (Some(name), Some(value)) => {
                        if out.iter().any(|(k, _)| *k == name) {
                            sink.error(
                                src,
                                &span_of(key),
                                format!("duplicate object key `{name}`"),
                            );
                            ok = false;
                        } else {
                            out.push((name, value));
                        }
                    }
                    _ => ok = false,
                }
            }
            if !ok {
                return None;
            }
            Kind::Object(out)
        }
        Expression::StringTemplate(template) => {
            // As in Terraform, `"${x}"` is `x` itself, not its text: lists stay lists and a
            // `file()` keeps its origin.
            let mut elements = template.iter();
            if let (Some(Element::Interpolation(only)), None) = (elements.next(), elements.next()) {
                return eval(&only.expr, scope, sink).map(|v| v.respan(&span));
            }
            let broken = template.iter().any(|e| {
                matches!(e, Element::Literal(lit) if lit.span().is_some_and(|s| src.slice(&s).contains('\n')))
            });
            if broken {
                return multi_line_string(src, &span, sink);
            }
            let toks = tokens(template, src, false);
            Kind::String(render(&toks, scope, sink)?, inline(span.start))
        }
        Expression::HeredocTemplate(heredoc) => {
            closing_marker_alone(src, &span, heredoc.delimiter.as_str(), sink)?;
            let text = eval_heredoc(heredoc, &span, scope, sink)?;
            // The text starts on the line after the `<<EOT` marker.
            Kind::String(
                text,
                SnippetOrigin::Inline {
                    file: src.path.clone(),
                    line: src.line_of(span.start) + 1,
                },
            )
        }
        Expression::Parenthesis(inner) => return eval(inner.inner(), scope, sink),
        Expression::Variable(ident) => {
            let name = ident.value().as_str();
            if let Some((_, v)) = scope.locals.iter().rev().find(|(n, _)| n == name) {
                return Some(v.clone().respan(&span));
            }
            if name == "var" {
                let vars = vars_or_report(scope, &span, sink)?;
                Kind::Object(
                    vars.values
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().respan(&span)))
                        .collect(),
                )
            } else {
                let d = sink.error(src, &span, format!("unknown name `{name}`"));
                d.help = Some(if scope.vars.is_some() {
                    format!("variables are written `var.{name}`; strings need double quotes")
                } else {
                    "strings need double quotes".to_string()
                });
                return None;
            }
        }
        Expression::Traversal(traversal) => return eval_traversal(traversal, &span, scope, sink),
        Expression::FuncCall(call) => return eval_call(call, &span, scope, sink),
        Expression::Conditional(cond) => {
            let c = eval(&cond.cond_expr, scope, sink)?;
            let Some(b) = to_bool(&c) else {
                sink.error(
                    src,
                    &c.span,
                    format!("condition must be a bool, found {}", c.kind.describe()),
                );
                return None;
            };
            let chosen = if b { &cond.true_expr } else { &cond.false_expr };
            return eval(chosen, scope, sink);
        }
        Expression::UnaryOp(op) => {
            let v = eval(&op.expr, scope, sink)?;
            match (op.operator.value(), &v.kind) {
                (UnaryOperator::Not, Kind::Bool(b)) => Kind::Bool(!b),
                (UnaryOperator::Neg, Kind::Number(n)) => Kind::Number(-n),
                (UnaryOperator::Not, _) => {
                    sink.error(
                        src,
                        &v.span,
                        format!("`!` needs a bool, found {}", v.kind.describe()),
                    );
                    return None;
                }
                (UnaryOperator::Neg, _) => {
                    sink.error(
                        src,
                        &v.span,
                        format!("`-` needs a number, found {}", v.kind.describe()),
                    );
                    return None;
                }
            }
        }
        Expression::BinaryOp(op) => {
            let lhs = eval(&op.lhs_expr, scope, sink);
            let rhs = eval(&op.rhs_expr, scope, sink);
            let (lhs, rhs) = (lhs?, rhs?);
            return binary(*op.operator.value(), lhs, rhs, &span, src, sink);
        }
        Expression::ForExpr(_) => {
            sink.error(
                src,
                &span,
                "`for` expressions are not supported in cluster files",
            )
            .help = Some("write the list out, or build it in a variable default".into());
            return None;
        }
    };
    Some(Value { kind, span })
}

/// The hint for a number too large for any setting (HCL numbers are 64-bit floats).
pub(crate) const NUMBER_RANGE_HELP: &str =
    "numbers in a cluster file must be below 1.8e308, and settings take far smaller ones";

/// `text` cut to 30 characters, with `…` when it was longer.
pub(crate) fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(30).collect();
    if text.chars().count() > 30 {
        out.push('…');
    }
    out
}

/// HCL wants a heredoc's closing marker alone on its line (after optional whitespace);
/// `hcl-edit` also accepts `EOT]` or `EOT }`, which Terraform rejects.
fn closing_marker_alone(
    src: &Source,
    span: &Range<usize>,
    marker: &str,
    sink: &mut Sink,
) -> Option<()> {
    let after = src.text.get(span.end..).unwrap_or("");
    let rest = after.split('\n').next().unwrap_or("");
    let trailing = rest.trim_end_matches('\r');
    if trailing.is_empty() {
        return Some(());
    }
    let lead = trailing.len() - trailing.trim_start().len();
    let start = span.end + lead;
    let end = span.end + trailing.len();
    let d = sink.error(
        src,
        &(start..end),
        format!(
            "`{}` after the heredoc's closing `{marker}`: the marker must be alone on its line",
            trailing.trim()
        ),
    );
    d.help = Some(format!(
        "move `{}` to the next line, below `{marker}`",
        trailing.trim()
    ));
    None
}

/// HCL does not allow line breaks in quoted strings (`hcl-edit` accepts them); Terraform
/// rejects them too, and a forgotten closing quote is the usual cause.
fn multi_line_string(src: &Source, span: &Range<usize>, sink: &mut Sink) -> Option<Value> {
    sink.error(src, span, "a quoted string cannot span several lines")
        .help = Some(
        "is a closing `\"` missing? For text of several lines use a heredoc: <<-EOT ... EOT".into(),
    );
    None
}

fn vars_or_report<'a>(scope: &Scope<'a>, span: &Range<usize>, sink: &mut Sink) -> Option<&'a Vars> {
    match scope.vars {
        Some(vars) => Some(vars),
        None => {
            sink.error(
                scope.src,
                span,
                "variables cannot be used here: variable defaults and var files must not refer to other variables",
            );
            None
        }
    }
}

fn to_bool(v: &Value) -> Option<bool> {
    match &v.kind {
        Kind::Bool(b) => Some(*b),
        Kind::String(s, _) if s == "true" => Some(true),
        Kind::String(s, _) if s == "false" => Some(false),
        _ => None,
    }
}

fn to_number(v: &Value) -> Option<f64> {
    match &v.kind {
        Kind::Number(n) => Some(*n),
        Kind::String(s, _) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// Equality ignores where values came from.
fn same(a: &Kind, b: &Kind) -> bool {
    match (a, b) {
        (Kind::String(x, _), Kind::String(y, _)) => x == y,
        (Kind::List(x), Kind::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(&p.kind, &q.kind))
        }
        (Kind::Object(x), Kind::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && same(&v.kind, &v2.kind)))
        }
        _ => a == b,
    }
}

fn binary(
    op: BinaryOperator,
    lhs: Value,
    rhs: Value,
    span: &Range<usize>,
    src: &Source,
    sink: &mut Sink,
) -> Option<Value> {
    use BinaryOperator as B;
    let kind = match op {
        B::Eq => Kind::Bool(same(&lhs.kind, &rhs.kind)),
        B::NotEq => Kind::Bool(!same(&lhs.kind, &rhs.kind)),
        B::And | B::Or => {
            let (Some(a), Some(b)) = (to_bool(&lhs), to_bool(&rhs)) else {
                let bad = if to_bool(&lhs).is_none() { &lhs } else { &rhs };
                sink.error(
                    src,
                    &bad.span,
                    format!(
                        "`{}` needs bool operands, found {}",
                        op.as_str(),
                        bad.kind.describe()
                    ),
                );
                return None;
            };
            Kind::Bool(if op == B::And { a && b } else { a || b })
        }
        _ => {
            let (Some(a), Some(b)) = (to_number(&lhs), to_number(&rhs)) else {
                let bad = if to_number(&lhs).is_none() {
                    &lhs
                } else {
                    &rhs
                };
                sink.error(
                    src,
                    &bad.span,
                    format!(
                        "`{}` needs number operands, found {}",
                        op.as_str(),
                        bad.kind.describe()
                    ),
                );
                return None;
            };
            match op {
                B::Less => Kind::Bool(a < b),
                B::LessEq => Kind::Bool(a <= b),
                B::Greater => Kind::Bool(a > b),
                B::GreaterEq => Kind::Bool(a >= b),
                B::Plus => Kind::Number(a + b),
                B::Minus => Kind::Number(a - b),
                B::Mul => Kind::Number(a * b),
                B::Div | B::Mod if b == 0.0 => {
                    sink.error(src, &rhs.span, "division by zero");
                    return None;
                }
                B::Div => Kind::Number(a / b),
                B::Mod => Kind::Number(a % b),
                B::Eq | B::NotEq | B::And | B::Or => unreachable!("handled above"),
            }
        }
    };
    Some(Value {
        kind,
        span: span.clone(),
    })
}

fn eval_traversal(
    traversal: &Traversal,
    span: &Range<usize>,
    scope: &Scope<'_>,
    sink: &mut Sink,
) -> Option<Value> {
    let src = scope.src;
    let mut ops = traversal.operators.iter();
    let mut current = match (&traversal.expr, traversal.operators.first()) {
        (Expression::Variable(root), Some(first)) if root.value().as_str() == "var" => {
            ops.next();
            let vars = vars_or_report(scope, span, sink)?;
            let ref_span = span_of(&traversal.expr).start..span_of(first).end;
            let name = match first.value() {
                TraversalOperator::GetAttr(name) => name.value().to_string(),
                TraversalOperator::Index(Expression::String(s)) => s.value().clone(),
                _ => {
                    sink.error(src, &ref_span, "expected a variable name after `var.`");
                    return None;
                }
            };
            match vars.values.get(&name) {
                Some(v) => v.clone().respan(&ref_span),
                None if vars.failed.contains(&name) => return None,
                None => {
                    let names: Vec<&str> = vars.values.keys().map(String::as_str).collect();
                    let d = sink.error(src, &ref_span, format!("undeclared variable `{name}`"));
                    d.help = Some(match did_you_mean(&name, &names) {
                        Some(close) => format!("did you mean `var.{close}`?"),
                        None => format!("declare it with `variable \"{name}\" {{ ... }}`"),
                    });
                    return None;
                }
            }
        }
        _ => eval(&traversal.expr, scope, sink)?,
    };
    for op in ops {
        let op_span = span_of(op);
        let whole = current.span.start..op_span.end;
        current = match op.value() {
            TraversalOperator::GetAttr(name) => get_attr(current, name.value(), &whole, src, sink)?,
            TraversalOperator::LegacyIndex(i) => index(
                current,
                &Value {
                    kind: Kind::Number(*i.value() as f64),
                    span: op_span,
                },
                &whole,
                src,
                sink,
            )?,
            TraversalOperator::Index(expr) => {
                let key = eval(expr, scope, sink)?;
                index(current, &key, &whole, src, sink)?
            }
            TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                sink.error(
                    src,
                    &op_span,
                    "splat expressions are not supported in cluster files",
                );
                return None;
            }
        };
    }
    Some(current)
}

fn get_attr(
    base: Value,
    name: &str,
    whole: &Range<usize>,
    src: &Source,
    sink: &mut Sink,
) -> Option<Value> {
    match base.kind {
        Kind::Object(fields) => {
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            let help = did_you_mean(name, &keys).map(|c| format!("did you mean `{c}`?"));
            match fields.iter().find(|(k, _)| k == name) {
                Some((_, v)) => Some(v.clone().respan(whole)),
                None => {
                    let d = sink.error(src, whole, format!("object has no attribute `{name}`"));
                    d.help = help;
                    None
                }
            }
        }
        other => {
            sink.error(
                src,
                whole,
                format!("cannot read attribute `{name}` of a {}", other.type_name()),
            );
            None
        }
    }
}

fn index(
    base: Value,
    key: &Value,
    whole: &Range<usize>,
    src: &Source,
    sink: &mut Sink,
) -> Option<Value> {
    match base.kind {
        Kind::List(items) => {
            let Some(n) = to_number(key).filter(|n| n.fract() == 0.0 && *n >= 0.0) else {
                sink.error(
                    src,
                    &key.span,
                    format!(
                        "list index must be a whole number, found {}",
                        key.kind.describe()
                    ),
                );
                return None;
            };
            match items.get(n as usize) {
                Some(v) => Some(v.clone().respan(whole)),
                None => {
                    sink.error(
                        src,
                        whole,
                        format!(
                            "index {} is out of range: the list has {} element{}",
                            format_number(n),
                            items.len(),
                            if items.len() == 1 { "" } else { "s" }
                        ),
                    );
                    None
                }
            }
        }
        Kind::Object(_) => match key.as_string() {
            Some(name) => get_attr(base, &name, whole, src, sink),
            None => {
                sink.error(
                    src,
                    &key.span,
                    format!("object keys are strings, found {}", key.kind.type_name()),
                );
                None
            }
        },
        other => {
            sink.error(src, whole, format!("cannot index a {}", other.type_name()));
            None
        }
    }
}

fn eval_call(
    call: &FuncCall,
    span: &Range<usize>,
    scope: &Scope<'_>,
    sink: &mut Sink,
) -> Option<Value> {
    let src = scope.src;
    let name_span = span_of(&call.name.name);
    let name = call.name.name.value().as_str();
    if call.name.is_namespaced() || !FUNCTIONS.contains(&name) {
        let full = src.slice(&(span.start..name_span.end)).to_string();
        let d = sink.error(
            src,
            &(span.start..name_span.end),
            format!("unknown function `{full}`"),
        );
        d.help = Some(match did_you_mean(name, FUNCTIONS) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("available functions: {}", FUNCTIONS.join(", ")),
        });
        return None;
    }
    if call.args.expand_final() {
        sink.error(src, span, "expanding arguments with `...` is not supported");
        return None;
    }
    let mut args = Vec::new();
    let mut ok = true;
    for arg in call.args.iter() {
        match eval(arg, scope, sink) {
            Some(v) => args.push(v),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let arity = |n: usize, sink: &mut Sink| -> Option<()> {
        if args.len() == n {
            Some(())
        } else {
            sink.error(
                src,
                span,
                format!(
                    "`{name}` takes {n} argument{}, found {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
            );
            None
        }
    };
    let string_arg = |i: usize, sink: &mut Sink| -> Option<String> {
        let v = &args[i];
        match v.as_string() {
            Some(s) => Some(s),
            None => {
                sink.error(
                    src,
                    &v.span,
                    format!(
                        "`{name}` expects a string here, found {}",
                        v.kind.type_name()
                    ),
                );
                None
            }
        }
    };
    let list_arg = |i: usize, sink: &mut Sink| -> Option<Vec<Value>> {
        let v = &args[i];
        match &v.kind {
            Kind::List(items) => Some(items.clone()),
            other => {
                sink.error(
                    src,
                    &v.span,
                    format!("`{name}` expects a list here, found {}", other.type_name()),
                );
                None
            }
        }
    };
    let at_call = SnippetOrigin::Inline {
        file: src.path.clone(),
        line: src.line_of(span.start),
    };
    let string = |s: String| Kind::String(s, at_call.clone());
    let kind = match name {
        "file" => {
            arity(1, sink)?;
            let rel = string_arg(0, sink)?;
            let path = src.dir().join(&rel);
            match std::fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Kind::String(text, SnippetOrigin::File(path)),
                    Err(_) => {
                        sink.error(
                            src,
                            span,
                            format!(
                                "file(\"{rel}\"): {} is not valid UTF-8 text",
                                path.display()
                            ),
                        );
                        return None;
                    }
                },
                Err(e) => {
                    sink.error(
                        src,
                        span,
                        format!("file(\"{rel}\"): cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        "trimspace" => {
            arity(1, sink)?;
            string(string_arg(0, sink)?.trim().to_string())
        }
        "chomp" => {
            arity(1, sink)?;
            let s = string_arg(0, sink)?;
            string(s.trim_end_matches(['\n', '\r']).to_string())
        }
        "lower" => {
            arity(1, sink)?;
            string(string_arg(0, sink)?.to_lowercase())
        }
        "upper" => {
            arity(1, sink)?;
            string(string_arg(0, sink)?.to_uppercase())
        }
        "replace" => {
            arity(3, sink)?;
            let (s, from, to) = (
                string_arg(0, sink)?,
                string_arg(1, sink)?,
                string_arg(2, sink)?,
            );
            if from.is_empty() {
                sink.error(
                    src,
                    &args[1].span,
                    "`replace` needs a non-empty search string",
                );
                return None;
            }
            string(s.replace(&from, &to))
        }
        "join" => {
            arity(2, sink)?;
            let sep = string_arg(0, sink)?;
            let items = list_arg(1, sink)?;
            let mut parts = Vec::with_capacity(items.len());
            for item in &items {
                match item.as_string() {
                    Some(s) => parts.push(s),
                    None => {
                        sink.error(
                            src,
                            &item.span,
                            format!(
                                "`join` needs a list of strings, found an element of type {}",
                                item.kind.type_name()
                            ),
                        );
                        return None;
                    }
                }
            }
            string(parts.join(&sep))
        }
        "concat" => {
            let mut out = Vec::new();
            for i in 0..args.len() {
                out.extend(list_arg(i, sink)?);
            }
            Kind::List(out)
        }
        "length" => {
            arity(1, sink)?;
            let n = match &args[0].kind {
                Kind::List(items) => items.len(),
                Kind::Object(fields) => fields.len(),
                Kind::String(s, _) => s.chars().count(),
                other => {
                    sink.error(
                        src,
                        &args[0].span,
                        format!(
                            "`length` needs a list, object or string, found {}",
                            other.type_name()
                        ),
                    );
                    return None;
                }
            };
            Kind::Number(n as f64)
        }
        "format" => {
            if args.is_empty() {
                arity(1, sink)?;
            }
            let fmt = string_arg(0, sink)?;
            string(format(&fmt, &args[1..], &args[0].span, src, sink)?)
        }
        _ => unreachable!("checked against FUNCTIONS"),
    };
    Some(Value {
        kind,
        span: span.clone(),
    })
}

/// Terraform's `format` for the verbs people use in configs: `%s %d %v %q %%`.
fn format(
    fmt: &str,
    args: &[Value],
    fmt_span: &Range<usize>,
    src: &Source,
    sink: &mut Sink,
) -> Option<String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next();
        if verb == Some('%') {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            sink.error(
                src,
                fmt_span,
                format!("format string needs more than {} argument(s)", args.len()),
            );
            return None;
        };
        next += 1;
        match verb {
            Some('s') | Some('v') => match arg.as_string() {
                Some(s) => out.push_str(&s),
                None => {
                    sink.error(
                        src,
                        &arg.span,
                        format!("`%s` needs a string, found {}", arg.kind.type_name()),
                    );
                    return None;
                }
            },
            Some('q') => match arg.as_string() {
                Some(s) => out.push_str(&format!("{s:?}")),
                None => {
                    sink.error(
                        src,
                        &arg.span,
                        format!("`%q` needs a string, found {}", arg.kind.type_name()),
                    );
                    return None;
                }
            },
            Some('d') => match to_number(arg).filter(|n| n.fract() == 0.0) {
                Some(n) => out.push_str(&format_number(n)),
                None => {
                    sink.error(
                        src,
                        &arg.span,
                        format!("`%d` needs a whole number, found {}", arg.kind.describe()),
                    );
                    return None;
                }
            },
            other => {
                let verb: String = other.map(String::from).unwrap_or_default();
                sink.error(src, fmt_span, format!("unsupported format verb `%{verb}`"))
                    .help = Some("supported verbs: %s %d %v %q %%".into());
                return None;
            }
        }
    }
    if next < args.len() {
        sink.error(
            src,
            &args[next].span,
            format!("too many arguments for format string: it uses {next}"),
        );
        return None;
    }
    Some(out)
}

/// A template as HCL's parser sees it before building the expression tree: literal text (one
/// token per line in heredocs), interpolations and directive tags. Strip markers and `<<-`
/// indentation removal work on this flat sequence, so they behave exactly as in HCL, also
/// inside `%{ if }` and `%{ for }`.
enum Tok<'a> {
    Lit(String),
    Interp(&'a Interpolation),
    If(&'a Expression, Strip),
    Else(Strip),
    EndIf(Strip),
    For(&'a ForTemplateExpr),
    EndFor(Strip),
}

impl Tok<'_> {
    fn strip(&self) -> Strip {
        match self {
            Tok::Lit(_) => Strip::None,
            Tok::Interp(i) => i.strip,
            Tok::For(f) => f.strip,
            Tok::If(_, strip) | Tok::Else(strip) | Tok::EndIf(strip) | Tok::EndFor(strip) => *strip,
        }
    }
}

fn tokens<'a>(template: &'a Template, src: &Source, heredoc: bool) -> Vec<Tok<'a>> {
    let mut toks = Vec::new();
    flatten(template, src, heredoc, &mut toks);
    // `${~ x}` trims the whitespace of the token before, `${x ~}` of the token after; in a
    // heredoc that reaches at most to the end of the line. Directive tags strip the same way.
    for i in 0..toks.len() {
        let strip = toks[i].strip();
        if strip.strip_start()
            && let Some(Tok::Lit(before)) = i.checked_sub(1).and_then(|j| toks.get_mut(j))
        {
            before.truncate(before.trim_end().len());
        }
        if strip.strip_end()
            && let Some(Tok::Lit(after)) = toks.get_mut(i + 1)
        {
            *after = after.trim_start().to_string();
        }
    }
    toks
}

fn flatten<'a>(template: &'a Template, src: &Source, heredoc: bool, toks: &mut Vec<Tok<'a>>) {
    // Consecutive literal elements are one stretch of text; heredoc text is cut into lines.
    let mut text = String::new();
    let flush_text = |text: &mut String, toks: &mut Vec<Tok<'a>>| {
        if heredoc {
            let unescaped = text.replace("$${", "${").replace("%%{", "%{");
            toks.extend(
                unescaped
                    .split_inclusive('\n')
                    .map(|l| Tok::Lit(l.to_string())),
            );
        } else if !text.is_empty() {
            toks.push(Tok::Lit(text.clone()));
        }
        text.clear();
    };
    for element in template.iter() {
        match element {
            // `hcl-edit` has already removed `<<-` indentation from heredoc values, with a
            // different rule than HCL's, so heredocs start again from the source text; they
            // know no escapes besides `$${` and `%%{`.
            Element::Literal(lit) if heredoc => match lit.span() {
                Some(span) => text.push_str(src.slice(&span)),
                None => text.push_str(lit.value()),
            },
            Element::Literal(lit) => text.push_str(lit.value()),
            Element::Interpolation(interp) => {
                flush_text(&mut text, toks);
                toks.push(Tok::Interp(interp));
            }
            Element::Directive(d) => {
                flush_text(&mut text, toks);
                match d.as_ref() {
                    Directive::If(d) => {
                        toks.push(Tok::If(&d.if_expr.cond_expr, d.if_expr.strip));
                        flatten(&d.if_expr.template, src, heredoc, toks);
                        if let Some(e) = &d.else_expr {
                            toks.push(Tok::Else(e.strip));
                            flatten(&e.template, src, heredoc, toks);
                        }
                        toks.push(Tok::EndIf(d.endif_expr.strip));
                    }
                    Directive::For(d) => {
                        toks.push(Tok::For(&d.for_expr));
                        flatten(&d.for_expr.template, src, heredoc, toks);
                        toks.push(Tok::EndFor(d.endfor_expr.strip));
                    }
                }
            }
        }
    }
    flush_text(&mut text, toks);
}

fn eval_heredoc(
    heredoc: &HeredocTemplate,
    span: &Range<usize>,
    scope: &Scope<'_>,
    sink: &mut Sink,
) -> Option<String> {
    let mut toks = tokens(&heredoc.template, scope.src, true);
    if scope.src.slice(span).starts_with("<<-") {
        flush(&mut toks);
    }
    render(&toks, scope, sink)
}

/// Removes the common leading whitespace of a `<<-` heredoc as HCL does
/// (`flushHeredocTemplateParts`): lines holding only whitespace neither count nor lose
/// theirs, a line starting with an interpolation means nothing is removed, and whitespace is
/// counted in characters.
fn flush(toks: &mut [Tok<'_>]) {
    let mut min = usize::MAX;
    let mut at_line_start = true;
    let mut adjust = vec![false; toks.len()];
    for (i, tok) in toks.iter().enumerate() {
        if at_line_start {
            at_line_start = false;
            let spaces = match tok {
                Tok::Lit(s) => {
                    let trimmed = s.trim_start();
                    if trimmed.is_empty() && s.ends_with('\n') {
                        usize::MAX
                    } else {
                        adjust[i] = true;
                        s[..s.len() - trimmed.len()].chars().count()
                    }
                }
                _ => 0,
            };
            min = min.min(spaces);
        }
        if let Tok::Lit(s) = tok
            && s.ends_with('\n')
        {
            at_line_start = true;
        }
    }
    if min == usize::MAX || min == 0 {
        return;
    }
    for (tok, adjust) in toks.iter_mut().zip(adjust) {
        if let (Tok::Lit(s), true) = (tok, adjust) {
            let cut = s.char_indices().nth(min).map_or(s.len(), |(i, _)| i);
            s.replace_range(..cut, "");
        }
    }
}

fn render(toks: &[Tok<'_>], scope: &Scope<'_>, sink: &mut Sink) -> Option<String> {
    let mut out = String::new();
    let mut pos = 0;
    let ok = render_until(toks, &mut pos, scope, sink, &mut out);
    ok.then_some(out)
}

/// Renders tokens from `pos` up to the `%{ else }`, `%{ endif }` or `%{ endfor }` that closes
/// the enclosing directive (or the end), leaving `pos` on that tag. The sequence comes from a
/// parsed tree, so tags are always balanced. Returns whether everything evaluated.
fn render_until(
    toks: &[Tok<'_>],
    pos: &mut usize,
    scope: &Scope<'_>,
    sink: &mut Sink,
    out: &mut String,
) -> bool {
    let src = scope.src;
    let mut ok = true;
    while let Some(tok) = toks.get(*pos) {
        match tok {
            Tok::Else(_) | Tok::EndIf(_) | Tok::EndFor(_) => return ok,
            Tok::Lit(s) => {
                out.push_str(s);
                *pos += 1;
            }
            Tok::Interp(interp) => {
                *pos += 1;
                let Some(v) = eval(&interp.expr, scope, sink) else {
                    ok = false;
                    continue;
                };
                match v.as_string() {
                    Some(s) => out.push_str(&s),
                    None => {
                        sink.error(
                            src,
                            &v.span,
                            format!("cannot insert a {} into a string", v.kind.type_name()),
                        )
                        .help = Some(match v.kind {
                            Kind::List(_) => {
                                "use join(\", \", ...) to turn a list into a string, or %{ for }"
                                    .into()
                            }
                            _ => "only strings, numbers and bools can be interpolated".into(),
                        });
                        ok = false;
                    }
                }
            }
            Tok::If(cond, _) => {
                *pos += 1;
                let chosen = match eval(cond, scope, sink) {
                    Some(c) => match to_bool(&c) {
                        Some(b) => Some(b),
                        None => {
                            sink.error(
                                src,
                                &c.span,
                                format!("`%{{ if }}` needs a bool, found {}", c.kind.describe()),
                            );
                            None
                        }
                    },
                    None => None,
                };
                ok &= chosen.is_some();
                // Both branches are walked so that `pos` ends after `%{ endif }`; only the
                // chosen one writes output (and reports errors).
                let mut branch = String::new();
                if chosen == Some(true) {
                    ok &= render_until(toks, pos, scope, sink, &mut branch);
                } else {
                    skip_until_close(toks, pos);
                }
                if let Some(Tok::Else(_)) = toks.get(*pos) {
                    *pos += 1;
                    if chosen == Some(false) {
                        ok &= render_until(toks, pos, scope, sink, &mut branch);
                    } else {
                        skip_until_close(toks, pos);
                    }
                }
                out.push_str(&branch);
                *pos += 1; // `%{ endif }`
            }
            Tok::For(f) => {
                *pos += 1;
                let body_start = *pos;
                skip_until_close(toks, pos);
                let body_end = *pos;
                *pos += 1; // `%{ endfor }`
                let Some(coll) = eval(&f.collection_expr, scope, sink) else {
                    ok = false;
                    continue;
                };
                let items: Vec<(Value, Value)> = match &coll.kind {
                    Kind::List(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let key = Value {
                                kind: Kind::Number(i as f64),
                                span: coll.span.clone(),
                            };
                            (key, v.clone())
                        })
                        .collect(),
                    Kind::Object(fields) => fields
                        .iter()
                        .map(|(k, v)| {
                            let key = Value {
                                kind: Kind::String(k.clone(), at_line(src, coll.span.start)),
                                span: coll.span.clone(),
                            };
                            (key, v.clone())
                        })
                        .collect(),
                    other => {
                        let d = sink.error(
                            src,
                            &coll.span,
                            format!(
                                "`%{{ for }}` needs a list or object, found {}",
                                other.type_name()
                            ),
                        );
                        if matches!(other, Kind::String(..)) {
                            d.help = Some("to loop over one value, put it in a list: [...]".into());
                        }
                        ok = false;
                        continue;
                    }
                };
                let body = &toks[body_start..body_end];
                for (key, value) in items {
                    let mut locals = scope.locals.to_vec();
                    if let Some(k) = &f.key_var {
                        locals.push((k.value().to_string(), key));
                    }
                    locals.push((f.value_var.value().to_string(), value));
                    let inner = Scope {
                        src,
                        vars: scope.vars,
                        locals: &locals,
                    };
                    let mut at = 0;
                    if !render_until(body, &mut at, &inner, sink, out) {
                        // The same error would repeat for every element.
                        ok = false;
                        break;
                    }
                }
            }
        }
    }
    ok
}

fn at_line(src: &Source, offset: usize) -> SnippetOrigin {
    SnippetOrigin::Inline {
        file: src.path.clone(),
        line: src.line_of(offset),
    }
}

/// Moves `pos` past nested directives to the `%{ else }`, `%{ endif }` or `%{ endfor }` that
/// closes the current one.
fn skip_until_close(toks: &[Tok<'_>], pos: &mut usize) {
    let mut depth = 0usize;
    while let Some(tok) = toks.get(*pos) {
        match tok {
            Tok::If(..) | Tok::For(_) => depth += 1,
            Tok::Else(_) if depth == 0 => return,
            Tok::EndIf(_) | Tok::EndFor(_) if depth == 0 => return,
            Tok::EndIf(_) | Tok::EndFor(_) => depth -= 1,
            _ => {}
        }
        *pos += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_src(text: &str, vars: Option<&Vars>) -> (Option<Value>, Vec<Diagnostic>) {
        let src = Source::new(PathBuf::from("t.hcl"), text.to_string());
        let body = hcl::edit::parser::parse_body(text).expect("test input parses");
        let attr = body.attributes().next().expect("one attribute");
        let mut sink = Sink::default();
        let scope = Scope::new(&src, vars);
        let v = eval(&attr.value, &scope, &mut sink);
        (v, sink.diags)
    }

    fn string_of(text: &str) -> String {
        let (v, diags) = eval_src(text, Some(&Vars::default()));
        assert!(diags.is_empty(), "{diags:?}");
        match v.expect("value").kind {
            Kind::String(s, _) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn indexed_diagnostics_match_the_scanning_ones() {
        let text = "a = 1\r\nbé = \"x\"\n\n\tc = [\n  1,\n]";
        let src = Source::new(PathBuf::from("f"), text.to_string());
        for start in 0..=text.len() {
            for len in [0, 1, 3, 40] {
                if !text.is_char_boundary(start) {
                    continue;
                }
                let ours = src.diagnostic(&(start..start + len), "m");
                let theirs = Diagnostic::error_at(Path::new("f"), text, start, len, "m");
                assert_eq!(ours, theirs, "span {start}+{len}");
            }
        }
    }

    #[test]
    fn flush_heredoc_matches_hcl() {
        // Whitespace-only lines neither count nor lose their whitespace; the minimum is 2.
        let text = "x = <<-EOT\n    a\n        \n      b\n  c\n    EOT\n";
        assert_eq!(string_of(text), "  a\n        \n    b\nc\n");
        // A line starting with an interpolation: nothing is stripped at all.
        let text = "x = <<-EOT\n    a\n${1}b\n    EOT\n";
        assert_eq!(string_of(text), "    a\n1b\n");
        // Whitespace before an interpolation counts.
        let text = "x = <<-EOT\n      a\n    ${1}b\n    EOT\n";
        assert_eq!(string_of(text), "  a\n1b\n");
        // Tabs count as one character each, like spaces.
        let text = "x = <<-EOT\n\t\ta\n\tb\nEOT\n";
        assert_eq!(string_of(text), "\ta\nb\n");
        // Escapes survive dedenting.
        let text = "x = <<-EOT\n  $${a}\n  %%{b}\n  EOT\n";
        assert_eq!(string_of(text), "${a}\n%{b}\n");
    }

    #[test]
    fn strip_markers_work_on_heredoc_lines_as_in_hcl() {
        // `~}` eats the rest of its line including the newline, so "  b" no longer starts a
        // line and keeps its indentation.
        let text = "x = <<-EOT\n  a ${~ 1 ~}   \n  b\n  EOT\n";
        assert_eq!(string_of(text), "a1  b\n");
        // `${~` at the start of a line empties only that line's leading token (the newline
        // before belongs to the previous line's token); the emptied token then counts as a line
        // without indentation, so nothing is removed.
        let text = "x = <<-EOT\n  x\n  ${~ 1}y\n  EOT\n";
        assert_eq!(string_of(text), "  x\n1y\n");
        // In a plain heredoc `~}` still stops at the end of the line.
        let text = "x = <<EOT\n${1 ~}\n\n  z\nEOT\n";
        assert_eq!(string_of(text), "1\n  z\n");
    }

    #[test]
    fn plain_heredoc_keeps_indentation() {
        assert_eq!(string_of("x = <<EOT\n  a\n b\nEOT\n"), "  a\n b\n");
        assert_eq!(string_of("x = <<EOT\n$${a} %%{b}\nEOT\n"), "${a} %{b}\n");
    }

    #[test]
    fn heredoc_marker_must_be_alone_on_its_line() {
        for ok in [
            "x = [<<-EOT\n  a\n  EOT\n]\n",
            "x = <<EOT\na\nEOT\n",
            "x = <<EOT\na\nEOT",
            "x = <<EOT\r\na\r\nEOT\r\n",
        ] {
            let (v, diags) = eval_src(ok, None);
            assert!(v.is_some() && diags.is_empty(), "{ok:?}: {diags:?}");
        }
        let (v, diags) = eval_src("x = [<<-EOT\n  a\n  EOT]\n", None);
        assert!(v.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(
            (diags[0].line, diags[0].column, diags[0].span_len),
            (3, 6, 1)
        );
        assert!(
            diags[0]
                .message
                .contains("`]` after the heredoc's closing `EOT`")
        );
    }

    #[test]
    fn heredoc_origin_is_line_after_marker() {
        let (v, _) = eval_src("\n\nx = <<-EOT\n  a\n  EOT\n", None);
        match v.expect("value").kind {
            Kind::String(_, SnippetOrigin::Inline { line, .. }) => assert_eq!(line, 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interpolation_and_strip_markers() {
        let mut vars = Vars::default();
        vars.values.insert(
            "n".into(),
            Value {
                kind: Kind::String("mercury".into(), SnippetOrigin::File("v".into())),
                span: 0..0,
            },
        );
        let (v, d) = eval_src("x = \"a-${var.n}-${1 + 2}  ${~ true}\"", Some(&vars));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            v.expect("value").as_string().as_deref(),
            Some("a-mercury-3true")
        );
    }

    #[test]
    fn quoted_strings_stay_on_one_line() {
        let (v, d) = eval_src("x = \"a\nb\"", None);
        assert!(v.is_none());
        assert_eq!(d[0].message, "a quoted string cannot span several lines");
        let (v, _) = eval_src("x = \"a${1}\nb\"", None);
        assert!(v.is_none());
        // An escaped newline is fine.
        assert_eq!(string_of("x = \"a\\nb\""), "a\nb");
    }

    #[test]
    fn lone_interpolation_is_the_value_itself() {
        let (v, d) = eval_src("x = \"${[1, 2]}\"", None);
        assert!(d.is_empty(), "{d:?}");
        assert!(matches!(v.expect("value").kind, Kind::List(ref items) if items.len() == 2));
    }

    #[test]
    fn functions() {
        assert_eq!(string_of("x = trimspace(\"  a \\n\")"), "a");
        assert_eq!(string_of("x = join(\",\", [\"a\", \"b\", 3])"), "a,b,3");
        assert_eq!(
            string_of("x = format(\"%s-%d %q %%\", \"a\", 7, \"b\")"),
            "a-7 \"b\" %"
        );
        assert_eq!(string_of("x = upper(lower(\"AbC\"))"), "ABC");
        assert_eq!(string_of("x = replace(\"a.b.c\", \".\", \"-\")"), "a-b-c");
        assert_eq!(string_of("x = chomp(\"a\\n\\n\")"), "a");
        assert_eq!(
            string_of("x = length([1, 2]) == 2 ? \"two\" : \"no\""),
            "two"
        );
        assert_eq!(string_of("x = concat([\"a\"], [\"b\"])[1]"), "b");
    }

    #[test]
    fn errors_point_at_the_sub_expression() {
        let (v, d) = eval_src("x = [\"a\", nope(1)]", None);
        assert!(v.is_none());
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].column, d[0].span_len), (1, 11, 4));
        assert!(
            d[0].message.contains("unknown function `nope`"),
            "{}",
            d[0].message
        );

        let (_, d) = eval_src("x = var.y", Some(&Vars::default()));
        assert_eq!((d[0].column, d[0].span_len), (5, 5));
        assert_eq!(d[0].message, "undeclared variable `y`");

        let (_, d) = eval_src("x = var.y", None);
        assert!(d[0].message.starts_with("variables cannot be used here"));

        let (_, d) = eval_src("x = file(\"does/not/exist\")", None);
        assert_eq!((d[0].column, d[0].span_len), (5, 22));
        assert!(
            d[0].message.contains("No such file or directory"),
            "{}",
            d[0].message
        );

        let (_, d) = eval_src("x = \"a ${[1]}\"", None);
        assert_eq!(d[0].message, "cannot insert a list into a string");
    }

    #[test]
    fn directives() {
        let mut vars = Vars::default();
        let list = |items: &[&str]| Value {
            kind: Kind::List(
                items
                    .iter()
                    .map(|s| Value {
                        kind: Kind::String(s.to_string(), SnippetOrigin::File("v".into())),
                        span: 0..0,
                    })
                    .collect(),
            ),
            span: 0..0,
        };
        vars.values.insert("keys".into(), list(&["a", "b"]));
        // Terraform's documented pair (hashicorp/terraform#23710): `~` on `%{ endfor }` keeps
        // the flush heredoc working...
        let text = "x = <<-EOT\n    %{ for i, k in var.keys }\n    ${i}=${k}\n    %{ endfor ~}\n    %{ if length(var.keys) > 1 }many%{ else }one%{ endif }\n    EOT\n";
        let (v, d) = eval_src(text, Some(&vars));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            v.expect("value").as_string().as_deref(),
            // `endfor ~` ate the newline before the `if` line too, so that line keeps its indent.
            Some("\n0=a\n\n1=b\n    many\n")
        );
        // ...while `~` on `%{ for }` eats the newline that made the next line a line, so its
        // indentation stays, exactly as in Terraform.
        let text = "x = <<-EOT\n    %{ for k in var.keys ~}\n    ${k}\n    %{ endfor }\n    EOT\n";
        let (v, d) = eval_src(text, Some(&vars));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            v.expect("value").as_string().as_deref(),
            Some("    a\n    b\n\n")
        );
        let (v, d) = eval_src("x = \"%{ if false }a%{ else }b%{ endif }\"", None);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(v.expect("value").as_string().as_deref(), Some("b"));
        let (v, d) = eval_src("x = \"%{ for x in 3 }${x}%{ endfor }\"", None);
        assert!(v.is_none());
        assert_eq!(
            d[0].message,
            "`%{ for }` needs a list or object, found number"
        );
        let (_, d) = eval_src("x = \"%{ if \"maybe\" }a%{ endif }\"", None);
        assert_eq!(
            d[0].message,
            "`%{ if }` needs a bool, found string \"maybe\""
        );
    }

    const PIECES: &[&str] = &[
        "  ",
        "    ",
        "\t",
        "\n",
        "a",
        "${1}",
        "${~ 2}",
        "${3 ~}",
        "%{ if true }",
        "%{~ else ~}",
        "%{ endif }",
        "%{ for x in [1, 2] }",
        "%{ for k, v in {a = 1} ~}",
        "%{ endfor }",
        "${x}",
        "$${",
        "%%{",
    ];

    proptest::proptest! {
        /// Any template that parses evaluates without panicking, in all three forms, and a
        /// failure is never silent.
        #[test]
        fn templates_never_panic(picks in proptest::collection::vec(0..PIECES.len(), 0..30)) {
            let body: String = picks.iter().map(|&i| PIECES[i]).collect();
            for text in [
                format!("x = <<-EOT\n{body}\nEOT\n"),
                format!("x = <<EOT\n{body}\nEOT\n"),
                format!("x = \"{}\"\n", body.replace('\n', "\\n")),
            ] {
                if let Ok(body) = hcl::edit::parser::parse_body(&text)
                    && let Some(attr) = body.attributes().next()
                {
                    let src = Source::new(PathBuf::from("t.hcl"), text.clone());
                    let mut sink = Sink::default();
                    let v = eval(&attr.value, &Scope::new(&src, None), &mut sink);
                    // A failure always comes with its reason.
                    proptest::prop_assert!(v.is_some() || !sink.diags.is_empty(), "{text}");
                }
            }
        }
    }
}
