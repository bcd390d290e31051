//! Values as the executor sees them: a small model of Go's `reflect.Value` for the types
//! that JSON data, template literals and the builtin functions can produce.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::value::Value;

/// A string that is either borrowed from the data or template, or produced at run time.
/// Produced strings are reference-counted so that copying a variable is O(1).
#[derive(Clone, Debug)]
pub(crate) enum Str<'a> {
    Borrowed(&'a str),
    Owned(Rc<str>),
}

impl Str<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Str::Borrowed(s) => s,
            Str::Owned(s) => s,
        }
    }
}

/// A run-time value. `Invalid` is Go's zero `reflect.Value` (printed as `<no value>`);
/// `Nil` is a nil `interface{}` such as a JSON `null` inside a map or slice.
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Invalid,
    Nil,
    Bool(bool),
    /// Go `int`: integer literals, `len`, range indexes.
    Int(i64),
    /// Go `uint8`: what `index` returns for a string.
    Uint8(u8),
    /// Go `float64`: JSON numbers and float literals.
    Float(f64),
    Str(Str<'a>),
    List(&'a [Value]),
    Map(&'a BTreeMap<String, Value>),
    StrMap(&'a BTreeMap<String, String>),
}

/// A value together with whether Go would hold it in an `interface{}` (a map or slice
/// element of `map[string]interface{}` / `[]interface{}`). The distinction shows in error
/// messages ("in type interface {}") and in how JSON null behaves; a pipeline unwraps it.
#[derive(Clone, Debug)]
pub(crate) struct Rv<'a> {
    pub(crate) v: Val<'a>,
    pub(crate) boxed: bool,
}

impl<'a> Rv<'a> {
    pub(crate) fn plain(v: Val<'a>) -> Self {
        Rv { v, boxed: false }
    }

    pub(crate) fn invalid() -> Self {
        Rv::plain(Val::Invalid)
    }

    /// An element fetched out of a `[]interface{}` or `map[string]interface{}`.
    pub(crate) fn element(v: &'a Value) -> Self {
        Rv {
            v: Val::from_value(v),
            boxed: true,
        }
    }

    /// The data passed to Execute: Go's `reflect.ValueOf(data)`, so a nil interface becomes
    /// the invalid value.
    pub(crate) fn top(v: &'a Value) -> Self {
        match v {
            Value::Nil => Rv::invalid(),
            _ => Rv::plain(Val::from_value(v)),
        }
    }

    /// Go's `indirectInterface`: the concrete value inside an interface, the invalid value
    /// for a nil interface.
    pub(crate) fn unboxed(self) -> Self {
        if self.boxed {
            match self.v {
                Val::Nil => Rv::invalid(),
                v => Rv::plain(v),
            }
        } else {
            self
        }
    }

    /// The static Go type, as `reflect.Value.Type()` reports it.
    pub(crate) fn type_name(&self) -> &'static str {
        if self.boxed {
            "interface {}"
        } else {
            self.v.type_name()
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        !matches!(self.v, Val::Invalid)
    }
}

impl<'a> Val<'a> {
    pub(crate) fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Nil => Val::Nil,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Float(*n),
            Value::String(s) => Val::Str(Str::Borrowed(s)),
            Value::Array(a) => Val::List(a),
            Value::Object(m) => Val::Map(m),
            Value::StringMap(m) => Val::StrMap(m),
        }
    }

    pub(crate) fn owned_str(s: String) -> Self {
        Val::Str(Str::Owned(Rc::from(s)))
    }

    /// Go type name of the concrete value. The invalid value has no type; fmt prints it
    /// like a nil interface.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Invalid | Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint8(_) => "uint8",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::List(_) => "[]interface {}",
            Val::Map(_) => "map[string]interface {}",
            Val::StrMap(_) => "map[string]string",
        }
    }

    /// Go's truth: false, 0, nil, and empty strings, slices and maps are false.
    pub(crate) fn truth(&self) -> bool {
        match self {
            Val::Invalid | Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Uint8(u) => *u != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.as_str().is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::StrMap(m) => !m.is_empty(),
        }
    }
}
