//! Validation: Butane's own checks on the YAML side (base v0_4/v0_5 `validate.go`), the
//! flatcar field filter, and Ignition 3.3/3.4's checks on the generated config (ignition
//! `config/v3_x/types/*.go`, `config/validate`), each in vcontext's traversal order: a
//! struct's own check, then its fields in Go order.

use serde_json::{Map, Value};

use crate::merge::item_key;
use crate::path::Path;
use crate::report::Kind;
use crate::schema::{self, JStruct, JTy, Spec, Struct, Ty};
use crate::translate::{Diag, ERR_TOO_MANY_RESOURCE_SOURCES};
use crate::unit;
use crate::util::clean;

struct Out(Vec<Diag>);

impl Out {
    fn add(&mut self, kind: Kind, path: Path, msg: impl Into<String>) {
        self.0.push(Diag {
            kind,
            message: msg.into(),
            path,
        });
    }
    fn err(&mut self, path: Path, msg: impl Into<String>) {
        self.add(Kind::Error, path, msg);
    }
    fn warn(&mut self, path: Path, msg: impl Into<String>) {
        self.add(Kind::Warning, path, msg);
    }
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}
fn not_empty(m: &Map<String, Value>, k: &str) -> bool {
    s(m, k).is_some_and(|v| !v.is_empty())
}
fn is_true(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool) == Some(true)
}
fn i(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}
fn arr<'a>(m: &'a Map<String, Value>, k: &str) -> &'a [Value] {
    m.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

// ---------------------------------------------------------------------------------------
// Butane (YAML side)

const ERR_DECIMAL_MODE: &str =
    "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero";

fn is_typical_mode(mode: i64, directory: bool) -> bool {
    if mode == 0 {
        return true;
    }
    let perms = [mode & 0o7, (mode & 0o70) >> 3, (mode & 0o700) >> 6];
    let (mut had_r, mut had_w, mut had_x) = (false, false, false);
    for p in perms {
        let r = p & 4 != 0;
        let w = p & 2 != 0;
        let x = p & 1 != 0;
        if (!r && had_r) || (!w && had_w) || (!x && had_x) {
            return false;
        }
        if x && had_r && !had_x {
            return false;
        }
        if (w || x) && !r {
            return false;
        }
        had_r |= r;
        had_w |= w;
        had_x |= x;
    }
    if !had_r {
        return false;
    }
    if directory {
        if !had_x || mode & 0o4000 != 0 || (mode & 0o3000 != 0 && !had_w) {
            return false;
        }
    } else {
        if mode & 0o6000 != 0 && (!had_x || mode & 2 != 0) {
            return false;
        }
        if mode & 0o1000 != 0 {
            return false;
        }
    }
    true
}

fn decimal_mode_to_octal(mode: i64) -> Option<i64> {
    if !(0..=7777).contains(&mode) {
        return None;
    }
    let mut ret = 0;
    let mut div = 1000;
    while div > 0 {
        let d = (mode / div) % 10;
        if d > 7 {
            return None;
        }
        ret = (ret << 3) | d;
        div /= 10;
    }
    Some(ret)
}

/// Butane's `CheckForDecimalMode`: a mode like `644` (decimal) that only makes sense as octal.
pub fn decimal_mode(mode: i64, directory: bool) -> bool {
    decimal_mode_to_octal(mode)
        .is_some_and(|o| !is_typical_mode(mode, directory) && is_typical_mode(o, directory))
}

/// Butane's `validate.Validate(cfg, "yaml")`.
pub fn validate_butane(b: &Value, spec: Spec) -> Vec<Diag> {
    let mut out = Out(Vec::new());
    if let Some(m) = b.as_object() {
        walk_butane(m, &schema::CONFIG, spec, &Path::root(), &mut out);
    }
    out.0
}

fn walk_butane(m: &Map<String, Value>, st: &Struct, spec: Spec, p: &Path, out: &mut Out) {
    match st.name {
        "Resource" => {
            let mut n = 0;
            let mut field = "";
            for f in ["local", "inline", "source"] {
                if m.contains_key(f) {
                    n += 1;
                    field = f;
                }
            }
            if n > 1 {
                out.err(p.field(field), ERR_TOO_MANY_RESOURCE_SOURCES);
            } else if field == "inline" && p.to_string().starts_with("$.ignition.config") {
                validate_embedded_config(s(m, "inline").unwrap_or(""), p, spec, out);
            }
        }
        "Filesystem" if is_true(m, "with_mount_unit") => {
            if !not_empty(m, "format") {
                out.err(
                    p.field("format"),
                    "format is required if with_mount_unit is true",
                );
            } else if s(m, "format") != Some("swap") && !not_empty(m, "path") {
                out.err(
                    p.field("path"),
                    "path is required if with_mount_unit is true and format is not swap",
                );
            }
        }
        "Directory" | "File" => {
            if let Some(mode) = i(m, "mode")
                && decimal_mode(mode, st.name == "Directory")
            {
                out.warn(p.field("mode"), ERR_DECIMAL_MODE);
            }
        }
        "Tree" if !not_empty(m, "local") => out.err(p.clone(), "local is required"),
        "Unit" | "Dropin"
            if spec == Spec::V1_1
                && m.contains_key("contents_local")
                && m.contains_key("contents") =>
        {
            out.err(
                p.field("contents_local"),
                "only one of the following can be set: contents, contents_local",
            );
        }
        _ => {}
    }
    for (name, ty, _) in st.fields(spec) {
        match ty {
            Ty::Struct(cs) => {
                if let Some(Value::Object(cm)) = m.get(*name) {
                    walk_butane(cm, cs, spec, &p.field(name), out);
                }
            }
            Ty::List(Ty::Struct(cs), _) => {
                for (k, item) in arr(m, name).iter().enumerate() {
                    if let Value::Object(im) = item {
                        walk_butane(im, cs, spec, &p.field(name).index(k), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Butane's `ValidateIgnitionConfig` (since v0.24) for an inline config under
/// `ignition.config`: it must parse as the spec's Ignition config; with another version the
/// check is skipped with a warning; otherwise Ignition's validation runs on it. The entries
/// keep the embedded config's own (JSON) paths, as Butane's do.
fn validate_embedded_config(raw: &str, p: &Path, spec: Spec, out: &mut Out) {
    let cfg: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => {
            out.err(Path::root(), e.to_string());
            out.err(p.field("inline"), "config is not valid");
            return;
        }
    };
    if let Some(e) = json_type_error(&cfg, &schema::J_CONFIG, &mut Vec::new()) {
        out.err(Path::root(), e);
        out.err(p.field("inline"), "config is not valid");
        return;
    }
    let version = cfg
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let parsed = crate::parse_semver(version);
    if parsed.is_some() && parsed.as_deref() != Some(spec.ignition_version()) {
        out.warn(
            p.field("version"),
            "skipping validation for the merge/replace ignition config due to an unkown version",
        );
        return;
    }
    if parsed.is_none() {
        out.err(
            Path::from_steps(&["ignition", "version"]),
            "invalid config version (couldn't parse)",
        );
    }
    out.0.extend(validate_ignition(&cfg, spec));
    out.0.extend(validate_dups(&cfg));
    if let Some(m) = cfg.as_object() {
        walk_json(m, &schema::J_CONFIG, &Path::root(), &mut |m, st, p| {
            for k in m.keys() {
                if !st.fields.iter().any(|f| f.name == k) {
                    out.warn(p.field(k), format!("unused key {k}"));
                }
            }
        });
    }
}

/// The first value of the wrong JSON type, worded like Go's `json.UnmarshalTypeError`.
fn json_type_error(v: &Value, st: &JStruct, at: &mut Vec<&'static str>) -> Option<String> {
    let m = v.as_object()?;
    for f in st.fields {
        let Some(x) = m.get(f.name).filter(|x| !x.is_null()) else {
            continue;
        };
        at.push(f.name);
        let go_type = |t: &JTy| match t {
            JTy::Str => "string".to_string(),
            JTy::Int => "int".to_string(),
            JTy::Bool => "bool".to_string(),
            JTy::List(JTy::Struct(s)) => format!("[]types.{}", s.name),
            JTy::List(_) => "[]string".to_string(),
            JTy::Struct(s) => format!("types.{}", s.name),
        };
        let kind = match x {
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        };
        let fits = match (&f.ty, x) {
            (JTy::Str, Value::String(_)) | (JTy::Bool, Value::Bool(_)) => true,
            (JTy::Int, Value::Number(n)) => n.is_i64(),
            (JTy::List(_), Value::Array(_)) | (JTy::Struct(_), Value::Object(_)) => true,
            _ => false,
        };
        if !fits {
            let shown = if matches!(x, Value::Number(_)) {
                format!("number {x}")
            } else {
                kind.to_string()
            };
            return Some(format!(
                "json: cannot unmarshal {shown} into Go struct field {}.{} of type {}",
                st.name,
                at.join("."),
                go_type(&f.ty)
            ));
        }
        let nested = match (&f.ty, x) {
            (JTy::Struct(cs), _) => json_type_error(x, cs, at),
            (JTy::List(elem), Value::Array(items)) => items.iter().find_map(|item| match elem {
                JTy::Struct(cs) if item.is_object() => json_type_error(item, cs, at),
                JTy::Struct(cs) if !item.is_null() => Some(format!(
                    "json: cannot unmarshal {} into Go struct field {}.{} of type types.{}",
                    if item.is_array() {
                        "array"
                    } else if item.is_string() {
                        "string"
                    } else {
                        "number"
                    },
                    st.name,
                    at.join("."),
                    cs.name
                )),
                JTy::Str if !item.is_string() && !item.is_null() => Some(format!(
                    "json: cannot unmarshal {} into Go struct field {}.{} of type string",
                    if item.is_object() { "object" } else { "number" },
                    st.name,
                    at.join(".")
                )),
                _ => None,
            }),
            _ => None,
        };
        at.pop();
        if nested.is_some() {
            return nested;
        }
    }
    None
}

/// The flatcar variant's field filter: Flatcar's Ignition has no clevis support.
pub fn flatcar_filter(cfg: &Value) -> Vec<Diag> {
    let mut out = Out(Vec::new());
    let luks = cfg
        .get("storage")
        .and_then(|s| s.get("luks"))
        .and_then(Value::as_array);
    for (k, l) in luks.into_iter().flatten().enumerate() {
        let clevis = l.get("clevis").and_then(Value::as_object);
        if clevis.is_some_and(|c| !crate::merge::struct_is_zero(c, &schema::J_CLEVIS)) {
            out.err(
                Path::from_steps(&["storage", "luks"])
                    .index(k)
                    .field("clevis"),
                "clevis is not supported in this spec version",
            );
        }
    }
    out.0
}

// ---------------------------------------------------------------------------------------
// Ignition (JSON side)

/// Ignition's `ValidateDups` over the whole config, in traversal order.
pub fn validate_dups(cfg: &Value) -> Vec<Diag> {
    let mut out = Out(Vec::new());
    if let Some(m) = cfg.as_object() {
        walk_json(m, &schema::J_CONFIG, &Path::root(), &mut |m, st, p| {
            dups_of(m, st, p, &mut out)
        });
    }
    out.0
}

fn dups_of(m: &Map<String, Value>, st: &JStruct, p: &Path, out: &mut Out) {
    let mut seen: Vec<(&str, std::collections::HashSet<String>)> = Vec::new();
    for f in st.fields {
        let JTy::List(elem) = &f.ty else { continue };
        if f.ignore_dups {
            continue;
        }
        let h = f.handle.unwrap_or(f.name);
        if !seen.iter().any(|(hh, _)| *hh == h) {
            seen.push((h, std::collections::HashSet::new()));
        }
        for (k, item) in arr(m, f.name).iter().enumerate() {
            let key = item_key(item, elem);
            let Some((_, keys)) = seen.iter_mut().find(|(hh, _)| *hh == h) else {
                continue;
            };
            if !keys.insert(key) {
                out.err(p.field(f.name).index(k), "duplicate entry defined");
            }
        }
    }
}

/// Called on every struct of the config, with its schema and path.
type Visitor<'a> = dyn FnMut(&Map<String, Value>, &JStruct, &Path) + 'a;

fn walk_json(m: &Map<String, Value>, st: &JStruct, p: &Path, f: &mut Visitor<'_>) {
    f(m, st, p);
    for fl in st.fields {
        match &fl.ty {
            JTy::Struct(cs) => {
                let empty = Map::new();
                let cm = m.get(fl.name).and_then(Value::as_object).unwrap_or(&empty);
                walk_json(cm, cs, &p.field(fl.name), f);
            }
            JTy::List(JTy::Struct(cs)) => {
                for (k, item) in arr(m, fl.name).iter().enumerate() {
                    if let Value::Object(im) = item {
                        walk_json(im, cs, &p.field(fl.name).index(k), f);
                    }
                }
            }
            _ => {}
        }
    }
}

fn validate_path(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("path not specified")
    } else if !p.starts_with('/') {
        Some("path not absolute")
    } else if clean(p) != p {
        Some("path is not fully simplified")
    } else {
        None
    }
}

/// A URL's scheme as Go's `url.Parse` finds it, or `Err` where Go fails to parse.
fn url_scheme(u: &str) -> Result<String, ()> {
    if u.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(());
    }
    let Some(colon) = u.find(':') else {
        return Ok(String::new());
    };
    let scheme = &u[..colon];
    let valid = !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    if !valid {
        // Go: a colon before any '/' without a valid scheme is an error.
        if scheme.is_empty() || !scheme.contains('/') {
            return Err(());
        }
        return Ok(String::new());
    }
    Ok(scheme.to_ascii_lowercase())
}

fn is_token(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && c != ' ' && !"()<>@,;:\\\"/[]?=".contains(c)
}

fn is_url_char(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && !" <>#\"{}|\\^[]`".contains(c)
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\n')
}

/// Where Go's `base64.StdEncoding.DecodeString` reports corrupt input, if it does: an invalid
/// byte, bad padding, trailing data after padding, or an incomplete final quantum.
fn go_base64_error(b: &[u8]) -> Option<usize> {
    let is_nl = |c: u8| c == b'\n' || c == b'\r';
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut si = 0;
    loop {
        let mut j = 0;
        while j < 4 {
            if si == b.len() {
                return if j == 0 { None } else { Some(si - j) };
            }
            let c = b[si];
            si += 1;
            if is_nl(c) {
                continue;
            }
            if alphabet(c) {
                j += 1;
                continue;
            }
            if c != b'=' || j < 2 {
                return Some(si - 1);
            }
            if j == 2 {
                while si < b.len() && is_nl(b[si]) {
                    si += 1;
                }
                if si == b.len() {
                    return Some(b.len());
                }
                if b[si] != b'=' {
                    return Some(si - 1);
                }
                si += 1;
            }
            while si < b.len() && is_nl(b[si]) {
                si += 1;
            }
            return if si < b.len() { Some(si) } else { None };
        }
    }
}

/// RFC 2396 unescaping as the dataurl package does it, for its error texts.
fn rfc2396_unescape(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            for k in 1..=2 {
                match b.get(i + k) {
                    None => return Err("rfc2396: unexpected end of unescape sequence".into()),
                    Some(h) if !h.is_ascii_hexdigit() => {
                        // The package reports the '%' itself, not the bad character.
                        return Err("rfc2396: invalid char 0x25 in unescape sequence".into());
                    }
                    Some(_) => {}
                }
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// `dataurl.DecodeString`'s checks (vincent-petithory/dataurl), with its error texts:
/// `data:[type/subtype][;attr=value]*[;base64],data`.
fn validate_data_url(u: &str) -> Option<String> {
    let rest = u.strip_prefix("data:")?;
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let mut base64 = false;
    let peek = |i: usize| chars.get(i).copied();
    // Media type.
    match peek(i) {
        Some(';') | Some(',') => {}
        None => return Some("missing comma before data".into()),
        Some(c) if is_token(c) => {
            let start = i;
            let x_token = matches!(c, 'x' | 'X') && peek(i + 1) == Some('-');
            loop {
                match peek(i) {
                    Some('/') => break,
                    None => return Some("missing media type slash".into()),
                    Some(c) if is_token(c) => i += 1,
                    Some(_) => return Some("invalid character for media type".into()),
                }
            }
            let ty: String = chars[start..i].iter().collect();
            let known = [
                "text",
                "image",
                "audio",
                "video",
                "application",
                "message",
                "multipart",
            ]
            .iter()
            .any(|p| ty.starts_with(p));
            if !x_token && !known {
                return Some("invalid media type".into());
            }
            i += 1;
            loop {
                match peek(i) {
                    Some(';') | Some(',') => break,
                    None => return Some("incomplete media type".into()),
                    Some(c) if is_token(c) => i += 1,
                    Some(_) => return Some("invalid character for media subtype".into()),
                }
            }
        }
        Some(_) => return Some("invalid character after data prefix".into()),
    }
    // Parameters, then the comma.
    while peek(i) == Some(';') {
        i += 1;
        match peek(i) {
            None | Some('=') | Some(',') => return Some("unterminated parameter sequence".into()),
            Some(c) if is_token(c) => {}
            Some(_) => return Some("invalid character for parameter attribute".into()),
        }
        let start = i;
        loop {
            match peek(i) {
                Some('=') => break,
                Some(',') => {
                    let attr: String = chars[start..i].iter().collect();
                    if attr != "base64" {
                        return Some(format!("expected base64, got {attr}"));
                    }
                    base64 = true;
                    break;
                }
                None => return Some("unterminated parameter sequence".into()),
                Some(c) if is_token(c) => i += 1,
                Some(_) => return Some("invalid character for parameter attribute".into()),
            }
        }
        if base64 {
            break;
        }
        i += 1; // '='
        match peek(i) {
            Some('"') => {
                i += 1;
                let start = i;
                loop {
                    match peek(i) {
                        None => return Some("unclosed quoted string".into()),
                        Some('\\') => {
                            i += 1;
                            match peek(i) {
                                None => return Some("unexpected eof".into()),
                                Some(c) if c.is_ascii() => i += 1,
                                Some(_) => return Some("invalid escaped character".into()),
                            }
                        }
                        Some('"') => break,
                        Some(c) if c.is_ascii() => i += 1,
                        Some(_) => return Some("invalid character for parameter value".into()),
                    }
                }
                let val: String = chars[start..i].iter().collect();
                if serde_json::from_str::<String>(&format!("\"{val}\"")).is_err() {
                    return Some("invalid syntax".into());
                }
                i += 1;
            }
            None => return Some("missing comma before data".into()),
            Some(c) if is_token(c) => {
                let start = i;
                loop {
                    match peek(i) {
                        Some(';') | Some(',') => break,
                        None => return Some("missing comma before data".into()),
                        Some(c) if is_token(c) => i += 1,
                        Some(_) => return Some("invalid character for parameter value".into()),
                    }
                }
                let val: String = chars[start..i].iter().collect();
                if let Err(e) = rfc2396_unescape(&val) {
                    return Some(e);
                }
            }
            Some(_) => return Some("invalid character for parameter value".into()),
        }
        match peek(i) {
            Some(';') | Some(',') => {}
            None => return Some("missing comma before data".into()),
            Some(_) => return Some("expected semicolon or comma".into()),
        }
    }
    if peek(i) != Some(',') {
        return Some(match peek(i) {
            None => "missing comma before data".into(),
            Some(_) => "expected semicolon or comma".into(),
        });
    }
    i += 1;
    let data: String = chars[i..].iter().collect();
    if base64 {
        if !data.chars().all(is_base64_char) {
            return Some("invalid data character".into());
        }
        if let Some(at) = go_base64_error(data.as_bytes()) {
            return Some(format!("illegal base64 data at input byte {at}"));
        }
    } else {
        if !data.chars().all(is_url_char) {
            return Some("invalid data character".into());
        }
        if let Err(e) = rfc2396_unescape(&data) {
            return Some(e);
        }
    }
    None
}

fn validate_url(u: &str) -> Option<String> {
    let Ok(scheme) = url_scheme(u) else {
        return Some("unable to parse url".into());
    };
    match scheme.as_str() {
        "http" | "https" | "tftp" | "gs" | "s3" | "arn" => None,
        "data" => validate_data_url(u),
        _ => Some("invalid url scheme".into()),
    }
}

fn validate_resource(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    if let Some(c) = s(m, "compression")
        && !c.is_empty()
        && c != "gzip"
    {
        out.err(p.field("compression"), "invalid compression method");
    }
    let hash = m.get("verification").and_then(|v| v.get("hash"));
    if hash.is_some_and(|h| !h.is_null()) && s(m, "source").is_none() {
        out.err(
            p.field("verification").field("hash"),
            "source must be specified if verification is specified",
        );
    }
    if let Some(src) = s(m, "source").filter(|s| !s.is_empty())
        && let Some(e) = validate_url(src)
    {
        out.err(p.field("source"), e);
    }
    if !arr(m, "httpHeaders").is_empty() {
        let err = match s(m, "source").filter(|s| !s.is_empty()) {
            None => Some("unable to parse url"),
            Some(src) => match url_scheme(src) {
                Err(()) => Some("unable to parse url"),
                Ok(sc) if sc == "http" || sc == "https" => None,
                Ok(_) => Some("cannot use HTTP headers with this source scheme"),
            },
        };
        if let Some(e) = err {
            out.err(p.field("httpHeaders"), e);
        }
    }
}

fn required_source(m: Option<&Map<String, Value>>) -> Option<String> {
    match m.and_then(|m| s(m, "source")).filter(|s| !s.is_empty()) {
        None => Some("source is required".into()),
        Some(src) => validate_url(src),
    }
}

fn validate_mode(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    if let Some(mode) = i(m, "mode") {
        if !(0..=0o7777).contains(&mode) {
            out.err(p.field("mode"), "illegal file mode");
        }
        if (mode as u32) & 0o7000 != 0 {
            out.warn(
                p.field("mode"),
                "setuid/setgid/sticky bits are not supported or functional in spec versions older than 3.6.0",
            );
        }
    }
}

fn validate_node(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    if let Some(e) = validate_path(s(m, "path").unwrap_or("")) {
        out.err(p.field("path"), e);
    }
}

fn unit_name_ok(name: &str) -> bool {
    let ext = ext(name);
    matches!(
        ext,
        ".service"
            | ".socket"
            | ".device"
            | ".mount"
            | ".automount"
            | ".swap"
            | ".target"
            | ".path"
            | ".timer"
            | ".snapshot"
            | ".slice"
            | ".scope"
    )
}

/// Go's `path.Ext`.
fn ext(name: &str) -> &str {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[base_start..].rfind('.') {
        Some(i) => &name[base_start + i..],
        None => "",
    }
}

fn is_guid(g: &str) -> bool {
    if g.is_empty() {
        return true;
    }
    let parts: Vec<&str> = g.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, l)| p.len() == l && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check(m: &Map<String, Value>, st: &JStruct, p: &Path, spec: Spec, out: &mut Out) {
    match st.name {
        "Config" => {
            let mut unit_paths: Vec<String> = Vec::new();
            let units = m
                .get("systemd")
                .and_then(|s| s.get("units"))
                .and_then(Value::as_array);
            for u in units.into_iter().flatten() {
                let Some(u) = u.as_object() else { continue };
                let name = s(u, "name").unwrap_or("");
                if not_empty(u, "contents") {
                    unit_paths.push(format!("/etc/systemd/system/{name}"));
                }
                for d in arr(u, "dropins").iter().filter_map(Value::as_object) {
                    if not_empty(d, "contents") {
                        unit_paths.push(format!(
                            "/etc/systemd/system/{name}.d/{}",
                            s(d, "name").unwrap_or("")
                        ));
                    }
                }
            }
            let storage = m.get("storage").and_then(Value::as_object);
            for list in ["files", "directories", "links"] {
                let items = storage.map(|s| arr(s, list)).unwrap_or(&[]);
                for (k, n) in items.iter().enumerate() {
                    let path = n.get("path").and_then(Value::as_str).unwrap_or("");
                    if unit_paths.iter().any(|u| u == path) {
                        out.err(
                            Path::from_steps(&["storage", list]).index(k).field("path"),
                            "path conflicts with systemd unit or dropin",
                        );
                    }
                }
            }
        }
        "IgnitionConfig" => {
            for (k, r) in arr(m, "merge").iter().enumerate() {
                if let Some(e) = required_source(r.as_object()) {
                    out.err(p.field("merge").index(k), e);
                }
            }
        }
        "Proxy" => {
            for (f, http_ok) in [("httpProxy", true), ("httpsProxy", false)] {
                let Some(u) = s(m, f) else { continue };
                match url_scheme(u) {
                    Err(()) => out.err(p.field(f), "unable to parse url"),
                    Ok(sc) if sc != "http" && sc != "https" => {
                        out.err(p.field(f), "proxies must be http(s)")
                    }
                    Ok(sc) if sc == "http" && !http_ok => out.warn(
                        p.field(f),
                        "insecure plaintext HTTP proxy specified for HTTPS resources",
                    ),
                    Ok(_) => {}
                }
            }
        }
        "TLS" => {
            for (k, r) in arr(m, "certificateAuthorities").iter().enumerate() {
                if let Some(e) = required_source(r.as_object()) {
                    out.err(p.field("certificateAuthorities").index(k), e);
                }
            }
        }
        "Resource" => validate_resource(m, p, out),
        "Verification" => {
            if let Some(h) = s(m, "hash") {
                let hp = p.field("hash");
                match h.split_once('-') {
                    None => out.err(hp, "malformed hash specifier"),
                    Some((func, sum)) => {
                        let size = match func {
                            "sha512" => Some(128),
                            "sha256" => Some(64),
                            _ => None,
                        };
                        match size {
                            None => out.err(hp, "unrecognized hash function"),
                            Some(n) if sum.len() != n => out.err(hp, "incorrect size for hash sum"),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        "HTTPHeader" => {
            if s(m, "name").unwrap_or("").is_empty() {
                out.err(p.field("name"), "HTTP header name can't be empty");
            }
            if s(m, "value") == Some("") {
                out.err(p.field("value"), "unable to parse HTTP header");
            }
        }
        "Storage" => validate_storage(m, p, out),
        "Directory" => {
            validate_node(m, p, out);
            validate_mode(m, p, out);
        }
        "File" => {
            validate_node(m, p, out);
            validate_mode(m, p, out);
            if is_true(m, "overwrite")
                && m.get("contents")
                    .and_then(|c| c.get("source"))
                    .is_none_or(Value::is_null)
            {
                out.err(
                    p.field("overwrite"),
                    "overwrite must be false if source is unspecified",
                );
            }
        }
        "Link" => validate_node(m, p, out),
        "NodeUser" | "NodeGroup"
            if m.get("id").is_some_and(|v| !v.is_null()) && not_empty(m, "name") =>
        {
            out.err(p.clone(), "cannot set both id and name");
        }
        "Disk" => validate_disk(m, p, out),
        "Partition" => {
            let number = i(m, "number").unwrap_or(0);
            let has = |k: &str| m.get(k).is_some_and(|v| !v.is_null());
            if m.get("shouldExist").and_then(Value::as_bool) == Some(false)
                && (has("label")
                    || not_empty(m, "typeGuid")
                    || not_empty(m, "guid")
                    || has("startMiB")
                    || has("sizeMiB"))
            {
                out.err(
                    p.clone(),
                    "shouldExist specified false with other options also specified",
                );
            }
            if number == 0 && !has("label") {
                out.err(
                    p.clone(),
                    "a partition number >= 1 or a label must be specified",
                );
            }
            if let Some(l) = s(m, "label") {
                if l.len() > 36 {
                    out.err(
                        p.field("label"),
                        "partition labels may not exceed 36 characters",
                    );
                } else if l.contains(':') {
                    out.err(
                        p.field("label"),
                        "partition label will be truncated to text before the colon",
                    );
                }
            }
            for f in ["guid", "typeGuid"] {
                if let Some(g) = s(m, f)
                    && !is_guid(g)
                {
                    out.err(
                        p.field(f),
                        "doesn't match the form \"01234567-89AB-CDEF-EDCB-A98765432101\"",
                    );
                }
            }
        }
        "Filesystem" => {
            if let Some(e) = s(m, "path")
                .filter(|s| !s.is_empty())
                .and_then(validate_path)
            {
                out.err(p.field("path"), e);
            }
            if let Some(e) = validate_path(s(m, "device").unwrap_or("")) {
                out.err(p.field("device"), e);
            }
            let format = s(m, "format").filter(|f| !f.is_empty());
            match format {
                None => {
                    if not_empty(m, "path")
                        || not_empty(m, "label")
                        || not_empty(m, "uuid")
                        || is_true(m, "wipeFilesystem")
                        || !arr(m, "mountOptions").is_empty()
                        || !arr(m, "options").is_empty()
                    {
                        out.err(
                            p.field("format"),
                            "format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified",
                        );
                    }
                }
                Some("ext4" | "btrfs" | "xfs" | "swap" | "vfat" | "none") => {}
                Some(_) => out.err(p.field("format"), "invalid filesystem format"),
            }
            if let Some(label) = s(m, "label").filter(|l| !l.is_empty()) {
                let e = match format {
                    None => Some("filesystem must specify format if label is specified"),
                    Some("ext4") if label.len() > 16 => Some(
                        "filesystem labels cannot be longer than 16 characters when using ext4",
                    ),
                    Some("btrfs") if label.len() > 256 => Some(
                        "filesystem labels cannot be longer than 256 characters when using btrfs",
                    ),
                    Some("xfs") if label.len() > 12 => {
                        Some("filesystem labels cannot be longer than 12 characters when using xfs")
                    }
                    Some("swap") if label.len() > 15 => Some(
                        "filesystem labels cannot be longer than 15 characters when using swap",
                    ),
                    Some("vfat") if label.len() > 11 => Some(
                        "filesystem labels cannot be longer than 11 characters when using vfat",
                    ),
                    _ => None,
                };
                if let Some(e) = e {
                    out.err(p.field("label"), e);
                }
            }
        }
        "Raid" => {
            let level = s(m, "level").filter(|l| !l.is_empty());
            let e = match level {
                None => Some("raid level is required"),
                Some("linear" | "raid0" | "0" | "stripe") => {
                    if i(m, "spares").is_some_and(|s| s != 0) {
                        Some("spares unsupported for linear and raid0 arrays")
                    } else {
                        None
                    }
                }
                Some(
                    "raid1" | "1" | "mirror" | "raid4" | "4" | "raid5" | "5" | "raid6" | "6"
                    | "raid10" | "10",
                ) => None,
                Some(_) => Some("unrecognized raid level"),
            };
            if let Some(e) = e {
                out.err(p.field("level"), e);
            }
            if arr(m, "devices").is_empty() {
                out.err(p.field("devices"), "raid devices required");
            }
            // Each device is a `Device`, whose own check comes in the field walk.
            for (k, d) in arr(m, "devices").iter().enumerate() {
                if let Some(e) = validate_path(d.as_str().unwrap_or("")) {
                    out.err(p.field("devices").index(k), e);
                }
            }
        }
        "Luks" => {
            if s(m, "name").unwrap_or("").contains('/') {
                out.err(p.field("name"), "device names cannot contain slashes");
            }
            if s(m, "label").is_some_and(|l| l.len() > 47) {
                out.err(
                    p.field("label"),
                    "luks device labels cannot be longer than 47 characters",
                );
            }
            match s(m, "device").filter(|d| !d.is_empty()) {
                None => out.err(p.field("device"), "disk device is required"),
                Some(d) => {
                    if let Some(e) = validate_path(d) {
                        out.err(p.field("device"), e);
                    }
                }
            }
            let clevis = m.get("clevis").and_then(Value::as_object);
            if let Some(c) = clevis {
                let custom_pin = c
                    .get("custom")
                    .and_then(Value::as_object)
                    .is_some_and(|cu| not_empty(cu, "pin"));
                if custom_pin
                    && (!arr(c, "tang").is_empty()
                        || is_true(c, "tpm2")
                        || i(c, "threshold").is_some_and(|t| t != 0))
                {
                    out.err(
                        p.field("clevis"),
                        "cannot use custom clevis config with tpm2, tang, or threshold",
                    );
                }
            }
            let key_src = m
                .get("keyFile")
                .and_then(|k| k.get("source"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if key_src.and_then(validate_url).is_some() {
                out.err(p.field("keys"), "invalid key-file source");
            }
        }
        "ClevisCustom" => {
            if !not_empty(m, "pin") && !not_empty(m, "config") && !is_true(m, "needsNetwork") {
                return;
            }
            match s(m, "pin").filter(|p| !p.is_empty()) {
                Some("tpm2" | "tang" | "sss") => {}
                Some(_) => out.err(p.field("pin"), "unsupported clevis pin"),
                None => out.err(p.field("pin"), "missing required custom clevis pin"),
            }
            if !not_empty(m, "config") {
                out.err(p.field("config"), "missing required custom clevis config");
            }
        }
        "Tang" => {
            match url_scheme(s(m, "url").unwrap_or("")) {
                Err(()) => out.err(p.field("url"), "unable to parse url"),
                Ok(sc) if sc != "http" && sc != "https" => {
                    out.err(p.field("url"), "invalid url scheme")
                }
                Ok(_) => {}
            }
            if !not_empty(m, "thumbprint") {
                out.err(p.field("thumbprint"), "thumbprint is required");
            }
            if spec == Spec::V1_1
                && let Some(a) = s(m, "advertisement").filter(|a| !a.is_empty())
                && serde_json::from_str::<Value>(a).is_err()
            {
                out.err(p.field("advertisement"), "advertisement is not valid JSON");
            }
        }
        "Systemd" => validate_systemd(m, p, out),
        "Unit" => {
            let name = s(m, "name").unwrap_or("");
            if !unit_name_ok(name) {
                out.err(p.field("name"), "invalid systemd unit extension");
            }
            let cp = p.field("contents");
            let contents = s(m, "contents");
            let opts = match contents {
                None => Some(Vec::new()),
                Some(c) => match unit::deserialize(c) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        out.err(cp.clone(), format!("invalid unit content: {e}"));
                        None
                    }
                },
            };
            if is_true(m, "enabled")
                && contents.is_some_and(|c| !c.is_empty())
                && let Some(opts) = opts
                && !opts.iter().any(|o| o.section == "Install")
            {
                out.warn(
                            cp,
                            format!(
                                "unit {name:?} is enabled, but has no install section so enable does nothing"
                            ),
                        );
            }
        }
        "Dropin" => {
            if let Some(c) = s(m, "contents")
                && let Err(e) = unit::deserialize(c)
            {
                out.err(p.field("contents"), format!("invalid unit content: {e}"));
            }
            if ext(s(m, "name").unwrap_or("")) != ".conf" {
                out.err(p.field("name"), "invalid systemd drop-in extension");
            }
        }
        _ => {}
    }
}

fn validate_storage(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    let paths = |k: &str| -> Vec<String> {
        arr(m, k)
            .iter()
            .map(|n| {
                n.get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let links = arr(m, "links");
    let link_paths = paths("links");
    let dir_paths = paths("directories");
    for (k, d) in dir_paths.iter().enumerate() {
        for l in &link_paths {
            if d.starts_with(&format!("{l}/")) {
                out.err(
                    p.field("directories").index(k),
                    "directory path includes link in config",
                );
            }
        }
    }
    for (k, f) in paths("files").iter().enumerate() {
        for l in &link_paths {
            if f.starts_with(&format!("{l}/")) {
                out.err(
                    p.field("files").index(k),
                    "file path includes link in config",
                );
            }
        }
    }
    for (k, l1) in links.iter().enumerate() {
        let Some(l1) = l1.as_object() else { continue };
        let lp = s(l1, "path").unwrap_or("");
        for l2 in &link_paths {
            if lp.starts_with(&format!("{l2}/")) {
                out.err(
                    p.field("links").index(k),
                    "link path includes link in config",
                );
            }
        }
        let Some(target) = s(l1, "target").filter(|t| !t.is_empty()) else {
            out.err(
                p.field("links").index(k).field("target"),
                "link target is required",
            );
            continue;
        };
        if !is_true(l1, "hard") {
            continue;
        }
        let mut t = clean(target);
        if !t.starts_with('/') {
            t = crate::util::join(lp, target);
        }
        for d in &dir_paths {
            if t == *d {
                out.err(p.field("links").index(k), "hard link target is a directory");
            }
        }
        for (who, f) in [
            ("user", "id"),
            ("user", "name"),
            ("group", "id"),
            ("group", "name"),
        ] {
            let set = l1
                .get(who)
                .and_then(|w| w.get(f))
                .is_some_and(|v| !v.is_null());
            if set {
                out.warn(
                    p.field("links").index(k).field(who).field(f),
                    "user/group ignored for hard link",
                );
            }
        }
    }
    let disks = arr(m, "disks");
    for (k, fs) in arr(m, "filesystems").iter().enumerate() {
        let dev = fs.get("device").and_then(Value::as_str).unwrap_or("");
        // A map keyed by device: the last disk with that device wins.
        let disk = disks
            .iter()
            .rev()
            .find(|d| d.get("device").and_then(Value::as_str) == Some(dev));
        if let Some(disk) = disk.and_then(Value::as_object) {
            let fp = p.field("filesystems").index(k).field("device");
            if !arr(disk, "partitions").is_empty() {
                out.warn(fp, "filesystem overwrites partitioned device");
            } else if !fs.as_object().is_some_and(|f| is_true(f, "wipeFilesystem"))
                && is_true(disk, "wipeTable")
            {
                out.warn(
                    fp,
                    "device matches disk with wipeTable enabled; filesystem will be wiped",
                );
            }
        }
    }
}

fn validate_disk(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    let device = s(m, "device").unwrap_or("");
    if device.is_empty() {
        out.err(p.field("device"), "disk device is required");
        return;
    }
    if let Some(e) = validate_path(device) {
        out.err(p.field("device"), e);
    }
    let parts: Vec<&Map<String, Value>> = arr(m, "partitions")
        .iter()
        .filter_map(Value::as_object)
        .collect();
    let num = |x: &Map<String, Value>| i(x, "number").unwrap_or(0);
    // Go iterates a map here, so which collision is reported is unspecified; take the first.
    let mut collision = None;
    for (a, pa) in parts.iter().enumerate() {
        if num(pa) == 0 {
            continue;
        }
        if let Some(b) = parts[a + 1..].iter().position(|pb| num(pb) == num(pa)) {
            collision = Some(a + 1 + b);
            break;
        }
    }
    if let Some(k) = collision {
        out.err(p.field("partitions").index(k), "partition numbers collide");
    }
    let start = |x: &Map<String, Value>| i(x, "startMiB");
    let size = |x: &Map<String, Value>| i(x, "sizeMiB");
    let end = |x: &Map<String, Value>| {
        let (s0, z) = (start(x).unwrap_or(0), size(x).unwrap_or(0));
        if z == 0 { s0 } else { s0 + z - 1 }
    };
    'outer: for (a, pa) in parts.iter().enumerate() {
        if start(pa).is_none() || size(pa).is_none() || start(pa) == Some(0) {
            continue;
        }
        for (b, pb) in parts.iter().enumerate() {
            if start(pb).is_none() || size(pb).is_none() || a == b || start(pb) == Some(0) {
                continue;
            }
            let (ps, pe, os, oe) = (
                start(pa).unwrap_or(0),
                end(pa),
                start(pb).unwrap_or(0),
                end(pb),
            );
            if (ps >= os && ps <= oe) || (pe >= os && pe <= oe) || (ps < os && pe > oe) {
                out.err(p.field("partitions").index(b), "partitions overlap");
                break 'outer;
            }
        }
    }
    let has_zero = parts.iter().any(|x| num(x) == 0);
    let has_not_exist = parts
        .iter()
        .any(|x| x.get("shouldExist").and_then(Value::as_bool) == Some(false));
    if has_zero && has_not_exist {
        out.err(
            p.field("partitions"),
            "shouldExist is false for a partition and other partition(s) has start or size 0",
        );
    }
    let mut labels: Vec<&str> = Vec::new();
    for (k, x) in parts.iter().enumerate() {
        if let Some(l) = s(x, "label") {
            if labels.contains(&l) {
                out.err(
                    p.field("partitions").index(k),
                    "cannot use the same partition label twice",
                );
                break;
            }
            labels.push(l);
        }
    }
}

fn validate_systemd(m: &Map<String, Value>, p: &Path, out: &mut Out) {
    let units: Vec<&Map<String, Value>> = arr(m, "units")
        .iter()
        .filter_map(Value::as_object)
        .collect();
    for (k, u) in units.iter().enumerate() {
        let name = s(u, "name").unwrap_or("");
        if !is_true(u, "enabled") {
            continue;
        }
        // ^(.+?)@(.+?)\.service$
        let Some(stem) = name.strip_suffix(".service") else {
            continue;
        };
        let Some(at) = stem.find('@') else { continue };
        if at == 0 || at + 1 >= stem.len() {
            continue;
        }
        let template = format!("{}@.service", &stem[..at]);
        // A map keyed by name: the last unit with that name wins.
        let Some(t) = units.iter().rev().find(|x| s(x, "name") == Some(&template)) else {
            continue;
        };
        let Some(contents) = s(t, "contents").filter(|c| !c.is_empty()) else {
            continue;
        };
        let Ok(opts) = unit::deserialize(contents) else {
            continue;
        };
        if !opts.iter().any(|o| o.section == "Install") {
            out.warn(
                p.field("units").index(k).field("contents"),
                format!("template unit {template:?} for {name:?} doesn't have Install section"),
            );
        }
    }
}

/// Ignition's `validate.Validate(cfg, "json")` on the generated config.
pub fn validate_ignition(cfg: &Value, spec: Spec) -> Vec<Diag> {
    let mut out = Out(Vec::new());
    if let Some(m) = cfg.as_object() {
        walk_json(m, &schema::J_CONFIG, &Path::root(), &mut |m, st, p| {
            check(m, st, p, spec, &mut out)
        });
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_modes_are_flagged() {
        assert!(decimal_mode(644, false));
        assert!(decimal_mode(755, true));
        assert!(!decimal_mode(0o644, false));
        assert!(!decimal_mode(0o755, true));
        // 600 decimal is 0o1130, which is odd; 0o600 is typical.
        assert!(decimal_mode(600, false));
        assert!(!decimal_mode(0o600, false));
    }

    #[test]
    fn guid_form() {
        assert!(is_guid("01234567-89AB-CDEF-EDCB-A98765432101"));
        assert!(is_guid(""));
        assert!(!is_guid("nope"));
    }
}
