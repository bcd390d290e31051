//! Parser producing the same tree shapes, node positions and error messages as Go's
//! `text/template/parse`.

use std::collections::HashMap;
use std::fmt;

use crate::error::ParseError;
use crate::gofmt::quote;
use crate::lex::{Item, Kind, lex};

/// Deepest nesting of control structures plus parenthesised pipelines the parser accepts.
/// Go allows 10000 parentheses; templates from data directories never need more than a few
/// levels, and the bound keeps parsing and execution within a small stack.
pub(crate) const MAX_PARSE_DEPTH: usize = 100;

/// The parsed form of a number literal, after Go's `idealConstant` rules.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
    /// Fits only in a uint64: an execution error ("overflows int") when used.
    Uint,
    /// Valid Go syntax for a value this crate does not model (complex numbers): an
    /// execution error when used, so that parsing reports the same errors as Go.
    Unsupported(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    /// `idents[0]` is the variable name including `$`; the rest are field names.
    Variable {
        pos: usize,
        idents: Vec<String>,
    },
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    Identifier {
        pos: usize,
        name: String,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Number {
        pos: usize,
        text: String,
        val: Num,
    },
    String {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) pos: usize,
    pub(crate) is_assign: bool,
    /// Declared or assigned variables, with their positions.
    pub(crate) decl: Vec<(usize, String)>,
    pub(crate) cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub(crate) struct List {
    pub(crate) pos: usize,
    pub(crate) nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pos: usize,
    pub(crate) pipe: Pipe,
    pub(crate) list: List,
    pub(crate) else_list: Option<List>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text {
        pos: usize,
        text: String,
    },
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
}

impl Node {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Node::Text { pos, .. }
            | Node::Action { pos, .. }
            | Node::Template { pos, .. }
            | Node::Break { pos }
            | Node::Continue { pos } => *pos,
            Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
        }
    }

    fn is_empty_tree(&self) -> bool {
        match self {
            Node::Text { text, .. } => text.trim_ascii().is_empty(),
            _ => false,
        }
    }
}

fn list_is_empty(l: &List) -> bool {
    l.nodes.iter().all(Node::is_empty_tree)
}

// Display impls reproduce Go's Node.String(), which execution errors quote as context.

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable { idents, .. } => f.write_str(&idents.join(".")),
            Arg::Chain { node, fields, .. } => {
                match node.as_ref() {
                    Arg::Pipe(p) => write!(f, "({p})")?,
                    n => write!(f, "{n}")?,
                }
                for i in fields {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Identifier { name, .. } => f.write_str(name),
            Arg::Dot { .. } => f.write_str("."),
            Arg::Nil { .. } => f.write_str("nil"),
            Arg::Bool { val, .. } => write!(f, "{val}"),
            Arg::Number { text, .. } => f.write_str(text),
            Arg::String { quoted, .. } => f.write_str(quoted),
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match a {
                Arg::Pipe(p) => write!(f, "({p})")?,
                a => write!(f, "{a}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            for (i, (_, v)) in self.decl.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(v)?;
            }
            // Go prints " := " for assignments too.
            f.write_str(" := ")?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

fn write_branch(f: &mut fmt::Formatter<'_>, name: &str, b: &Branch) -> fmt::Result {
    write!(f, "{{{{{name} {}}}}}{}", b.pipe, b.list)?;
    if let Some(e) = &b.else_list {
        write!(f, "{{{{else}}}}{e}")?;
    }
    f.write_str("{{end}}")
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Text { text, .. } => f.write_str(text),
            Node::Action { pipe, .. } => write!(f, "{{{{{pipe}}}}}"),
            Node::If(b) => write_branch(f, "if", b),
            Node::Range(b) => write_branch(f, "range", b),
            Node::With(b) => write_branch(f, "with", b),
            Node::Template { name, pipe, .. } => match pipe {
                None => write!(f, "{{{{template {}}}}}", quote(name)),
                Some(p) => write!(f, "{{{{template {} {p}}}}}", quote(name)),
            },
            Node::Break { .. } => f.write_str("{{break}}"),
            Node::Continue { .. } => f.write_str("{{continue}}"),
        }
    }
}

/// What `textOrAction` can return: a node, or the `{{end}}`/`{{else}}` that closes a list.
enum Parsed {
    Node(Node),
    End,
    Else { pos: usize },
}

impl fmt::Display for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parsed::Node(n) => write!(f, "{n}"),
            Parsed::End => f.write_str("{{end}}"),
            Parsed::Else { .. } => f.write_str("{{else}}"),
        }
    }
}

/// Builtin function names: identifiers that parse (Go checks them at parse time).
pub(crate) const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

type PResult<T> = Result<T, ParseError>;

struct Parser<'a> {
    name: &'a str,
    items: Vec<Item>,
    newlines: Vec<usize>,
    i: usize,
    /// How many tokens have been pulled from the lexer; Go reports the line of the newest.
    fetched: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    action_line: usize,
    trees: HashMap<String, List>,
}

/// Parses `text` as the template `name`, returning every tree it defines by name.
pub(crate) fn parse(name: &str, text: &str) -> Result<HashMap<String, List>, ParseError> {
    let mut p = Parser {
        name,
        items: lex(text),
        newlines: text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect(),
        i: 0,
        fetched: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        depth: 0,
        action_line: 0,
        trees: HashMap::new(),
    };
    let root = p.parse_top()?;
    p.add(name, root)?;
    Ok(p.trees)
}

impl Parser<'_> {
    fn item(&mut self, i: usize) -> &Item {
        // The lexer always ends with Eof or Error; stay on it.
        let i = i.min(self.items.len() - 1);
        self.fetched = self.fetched.max(i + 1);
        &self.items[i]
    }

    fn next(&mut self) -> Item {
        let it = self.item(self.i).clone();
        self.i += 1;
        it
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn peek(&mut self) -> Item {
        self.item(self.i).clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.kind != Kind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn errorf(&mut self, msg: String) -> ParseError {
        let last = self.fetched.max(1) - 1;
        let it = &self.items[last.min(self.items.len() - 1)];
        let line = it.line;
        let line_start = if line > 1 {
            self.newlines[line - 2] + 1
        } else {
            0
        };
        ParseError {
            name: self.name.to_string(),
            line,
            col: it.pos.saturating_sub(line_start),
            message: msg,
        }
    }

    fn unexpected(&mut self, token: &Item, context: &str) -> ParseError {
        if token.kind == Kind::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{token}{extra}"));
        }
        self.errorf(format!("unexpected {token} in {context}"))
    }

    fn expect(&mut self, kind: Kind, context: &str) -> PResult<Item> {
        let t = self.next_non_space();
        if t.kind != kind {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    fn enter(&mut self, what: &str) -> PResult<()> {
        if self.depth >= MAX_PARSE_DEPTH {
            return Err(self.errorf(format!("max {what} depth exceeded")));
        }
        self.depth += 1;
        Ok(())
    }

    fn add(&mut self, name: &str, root: List) -> PResult<()> {
        match self.trees.get(name) {
            Some(existing) if !list_is_empty(existing) => {
                if !list_is_empty(&root) {
                    return Err(self.errorf(format!(
                        "template: multiple definition of template {}",
                        quote(name)
                    )));
                }
            }
            _ => {
                self.trees.insert(name.to_string(), root);
            }
        }
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<List> {
        let pos = self.peek().pos;
        let mut root = List {
            pos,
            nodes: Vec::new(),
        };
        while self.peek().kind != Kind::Eof {
            if self.peek().kind == Kind::LeftDelim {
                let mark = self.i;
                self.next();
                if self.next_non_space().kind == Kind::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.i = mark;
            }
            match self.text_or_action()? {
                Parsed::Node(n) => root.nodes.push(n),
                other => return Err(self.errorf(format!("unexpected {other}"))),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let t = self.next_non_space();
        if t.kind != Kind::String && t.kind != Kind::RawString {
            return Err(self.unexpected(&t, CONTEXT));
        }
        let name = self.unquote(&t.val)?;
        self.expect(Kind::RightDelim, CONTEXT)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let (root, end) = self.item_list()?;
        if !matches!(end, Parsed::End) {
            return Err(self.errorf(format!("unexpected {end} in {CONTEXT}")));
        }
        self.vars = saved_vars;
        self.range_depth = saved_range;
        self.add(&name, root)
    }

    fn item_list(&mut self) -> PResult<(List, Parsed)> {
        let pos = self.peek_non_space().pos;
        let mut list = List {
            pos,
            nodes: Vec::new(),
        };
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Parsed::Node(n) => list.nodes.push(n),
                end => return Ok((list, end)),
            }
        }
        Err(self.errorf("unexpected EOF".into()))
    }

    fn text_or_action(&mut self) -> PResult<Parsed> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Text => Ok(Parsed::Node(Node::Text {
                pos: t.pos,
                text: t.val,
            })),
            Kind::LeftDelim => {
                self.action_line = t.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> PResult<Parsed> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Block => return self.block_control().map(Parsed::Node),
            Kind::Break | Kind::Continue => {
                let word = if t.kind == Kind::Break {
                    "break"
                } else {
                    "continue"
                };
                let next = self.next_non_space();
                if next.kind != Kind::RightDelim {
                    return Err(self.unexpected(&next, &format!("{{{{{word}}}}}")));
                }
                if self.range_depth == 0 {
                    return Err(self.errorf(format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                return Ok(Parsed::Node(if t.kind == Kind::Break {
                    Node::Break { pos: t.pos }
                } else {
                    Node::Continue { pos: t.pos }
                }));
            }
            Kind::Else => return self.else_control(),
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                return Ok(Parsed::End);
            }
            Kind::If => return self.control("if").map(|b| Parsed::Node(Node::If(b))),
            Kind::Range => return self.control("range").map(|b| Parsed::Node(Node::Range(b))),
            Kind::Template => return self.template_control().map(Parsed::Node),
            Kind::With => return self.control("with").map(|b| Parsed::Node(Node::With(b))),
            _ => {}
        }
        self.backup();
        let t = self.peek();
        let pipe = self.pipeline("command", Kind::RightDelim)?;
        Ok(Parsed::Node(Node::Action { pos: t.pos, pipe }))
    }

    fn else_control(&mut self) -> PResult<Parsed> {
        let peek = self.peek_non_space();
        if peek.kind == Kind::If || peek.kind == Kind::With {
            return Ok(Parsed::Else { pos: peek.pos });
        }
        let t = self.expect(Kind::RightDelim, "else")?;
        Ok(Parsed::Else { pos: t.pos })
    }

    fn control(&mut self, context: &str) -> PResult<Branch> {
        self.enter("nesting")?;
        let nvars = self.vars.len();
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, next) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let mut else_list = None;
        match next {
            Parsed::End => {}
            Parsed::Else { pos } => {
                let p = self.peek().kind;
                if (context == "if" && p == Kind::If) || (context == "with" && p == Kind::With) {
                    // "{{else if x}}" is "{{else}}{{if x}}...{{end}}{{end}}" with the inner
                    // {{end}} shared.
                    self.next();
                    let inner = self.control(context)?;
                    let node = if context == "if" {
                        Node::If(inner)
                    } else {
                        Node::With(inner)
                    };
                    else_list = Some(List {
                        pos,
                        nodes: vec![node],
                    });
                } else {
                    let (l, next) = self.item_list()?;
                    if !matches!(next, Parsed::End) {
                        return Err(self.errorf(format!("expected end; found {next}")));
                    }
                    else_list = Some(l);
                }
            }
            // item_list returns only at {{end}} or {{else}}.
            Parsed::Node(n) => return Err(self.errorf(format!("unexpected {n}"))),
        }
        self.vars.truncate(nvars);
        self.depth -= 1;
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn template_name(&mut self, t: &Item, context: &str) -> PResult<String> {
        match t.kind {
            Kind::String | Kind::RawString => self.unquote(&t.val),
            _ => Err(self.unexpected(t, context)),
        }
    }

    fn template_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().kind != Kind::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, Kind::RightDelim)?);
        }
        Ok(Node::Template {
            pos: t.pos,
            name,
            pipe,
        })
    }

    fn block_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Kind::RightDelim)?;
        self.enter("nesting")?;
        // Go parses the body as a separate tree: fresh variables, no enclosing range or
        // action, and its own view of "the last token read" for error lines.
        let parent_fetched = self.fetched;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let saved_action = std::mem::replace(&mut self.action_line, 0);
        let (root, end) = self.item_list()?;
        if !matches!(end, Parsed::End) {
            // Reported by the enclosing tree, whose last token is the block's "}}".
            self.fetched = parent_fetched;
            return Err(self.errorf(format!("unexpected {end} in {CONTEXT}")));
        }
        self.vars = saved_vars;
        self.range_depth = saved_range;
        self.action_line = saved_action;
        self.depth -= 1;
        self.add(&name, root)?;
        Ok(Node::Template {
            pos: t.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> PResult<Pipe> {
        let t = self.peek_non_space();
        let mut pipe = Pipe {
            pos: t.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        'decls: loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let vi = self.i;
            self.next();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push((v.pos, v.val.clone()));
                    self.vars.push(v.val);
                    break 'decls;
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push((v.pos, v.val.clone()));
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable | Kind::RightDelim | Kind::RightParen => {
                                continue 'decls;
                            }
                            _ => {
                                return Err(
                                    self.errorf("range can only initialize variables".into())
                                );
                            }
                        }
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                }
                _ => {
                    // A variable used as an operand: rewind to it.
                    self.i = vi;
                    break 'decls;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            if t.kind == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match t.kind {
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn check_pipeline(&mut self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return Err(self.errorf(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool { .. }
                    | Arg::Dot { .. }
                    | Arg::Nil { .. }
                    | Arg::Number { .. }
                    | Arg::String { .. }
            ) {
                return Err(self.errorf(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let t = self.next();
            match t.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.errorf("empty command".into()));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let chain_pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            let f = self.next().val;
            fields.push(f[1..].to_string());
        }
        Ok(Some(match node {
            Arg::Field { mut idents, .. } => {
                idents.extend(fields);
                Arg::Field {
                    pos: chain_pos,
                    idents,
                }
            }
            Arg::Variable { mut idents, .. } => {
                idents.extend(fields);
                Arg::Variable {
                    pos: chain_pos,
                    idents,
                }
            }
            n @ (Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. }) => {
                return Err(
                    self.errorf(format!("unexpected . after term {}", quote(&n.to_string())))
                );
            }
            n => Arg::Chain {
                pos: chain_pos,
                node: Box::new(n),
                fields,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        Ok(Some(match t.kind {
            Kind::Identifier => {
                if !BUILTINS.contains(&t.val.as_str()) {
                    return Err(self.errorf(format!("function {} not defined", quote(&t.val))));
                }
                Arg::Identifier {
                    pos: t.pos,
                    name: t.val,
                }
            }
            Kind::Dot => Arg::Dot { pos: t.pos },
            Kind::Nil => Arg::Nil { pos: t.pos },
            Kind::Variable => {
                if !self.vars.contains(&t.val) {
                    return Err(self.errorf(format!("undefined variable {}", quote(&t.val))));
                }
                Arg::Variable {
                    pos: t.pos,
                    idents: vec![t.val],
                }
            }
            Kind::Field => Arg::Field {
                pos: t.pos,
                idents: vec![t.val[1..].to_string()],
            },
            Kind::Bool => Arg::Bool {
                pos: t.pos,
                val: t.val == "true",
            },
            Kind::CharConstant | Kind::Complex | Kind::Number => {
                let val = match parse_number(&t.val, t.kind) {
                    Ok(v) => v,
                    Err(e) => return Err(self.errorf(e)),
                };
                Arg::Number {
                    pos: t.pos,
                    text: t.val,
                    val,
                }
            }
            Kind::LeftParen => {
                self.enter("expression")?;
                let p = self.pipeline("parenthesized pipeline", Kind::RightParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(p))
            }
            Kind::String | Kind::RawString => {
                let text = self.unquote(&t.val)?;
                Arg::String {
                    pos: t.pos,
                    quoted: t.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }

    fn unquote(&mut self, s: &str) -> PResult<String> {
        match unquote(s) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.errorf(e)),
        }
    }
}

const INVALID_SYNTAX: &str = "invalid syntax";

/// Go's `strconv.UnquoteChar`: decodes one character or escape from `s`, returning the
/// bytes it stands for, whether it was a full rune, and the rest of `s`.
fn unquote_char(s: &str, quote: char) -> Result<(u32, bool, &str), &'static str> {
    let mut chars = s.chars();
    let c = chars.next().ok_or(INVALID_SYNTAX)?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(INVALID_SYNTAX);
    }
    if c != '\\' {
        return Ok((c as u32, true, chars.as_str()));
    }
    let e = chars.next().ok_or(INVALID_SYNTAX)?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some(0x07),
        'b' => Some(0x08),
        'f' => Some(0x0c),
        'n' => Some(0x0a),
        'r' => Some(0x0d),
        't' => Some(0x09),
        'v' => Some(0x0b),
        '\\' => Some(0x5c),
        '\'' | '"' => {
            if e != quote {
                return Err(INVALID_SYNTAX);
            }
            Some(e as u32)
        }
        _ => None,
    };
    if let Some(v) = simple {
        return Ok((v, true, rest));
    }
    match e {
        'x' | 'u' | 'U' => {
            let n = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            if rest.len() < n || !rest.is_char_boundary(n) {
                return Err(INVALID_SYNTAX);
            }
            let v = u32::from_str_radix(&rest[..n], 16).map_err(|_| INVALID_SYNTAX)?;
            if rest[..n].starts_with('+') {
                return Err(INVALID_SYNTAX);
            }
            if e == 'x' {
                return Ok((v, false, &rest[n..]));
            }
            if char::from_u32(v).is_none() {
                return Err(INVALID_SYNTAX);
            }
            Ok((v, true, &rest[n..]))
        }
        '0'..='7' => {
            if rest.len() < 2 || !rest.is_char_boundary(2) {
                return Err(INVALID_SYNTAX);
            }
            let digits = format!("{e}{}", &rest[..2]);
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(INVALID_SYNTAX);
            }
            let v = u32::from_str_radix(&digits, 8).map_err(|_| INVALID_SYNTAX)?;
            if v > 255 {
                return Err(INVALID_SYNTAX);
            }
            Ok((v, false, &rest[2..]))
        }
        _ => Err(INVALID_SYNTAX),
    }
}

/// Go's `strconv.Unquote` for the string and raw-string literals the lexer produces.
/// Escapes that produce bytes which are not valid UTF-8 are rejected: Rust strings cannot
/// hold them, and silently replacing them would change the output.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    if let Some(body) = s.strip_prefix('`').and_then(|b| b.strip_suffix('`')) {
        if body.contains('`') {
            return Err(INVALID_SYNTAX.into());
        }
        return Ok(body.replace('\r', ""));
    }
    let Some(mut body) = s.strip_prefix('"').and_then(|b| b.strip_suffix('"')) else {
        return Err(INVALID_SYNTAX.into());
    };
    if s.len() < 2 {
        return Err(INVALID_SYNTAX.into());
    }
    let mut bytes = Vec::with_capacity(body.len());
    while !body.is_empty() {
        let (v, full, rest) = unquote_char(body, '"').map_err(String::from)?;
        if full {
            let c = char::from_u32(v).ok_or(INVALID_SYNTAX)?;
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            // \x and octal escapes are single bytes.
            bytes.push(v as u8);
        }
        body = rest;
    }
    String::from_utf8(bytes)
        .map_err(|_| "string literals that are not valid UTF-8 are not supported".into())
}

/// Go's `underscoreOK`: underscores only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let b = if !b.is_empty() && (b[0] == b'-' || b[0] == b'+') {
        &b[1..]
    } else {
        b
    };
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseUint(s, 0, 64)` without a sign.
fn parse_uint_base0(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.contains('_') && !underscore_ok(s) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let (digits, radix) = if let Some(r) = lower.strip_prefix("0x") {
        (r.to_string(), 16)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (r.to_string(), 8)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (r.to_string(), 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8)
    } else {
        (lower, 10)
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the literals the lexer produces: `Err` where Go's
/// fails, `Ok(None)` for a valid hexadecimal float that this crate does not convert.
fn parse_go_float(s: &str) -> Result<Option<f64>, ()> {
    if s.contains('_') && !underscore_ok(s) {
        return Err(());
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let Some(hex) = lower.strip_prefix("0x") else {
        if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(());
        }
        return match cleaned.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(()),
        };
    };
    // Hexadecimal mantissa with a mandatory binary exponent: 0x1.8p-2.
    let (mant, exp) = hex.split_once('p').ok_or(())?;
    let exp: i64 = match exp.strip_prefix('+') {
        Some(e) if e.starts_with(|c: char| c.is_ascii_digit()) => e.parse().map_err(|_| ())?,
        _ if exp.starts_with('+') => return Err(()),
        _ => exp.parse().map_err(|_| ())?,
    };
    let (int_part, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac.is_empty() {
        return Err(());
    }
    let digits = format!("{int_part}{frac}");
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(());
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 13 {
        return Ok(None);
    }
    let m = u64::from_str_radix(
        if significant.is_empty() {
            "0"
        } else {
            significant
        },
        16,
    )
    .map_err(|_| ())?;
    let e2 = exp - 4 * frac.len() as i64;
    if m == 0 {
        return Ok(Some(if neg { -0.0 } else { 0.0 }));
    }
    // Within this range the product is exact: m < 2^52 and the result stays normal.
    if !(-960..=960).contains(&e2) {
        return Ok(None);
    }
    let v = m as f64 * 2f64.powi(e2 as i32);
    Ok(Some(if neg { -v } else { v }))
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint_base0(unsigned)? as i128;
    let v = if neg { -u } else { u };
    i64::try_from(v).ok()
}

/// Go's `parse.newNumber` followed by `idealConstant`: what a number literal evaluates to.
pub(crate) fn parse_number(text: &str, kind: Kind) -> Result<Num, String> {
    const COMPLEX: &str = "complex constants";
    if kind == Kind::CharConstant {
        let inner = &text[1..];
        let (v, _, tail) = unquote_char(inner, '\'').map_err(String::from)?;
        if tail != "'" {
            return Err(format!("malformed character constant: {text}"));
        }
        return Ok(Num::Int(v as i64));
    }
    if kind == Kind::Complex {
        return Ok(Num::Unsupported(COMPLEX));
    }
    if let Some(imag) = text.strip_suffix('i')
        && parse_go_float(imag).is_ok()
    {
        return Ok(Num::Unsupported(COMPLEX));
    }
    if let Some(i) = parse_int_base0(text) {
        return Ok(Num::Int(i));
    }
    if !text.starts_with(['+', '-']) && parse_uint_base0(text).is_some() {
        return Ok(Num::Uint);
    }
    match parse_go_float(text) {
        Ok(_) if !text.contains(['.', 'e', 'E', 'p', 'P']) => {
            Err(format!("integer overflow: {}", quote(text)))
        }
        Ok(Some(f)) => Ok(Num::Float(f)),
        Ok(None) => Ok(Num::Unsupported(
            "hexadecimal floating-point constants this long",
        )),
        Err(()) => Err(format!("illegal number syntax: {}", quote(text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> String {
        let trees = parse("t", text).expect("parses");
        trees["t"].to_string()
    }

    fn err(text: &str) -> String {
        parse("t", text).expect_err("fails").to_string()
    }

    // Round-trips mirror Go's parse_test.go parseTests, which compare Tree.String().
    #[test]
    fn round_trips() {
        let cases = [
            ("", ""),
            ("hello", "hello"),
            ("{{.X}}", "{{.X}}"),
            ("{{.X.Y.Z}}", "{{.X.Y.Z}}"),
            ("{{$x := .X}}{{$x.Y}}", "{{$x := .X}}{{$x.Y}}"),
            (
                "{{range $i, $e := .}}{{$e}}{{end}}",
                "{{range $i, $e := .}}{{$e}}{{end}}",
            ),
            (
                "{{if .X}}a{{else if .Y}}b{{else}}c{{end}}",
                "{{if .X}}a{{else}}{{if .Y}}b{{else}}c{{end}}{{end}}",
            ),
            (
                "{{with .X}}a{{else with .Y}}b{{end}}",
                "{{with .X}}a{{else}}{{with .Y}}b{{end}}{{end}}",
            ),
            (
                "{{printf \"%d\" (len .X) | print}}",
                "{{printf \"%d\" (len .X) | print}}",
            ),
            ("{{(.X).Y}}", "{{(.X).Y}}"),
            ("{{`raw`}}", "{{`raw`}}"),
            ("{{3 | print}}", "{{3 | print}}"),
            ("{{template \"x\" .}}", "{{template \"x\" .}}"),
            (
                "{{range .}}{{break}}{{continue}}{{end}}",
                "{{range .}}{{break}}{{continue}}{{end}}",
            ),
            ("a {{- 1 -}} b", "a{{1}}b"),
            ("{{/* comment */}}", ""),
        ];
        for (text, want) in cases {
            assert_eq!(root(text), want, "template {text:?}");
        }
    }

    #[test]
    fn define_and_block_add_trees() {
        let trees = parse("t", "{{define \"a\"}}A{{end}}x{{block \"b\" .}}B{{end}}").unwrap();
        assert_eq!(trees["a"].to_string(), "A");
        assert_eq!(trees["b"].to_string(), "B");
        assert_eq!(trees["t"].to_string(), "x{{template \"b\" .}}");
    }

    // Messages mirror Go's parse_test.go errorTests.
    #[test]
    fn errors() {
        let cases = [
            ("{{end}}", "template: t:1: unexpected {{end}}"),
            ("{{else}}", "template: t:1: unexpected {{else}}"),
            ("{{if .X}}", "template: t:1: unexpected EOF"),
            (
                "{{range .}}{{end}} {{break}}",
                "template: t:1: {{break}} outside {{range}}",
            ),
            ("{{$x}}", "template: t:1: undefined variable \"$x\""),
            ("{{nope}}", "template: t:1: function \"nope\" not defined"),
            (
                "{{.X 3 | 4}}",
                "template: t:1: non executable command in pipeline stage 2",
            ),
            ("{{if}}", "template: t:1: missing value for if"),
            (
                "{{range $i, $e, $f := .}}{{end}}",
                "template: t:1: too many declarations in range",
            ),
            (
                "{{range $i, 3}}{{end}}",
                "template: t:1: range can only initialize variables",
            ),
            (
                "{{$a, $b := 1}}",
                "template: t:1: too many declarations in command",
            ),
            ("{{3.x}}", "template: t:1: bad number syntax: \"3.x\""),
            (
                "{{\"a\".x}}",
                "template: t:1: unexpected . after term \"\\\"a\\\"\"",
            ),
            (
                "{{define \"a\"}}a{{end}}{{define \"a\"}}b{{end}}",
                "template: t:1: template: multiple definition of template \"a\"",
            ),
            (
                "{{if .X}}\n{{else}}\n{{else}}{{end}}",
                "template: t:3: expected end; found {{else}}",
            ),
            (
                "\n{{.X\n\n",
                "template: t:4: unclosed action started at t:2",
            ),
            ("{{\"\\z\"}}", "template: t:1: invalid syntax"),
            (
                "{{99999999999999999999}}",
                "template: t:1: integer overflow: \"99999999999999999999\"",
            ),
            ("{{1 2}}x{{)}}", "template: t:1: unexpected right paren"),
            (
                "{{.X | 'ab'}}",
                "template: t:1: malformed character constant: 'ab'",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "template {text:?}");
        }
    }

    #[test]
    fn numbers_follow_go_rules() {
        let n = |s: &str| parse_number(s, Kind::Number);
        assert!(matches!(n("42"), Ok(Num::Int(42))));
        assert!(matches!(n("-7"), Ok(Num::Int(-7))));
        assert!(matches!(n("0x1F"), Ok(Num::Int(31))));
        assert!(matches!(n("010"), Ok(Num::Int(8))));
        assert!(matches!(n("0b101"), Ok(Num::Int(5))));
        assert!(matches!(n("1_000"), Ok(Num::Int(1000))));
        assert!(matches!(n("1.5"), Ok(Num::Float(f)) if f == 1.5));
        assert!(matches!(n("1e3"), Ok(Num::Float(f)) if f == 1000.0));
        assert!(matches!(n("18446744073709551615"), Ok(Num::Uint)));
        // ParseUint rejects "08" but ParseFloat accepts it: Go calls that an overflow.
        assert_eq!(n("08").unwrap_err(), "integer overflow: \"08\"");
        assert!(matches!(n("0x1p-2"), Ok(Num::Float(f)) if f == 0.25));
        assert!(matches!(n("0x1.8p1"), Ok(Num::Float(f)) if f == 3.0));
        assert!(matches!(n("1.5i"), Ok(Num::Unsupported(_))));
        assert_eq!(n("1__0").unwrap_err(), "illegal number syntax: \"1__0\"");
        assert_eq!(n("0x1p").unwrap_err(), "illegal number syntax: \"0x1p\"");
        assert!(matches!(
            parse_number("'a'", Kind::CharConstant),
            Ok(Num::Int(97))
        ));
        assert!(matches!(
            parse_number("'\\n'", Kind::CharConstant),
            Ok(Num::Int(10))
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "{{if 1}}".repeat(MAX_PARSE_DEPTH + 1) + &"{{end}}".repeat(MAX_PARSE_DEPTH + 1);
        assert!(err(&deep).contains("max nesting depth exceeded"));
        let parens = "{{".to_string()
            + &"(".repeat(MAX_PARSE_DEPTH + 1)
            + "1"
            + &")".repeat(MAX_PARSE_DEPTH + 1)
            + "}}";
        assert!(err(&parens).contains("max expression depth exceeded"));
    }
}
