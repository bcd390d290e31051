//! Decoding the YAML tree into Butane's shape the way go-yaml v3 decodes into Butane's Go
//! structs: same scalar resolution (YAML 1.2 core plus go-yaml's extras such as `0644` octal
//! and `yes`/`no` for booleans), same type errors (`line N: cannot unmarshal ...`), same
//! duplicate-key errors; then Butane's "unused key" warnings.

use serde_json::{Map, Value};

use crate::path::Path;
use crate::report::{Entry, Kind, Report};
use crate::schema::{Spec, Struct, Ty};
use crate::yaml::{Node, NodeKind, Style};

/// A plain scalar resolved as go-yaml does.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `~`, `null`, empty.
    Null,
    /// `true`/`false` in three casings.
    Bool(bool),
    /// An integer (Go `strconv.ParseInt(s, 0, 64)` after removing `_`).
    Int(i128),
    /// A float.
    Float(f64),
    /// Something go-yaml would parse as a timestamp.
    Timestamp,
    /// Anything else.
    Str,
}

fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    // ParseInt then ParseUint: anything within int64 or uint64 resolves to an int.
    if v < i64::MIN as i128 || v > u64::MAX as i128 {
        return None;
    }
    Some(v)
}

fn is_yaml_float(s: &str) -> bool {
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn looks_like_timestamp(s: &str) -> bool {
    // go-yaml accepts "2006-1-2" optionally followed by a time part.
    let b = s.as_bytes();
    let mut i = 0;
    let group = |min: usize, max: usize, i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - st < max {
            *i += 1;
        }
        *i - st >= min
    };
    if !group(4, 4, &mut i) || b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    if !group(1, 2, &mut i) || b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    if !group(1, 2, &mut i) {
        return false;
    }
    i == b.len() || matches!(b[i], b'T' | b't' | b' ' | b'\t')
}

/// Resolves a plain scalar like go-yaml v3's `resolve` with no tag.
pub fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => {
            if let Ok(f) = s.parse::<f64>() {
                return Scalar::Float(f);
            }
            Scalar::Str
        }
        b'0'..=b'9' | b'+' | b'-' => {
            if looks_like_timestamp(s) {
                return Scalar::Timestamp;
            }
            let plain = s.replace('_', "");
            if let Some(v) = parse_go_int(&plain) {
                return Scalar::Int(v);
            }
            if is_yaml_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
            {
                return Scalar::Float(f);
            }
            if let Some(d) = plain.strip_prefix("-0b")
                && let Ok(v) = i128::from_str_radix(d, 2)
            {
                return Scalar::Int(-v);
            }
            Scalar::Str
        }
        _ => Scalar::Str,
    }
}

/// go-yaml's type error text: ``cannot unmarshal !!str `abc` into int``.
pub fn cannot_unmarshal(n: &Node, into: &str) -> String {
    let tag = n.short_tag();
    let shown = match &n.kind {
        NodeKind::Scalar { value, .. } => {
            if value.len() > 10 {
                let mut cut = 7;
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!(" `{}...`", &value[..cut])
            } else {
                format!(" `{value}`")
            }
        }
        _ => String::new(),
    };
    format!("cannot unmarshal {tag}{shown} into {into}")
}

/// go-yaml's duplicate-key errors for one mapping: every later repetition of every key, as
/// (message, line, column).
pub fn duplicate_keys(entries: &[(String, crate::yaml::Pos, Node)]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, (ki, pi, _)) in entries.iter().enumerate() {
        for (kj, pj, _) in &entries[i + 1..] {
            if ki == kj {
                out.push((
                    format!("mapping key {kj:?} already defined at line {}", pi.line),
                    pj.line,
                    pj.column,
                ));
            }
        }
    }
    out
}

/// Result of decoding: the Butane value (snake_case keys, only fields that were set), the
/// go-yaml type errors: message (without go-yaml's `line N: ` prefix), line, column.
pub struct Decoded {
    /// The decoded config.
    pub value: Value,
    /// go-yaml's unmarshal errors with their positions.
    pub errors: Vec<(String, usize, usize)>,
}

struct Decoder {
    spec: Spec,
    errors: Vec<(String, usize, usize)>,
}

fn go_type(spec: Spec, ty: &Ty) -> String {
    match ty {
        Ty::Str => "string".into(),
        Ty::Int => "int".into(),
        Ty::Bool => "bool".into(),
        Ty::Struct(s) => format!("{}.{}", spec.base_package(), s.name),
        Ty::List(_, "") => "[]string".into(),
        // A named slice type (`HTTPHeaders`), not `[]HTTPHeader`.
        Ty::List(_, name) if name.starts_with('=') => {
            format!("{}.{}", spec.base_package(), &name[1..])
        }
        Ty::List(_, name) => format!("[]{}.{}", spec.base_package(), name),
    }
}

fn elem_type(spec: Spec, ty: &Ty, name: &str) -> String {
    match ty {
        Ty::Str if !name.is_empty() => format!("{}.{name}", spec.base_package()),
        _ => go_type(spec, ty),
    }
}

impl Decoder {
    fn terror(&mut self, n: &Node, into: String) {
        self.errors
            .push((cannot_unmarshal(n, &into), n.pos.line, n.pos.column));
    }

    fn is_null(n: &Node) -> bool {
        matches!(&n.kind, NodeKind::Scalar { value, style: Style::Plain, tag } if
            (tag.is_none() && resolve_plain(value) == Scalar::Null) || tag.as_deref() == Some("!!null"))
    }

    fn dup_keys(&mut self, entries: &[(String, crate::yaml::Pos, Node)]) -> bool {
        let found = duplicate_keys(entries);
        let any = !found.is_empty();
        self.errors.extend(found);
        any
    }

    fn decode(&mut self, n: &Node, ty: &Ty, elem_name: &str) -> Option<Value> {
        if Self::is_null(n) {
            return None;
        }
        match ty {
            Ty::Str => match &n.kind {
                NodeKind::Scalar { value, .. } => Some(Value::String(value.clone())),
                NodeKind::Map(entries) => {
                    if !self.dup_keys(entries) {
                        self.terror(n, elem_type(self.spec, ty, elem_name));
                    }
                    None
                }
                NodeKind::Seq(_) => {
                    self.terror(n, elem_type(self.spec, ty, elem_name));
                    None
                }
            },
            Ty::Int | Ty::Bool => {
                if let NodeKind::Map(entries) = &n.kind
                    && self.dup_keys(entries)
                {
                    return None;
                }
                let resolved = match &n.kind {
                    NodeKind::Scalar { value, style, tag } => {
                        // An explicit non-string tag makes go-yaml resolve even quoted text.
                        let tagged = matches!(
                            tag.as_deref(),
                            Some("!!int" | "!!bool" | "!!float" | "!!null")
                        );
                        if tag.as_deref() == Some("!!str") || (*style == Style::Quoted && !tagged) {
                            Some((Scalar::Str, value.as_str()))
                        } else {
                            Some((resolve_plain(value), value.as_str()))
                        }
                    }
                    _ => None,
                };
                let out = match (ty, resolved) {
                    (Ty::Int, Some((Scalar::Int(i), _))) if i64::try_from(i).is_ok() => {
                        Some(Value::from(i as i64))
                    }
                    (Ty::Int, Some((Scalar::Float(f), _)))
                        if f.is_finite() && f <= i64::MAX as f64 && f >= i64::MIN as f64 =>
                    {
                        Some(Value::from(f as i64))
                    }
                    (Ty::Bool, Some((Scalar::Bool(b), _))) => Some(Value::Bool(b)),
                    (Ty::Bool, Some((Scalar::Str, s))) => match s {
                        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
                            Some(Value::Bool(true))
                        }
                        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                            Some(Value::Bool(false))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                if out.is_none() {
                    self.terror(n, go_type(self.spec, ty));
                }
                out
            }
            Ty::List(elem, name) => match &n.kind {
                NodeKind::Seq(items) => {
                    let v = items
                        .iter()
                        .filter_map(|item| self.decode(item, elem, name))
                        .collect();
                    Some(Value::Array(v))
                }
                NodeKind::Map(entries) => {
                    if !self.dup_keys(entries) {
                        self.terror(n, go_type(self.spec, ty));
                    }
                    None
                }
                NodeKind::Scalar { .. } => {
                    self.terror(n, go_type(self.spec, ty));
                    None
                }
            },
            Ty::Struct(s) => match &n.kind {
                NodeKind::Map(entries) => {
                    if self.dup_keys(entries) {
                        return None;
                    }
                    let effective = crate::yaml::expand_merge_keys(entries);
                    Some(Value::Object(self.decode_struct(&effective, s)))
                }
                _ => {
                    self.terror(n, go_type(self.spec, ty));
                    None
                }
            },
        }
    }

    fn decode_struct(
        &mut self,
        entries: &[(String, crate::yaml::Pos, Node)],
        s: &Struct,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, _, v) in entries {
            if let Some((_, ty, _)) = s.fields(self.spec).find(|f| f.0 == k) {
                match self.decode(v, ty, "") {
                    Some(val) => {
                        out.insert(k.clone(), val);
                    }
                    None => {
                        // go-yaml leaves the field unset (or resets a pointer) on null.
                        out.remove(k);
                    }
                }
            }
        }
        out
    }
}

/// Decodes `root` into the spec's Butane shape.
pub fn decode(root: Option<&Node>, spec: Spec) -> Decoded {
    let mut d = Decoder {
        spec,
        errors: Vec::new(),
    };
    let value = match root {
        None => Value::Object(Map::new()),
        Some(n) => d
            .decode(n, &Ty::Struct(&crate::schema::CONFIG), "")
            .unwrap_or_else(|| Value::Object(Map::new())),
    };
    let value = if value.is_object() {
        value
    } else {
        Value::Object(Map::new())
    };
    Decoded {
        value,
        errors: d.errors,
    }
}

/// Butane's "unused key" warnings (ignition's `ValidateUnusedKeys` over the Butane structs),
/// walking the structs in Go field order as vcontext does.
pub fn unused_keys(value: &Value, root: Option<&Node>, spec: Spec, report: &mut Report) {
    if let Some(root) = root {
        walk_unused(
            value,
            root,
            &crate::schema::CONFIG,
            spec,
            &mut Path::root(),
            report,
        );
    }
}

fn walk_unused(
    value: &Value,
    node: &Node,
    s: &Struct,
    spec: Spec,
    path: &mut Path,
    report: &mut Report,
) {
    let (NodeKind::Map(entries), false) = (&node.kind, node.alias) else {
        report.entries.push(Entry::new(
            Kind::Warning,
            format!(
                "context tree does not match content tree at {path}. Line and column reporting may be inconsistent. Unused keys may not be reported"
            ),
            path.to_string(),
            Some(node.pos),
        ));
        return;
    };
    for (k, kp, _) in entries {
        if !s.fields(spec).any(|f| f.0 == k) {
            let mut p = path.clone();
            p.push_field(k);
            report.entries.push(Entry::new(
                Kind::Warning,
                format!("unused key {k}"),
                p.to_string(),
                Some(*kp),
            ));
        }
    }
    for (name, ty, _) in s.fields(spec) {
        let Some(child) = node.get(name) else {
            continue;
        };
        path.push_field(name);
        match ty {
            Ty::Struct(cs) => {
                let empty = Value::Object(Map::new());
                let v = value.get(*name).unwrap_or(&empty);
                walk_unused(v, child, cs, spec, path, report);
            }
            Ty::List(Ty::Struct(cs), _) => {
                if let (Some(Value::Array(items)), NodeKind::Seq(nodes)) =
                    (value.get(*name), &child.kind)
                {
                    for (i, (item, n)) in items.iter().zip(nodes).enumerate() {
                        path.push_index(i);
                        walk_unused(item, n, cs, spec, path, report);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_go_yaml() {
        assert_eq!(resolve_plain("0644"), Scalar::Int(420));
        assert_eq!(resolve_plain("0o644"), Scalar::Int(420));
        assert_eq!(resolve_plain("0x1F"), Scalar::Int(31));
        assert_eq!(resolve_plain("1_000"), Scalar::Int(1000));
        assert_eq!(resolve_plain("08"), Scalar::Float(8.0));
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("yes"), Scalar::Str);
        assert_eq!(resolve_plain("2001-12-14"), Scalar::Timestamp);
        assert_eq!(resolve_plain("1.0.0"), Scalar::Str);
    }
}
