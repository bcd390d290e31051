//! Block schemas and typed value readers shared by the `cluster`, `node` and `power` readers:
//! unknown attributes and blocks are reported here, and every getter names the expected type
//! when a value has the wrong one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use hcl::edit::structure::{Attribute, Block, Body};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::eval::{Kind, Scope, Sink, Source, Value, eval, shorten, span_of};
use crate::model::*;

pub(crate) const DEFAULT_INSTALL_DISK: &str = "/dev/sda";

pub(crate) const TOP_BLOCKS: &[&str] = &["variable", "cluster", "node", "hook"];
pub(crate) const VARIABLE_ATTRS: &[&str] = &["default", "description"];

pub(crate) const CLUSTER_ATTRS: &[&str] = &[
    "name",
    "asset_dir",
    "ssh_pubkeys",
    "boot_server_http",
    "os_channel",
    "os_version",
    "download_protocol",
    "cached_install",
    "install_disk",
    "install_to_smallest_disk",
    "wipe_additional_disks",
    "install_pre_reboot_cmds",
    "kernel_args",
    "kernel_console",
    "pxe_command",
    "snippets",
    "installer_snippets",
    "on_controller_change",
    "on_worker_change",
    "netboot_gating",
    "allow_snippet_overrides",
    "state_url",
    "state_password_file",
];

pub(crate) const NODE_ATTRS: &[&str] = &[
    "role",
    "mac",
    "domain",
    "ssh_port",
    "snippets",
    "installer_snippets",
    "install_disk",
    "install_to_smallest_disk",
    "kernel_args",
    "allow_snippet_overrides",
];

pub(crate) const POWER_BLOCK: &[&str] = &["power"];

/// Lokomotive settings and where they went, so migrating users get told rather than guessed at.
pub(crate) fn lokomotive_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "cluster_name" => "roundhouse calls this `name`",
        "controller_names" | "controller_macs" | "controller_domains" | "worker_names"
        | "worker_macs" | "worker_domains" => {
            "declare each machine as a `node \"NAME\" { role = ..., mac = ..., domain = ... }` block"
        }
        "clc_snippets" => "Butane snippets go in `snippets`, in the cluster block or a node block",
        "installer_clc_snippets" => {
            "installer snippets go in `installer_snippets`, in the cluster block or a node block"
        }
        "pxe_commands" => "roundhouse calls this `pxe_command`",
        "ignore_worker_changes" => "use `on_worker_change = \"hold\"` (or \"reprovision\") instead",
        "matchbox_endpoint"
        | "matchbox_ca_path"
        | "matchbox_client_cert_path"
        | "matchbox_client_key_path" => {
            "roundhouse writes the boot server's data itself; it has no gRPC API to configure"
        }
        "matchbox_http_endpoint" => "roundhouse calls this `boot_server_http`",
        "type" | "sensitive" | "validation" | "nullable" => {
            "roundhouse variables are untyped: values are checked where they are used"
        }
        _ => return None,
    })
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The attributes of one block, after unknown ones were reported.
pub(crate) struct Fields<'a> {
    /// How messages name the block: `cluster`, `node "worker-1"`.
    pub what: String,
    /// Span of the block header, where "missing attribute" errors point.
    pub header: Range<usize>,
    pub attrs: BTreeMap<&'a str, &'a Attribute>,
    /// Names suggested for misspelt attributes: a typo already explains why one is "missing".
    pub suggested: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Attribute> {
        self.attrs.get(name).copied()
    }
}

pub(crate) fn header_span(block: &Block) -> Range<usize> {
    let start = span_of(&block.ident).start;
    let end = block
        .labels
        .last()
        .map_or(span_of(&block.ident).end, |l| span_of(l).end);
    start..end
}

/// Reads a block body's attributes, rejecting unknown attributes and blocks; returns the
/// known attributes and the nested blocks named in `blocks`.
pub(crate) fn fields<'a>(
    body: &'a Body,
    what: String,
    header: Range<usize>,
    attrs: &[&'static str],
    blocks: &[&str],
    src: &Source,
    sink: &mut Sink,
) -> (Fields<'a>, Vec<&'a Block>) {
    let mut known = BTreeMap::new();
    let mut nested = Vec::new();
    let mut suggested = Vec::new();
    for attr in body.attributes() {
        let key = attr.key.value().as_str();
        if attrs.contains(&key) {
            known.insert(key, attr);
            continue;
        }
        let span = span_of(&attr.key);
        if blocks.contains(&key) {
            sink.error(src, &span, format!("`{key}` is a block, not an attribute"))
                .help = Some(format!("write `{key} {{ ... }}` without `=`"));
            continue;
        }
        let close = did_you_mean(key, attrs);
        suggested.extend(close);
        let d = sink.error(src, &span, format!("unknown attribute `{key}` in {what}"));
        d.help = lokomotive_hint(key)
            .map(String::from)
            .or_else(|| close.map(|c| format!("did you mean `{c}`?")))
            .or_else(|| Some(format!("{what} takes: {}", attrs.join(", "))));
    }
    for block in body.blocks() {
        let key = block.ident.value().as_str();
        if blocks.contains(&key) {
            nested.push(block);
            continue;
        }
        let span = span_of(&block.ident);
        if attrs.contains(&key) {
            sink.error(src, &span, format!("`{key}` is an attribute, not a block"))
                .help = Some(format!("write `{key} = ...`"));
            continue;
        }
        let d = sink.error(src, &span, format!("unknown block `{key}` in {what}"));
        d.help = did_you_mean(key, blocks)
            .map(|c| format!("did you mean `{c}`?"))
            .or_else(|| {
                Some(if blocks.is_empty() {
                    format!("{what} has no nested blocks")
                } else {
                    format!("{what} takes the blocks: {}", blocks.join(", "))
                })
            });
    }
    (
        Fields {
            what,
            header,
            attrs: known,
            suggested,
        },
        nested,
    )
}

/// Reports labels on a block that takes none, or the wrong number of labels.
pub(crate) fn check_labels(
    block: &Block,
    want: usize,
    usage: &str,
    src: &Source,
    sink: &mut Sink,
) -> bool {
    if block.labels.len() == want {
        return true;
    }
    let ident = block.ident.value().as_str();
    let span = if block.labels.len() > want {
        let first = span_of(&block.labels[want]);
        let last = span_of(block.labels.last().unwrap_or(&block.labels[want]));
        first.start..last.end
    } else {
        span_of(&block.ident)
    };
    let message = match want {
        0 => format!("a `{ident}` block takes no label"),
        1 if block.labels.is_empty() => format!("a `{ident}` block needs a name"),
        _ => format!("a `{ident}` block takes exactly {}", plural(want, "label")),
    };
    sink.error(src, &span, message).help = Some(format!("write `{usage}`"));
    false
}

/// Value readers: each reports a wrong type at the value and names the expected type.
pub(crate) struct Reader<'s, 'v> {
    pub scope: Scope<'s>,
    pub sink: &'v mut Sink,
}

impl Reader<'_, '_> {
    pub fn src(&self) -> &Source {
        self.scope.src
    }

    pub fn eval(&mut self, attr: &Attribute) -> Option<Value> {
        eval(&attr.value, &self.scope, self.sink)
    }

    pub fn type_error(&mut self, name: &str, expected: &str, v: &Value) {
        let src = self.scope.src;
        self.sink.error(
            src,
            &v.span,
            format!("`{name}` must be {expected}, found {}", v.kind.describe()),
        );
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) -> &mut Diagnostic {
        let src = self.scope.src;
        self.sink.error(src, span, message)
    }

    /// A required attribute that is missing.
    pub fn missing(&mut self, f: &Fields<'_>, name: &str, hint: &str) {
        if f.suggested.contains(&name) {
            return;
        }
        let src = self.scope.src;
        let d = self
            .sink
            .error(src, &f.header, format!("{} is missing `{name}`", f.what));
        if !hint.is_empty() {
            d.help = Some(hint.to_string());
        }
    }

    pub fn string(&mut self, f: &Fields<'_>, name: &str) -> Option<(String, Range<usize>)> {
        let attr = f.get(name)?;
        let v = self.eval(attr)?;
        match v.as_string() {
            Some(s) => Some((s, v.span)),
            None => {
                self.type_error(name, "a string", &v);
                None
            }
        }
    }

    /// A non-empty string that fits on one line (it ends up in shell scripts and file names).
    pub fn line(&mut self, f: &Fields<'_>, name: &str) -> Option<(String, Range<usize>)> {
        let (s, span) = self.string(f, name)?;
        if s.trim().is_empty() {
            self.error(&span, format!("`{name}` must not be empty"));
            return None;
        }
        if s.contains(['\n', '\r']) {
            self.error(&span, format!("`{name}` must be a single line"));
            return None;
        }
        Some((s, span))
    }

    pub fn bool(&mut self, f: &Fields<'_>, name: &str) -> Option<bool> {
        let attr = f.get(name)?;
        let v = self.eval(attr)?;
        match &v.kind {
            Kind::Bool(b) => Some(*b),
            Kind::String(s, _) if s == "true" => Some(true),
            Kind::String(s, _) if s == "false" => Some(false),
            _ => {
                self.type_error(name, "a bool (true or false)", &v);
                None
            }
        }
    }

    pub fn uint(&mut self, f: &Fields<'_>, name: &str, min: u64, max: u64) -> Option<u64> {
        let attr = f.get(name)?;
        let v = self.eval(attr)?;
        let n = match &v.kind {
            Kind::Number(n) => Some(*n),
            Kind::String(s, _) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Some(n as u64),
            Some(n) if n.fract() == 0.0 || !n.is_finite() => {
                // Show the number as written: 99999999999999999999 is not 1e20 to its author.
                let written = self.src().slice(&v.span).trim();
                let shown = if matches!(v.kind, Kind::Number(_))
                    && written.trim_start_matches('-').parse::<f64>().is_ok()
                {
                    shorten(written)
                } else {
                    v.kind.describe()
                };
                self.error(
                    &v.span,
                    format!("`{name}` is out of range: {shown} is not between {min} and {max}"),
                );
                None
            }
            Some(_) => {
                self.error(
                    &v.span,
                    format!(
                        "`{name}` must be a whole number from {min} to {max}, found {}",
                        v.kind.describe()
                    ),
                );
                None
            }
            None => {
                self.type_error(name, "a number", &v);
                None
            }
        }
    }

    pub fn choice<T: Copy>(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let (s, span) = self.string(f, name)?;
        if let Some((_, t)) = choices.iter().find(|(c, _)| *c == s) {
            return Some(*t);
        }
        let names: Vec<&str> = choices.iter().map(|(c, _)| *c).collect();
        let quoted: Vec<String> = names.iter().map(|c| format!("\"{c}\"")).collect();
        let help =
            did_you_mean(&s.to_lowercase(), &names).map(|c| format!("did you mean \"{c}\"?"));
        let d = self.error(
            &span,
            format!(
                "invalid `{name}` {s:?}: expected one of {}",
                quoted.join(", ")
            ),
        );
        d.help = help;
        None
    }

    /// A list of strings, each with its span and origin.
    pub fn strings(
        &mut self,
        f: &Fields<'_>,
        name: &str,
    ) -> Option<Vec<(String, Range<usize>, SnippetOrigin)>> {
        let attr = f.get(name)?;
        let v = self.eval(attr)?;
        let Kind::List(items) = &v.kind else {
            self.type_error(name, "a list of strings", &v);
            if matches!(v.kind, Kind::String(..)) {
                let last = self.sink.diags.len() - 1;
                self.sink.diags[last].help = Some("put it in brackets: [\"...\"]".into());
            }
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match &item.kind {
                Kind::String(s, origin) => out.push((s.clone(), item.span.clone(), origin.clone())),
                Kind::Number(_) | Kind::Bool(_) => {
                    let s = item.as_string().unwrap_or_default();
                    let origin = SnippetOrigin::Inline {
                        file: self.src().path.clone(),
                        line: self.src().line_of(item.span.start),
                    };
                    out.push((s, item.span.clone(), origin));
                }
                other => {
                    let msg = format!(
                        "`{name}` must be a list of strings, found an element of type {}",
                        other.type_name()
                    );
                    self.error(&item.span, msg);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub fn snippets(&mut self, f: &Fields<'_>, name: &str) -> Option<Vec<Snippet>> {
        let items = self.strings(f, name)?;
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for (text, span, origin) in items {
            if text.trim().is_empty() {
                self.error(&span, format!("empty snippet in `{name}`")).help = Some(
                    "a snippet is a Butane config (YAML starting with `variant: flatcar`)".into(),
                );
                ok = false;
                continue;
            }
            out.push(Snippet { text, origin });
        }
        ok.then_some(out)
    }

    /// `allow_snippet_overrides`: a list of item names, sorted and without duplicates.
    pub fn snippet_overrides(
        &mut self,
        f: &Fields<'_>,
        name: &str,
    ) -> Option<Vec<SnippetOverride>> {
        let items = self.strings(f, name)?;
        let names: Vec<&str> = SnippetOverride::ALL.iter().map(|o| o.as_str()).collect();
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (s, span, _) in &items {
            match SnippetOverride::ALL.iter().find(|o| o.as_str() == s) {
                Some(o) => out.push(*o),
                None => {
                    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                    let help = did_you_mean(&s.to_lowercase().replace('_', "-"), &names)
                        .map(|c| format!("did you mean \"{c}\"?"));
                    let d = self.error(
                        span,
                        format!(
                            "unknown item {s:?} in `{name}`: expected any of {}",
                            quoted.join(", ")
                        ),
                    );
                    d.help = help;
                    ok = false;
                }
            }
        }
        out.sort();
        out.dedup();
        ok.then_some(out)
    }

    /// Kernel or console arguments: one argument per element, so no whitespace inside.
    pub fn kernel_words(&mut self, f: &Fields<'_>, name: &str) -> Option<Vec<String>> {
        let items = self.strings(f, name)?;
        let mut ok = true;
        for (s, span, _) in &items {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '\'') {
                let msg = format!("invalid kernel argument {s:?} in `{name}`");
                self.error(span, msg).help = Some(
                    "each element is one argument: no spaces, newlines or single quotes; split \"a b\" into \"a\", \"b\"".into(),
                );
                ok = false;
            }
        }
        ok.then(|| items.into_iter().map(|(s, _, _)| s).collect())
    }

    /// `install_disk` XOR `install_to_smallest_disk`; `None` when neither is set.
    pub fn install_target(&mut self, f: &Fields<'_>) -> Option<Option<InstallTarget>> {
        let disk = f.get("install_disk");
        let smallest = f.get("install_to_smallest_disk");
        if let (Some(a), Some(b)) = (disk, smallest) {
            let (first, second) = if span_of(a).start < span_of(b).start {
                (a, b)
            } else {
                (b, a)
            };
            let first_line = self.src().line_of(span_of(first).start);
            let msg = format!(
                "`{}` conflicts with `{}` (line {first_line}): set only one of them",
                second.key.value(),
                first.key.value()
            );
            self.error(&span_of(&second.key), msg);
            return None;
        }
        if disk.is_some() {
            let (d, span) = self.line(f, "install_disk")?;
            if !d.starts_with('/') || d.contains(['\'', '"', ' ']) {
                self.error(&span, format!("`install_disk` must be an absolute device path like \"/dev/sda\", found {d:?}"));
                return None;
            }
            return Some(Some(InstallTarget::Disk(d)));
        }
        if smallest.is_some() {
            let b = self.bool(f, "install_to_smallest_disk")?;
            return Some(Some(if b {
                InstallTarget::SmallestDisk
            } else {
                InstallTarget::Disk(DEFAULT_INSTALL_DISK.into())
            }));
        }
        Some(None)
    }

    pub fn path(&mut self, f: &Fields<'_>, name: &str) -> Option<PathBuf> {
        let (s, _) = self.line(f, name)?;
        Some(self.src().dir().join(s))
    }
}

/// `Some(None)` when the attribute is absent, `None` when it is present but invalid.
pub(crate) fn optional<T>(
    f: &Fields<'_>,
    name: &str,
    read: impl FnOnce(&mut Reader<'_, '_>) -> Option<T>,
    r: &mut Reader<'_, '_>,
) -> Option<Option<T>> {
    if f.get(name).is_none() {
        return Some(None);
    }
    read(r).map(Some)
}
