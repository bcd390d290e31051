//! A YAML document tree that remembers where each node was written.
//!
//! Positions follow go-yaml v3 (which Butane uses): 1-based line and column, counted in
//! characters; a block mapping sits at its first key, a block sequence at its first `-`, a
//! block scalar at its `|`/`>` indicator. yaml-rust2 marks some of these elsewhere, so the
//! builder corrects them from the source text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the source: 1-based line and column (characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// How a scalar was written; quoted and block scalars are always strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: resolved to null/bool/int/float/string.
    Plain,
    /// Quoted or block scalar: always a string.
    Quoted,
}

/// One YAML node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// Written as an alias (`*name`): decoded like its anchor, but for positions and unused
    /// keys a leaf at the alias, as in vcontext's tree.
    pub alias: bool,
    /// The node's contents.
    pub kind: NodeKind,
}

/// A YAML node's contents.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Mapping entries in source order: key text, key position, value.
    Map(Vec<(String, Pos, Node)>),
    /// Sequence items.
    Seq(Vec<Node>),
    /// A scalar with its verbatim text, style and explicit tag (e.g. `!!str`).
    Scalar {
        /// The scalar's value (after unquoting/folding).
        value: String,
        /// Plain or quoted.
        style: Style,
        /// Explicit tag in short form (`!!int`), if any.
        tag: Option<String>,
    },
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's message.
    pub message: String,
    /// Where it happened.
    pub pos: Pos,
    /// Line where the innermost collection still open at the error starts (libyaml's
    /// "context" for parser errors), if any.
    pub context_line: Option<usize>,
}

enum Frame {
    Map {
        start: Pos,
        /// `{...}`: go-yaml places the mapping at the brace, not at its first key.
        flow: bool,
        entries: Vec<(String, Pos, Node)>,
        pending_key: Option<(String, Pos)>,
        anchor: usize,
    },
    Seq {
        start: Pos,
        items: Vec<Node>,
        anchor: usize,
    },
}

struct Builder<'a> {
    chars: &'a [char],
    /// Index of the first character of each line.
    line_starts: Vec<usize>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

fn to_pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

fn short_tag(t: &yaml_rust2::parser::Tag) -> String {
    if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" {
        format!("!!{}", t.suffix)
    } else {
        format!("{}{}", t.handle, t.suffix)
    }
}

impl Builder<'_> {
    /// Position of the character at index `i`.
    fn pos_at(&self, i: usize) -> Pos {
        let line = self.line_starts.partition_point(|&s| s <= i);
        let start = self.line_starts[line - 1];
        Pos {
            line,
            column: i - start + 1,
        }
    }

    /// Moves a marker back onto the indicator that opens the node: go-yaml reports the `-` of
    /// a block sequence and the `|`/`>` of a block scalar, yaml-rust2 what follows them.
    fn back_to(&self, m: &Marker, want: char) -> Pos {
        let mut i = m.index().min(self.chars.len());
        if self.chars.get(i) == Some(&want) {
            return self.pos_at(i);
        }
        // Block scalar headers may carry chomping and indentation indicators (`|-`, `>+2`).
        let header = want != '-';
        while i > 0 {
            i -= 1;
            let c = self.chars[i];
            if c == want {
                return self.pos_at(i);
            }
            let skippable =
                c.is_whitespace() || (header && (c.is_ascii_digit() || c == '+' || c == '-'));
            if !skippable {
                break;
            }
        }
        to_pos(m)
    }

    /// go-yaml places an empty value right after the `:` or `-` that introduced it;
    /// yaml-rust2 marks the next token instead.
    fn after_indicator(&self, m: &Marker) -> Pos {
        let mut i = m.index().min(self.chars.len());
        while i > 0 && self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        if i > 0 && matches!(self.chars[i - 1], ':' | '-') {
            return self.pos_at(i);
        }
        to_pos(m)
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                start,
                flow,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match &node.kind {
                        NodeKind::Scalar { value, .. } => value.clone(),
                        // Complex keys never match a field name; keep something printable.
                        _ => String::from("?"),
                    };
                    if entries.is_empty() && !*flow {
                        *start = node.pos;
                    }
                    *pending_key = Some((key, node.pos));
                }
                Some((k, kp)) => entries.push((k, kp, node)),
            },
        }
    }
}

/// Nesting deeper than this is refused: later stages recurse over the tree, and no Butane
/// config comes near it.
const MAX_DEPTH: usize = 1000;

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..))
            && self.stack.len() >= MAX_DEPTH
        {
            self.error = Some(SyntaxError {
                message: format!("exceeded max depth of {MAX_DEPTH}"),
                pos: to_pos(&mark),
                context_line: None,
            });
            self.stack.clear();
            return;
        }
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let (st, pos) = match style {
                    TScalarStyle::Plain if value.is_empty() && tag.is_none() => {
                        (Style::Plain, self.after_indicator(&mark))
                    }
                    TScalarStyle::Plain => (Style::Plain, to_pos(&mark)),
                    TScalarStyle::Literal => (Style::Quoted, self.back_to(&mark, '|')),
                    TScalarStyle::Folded => (Style::Quoted, self.back_to(&mark, '>')),
                    _ => (Style::Quoted, to_pos(&mark)),
                };
                let node = Node {
                    pos,
                    alias: false,
                    kind: NodeKind::Scalar {
                        value,
                        style: st,
                        tag: tag.as_ref().map(short_tag),
                    },
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => Node {
                        pos: to_pos(&mark),
                        alias: true,
                        kind: n.kind.clone(),
                    },
                    None => Node {
                        pos: to_pos(&mark),
                        alias: false,
                        kind: NodeKind::Scalar {
                            value: String::new(),
                            style: Style::Plain,
                            tag: None,
                        },
                    },
                };
                self.push_node(node, 0);
            }
            Event::SequenceStart(anchor, _) => {
                let start = if self.chars.get(mark.index()) == Some(&'[') {
                    to_pos(&mark)
                } else {
                    self.back_to(&mark, '-')
                };
                self.stack.push(Frame::Seq {
                    start,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: to_pos(&mark),
                flow: self.chars.get(mark.index()) == Some(&'{'),
                entries: Vec::new(),
                pending_key: None,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    let (node, anchor) = match frame {
                        Frame::Seq {
                            start,
                            items,
                            anchor,
                        } => (
                            Node {
                                pos: start,
                                alias: false,
                                kind: NodeKind::Seq(items),
                            },
                            anchor,
                        ),
                        Frame::Map {
                            start,
                            entries,
                            anchor,
                            ..
                        } => (
                            Node {
                                pos: start,
                                alias: false,
                                kind: NodeKind::Map(entries),
                            },
                            anchor,
                        ),
                    };
                    self.push_node(node, anchor);
                }
            }
            _ => {}
        }
    }
}

/// Applies YAML merge keys (`<<: *anchor`), which go-yaml honours when decoding: merged
/// entries come first and explicit keys override them. The tree itself keeps the `<<` entry,
/// as vcontext's does (so it counts as an unused key).
pub fn expand_merge_keys(entries: &[(String, Pos, Node)]) -> Vec<(String, Pos, Node)> {
    let entries = entries.to_vec();
    if !entries.iter().any(|(k, _, _)| k == "<<") {
        return entries;
    }
    let mut out: Vec<(String, Pos, Node)> = Vec::new();
    let mut explicit = Vec::new();
    for (k, kp, v) in entries {
        if k == "<<" {
            let sources = match v.kind {
                NodeKind::Map(m) => vec![m],
                NodeKind::Seq(items) => items
                    .into_iter()
                    .filter_map(|n| match n.kind {
                        NodeKind::Map(m) => Some(m),
                        _ => None,
                    })
                    .collect(),
                NodeKind::Scalar { .. } => Vec::new(),
            };
            for m in sources {
                for e in m {
                    if !out.iter().any(|(ok, _, _)| *ok == e.0) {
                        out.push(e);
                    }
                }
            }
        } else {
            explicit.push((k, kp, v));
        }
    }
    for e in explicit {
        if let Some(slot) = out.iter_mut().find(|(ok, _, _)| *ok == e.0) {
            *slot = e;
        } else {
            out.push(e);
        }
    }
    out
}

/// Parses the first document of `src`. An empty document gives `Ok(None)`.
pub fn parse(src: &str) -> Result<Option<Node>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let line_starts = std::iter::once(0)
        .chain(
            chars
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == '\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let mut b = Builder {
        chars: &chars,
        line_starts,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(src);
    // Pull events one by one: `Parser::load` recurses per nesting level and can overflow the
    // stack on hostile input before the depth limit above gets a say.
    loop {
        match parser.next_token() {
            Ok((ev, mark)) => {
                let last = matches!(ev, Event::StreamEnd | Event::DocumentEnd);
                b.on_event(ev, mark);
                if last || b.error.is_some() {
                    break;
                }
            }
            Err(e) => {
                let context_line = b.stack.last().map(|f| match f {
                    Frame::Map { start, .. } | Frame::Seq { start, .. } => start.line,
                });
                b.error.get_or_insert(SyntaxError {
                    message: e.info().to_string(),
                    pos: to_pos(e.marker()),
                    context_line,
                });
                break;
            }
        }
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root)
}

impl Node {
    /// Looks up a mapping entry by key (the last one wins, as in go-yaml decoding).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _, _)| k == key)
                .map(|e| &e.2),
            _ => None,
        }
    }

    /// The node's tag as go-yaml names it in errors (`!!str`, `!!map`, ...).
    pub fn short_tag(&self) -> String {
        match &self.kind {
            NodeKind::Map(_) => "!!map".into(),
            NodeKind::Seq(_) => "!!seq".into(),
            NodeKind::Scalar { value, style, tag } => {
                if let Some(t) = tag {
                    return t.clone();
                }
                if *style == Style::Quoted {
                    return "!!str".into();
                }
                match crate::decode::resolve_plain(value) {
                    crate::decode::Scalar::Null => "!!null",
                    crate::decode::Scalar::Bool(_) => "!!bool",
                    crate::decode::Scalar::Int(_) => "!!int",
                    crate::decode::Scalar::Float(_) => "!!float",
                    crate::decode::Scalar::Timestamp => "!!timestamp",
                    crate::decode::Scalar::Str => "!!str",
                }
                .into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn positions_follow_go_yaml() {
        let src = "a: 1\nb:\n  c: |\n    text\nd:\n- x\n- y\ne:\n    - z\n";
        let root = parse(src).unwrap().unwrap();
        assert_eq!(root.pos, pos(1, 1));
        let b = root.get("b").unwrap();
        assert_eq!(b.pos, pos(3, 3));
        assert_eq!(b.get("c").unwrap().pos, pos(3, 6));
        assert_eq!(root.get("d").unwrap().pos, pos(6, 1));
        assert_eq!(root.get("e").unwrap().pos, pos(9, 5));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: b\n c: d: e\n").unwrap_err();
        assert_eq!(e.message, "mapping values are not allowed in this context");
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn aliases_and_merge_keys() {
        let root = parse("x: &a {p: 1, q: 2}\ny:\n  <<: *a\n  q: 3\n")
            .unwrap()
            .unwrap();
        let y = root.get("y").unwrap();
        match &y.kind {
            NodeKind::Map(e) => {
                let raw: Vec<&str> = e.iter().map(|(k, _, _)| k.as_str()).collect();
                assert_eq!(raw, ["<<", "q"]);
                let merged = expand_merge_keys(e);
                let keys: Vec<&str> = merged.iter().map(|(k, _, _)| k.as_str()).collect();
                assert_eq!(keys, ["p", "q"]);
                assert!(y.get("<<").unwrap().alias);
            }
            _ => panic!("not a map"),
        }
    }
}
