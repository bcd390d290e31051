//! Go's builtin template functions (`text/template/funcs.go`) over run-time values.

use std::fmt::Write as _;

use crate::gofmt::{is_print, sprint, sprint_verb, sprintf, sprintln};
use crate::val::{Rv, Str, Val};

/// Parameter types of the builtins, as far as argument checking differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// `reflect.Value`: anything, including the invalid value.
    Value,
    /// `interface{}` / `any`.
    Any,
    /// `string` (the format of `printf`).
    String,
}

pub(crate) struct Signature {
    pub(crate) fixed: &'static [Param],
    pub(crate) variadic: Option<Param>,
}

/// The Go signature of builtin `name` (the parser only accepts builtin names).
pub(crate) fn signature(name: &str) -> Signature {
    use Param::*;
    let (fixed, variadic): (&'static [Param], Option<Param>) = match name {
        "and" | "or" | "call" | "index" | "slice" | "eq" => (&[Value], Some(Value)),
        "html" | "js" | "urlquery" | "print" | "println" => (&[], Some(Any)),
        "printf" => (&[String], Some(Any)),
        "len" | "not" => (&[Value], None),
        _ => (&[Value, Value], None), // ne lt le gt ge
    };
    Signature { fixed, variadic }
}

pub(crate) enum CallError {
    /// An error Go's function would return, without the "error calling" prefix.
    Go(String),
    /// Behaviour this crate does not implement.
    Unsupported(String),
}

type CallResult<'a> = Result<(Rv<'a>, usize), CallError>;

fn go<T>(msg: impl Into<String>) -> Result<T, CallError> {
    Err(CallError::Go(msg.into()))
}

fn owned<'a>(s: String) -> CallResult<'a> {
    let n = s.len();
    Ok((Rv::plain(Val::owned_str(s)), n))
}

/// Calls builtin `name`; returns the result and how many bytes of new string it produced.
pub(crate) fn call<'a>(name: &str, args: Vec<Rv<'a>>, callee: Option<String>) -> CallResult<'a> {
    let mut args = args.into_iter();
    let mut next = || args.next().unwrap_or_else(Rv::invalid);
    match name {
        "index" => {
            let item = next();
            index(item, args.collect())
        }
        "slice" => {
            let item = next();
            slice(item, args.collect())
        }
        "len" => length(next()),
        "not" => Ok((Rv::plain(Val::Bool(!next().unboxed().v.truth())), 0)),
        "eq" => {
            let a = next();
            eq(a, args.collect()).map(|b| (Rv::plain(Val::Bool(b)), 0))
        }
        "ne" => {
            let (a, b) = (next(), next());
            eq(a, vec![b]).map(|r| (Rv::plain(Val::Bool(!r)), 0))
        }
        "lt" => {
            let (a, b) = (next(), next());
            lt(a, b).map(|r| (Rv::plain(Val::Bool(r)), 0))
        }
        "le" => {
            let (a, b) = (next(), next());
            le(a, b).map(|r| (Rv::plain(Val::Bool(r)), 0))
        }
        "gt" => {
            let (a, b) = (next(), next());
            le(a, b).map(|r| (Rv::plain(Val::Bool(!r)), 0))
        }
        "ge" => {
            let (a, b) = (next(), next());
            lt(a, b).map(|r| (Rv::plain(Val::Bool(!r)), 0))
        }
        "print" => owned(sprint(&concrete(args.collect()))),
        "println" => owned(sprintln(&concrete(args.collect()))),
        "printf" => {
            let format = next();
            let Val::Str(f) = format.v else {
                return go("printf format is not a string");
            };
            match sprintf(f.as_str(), &concrete(args.collect())) {
                Ok(s) => owned(s),
                Err(u) => Err(CallError::Unsupported(u.0)),
            }
        }
        "html" => owned(html_escape(&eval_args(args.collect()))),
        "js" => owned(js_escape(&eval_args(args.collect()))),
        "urlquery" => owned(query_escape(&eval_args(args.collect()))),
        "call" => {
            let f = next().unboxed();
            if !f.is_valid() {
                return go("call of nil");
            }
            go(format!(
                "non-function {} of type {}",
                callee.unwrap_or_default(),
                f.type_name()
            ))
        }
        other => Err(CallError::Unsupported(format!("the function {other}"))),
    }
}

/// Arguments as the `interface{}` values Go's fmt functions receive.
fn concrete(args: Vec<Rv<'_>>) -> Vec<Val<'_>> {
    args.into_iter().map(|a| a.unboxed().v).collect()
}

/// Go's `evalArgs`: a lone string as is, otherwise `fmt.Sprint` with nil shown as
/// `<no value>`.
fn eval_args(args: Vec<Rv<'_>>) -> String {
    if let [Rv { v: Val::Str(s), .. }] = args.as_slice() {
        return s.as_str().to_string();
    }
    let vals: Vec<Val> = args
        .into_iter()
        .map(|a| match a.unboxed().v {
            Val::Invalid | Val::Nil => Val::Str(Str::Borrowed("<no value>")),
            v => v,
        })
        .collect();
    sprint(&vals)
}

fn index_arg(index: &Rv, cap: usize) -> Result<usize, CallError> {
    if index.boxed {
        // `slice` passes its indexes without unwrapping interfaces; Go rejects them.
        return go("cannot index slice/array with type interface {}");
    }
    let x: i128 = match index.v {
        Val::Int(i) => i as i128,
        Val::Uint8(u) => u as i128,
        Val::Invalid => return go("cannot index slice/array with nil"),
        _ => {
            return go(format!(
                "cannot index slice/array with type {}",
                index.type_name()
            ));
        }
    };
    if x < 0 || x > cap as i128 {
        return go(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn map_key<'k>(index: &'k Rv) -> Result<&'k str, CallError> {
    match &index.v {
        Val::Invalid => go("value is nil; should be of type string"),
        Val::Str(s) => Ok(s.as_str()),
        _ => go(format!(
            "value has type {}; should be string",
            index.type_name()
        )),
    }
}

fn index<'a>(item: Rv<'a>, indexes: Vec<Rv<'a>>) -> CallResult<'a> {
    let mut item = item.unboxed();
    if !item.is_valid() {
        return go("index of untyped nil");
    }
    for idx in indexes {
        let idx = idx.unboxed();
        if item.boxed {
            if matches!(item.v, Val::Nil) {
                return go("index of nil pointer");
            }
            item = item.unboxed();
        }
        item = match &item.v {
            Val::List(l) => {
                let x = index_arg(&idx, l.len())?;
                match l.get(x) {
                    Some(e) => Rv::element(e),
                    None => return go("reflect: slice index out of range"),
                }
            }
            Val::Str(s) => {
                let x = index_arg(&idx, s.as_str().len())?;
                match s.as_str().as_bytes().get(x) {
                    Some(b) => Rv::plain(Val::Uint8(*b)),
                    None => return go("reflect: string index out of range"),
                }
            }
            Val::Map(m) => match m.get(map_key(&idx)?) {
                Some(e) => Rv::element(e),
                // The zero value of interface{}.
                None => Rv {
                    v: Val::Nil,
                    boxed: true,
                },
            },
            Val::StrMap(m) => match m.get(map_key(&idx)?) {
                Some(e) => Rv::plain(Val::Str(Str::Borrowed(e))),
                None => Rv::plain(Val::Str(Str::Borrowed(""))),
            },
            _ => return go(format!("can't index item of type {}", item.type_name())),
        };
    }
    Ok((item, 0))
}

fn slice<'a>(item: Rv<'a>, indexes: Vec<Rv<'a>>) -> CallResult<'a> {
    let item = item.unboxed();
    if !item.is_valid() {
        return go("slice of untyped nil");
    }
    if indexes.len() > 3 {
        return go(format!("too many slice indexes: {}", indexes.len()));
    }
    // Slices decoded from JSON may have spare capacity in Go; only their length is known
    // here, so three-index slicing and slicing past the length are bounded by the length.
    let cap = match &item.v {
        Val::Str(s) => {
            if indexes.len() == 3 {
                return go("cannot 3-index slice a string");
            }
            s.as_str().len()
        }
        Val::List(l) => l.len(),
        _ => return go(format!("can't slice item of type {}", item.type_name())),
    };
    let mut idx = [0, cap, 0];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, cap)?;
    }
    if idx[0] > idx[1] {
        return go(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return go(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    let (a, b) = (idx[0], idx[1]);
    match item.v {
        Val::List(l) => Ok((Rv::plain(Val::List(&l[a..b])), 0)),
        Val::Str(s) => {
            let full = s.as_str();
            if !full.is_char_boundary(a) || !full.is_char_boundary(b) {
                return Err(CallError::Unsupported(
                    "slicing a string inside a UTF-8 character".into(),
                ));
            }
            match s {
                Str::Borrowed(b_) => Ok((Rv::plain(Val::Str(Str::Borrowed(&b_[a..b]))), 0)),
                Str::Owned(o) => owned(o[a..b].to_string()),
            }
        }
        _ => go("can't slice"),
    }
}

fn length<'a>(item: Rv<'a>) -> CallResult<'a> {
    if item.boxed && matches!(item.v, Val::Nil) {
        return go("len of nil pointer");
    }
    let item = item.unboxed();
    let n = match &item.v {
        Val::Invalid => return go("reflect: call of reflect.Value.Type on zero Value"),
        Val::Str(s) => s.as_str().len(),
        Val::List(l) => l.len(),
        Val::Map(m) => m.len(),
        Val::StrMap(m) => m.len(),
        _ => return go(format!("len of type {}", item.type_name())),
    };
    Ok((Rv::plain(Val::Int(n as i64)), 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Float,
    String,
    Uint,
}

fn basic_kind(v: &Val) -> BasicKind {
    match v {
        Val::Bool(_) => BasicKind::Bool,
        Val::Int(_) => BasicKind::Int,
        Val::Uint8(_) => BasicKind::Uint,
        Val::Float(_) => BasicKind::Float,
        Val::Str(_) => BasicKind::String,
        _ => BasicKind::Invalid,
    }
}

fn int_of(v: &Val) -> i64 {
    match v {
        Val::Int(i) => *i,
        _ => 0,
    }
}

fn uint_of(v: &Val) -> u64 {
    match v {
        Val::Uint8(u) => *u as u64,
        _ => 0,
    }
}

fn float_of(v: &Val) -> f64 {
    match v {
        Val::Float(f) => *f,
        _ => 0.0,
    }
}

fn str_of<'s>(v: &'s Val) -> &'s str {
    match v {
        Val::Str(s) => s.as_str(),
        _ => "",
    }
}

fn bool_of(v: &Val) -> bool {
    matches!(v, Val::Bool(true))
}

/// Go's reflect kind groups for the non-basic values: nil, slice, map.
fn reflect_kind(v: &Val) -> u8 {
    match v {
        Val::Invalid | Val::Nil => 0,
        Val::List(_) => 1,
        Val::Map(_) | Val::StrMap(_) => 2,
        _ => 3,
    }
}

fn eq(arg1: Rv, rest: Vec<Rv>) -> Result<bool, CallError> {
    let a = arg1.unboxed();
    if rest.is_empty() {
        return go("missing argument for comparison");
    }
    let k1 = basic_kind(&a.v);
    for arg in rest {
        let b = arg.unboxed();
        let k2 = basic_kind(&b.v);
        let truth = if k1 != k2 {
            match (k1, k2) {
                (BasicKind::Int, BasicKind::Uint) => {
                    int_of(&a.v) >= 0 && int_of(&a.v) as u64 == uint_of(&b.v)
                }
                (BasicKind::Uint, BasicKind::Int) => {
                    int_of(&b.v) >= 0 && uint_of(&a.v) == int_of(&b.v) as u64
                }
                _ => {
                    if a.is_valid() && b.is_valid() {
                        return go(format!(
                            "incompatible types for comparison: {} and {}",
                            a.type_name(),
                            b.type_name()
                        ));
                    }
                    false
                }
            }
        } else {
            match k1 {
                BasicKind::Bool => bool_of(&a.v) == bool_of(&b.v),
                BasicKind::Float => float_of(&a.v) == float_of(&b.v),
                BasicKind::Int => int_of(&a.v) == int_of(&b.v),
                BasicKind::String => str_of(&a.v) == str_of(&b.v),
                BasicKind::Uint => uint_of(&a.v) == uint_of(&b.v),
                BasicKind::Invalid => {
                    let (ka, kb) = (reflect_kind(&a.v), reflect_kind(&b.v));
                    if ka != kb && ka != 0 && kb != 0 {
                        return go(format!(
                            "non-comparable types {}: {}, {}: {}",
                            sprint_verb(&a.v, 's'),
                            a.type_name(),
                            b.type_name(),
                            sprint_verb(&b.v, 'v')
                        ));
                    }
                    let (na, nb) = (ka == 0, kb == 0);
                    if na || nb {
                        na == nb
                    } else {
                        // Slices and maps are not comparable in Go.
                        return go(format!(
                            "non-comparable type {}: {}",
                            sprint_verb(&b.v, 's'),
                            b.type_name()
                        ));
                    }
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: Rv, b: Rv) -> Result<bool, CallError> {
    const BAD: &str = "invalid type for comparison";
    let a = a.unboxed();
    let k1 = basic_kind(&a.v);
    if k1 == BasicKind::Invalid {
        return go(BAD);
    }
    let b = b.unboxed();
    let k2 = basic_kind(&b.v);
    if k2 == BasicKind::Invalid {
        return go(BAD);
    }
    if k1 != k2 {
        return match (k1, k2) {
            (BasicKind::Int, BasicKind::Uint) => {
                Ok(int_of(&a.v) < 0 || (int_of(&a.v) as u64) < uint_of(&b.v))
            }
            (BasicKind::Uint, BasicKind::Int) => {
                Ok(int_of(&b.v) >= 0 && uint_of(&a.v) < int_of(&b.v) as u64)
            }
            _ => go(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            )),
        };
    }
    match k1 {
        BasicKind::Float => Ok(float_of(&a.v) < float_of(&b.v)),
        BasicKind::Int => Ok(int_of(&a.v) < int_of(&b.v)),
        BasicKind::String => Ok(str_of(&a.v) < str_of(&b.v)),
        BasicKind::Uint => Ok(uint_of(&a.v) < uint_of(&b.v)),
        BasicKind::Bool | BasicKind::Invalid => go(BAD),
    }
}

fn le(a: Rv, b: Rv) -> Result<bool, CallError> {
    if lt(a.clone(), b.clone())? {
        return Ok(true);
    }
    eq(a, vec![b])
}

/// Go's `template.HTMLEscapeString`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(crate) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", c as u32);
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapers_match_go() {
        // Expected values from Go's exec_test.go TestEscaping / funcs.go behaviour.
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"
        );
        assert_eq!(
            js_escape("a'b\"c<d>\\=&\n"),
            "a\\'b\\\"c\\u003Cd\\u003E\\\\\\u003D\\u0026\\u000A"
        );
        assert_eq!(js_escape("é\u{2028}"), "é\\u2028");
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
