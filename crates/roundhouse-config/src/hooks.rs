//! `hook "NAME" { roles, upload { ... }, run, timeout }` blocks: post-provision hooks.

use std::collections::HashMap;
use std::ops::Range;

use hcl::edit::structure::Block;

use crate::diagnostic::did_you_mean;
use crate::eval::span_of;
use crate::model::{Hook, Role, Upload};
use crate::schema::{Fields, Reader, check_labels, fields, header_span};

pub(crate) const HOOK_ATTRS: &[&str] = &["roles", "run", "timeout"];
pub(crate) const HOOK_BLOCKS: &[&str] = &["upload"];
pub(crate) const UPLOAD_ATTRS: &[&str] = &["source", "content", "destination", "mode", "owner"];

const DEFAULT_TIMEOUT_SECS: u64 = 600;
const DEFAULT_MODE: u32 = 0o644;
/// A day: a hook that needs longer is a job for something else.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Reads every `hook` block; `None` when any of them was invalid (already reported).
pub(crate) fn read_hooks(blocks: &[&Block], r: &mut Reader<'_, '_>) -> Option<Vec<Hook>> {
    let mut ok = true;
    let mut hooks = Vec::with_capacity(blocks.len());
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    for block in blocks {
        let src = r.scope.src;
        if !check_labels(block, 1, "hook \"NAME\" { ... }", src, r.sink) {
            ok = false;
            continue;
        }
        let name = block.labels[0].as_str().to_string();
        let name_span = span_of(&block.labels[0]);
        if let Some(first) = seen.get(&name) {
            let line = src.line_of(first.start);
            r.error(
                &name_span,
                format!("hook name {name:?} is used twice (first on line {line})"),
            )
            .help = Some("hook names must be unique: the state store records each hook's runs under its name".into());
            ok = false;
        } else {
            seen.insert(name.clone(), name_span.clone());
        }
        if let Some(problem) = hook_name_problem(&name) {
            r.error(&name_span, format!("invalid hook name {name:?}: {problem}"))
                .help = Some(
                "use letters, digits, `-`, `_` and `.`, like \"copy-controller-secrets\"".into(),
            );
            ok = false;
        }
        match read_hook(block, name, r) {
            Some(h) => hooks.push(h),
            None => ok = false,
        }
    }
    ok.then_some(hooks)
}

fn hook_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("longer than 64 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("it contains characters other than letters, digits, `-`, `_` and `.`")
    } else {
        None
    }
}

fn read_hook(block: &Block, name: String, r: &mut Reader<'_, '_>) -> Option<Hook> {
    let src = r.scope.src;
    let what = format!("hook \"{name}\"");
    let (f, uploads) = fields(
        &block.body,
        what.clone(),
        header_span(block),
        HOOK_ATTRS,
        HOOK_BLOCKS,
        src,
        r.sink,
    );
    let mut ok = true;
    let roles = match f.get("roles") {
        None => Some(vec![Role::Controller, Role::Worker]),
        Some(_) => read_roles(&f, r),
    };
    let run = match f.get("run") {
        None => Some(Vec::new()),
        Some(_) => read_commands(&f, r),
    };
    let timeout_secs = match f.get("timeout") {
        None => Some(DEFAULT_TIMEOUT_SECS),
        Some(_) => r.uint(&f, "timeout", 1, MAX_TIMEOUT_SECS),
    };
    let mut read_uploads = Vec::with_capacity(uploads.len());
    for u in &uploads {
        match read_upload(u, &what, r) {
            Some(u) => read_uploads.push(u),
            None => ok = false,
        }
    }
    // An unknown or misplaced attribute (say `upload = {...}`) was reported already and likely
    // explains why the hook looks empty.
    let all_known = block
        .body
        .attributes()
        .all(|a| HOOK_ATTRS.contains(&a.key.value().as_str()));
    if all_known && uploads.is_empty() && run.as_ref().is_some_and(Vec::is_empty) {
        r.error(&f.header, format!("{what} does nothing: it has no `upload` blocks and no `run` commands"))
            .help = Some("add `upload { source = ..., destination = ... }` blocks or `run = [\"...\"]` commands, or remove the hook".into());
        ok = false;
    }
    let hook = Hook {
        name,
        roles: roles?,
        uploads: read_uploads,
        run: run?,
        timeout_secs: timeout_secs?,
    };
    ok.then_some(hook)
}

fn read_roles(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<Vec<Role>> {
    let items = r.strings(f, "roles")?;
    if items.is_empty() {
        let span = span_of(&f.get("roles")?.value);
        r.error(&span, "`roles` must not be empty").help =
            Some("leave `roles` out to run the hook on every node".into());
        return None;
    }
    let mut ok = true;
    let mut roles = Vec::new();
    for (s, span, _) in items {
        let role = match s.as_str() {
            "controller" => Role::Controller,
            "worker" => Role::Worker,
            other => {
                let d = r.error(
                    &span,
                    format!(
                        "invalid role {other:?} in `roles`: expected \"controller\" or \"worker\""
                    ),
                );
                d.help = did_you_mean(&other.to_lowercase(), &["controller", "worker"])
                    .map(|c| format!("did you mean \"{c}\"?"));
                ok = false;
                continue;
            }
        };
        if roles.contains(&role) {
            r.error(&span, format!("role {s:?} is listed twice in `roles`"));
            ok = false;
        } else {
            roles.push(role);
        }
    }
    roles.sort();
    ok.then_some(roles)
}

fn read_commands(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<Vec<String>> {
    let items = r.strings(f, "run")?;
    let mut ok = true;
    for (s, span, _) in &items {
        if s.trim().is_empty() {
            r.error(span, "empty command in `run`");
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|(s, _, _)| s).collect())
}

fn read_upload(block: &Block, hook: &str, r: &mut Reader<'_, '_>) -> Option<Upload> {
    let src = r.scope.src;
    if !check_labels(block, 0, "upload { ... }", src, r.sink) {
        return None;
    }
    let (f, _) = fields(
        &block.body,
        format!("an `upload` block of {hook}"),
        header_span(block),
        UPLOAD_ATTRS,
        &[],
        src,
        r.sink,
    );
    let mut ok = true;
    if f.get("destination").is_none() {
        r.missing(
            &f,
            "destination",
            "the absolute path on the node, e.g. `destination = \"/etc/ssl/etcd/ca.crt\"`",
        );
        ok = false;
    }
    let content = match (f.get("source"), f.get("content")) {
        (Some(a), Some(b)) => {
            let (first, second) = if span_of(a).start < span_of(b).start {
                (a, b)
            } else {
                (b, a)
            };
            let line = src.line_of(span_of(first).start);
            let msg = format!(
                "`{}` conflicts with `{}` (line {line}): set exactly one of them",
                second.key.value(),
                first.key.value()
            );
            r.error(&span_of(&second.key), msg);
            None
        }
        (None, None) => {
            r.missing(
                &f,
                "source",
                "set `source = \"path/relative/to/the/cluster/file\"` or `content = \"...\"`",
            );
            None
        }
        (Some(_), None) => r.line(&f, "source").and_then(|(s, span)| {
            let path = src.dir().join(&s);
            match std::fs::read(&path) {
                Ok(bytes) => Some((bytes, Some(path))),
                Err(e) => {
                    r.error(
                        &span,
                        format!("`source` {s:?}: cannot read {}: {e}", path.display()),
                    )
                    .help = Some("`source` is relative to the cluster file's directory".into());
                    None
                }
            }
        }),
        (None, Some(_)) => r.string(&f, "content").map(|(s, _)| (s.into_bytes(), None)),
    };
    let destination = r.line(&f, "destination").and_then(|(d, span)| {
        let problem = if !d.starts_with('/') {
            Some("it must be an absolute path")
        } else if d.ends_with('/') {
            Some("it names a directory; give the file's path")
        } else if d.split('/').any(|c| c == ".." || c == ".") {
            Some("it must not contain `.` or `..` components")
        } else if d.chars().any(char::is_control) {
            Some("it must not contain control characters")
        } else {
            None
        };
        match problem {
            Some(p) => {
                r.error(&span, format!("invalid `destination` {d:?}: {p}"));
                None
            }
            None => Some(d),
        }
    });
    let mode = match f.get("mode") {
        None => Some(DEFAULT_MODE),
        Some(attr) => read_mode(attr, r),
    };
    let owner = match f.get("owner") {
        None => Some(("root".to_string(), "root".to_string())),
        Some(_) => r.line(&f, "owner").and_then(|(o, span)| {
            let (user, group) = o.split_once(':').unwrap_or((&o, "root"));
            if account_ok(user) && account_ok(group) {
                Some((user.to_string(), group.to_string()))
            } else {
                r.error(&span, format!("invalid `owner` {o:?}: expected \"user\" or \"user:group\""))
                    .help = Some("names are letters, digits, `_`, `-` and `.` (not starting with `-`), or numeric ids".into());
                None
            }
        }),
    };
    let (content, source) = content?;
    let (user, group) = owner?;
    let upload = Upload {
        content,
        source,
        destination: destination?,
        mode: mode?,
        user,
        group,
    };
    ok.then_some(upload)
}

fn account_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `mode` is an octal string. A bare number is refused: HCL reads `0600` as decimal 600, which
/// is not what anyone writing it means.
fn read_mode(attr: &hcl::edit::structure::Attribute, r: &mut Reader<'_, '_>) -> Option<u32> {
    let v = r.eval(attr)?;
    let text = match &v.kind {
        crate::eval::Kind::String(s, _) => s.clone(),
        crate::eval::Kind::Number(_) => {
            r.error(
                &v.span,
                format!(
                    "`mode` must be an octal string like \"0644\", found {}",
                    v.kind.describe()
                ),
            )
            .help = Some("quote it: an unquoted number is read as decimal".into());
            return None;
        }
        _ => {
            r.type_error("mode", "an octal string like \"0644\"", &v);
            return None;
        }
    };
    let digits = text.trim();
    let parsed = (3..=4)
        .contains(&digits.len())
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten();
    match parsed {
        Some(m) if m <= 0o7777 => Some(m),
        _ => {
            r.error(
                &v.span,
                format!("invalid `mode` {text:?}: expected 3 or 4 octal digits like \"0644\""),
            );
            None
        }
    }
}
