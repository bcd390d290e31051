//! Tree-walking executor with the semantics of Go's `text/template/exec.go`.

use std::collections::HashMap;

use crate::error::{ExecError, ExecErrorKind};
use crate::funcs::{self, Param};
use crate::gofmt::{quote, sprint_value};
use crate::parse::{Arg, Branch, Command, List, Node, Num, Pipe};
use crate::val::{Rv, Str, Val};
use crate::value::Value;

/// How a missing map key is treated (Go's `missingkey` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// `missingkey=error`: execution stops with an error naming the key. matchbox uses this.
    #[default]
    Error,
    /// `missingkey=default` / `invalid`: the missing value prints as `<no value>`.
    Default,
    /// `missingkey=zero`: the zero value of the map's element type.
    Zero,
}

/// Execution options and resource limits.
///
/// Template text comes from the operator, but data (notably `request.query`) comes from the
/// network; the limits keep a hostile or buggy combination from exhausting memory, stack or
/// CPU. Reaching one is an [`ExecError`] of kind [`ExecErrorKind::Limit`].
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Missing map key behaviour; matchbox uses [`MissingKey::Error`].
    pub missing_key: MissingKey,
    /// Largest output, in bytes.
    pub max_output_bytes: usize,
    /// Largest total size of strings produced by functions such as `printf`, in bytes.
    pub max_intermediate_bytes: usize,
    /// Deepest nesting of `if`/`with`/`range` and `{{template}}` calls at run time.
    pub max_depth: usize,
    /// Most evaluation steps (nodes walked, commands run, range iterations).
    pub max_steps: u64,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            missing_key: MissingKey::Error,
            max_output_bytes: 16 << 20,
            max_intermediate_bytes: 64 << 20,
            max_depth: 100,
            max_steps: 10_000_000,
        }
    }
}

/// The node being evaluated, for error context (Go's `state.node`).
#[derive(Clone, Copy)]
enum Ctx<'a> {
    None,
    Node(&'a Node),
    List(&'a List),
    Pipe(&'a Pipe),
    Cmd(&'a Command),
    Arg(&'a Arg),
}

impl Ctx<'_> {
    fn pos_and_text(&self) -> Option<(usize, String)> {
        Some(match self {
            Ctx::None => return None,
            Ctx::Node(n) => (n.pos(), n.to_string()),
            Ctx::List(l) => (l.pos, l.to_string()),
            Ctx::Pipe(p) => (p.pos, p.to_string()),
            Ctx::Cmd(c) => (c.pos, c.to_string()),
            Ctx::Arg(a) => (a.pos(), a.to_string()),
        })
    }
}

/// Control flow out of a walked node: `{{break}}` and `{{continue}}` unwind to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

type R<T> = Result<T, ExecError>;

pub(crate) struct Exec<'a, 'o> {
    parse_name: &'a str,
    trees: &'a HashMap<String, List>,
    newlines: &'a [usize],
    name: &'a str,
    out: String,
    vars: Vec<(&'a str, Rv<'a>)>,
    node: Ctx<'a>,
    depth: usize,
    steps: u64,
    intermediate: usize,
    opts: &'o ExecOptions,
}

/// Executes tree `name` of a template over `data`.
pub(crate) fn execute<'a>(
    parse_name: &'a str,
    trees: &'a HashMap<String, List>,
    newlines: &'a [usize],
    name: &'a str,
    data: &'a Value,
    opts: &ExecOptions,
) -> Result<String, ExecError> {
    let Some(root) = trees.get(name) else {
        // Go's ExecuteTemplate message has no template name prefix of its own.
        return Err(ExecError::new(
            parse_name,
            "",
            None,
            String::new(),
            format!(
                "no template {} associated with template {}",
                quote(name),
                quote(parse_name)
            ),
            ExecErrorKind::Other,
        ));
    };
    let dot = Rv::top(data);
    let mut e = Exec {
        parse_name,
        trees,
        newlines,
        name,
        out: String::new(),
        vars: vec![("$", dot.clone())],
        node: Ctx::None,
        depth: 0,
        steps: 0,
        intermediate: 0,
        opts,
    };
    e.walk_list(&dot, root)?;
    Ok(e.out)
}

impl<'a> Exec<'a, '_> {
    fn at(&mut self, c: Ctx<'a>) {
        self.node = c;
    }

    fn err(&self, kind: ExecErrorKind, message: String) -> ExecError {
        let (location, context) = match self.node.pos_and_text() {
            Some((pos, text)) => {
                let line = 1 + self.newlines.partition_point(|&n| n < pos);
                let col = if line > 1 {
                    pos - (self.newlines[line - 2] + 1)
                } else {
                    pos
                };
                (Some((line, col)), text)
            }
            None => (None, String::new()),
        };
        ExecError::new(self.parse_name, self.name, location, context, message, kind)
    }

    fn errorf<T>(&self, message: String) -> R<T> {
        Err(self.err(ExecErrorKind::Other, message))
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > self.opts.max_steps {
            return Err(self.err(
                ExecErrorKind::Limit,
                format!(
                    "execution exceeded the limit of {} steps",
                    self.opts.max_steps
                ),
            ));
        }
        Ok(())
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len() + s.len() > self.opts.max_output_bytes {
            return Err(self.err(
                ExecErrorKind::Limit,
                format!(
                    "output exceeds the limit of {} bytes",
                    self.opts.max_output_bytes
                ),
            ));
        }
        self.out.push_str(s);
        Ok(())
    }

    /// Accounts for a string produced at run time.
    fn charge(&mut self, n: usize) -> R<()> {
        self.intermediate += n;
        if self.intermediate > self.opts.max_intermediate_bytes {
            return Err(self.err(
                ExecErrorKind::Limit,
                format!(
                    "functions produced more than {} bytes of strings",
                    self.opts.max_intermediate_bytes
                ),
            ));
        }
        Ok(())
    }

    fn enter(&mut self, template: bool) -> R<()> {
        if self.depth >= self.opts.max_depth {
            let what = if template { "template" } else { "nesting" };
            return Err(self.err(
                ExecErrorKind::Limit,
                format!("exceeded maximum {what} depth ({})", self.opts.max_depth),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn walk_list(&mut self, dot: &Rv<'a>, list: &'a List) -> R<Flow> {
        self.at(Ctx::List(list));
        for n in &list.nodes {
            let f = self.walk(dot, n)?;
            if f != Flow::Normal {
                return Ok(f);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Rv<'a>, node: &'a Node) -> R<Flow> {
        self.at(Ctx::Node(node));
        self.step()?;
        match node {
            Node::Text { text, .. } => self.write(text)?,
            Node::Action { pipe, .. } => {
                // Variables declared by an action persist until the enclosing {{end}}.
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print_value(node, &v)?;
                }
            }
            Node::If(b) => return self.walk_if_or_with(false, dot, b),
            Node::With(b) => return self.walk_if_or_with(true, dot, b),
            Node::Range(b) => return self.walk_range(dot, node, b),
            Node::Template { name, pipe, .. } => self.walk_template(dot, node, name, pipe)?,
            Node::Break { .. } => return Ok(Flow::Break),
            Node::Continue { .. } => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Rv<'a>, b: &'a Branch) -> R<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        self.enter(false)?;
        let flow = if val.v.truth() {
            if with {
                self.walk_list(&val, &b.list)?
            } else {
                self.walk_list(dot, &b.list)?
            }
        } else if let Some(e) = &b.else_list {
            self.walk_list(dot, e)?
        } else {
            Flow::Normal
        };
        self.depth -= 1;
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn set_top_var(&mut self, n: usize, v: Rv<'a>) {
        let len = self.vars.len();
        self.vars[len - n].1 = v;
    }

    fn set_var(&mut self, name: &str, v: Rv<'a>) -> R<()> {
        for slot in self.vars.iter_mut().rev() {
            if slot.0 == name {
                slot.1 = v;
                return Ok(());
            }
        }
        self.errorf(format!("undefined variable: {name}"))
    }

    fn var_value(&self, name: &str) -> R<Rv<'a>> {
        for slot in self.vars.iter().rev() {
            if slot.0 == name {
                return Ok(slot.1.clone());
            }
        }
        self.errorf(format!("undefined variable: {name}"))
    }

    /// One range iteration; returns whether the loop should stop.
    fn range_iteration(
        &mut self,
        b: &'a Branch,
        mark: usize,
        index: Rv<'a>,
        elem: Rv<'a>,
    ) -> R<bool> {
        self.step()?;
        let decl = &b.pipe.decl;
        if !decl.is_empty() {
            if b.pipe.is_assign {
                if decl.len() > 1 {
                    self.set_var(&decl[0].1, index.clone())?;
                } else {
                    self.set_var(&decl[0].1, elem.clone())?;
                }
            } else {
                self.set_top_var(1, elem.clone());
            }
        }
        if decl.len() > 1 {
            if b.pipe.is_assign {
                self.set_var(&decl[1].1, elem.clone())?;
            } else {
                self.set_top_var(2, index);
            }
        }
        let flow = self.walk_list(&elem, &b.list);
        self.vars.truncate(mark);
        Ok(flow? == Flow::Break)
    }

    fn walk_range(&mut self, dot: &Rv<'a>, node: &'a Node, b: &'a Branch) -> R<Flow> {
        self.at(Ctx::Node(node));
        let outer = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        self.enter(false)?;
        let mut ran = false;
        match &val.v {
            Val::Int(_) | Val::Uint8(_) => {
                let n = match val.v {
                    Val::Int(i) => i,
                    Val::Uint8(u) => u as i64,
                    _ => 0,
                };
                if b.pipe.decl.len() > 1 {
                    return self.errorf(format!(
                        "can't use {} to iterate over more than one variable",
                        sprint_value(&val.v)
                    ));
                }
                let is_byte = matches!(val.v, Val::Uint8(_));
                for i in 0..n.max(0) {
                    ran = true;
                    // Go yields elements of the ranged integer's own type.
                    let elem = if is_byte {
                        Val::Uint8(i as u8)
                    } else {
                        Val::Int(i)
                    };
                    if self.range_iteration(b, mark, Rv::invalid(), Rv::plain(elem))? {
                        break;
                    }
                }
            }
            Val::List(l) => {
                for (i, e) in l.iter().enumerate() {
                    ran = true;
                    if self.range_iteration(
                        b,
                        mark,
                        Rv::plain(Val::Int(i as i64)),
                        Rv::element(e),
                    )? {
                        break;
                    }
                }
            }
            Val::Map(m) => {
                for (k, e) in m.iter() {
                    ran = true;
                    let key = Rv::plain(Val::Str(Str::Borrowed(k)));
                    if self.range_iteration(b, mark, key, Rv::element(e))? {
                        break;
                    }
                }
            }
            Val::StrMap(m) => {
                for (k, e) in m.iter() {
                    ran = true;
                    let key = Rv::plain(Val::Str(Str::Borrowed(k)));
                    let elem = Rv::plain(Val::Str(Str::Borrowed(e)));
                    if self.range_iteration(b, mark, key, elem)? {
                        break;
                    }
                }
            }
            // A nil value ranges like an empty map.
            Val::Invalid | Val::Nil => {}
            v => {
                return self.errorf(format!("range can't iterate over {}", sprint_value(v)));
            }
        }
        if let Some(e) = b.else_list.as_ref().filter(|_| !ran) {
            self.walk_list(dot, e)?;
        }
        self.depth -= 1;
        self.vars.truncate(outer);
        Ok(Flow::Normal)
    }

    fn walk_template(
        &mut self,
        dot: &Rv<'a>,
        node: &'a Node,
        name: &'a str,
        pipe: &'a Option<Pipe>,
    ) -> R<()> {
        self.at(Ctx::Node(node));
        let Some(tree) = self.trees.get(name) else {
            return self.errorf(format!("template {} not defined", quote(name)));
        };
        self.enter(true)?;
        // Variables declared by the argument pipeline persist in the caller.
        let new_dot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Rv::invalid(),
        };
        // No dynamic scoping: the called template sees only $.
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let saved_name = std::mem::replace(&mut self.name, name);
        let r = self.walk_list(&new_dot, tree);
        self.name = saved_name;
        self.vars = saved_vars;
        r?;
        self.depth -= 1;
        Ok(())
    }

    fn print_value(&mut self, node: &'a Node, v: &Rv<'a>) -> R<()> {
        self.at(Ctx::Node(node));
        match &v.v {
            Val::Invalid => self.write("<no value>"),
            Val::Str(s) => {
                let s = s.clone();
                self.write(s.as_str())
            }
            other => {
                let s = sprint_value(other);
                self.write(&s)
            }
        }
    }

    pub(crate) fn eval_pipeline(&mut self, dot: &Rv<'a>, pipe: &'a Pipe) -> R<Rv<'a>> {
        self.at(Ctx::Pipe(pipe));
        let mut value: Option<Rv<'a>> = None;
        for cmd in &pipe.cmds {
            let v = self.eval_command(dot, cmd, value.take())?;
            // A value held in an interface{} is unwrapped to its concrete value here.
            value = Some(v.unboxed());
        }
        let value = value.unwrap_or_else(Rv::invalid);
        for (_, name) in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.vars.push((name, value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Rv<'a>>) -> R<()> {
        if args.len() > 1 || fin.is_some() {
            return self.errorf(format!("can't give argument to non-function {}", args[0]));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Rv<'a>, cmd: &'a Command, fin: Option<Rv<'a>>) -> R<Rv<'a>> {
        self.step()?;
        let first = &cmd.args[0];
        match first {
            Arg::Field { idents, .. } => {
                return self.eval_field_node(dot, first, idents, &cmd.args, fin);
            }
            Arg::Chain { .. } => return self.eval_chain_node(dot, first, &cmd.args, fin),
            Arg::Identifier { name, .. } => {
                self.at(Ctx::Arg(first));
                return self.eval_call(dot, name, Ctx::Cmd(cmd), &cmd.args[1..], fin);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                self.enter(false)?;
                let v = self.eval_pipeline(dot, p);
                self.depth -= 1;
                return v;
            }
            Arg::Variable { .. } => return self.eval_variable_node(first, &cmd.args, fin),
            _ => {}
        }
        self.at(Ctx::Arg(first));
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { val, .. } => Ok(Rv::plain(Val::Bool(*val))),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => self.errorf("nil is not a command".into()),
            Arg::Number { .. } => self.ideal_constant(first),
            Arg::String { text, .. } => Ok(Rv::plain(Val::Str(Str::Borrowed(text)))),
            _ => self.errorf(format!(
                "can't evaluate command {}",
                quote(&first.to_string())
            )),
        }
    }

    fn ideal_constant(&mut self, arg: &'a Arg) -> R<Rv<'a>> {
        self.at(Ctx::Arg(arg));
        match arg {
            Arg::Number { val, text, .. } => match val {
                Num::Int(i) => Ok(Rv::plain(Val::Int(*i))),
                Num::Float(f) => Ok(Rv::plain(Val::Float(*f))),
                Num::Uint => self.errorf(format!("{text} overflows int")),
                Num::Unsupported(what) => Err(self.err(
                    ExecErrorKind::Unsupported,
                    format!("{what} are not supported: {text}"),
                )),
            },
            _ => Ok(Rv::invalid()),
        }
    }

    fn eval_field_node(
        &mut self,
        dot: &Rv<'a>,
        node: &'a Arg,
        idents: &'a [String],
        args: &[Arg],
        fin: Option<Rv<'a>>,
    ) -> R<Rv<'a>> {
        self.at(Ctx::Arg(node));
        self.eval_field_chain(dot.clone(), idents, args.len() > 1 || fin.is_some())
    }

    fn eval_chain_node(
        &mut self,
        dot: &Rv<'a>,
        node: &'a Arg,
        args: &[Arg],
        fin: Option<Rv<'a>>,
    ) -> R<Rv<'a>> {
        self.at(Ctx::Arg(node));
        let Arg::Chain {
            node: inner,
            fields,
            ..
        } = node
        else {
            return self.errorf("internal error: not a chain".into());
        };
        if let Arg::Nil { .. } = inner.as_ref() {
            return self.errorf(format!("indirection through explicit nil in {node}"));
        }
        let receiver = match inner.as_ref() {
            Arg::Pipe(p) => {
                self.at(Ctx::Arg(inner));
                self.enter(false)?;
                let v = self.eval_pipeline(dot, p);
                self.depth -= 1;
                v?
            }
            Arg::Identifier { name, .. } => {
                self.at(Ctx::Arg(inner));
                self.eval_call(dot, name, Ctx::Arg(inner), &[], None)?
            }
            other => return self.errorf(format!("can't handle {other} for arg")),
        };
        self.eval_field_chain(receiver, fields, args.len() > 1 || fin.is_some())
    }

    /// `$x` or `$x.Field...`; `args` are the command's words when the variable starts a
    /// command (empty when it is itself an argument).
    fn eval_variable_node(
        &mut self,
        node: &'a Arg,
        args: &[Arg],
        fin: Option<Rv<'a>>,
    ) -> R<Rv<'a>> {
        self.at(Ctx::Arg(node));
        let Arg::Variable { idents, .. } = node else {
            return self.errorf("internal error: not a variable".into());
        };
        let value = self.var_value(&idents[0])?;
        if idents.len() == 1 {
            if !args.is_empty() {
                self.not_a_function(args, &fin)?;
            }
            return Ok(value);
        }
        self.eval_field_chain(value, &idents[1..], args.len() > 1 || fin.is_some())
    }

    /// `.X.Y.Z` on `receiver`; only the last field may receive arguments.
    fn eval_field_chain(
        &mut self,
        mut receiver: Rv<'a>,
        idents: &'a [String],
        has_args: bool,
    ) -> R<Rv<'a>> {
        let n = idents.len();
        for (i, name) in idents.iter().enumerate() {
            receiver = self.eval_field(name, has_args && i == n - 1, receiver)?;
        }
        Ok(receiver)
    }

    fn missing(&self, name: &str, zero: Rv<'a>) -> R<Rv<'a>> {
        match self.opts.missing_key {
            MissingKey::Error => Err(self.err(
                ExecErrorKind::MissingKey,
                format!("map has no entry for key {}", quote(name)),
            )),
            MissingKey::Default => Ok(Rv::invalid()),
            MissingKey::Zero => Ok(zero),
        }
    }

    fn eval_field(&mut self, name: &str, has_args: bool, receiver: Rv<'a>) -> R<Rv<'a>> {
        if !receiver.is_valid() {
            if self.opts.missing_key == MissingKey::Error {
                return Err(self.err(
                    ExecErrorKind::MissingKey,
                    format!("nil data; no entry for key {}", quote(name)),
                ));
            }
            return Ok(Rv::invalid());
        }
        let typ = receiver.type_name();
        if receiver.boxed && matches!(receiver.v, Val::Nil) {
            return self.errorf(format!("nil pointer evaluating {typ}.{name}"));
        }
        match receiver.v {
            Val::Map(m) => {
                if has_args {
                    return self.errorf(format!("{name} is not a method but has arguments"));
                }
                match m.get(name) {
                    Some(v) => Ok(Rv::element(v)),
                    None => self.missing(
                        name,
                        Rv {
                            v: Val::Nil,
                            boxed: true,
                        },
                    ),
                }
            }
            Val::StrMap(m) => {
                if has_args {
                    return self.errorf(format!("{name} is not a method but has arguments"));
                }
                match m.get(name) {
                    Some(v) => Ok(Rv::plain(Val::Str(Str::Borrowed(v)))),
                    None => self.missing(name, Rv::plain(Val::Str(Str::Borrowed("")))),
                }
            }
            _ => self.errorf(format!("can't evaluate field {name} in type {typ}")),
        }
    }

    /// Calls builtin `name` with argument nodes `args` and the piped-in value `fin`.
    fn eval_call(
        &mut self,
        dot: &Rv<'a>,
        name: &'a str,
        call_node: Ctx<'a>,
        args: &'a [Arg],
        fin: Option<Rv<'a>>,
    ) -> R<Rv<'a>> {
        let sig = funcs::signature(name);
        let num_in = args.len() + usize::from(fin.is_some());
        if sig.variadic.is_some() {
            if num_in < sig.fixed.len() {
                return self.errorf(format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    sig.fixed.len(),
                    args.len()
                ));
            }
        } else if num_in != sig.fixed.len() {
            return self.errorf(format!(
                "wrong number of args for {name}: want {} got {num_in}",
                sig.fixed.len()
            ));
        }
        let param = |i: usize| -> Param {
            if i < sig.fixed.len() {
                sig.fixed[i]
            } else {
                sig.variadic.unwrap_or(Param::Value)
            }
        };

        // and/or evaluate lazily and return an operand.
        if name == "and" || name == "or" {
            let want = name == "or";
            let mut v = Rv::invalid();
            for a in args {
                v = self.eval_arg(dot, Param::Value, a)?;
                if v.clone().unboxed().v.truth() == want {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }

        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, param(i), a)?);
        }
        if let Some(f) = fin {
            let p = param(num_in - 1);
            argv.push(self.validate_type(f, p)?);
        }
        let callee = if name == "call" {
            Some(match args.first() {
                Some(a) => a.to_string(),
                None => match &argv[0].v {
                    Val::Str(s) => s.as_str().to_string(),
                    v => format!("<{} Value>", v.type_name()),
                },
            })
        } else {
            None
        };
        match funcs::call(name, argv, callee) {
            Ok((v, produced)) => {
                self.charge(produced)?;
                Ok(v)
            }
            Err(funcs::CallError::Go(msg)) => {
                self.at(call_node);
                self.errorf(format!("error calling {name}: {msg}"))
            }
            Err(funcs::CallError::Unsupported(msg)) => {
                self.at(call_node);
                Err(self.err(
                    ExecErrorKind::Unsupported,
                    format!("error calling {name}: {msg} is not supported"),
                ))
            }
        }
    }

    fn eval_arg(&mut self, dot: &Rv<'a>, param: Param, arg: &'a Arg) -> R<Rv<'a>> {
        self.at(Ctx::Arg(arg));
        let v = match arg {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { .. } => {
                return match param {
                    Param::Value => Ok(Rv::invalid()),
                    Param::Any => Ok(Rv {
                        v: Val::Nil,
                        boxed: true,
                    }),
                    Param::String => self.errorf("cannot assign nil to string".into()),
                };
            }
            Arg::Field { idents, .. } => {
                self.eval_field_node(dot, arg, idents, std::slice::from_ref(arg), None)?
            }
            Arg::Variable { .. } => self.eval_variable_node(arg, &[], None)?,
            Arg::Pipe(p) => {
                self.enter(false)?;
                let v = self.eval_pipeline(dot, p);
                self.depth -= 1;
                v?
            }
            Arg::Identifier { name, .. } => self.eval_call(dot, name, Ctx::Arg(arg), &[], None)?,
            Arg::Chain { .. } => self.eval_chain_node(dot, arg, &[], None)?,
            Arg::Bool { val, .. } => {
                if param == Param::String {
                    return self.errorf(format!("expected string; found {arg}"));
                }
                Rv::plain(Val::Bool(*val))
            }
            Arg::Number { .. } => {
                if param == Param::String {
                    return self.errorf(format!("expected string; found {arg}"));
                }
                self.ideal_constant(arg)?
            }
            Arg::String { text, .. } => Rv::plain(Val::Str(Str::Borrowed(text))),
        };
        self.validate_type(v, param)
    }

    /// Go's `validateType`: checks a value against a parameter type.
    fn validate_type(&self, v: Rv<'a>, param: Param) -> R<Rv<'a>> {
        match param {
            Param::Value | Param::Any => Ok(v),
            Param::String => {
                if !v.is_valid() {
                    return self.errorf("invalid value; expected string".into());
                }
                if v.boxed && matches!(v.v, Val::Nil) {
                    return self
                        .errorf("wrong type for value; expected string; got interface {}".into());
                }
                match v.v {
                    Val::Str(s) => Ok(Rv::plain(Val::Str(s))),
                    other => self.errorf(format!(
                        "wrong type for value; expected string; got {}",
                        other.type_name()
                    )),
                }
            }
        }
    }
}
