//! From cluster-file text to a validated [`Cluster`]: parse, resolve variables, read the
//! `cluster` and `node` blocks against their schemas, then check the nodes against each other.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bootdata::Mac;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Attribute, Block, Body};

use crate::LoadOptions;
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::eval::{Kind, Scope, Sink, Source, Value, Vars, eval, span_of};
use crate::model::*;

const TOP_BLOCKS: &[&str] = &["variable", "cluster", "node"];
const VARIABLE_ATTRS: &[&str] = &["default", "description"];

const CLUSTER_ATTRS: &[&str] = &[
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
];

const NODE_ATTRS: &[&str] = &[
    "role",
    "mac",
    "domain",
    "ssh_port",
    "snippets",
    "installer_snippets",
    "install_disk",
    "install_to_smallest_disk",
    "kernel_args",
];

const POWER_BLOCK: &[&str] = &["power"];

const DRIVERS: &[&str] = &["command", "ipmi", "redfish"];
const COMMAND_ATTRS: &[&str] = &["driver", "command", "timeout_secs"];
const IPMI_ATTRS: &[&str] = &[
    "driver",
    "address",
    "port",
    "username",
    "password_env",
    "password_file",
    "cipher_suite",
    "efi",
];
const REDFISH_ATTRS: &[&str] = &[
    "driver",
    "endpoint",
    "system_id",
    "username",
    "password_env",
    "password_file",
    "ca_file",
    "insecure",
    "efi",
];
const POWER_ATTRS: &[&str] = &[
    "driver",
    "command",
    "timeout_secs",
    "address",
    "port",
    "username",
    "password_env",
    "password_file",
    "cipher_suite",
    "efi",
    "endpoint",
    "system_id",
    "ca_file",
    "insecure",
];

/// Lokomotive settings and where they went, so migrating users get told rather than guessed at.
fn lokomotive_hint(name: &str) -> Option<&'static str> {
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

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The attributes of one block, after unknown ones were reported.
struct Fields<'a> {
    /// How messages name the block: `cluster`, `node "worker-1"`.
    what: String,
    /// Span of the block header, where "missing attribute" errors point.
    header: Range<usize>,
    attrs: BTreeMap<&'a str, &'a Attribute>,
    /// Names suggested for misspelt attributes: a typo already explains why one is "missing".
    suggested: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Attribute> {
        self.attrs.get(name).copied()
    }
}

fn header_span(block: &Block) -> Range<usize> {
    let start = span_of(&block.ident).start;
    let end = block
        .labels
        .last()
        .map_or(span_of(&block.ident).end, |l| span_of(l).end);
    start..end
}

/// Reads a block body's attributes, rejecting unknown attributes and blocks; returns the
/// known attributes and the nested blocks named in `blocks`.
fn fields<'a>(
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
fn check_labels(block: &Block, want: usize, usage: &str, src: &Source, sink: &mut Sink) -> bool {
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
struct Reader<'s, 'v> {
    scope: Scope<'s>,
    sink: &'v mut Sink,
}

impl Reader<'_, '_> {
    fn src(&self) -> &Source {
        self.scope.src
    }

    fn eval(&mut self, attr: &Attribute) -> Option<Value> {
        eval(&attr.value, &self.scope, self.sink)
    }

    fn type_error(&mut self, name: &str, expected: &str, v: &Value) {
        let src = self.scope.src;
        self.sink.error(
            src,
            &v.span,
            format!("`{name}` must be {expected}, found {}", v.kind.describe()),
        );
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) -> &mut Diagnostic {
        let src = self.scope.src;
        self.sink.error(src, span, message)
    }

    /// A required attribute that is missing.
    fn missing(&mut self, f: &Fields<'_>, name: &str, hint: &str) {
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

    fn string(&mut self, f: &Fields<'_>, name: &str) -> Option<(String, Range<usize>)> {
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
    fn line(&mut self, f: &Fields<'_>, name: &str) -> Option<(String, Range<usize>)> {
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

    fn bool(&mut self, f: &Fields<'_>, name: &str) -> Option<bool> {
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

    fn uint(&mut self, f: &Fields<'_>, name: &str, min: u64, max: u64) -> Option<u64> {
        let attr = f.get(name)?;
        let v = self.eval(attr)?;
        let n = match &v.kind {
            Kind::Number(n) => Some(*n),
            Kind::String(s, _) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Some(n as u64),
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

    fn choice<T: Copy>(&mut self, f: &Fields<'_>, name: &str, choices: &[(&str, T)]) -> Option<T> {
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
    fn strings(
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

    fn snippets(&mut self, f: &Fields<'_>, name: &str) -> Option<Vec<Snippet>> {
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

    /// Kernel or console arguments: one argument per element, so no whitespace inside.
    fn kernel_words(&mut self, f: &Fields<'_>, name: &str) -> Option<Vec<String>> {
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
    fn install_target(&mut self, f: &Fields<'_>) -> Option<Option<InstallTarget>> {
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

    fn path(&mut self, f: &Fields<'_>, name: &str) -> Option<PathBuf> {
        let (s, _) = self.line(f, name)?;
        Some(self.src().dir().join(s))
    }
}

const DEFAULT_INSTALL_DISK: &str = "/dev/sda";
const DEFAULT_PXE_COMMAND: &str = "echo 'you must (re)provision the node by booting via iPXE from http://MATCHBOX/boot.ipxe'; exit 1";

/// Loads a cluster file from text. The heart of [`crate::load_str`].
pub(crate) fn load(path: &Path, text: &str, options: &LoadOptions) -> Result<Cluster, Diagnostics> {
    let src = Source::new(path.to_path_buf(), text.to_string());
    let mut sink = Sink::default();
    let cluster = match hcl::edit::parser::parse_body(text) {
        Ok(body) => load_body(&body, &src, options, &mut sink),
        Err(e) => {
            sink.diags.push(parse_error(&src, &e));
            None
        }
    };
    match cluster {
        Some(c) if sink.diags.is_empty() => Ok(c),
        _ => {
            let mut diags = sink.diags;
            if diags.is_empty() {
                // Every failure path reports; this is a guard against a silent `None`.
                diags.push(Diagnostic::error_in_file(path, "invalid cluster file"));
            }
            // Problems with inputs (var files, --var, environment) first, then the cluster file
            // top to bottom.
            diags.sort_by(|a, b| {
                let key = |d: &Diagnostic| (d.file == src.path, d.file.clone(), d.line, d.column);
                key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
            });
            diags.dedup();
            Err(Diagnostics(diags))
        }
    }
}

fn parse_error(src: &Source, e: &hcl::edit::parser::Error) -> Diagnostic {
    let loc = e.location();
    let offset = crate::diagnostic::offset_of(&src.text, loc.line(), loc.column());
    let rest = src.text.get(offset..).unwrap_or("");
    if e.message().contains("redefined attribute") {
        let key_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        return Diagnostic::error_at(
            &src.path,
            &src.text,
            offset,
            key_len,
            format!("`{key}` is set more than once in this block"),
        )
        .with_help("remove one of them");
    }
    let len = rest.chars().next().map_or(1, char::len_utf8);
    let mut d = Diagnostic::error_at(
        &src.path,
        &src.text,
        offset,
        len,
        format!("syntax error: {}", e.message()),
    );
    let previous_line = src
        .text
        .lines()
        .nth(d.line.saturating_sub(2))
        .filter(|_| d.line > 1)
        .unwrap_or("");
    d.help = syntax_hint(e.message(), &d.source_line, previous_line, d.line, rest);
    d
}

fn odd_quotes(line: &str) -> bool {
    line.char_indices()
        .filter(|&(i, c)| c == '"' && !line[..i].ends_with('\\'))
        .count()
        % 2
        == 1
}

/// A guess at the cause of a parse error, for the mistakes people make most.
fn syntax_hint(
    message: &str,
    line: &str,
    previous_line: &str,
    line_no: usize,
    rest: &str,
) -> Option<String> {
    Some(if message.contains("heredoc end delimiter") {
        "a heredoc ends with a line holding only its delimiter, e.g. `EOT`".into()
    } else if odd_quotes(line) {
        "is a closing `\"` missing on this line?".into()
    } else if odd_quotes(previous_line) {
        format!("is a closing `\"` missing on line {}?", line_no - 1)
    } else if rest.starts_with(',') {
        "attributes are separated by newlines, not commas".into()
    } else if rest.trim().is_empty() {
        "the file ends inside a block: is a closing `}` missing?".into()
    } else if rest.starts_with(':') || rest.starts_with('.') {
        "text values need double quotes, e.g. `mac = \"52:54:00:a1:00:01\"`".into()
    } else if message.ends_with("expected `{`") && !line.contains('=') {
        "an attribute needs `=` between its name and value".into()
    } else {
        return None;
    })
}

fn load_body(body: &Body, src: &Source, options: &LoadOptions, sink: &mut Sink) -> Option<Cluster> {
    for attr in body.attributes() {
        let key = attr.key.value().as_str();
        let d = sink.error(
            src,
            &span_of(&attr.key),
            format!("unexpected attribute `{key}` at the top level"),
        );
        d.help =
            Some(lokomotive_hint(key).map(String::from).unwrap_or_else(|| {
                match did_you_mean(key, CLUSTER_ATTRS) {
                    Some(c) if c == key => {
                        format!("`{key}` is a cluster setting: move it inside `cluster {{ ... }}`")
                    }
                    Some(c) => format!(
                        "cluster settings go inside `cluster {{ ... }}` (did you mean `{c}` there?)"
                    ),
                    None => {
                        "the top level holds only `variable`, `cluster` and `node` blocks".into()
                    }
                }
            }));
    }
    let mut variables = Vec::new();
    let mut clusters = Vec::new();
    let mut nodes = Vec::new();
    for block in body.blocks() {
        match block.ident.value().as_str() {
            "variable" => variables.push(block),
            "cluster" => clusters.push(block),
            "node" => nodes.push(block),
            other => {
                let d = sink.error(
                    src,
                    &span_of(&block.ident),
                    format!("unknown block `{other}`"),
                );
                d.help = Some(match did_you_mean(other, TOP_BLOCKS) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => {
                        "the top level holds only `variable`, `cluster` and `node` blocks".into()
                    }
                });
            }
        }
    }

    let vars = resolve_variables(&variables, src, options, sink);
    let scope = || Scope {
        src,
        vars: Some(&vars),
    };

    let cluster_block = match clusters.as_slice() {
        [] => {
            sink.error_in_file(&src.path, "no `cluster` block")
                .help = Some("add `cluster { name = ..., asset_dir = ..., ssh_pubkeys = [...], boot_server_http = ... }`".into());
            None
        }
        [first, rest @ ..] => {
            for extra in rest {
                let line = src.line_of(span_of(&first.ident).start);
                sink.error(
                    src,
                    &span_of(&extra.ident),
                    format!("a second `cluster` block (the first is on line {line})"),
                )
                .help = Some("a cluster file describes exactly one cluster".into());
            }
            Some(*first)
        }
    };
    let cluster = cluster_block.map(|b| {
        let mut r = Reader {
            scope: scope(),
            sink: &mut *sink,
        };
        read_cluster(b, &mut r)
    });

    if nodes.is_empty() {
        let msg = "no `node` blocks: a cluster needs at least one machine";
        match cluster_block {
            Some(b) => sink.error(src, &header_span(b), msg),
            None => sink.error_in_file(&src.path, msg),
        }
        .help =
            Some("add `node \"NAME\" { role = \"controller\", mac = ..., domain = ... }`".into());
    }

    let mut read_nodes = Vec::new();
    for block in &nodes {
        let mut r = Reader {
            scope: scope(),
            sink: &mut *sink,
        };
        let cluster_power = match &cluster {
            Some(c) => c.power.as_ref().map(Option::as_ref),
            None => Ok(None),
        };
        if let Some(n) = read_node(block, cluster_power, &mut r) {
            read_nodes.push(n);
        }
    }
    check_unique(&read_nodes, src, sink);

    let mut cluster = cluster?.cluster?;
    cluster.nodes = read_nodes.into_iter().filter_map(|n| n.node).collect();
    if cluster.nodes.len() != nodes.len() {
        return None;
    }
    Some(cluster)
}

/// Declared variables resolved: default, then environment, var files and `--var`, later wins.
fn resolve_variables(
    blocks: &[&Block],
    src: &Source,
    options: &LoadOptions,
    sink: &mut Sink,
) -> Vars {
    struct Decl<'a> {
        block: &'a Block,
        default: Option<Value>,
        default_failed: bool,
    }
    let mut decls: BTreeMap<String, Decl<'_>> = BTreeMap::new();
    let mut vars = Vars::default();
    for block in blocks {
        if !check_labels(block, 1, "variable \"NAME\" { default = ... }", src, sink) {
            continue;
        }
        let name = block.labels[0].as_str().to_string();
        let label_span = span_of(&block.labels[0]);
        if !is_identifier(&name) {
            sink.error(src, &label_span, format!("invalid variable name {name:?}"))
                .help = Some(
                "variable names are letters, digits, `_` and `-`, starting with a letter".into(),
            );
            vars.failed.push(name);
            continue;
        }
        if let Some(prev) = decls.get(&name) {
            let line = src.line_of(span_of(&prev.block.ident).start);
            sink.error(
                src,
                &label_span,
                format!("variable `{name}` is declared twice (first on line {line})"),
            );
            continue;
        }
        let (f, _) = fields(
            &block.body,
            format!("variable \"{name}\""),
            header_span(block),
            VARIABLE_ATTRS,
            &[],
            src,
            sink,
        );
        let mut r = Reader {
            scope: Scope { src, vars: None },
            sink: &mut *sink,
        };
        r.string(&f, "description");
        let (default, default_failed) = match f.get("default") {
            Some(attr) => {
                let v = r.eval(attr);
                let failed = v.is_none();
                (v, failed)
            }
            None => (None, false),
        };
        decls.insert(
            name,
            Decl {
                block,
                default,
                default_failed,
            },
        );
    }

    let declared: Vec<&str> = decls.keys().map(String::as_str).collect();
    let mut overrides: BTreeMap<String, Value> = BTreeMap::new();

    // Environment first: it is the weakest override, as TF_VAR_ is in Terraform.
    let env: Vec<(String, String)> = match &options.env {
        Some(env) => env.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    for (name, decl) in &decls {
        let exact = format!("ROUNDHOUSE_VAR_{name}");
        let upper = format!("ROUNDHOUSE_VAR_{}", name.to_uppercase());
        let found = env
            .iter()
            .find(|(k, _)| *k == exact)
            .or_else(|| env.iter().find(|(k, _)| *k == upper));
        if let Some((key, text)) = found {
            let origin = format!("<environment {key}>");
            if let Some(v) = cli_value(text, decl.default.as_ref(), &origin, sink) {
                overrides.insert(name.clone(), v);
            }
        }
    }

    for file in &options.var_files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                sink.error_in_file(file, format!("reading var file: {e}"));
                continue;
            }
        };
        let vsrc = Source::new(file.clone(), text);
        let body = match hcl::edit::parser::parse_body(&vsrc.text) {
            Ok(b) => b,
            Err(e) => {
                sink.diags.push(parse_error(&vsrc, &e));
                continue;
            }
        };
        for block in body.blocks() {
            sink.error(
                &vsrc,
                &span_of(&block.ident),
                "var files hold only `name = value` lines, not blocks",
            );
        }
        for attr in body.attributes() {
            let name = attr.key.value().to_string();
            if !decls.contains_key(&name) {
                let d = sink.error(
                    &vsrc,
                    &span_of(&attr.key),
                    format!("var file sets `{name}`, which the cluster file does not declare"),
                );
                d.help = did_you_mean(&name, &declared).map(|c| format!("did you mean `{c}`?"));
                continue;
            }
            let scope = Scope {
                src: &vsrc,
                vars: None,
            };
            if let Some(v) = eval(&attr.value, &scope, sink) {
                overrides.insert(name, v);
            }
        }
    }

    for (name, text) in &options.vars {
        let Some(decl) = decls.get(name) else {
            let d = sink.error_in_file(
                &src.path,
                format!("--var sets `{name}`, which the cluster file does not declare"),
            );
            d.help = did_you_mean(name, &declared).map(|c| format!("did you mean `{c}`?"));
            continue;
        };
        let origin = format!("<--var {name}>");
        if let Some(v) = cli_value(text, decl.default.as_ref(), &origin, sink) {
            overrides.insert(name.clone(), v);
        }
    }

    for (name, decl) in decls {
        match overrides.remove(&name).or(decl.default) {
            Some(v) => {
                vars.values.insert(name, v);
            }
            None => {
                if !decl.default_failed {
                    let d = sink.error(
                        src,
                        &header_span(decl.block),
                        format!("variable `{name}` has no value"),
                    );
                    d.help = Some(format!(
                        "give it a `default`, or pass --var {name}=VALUE, a --var-file, or set ROUNDHOUSE_VAR_{name}"
                    ));
                }
                vars.failed.push(name);
            }
        }
    }
    vars
}

/// A value given on the command line or in the environment. Like Terraform, it is a plain
/// string, except for a variable whose default is a bool, number, list or object: then it is
/// an HCL expression (`true`, `3`, `["a", "b"]`).
fn cli_value(text: &str, default: Option<&Value>, origin: &str, sink: &mut Sink) -> Option<Value> {
    let vsrc = Source::new(PathBuf::from(origin), text.to_string());
    let typed = matches!(
        default.map(|d| &d.kind),
        Some(Kind::Bool(_) | Kind::Number(_) | Kind::List(_) | Kind::Object(_))
    );
    if !typed {
        return Some(Value {
            kind: Kind::String(
                text.to_string(),
                SnippetOrigin::Inline {
                    file: vsrc.path.clone(),
                    line: 1,
                },
            ),
            span: 0..text.len(),
        });
    }
    let expr: Expression = match hcl::edit::parser::parse_expr(text) {
        Ok(e) => e,
        Err(e) => {
            sink.diags.push(parse_error(&vsrc, &e));
            return None;
        }
    };
    eval(
        &expr,
        &Scope {
            src: &vsrc,
            vars: None,
        },
        sink,
    )
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The cluster block as read, plus what nodes inherit but the model keeps per node.
struct ClusterPart<'a> {
    /// `None` when a setting was invalid (already reported).
    cluster: Option<Cluster>,
    /// Cluster-wide power defaults: `Err` when the block itself was invalid (already reported),
    /// so nodes don't pile on with follow-up errors.
    power: Result<Option<PowerFields<'a>>, ()>,
}

fn read_cluster<'a>(block: &'a Block, r: &mut Reader<'_, '_>) -> ClusterPart<'a> {
    let src = r.scope.src;
    check_labels(block, 0, "cluster { ... }", src, r.sink);
    let (f, blocks) = fields(
        &block.body,
        "cluster".into(),
        header_span(block),
        CLUSTER_ATTRS,
        POWER_BLOCK,
        src,
        r.sink,
    );
    for (name, hint) in [
        ("name", "the cluster's name, e.g. `name = \"mercury\"`"),
        (
            "asset_dir",
            "where roundhouse keeps state, e.g. `asset_dir = \"assets\"`",
        ),
        (
            "ssh_pubkeys",
            "keys for user `core`, e.g. `ssh_pubkeys = [file(\"id_ed25519.pub\")]`",
        ),
        (
            "boot_server_http",
            "the boot server's URL as machines reach it, e.g. `boot_server_http = \"http://10.0.0.2:8080\"`",
        ),
    ] {
        if f.get(name).is_none() {
            r.missing(&f, name, hint);
        }
    }

    let name = r.line(&f, "name").map(|(s, _)| s);
    let asset_dir = r.path(&f, "asset_dir");
    let ssh_pubkeys = read_pubkeys(&f, r);
    let boot_server_http = r.line(&f, "boot_server_http").and_then(|(s, span)| {
        check_http_url(&s, "boot_server_http", &span, r)
            .map(|s| s.trim_end_matches('/').to_string())
    });
    // A bad optional setting has been reported; the default only keeps reading going so that
    // every problem in the file is found in one run.
    let channel = r
        .choice(
            &f,
            "os_channel",
            &[
                ("stable", Channel::Stable),
                ("beta", Channel::Beta),
                ("alpha", Channel::Alpha),
                ("lts", Channel::Lts),
            ],
        )
        .unwrap_or(Channel::Stable);
    let version = r
        .line(&f, "os_version")
        .and_then(|(v, span)| {
            let numeric = v.split('.').count() == 3
                && v.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if v == "current" || numeric {
                Some(v)
            } else {
                r.error(
                    &span,
                    format!("invalid `os_version` {v:?}: expected \"current\" or a Flatcar version like \"3815.2.0\""),
                );
                None
            }
        })
        .unwrap_or_else(|| "current".into());
    let download_protocol = r
        .choice(
            &f,
            "download_protocol",
            &[("http", Protocol::Http), ("https", Protocol::Https)],
        )
        .unwrap_or(Protocol::Https);
    let cached_install = r.bool(&f, "cached_install").unwrap_or(false);
    let target = r.install_target(&f);
    let wipe = r.bool(&f, "wipe_additional_disks").unwrap_or(false);
    let pre_reboot = r
        .string(&f, "install_pre_reboot_cmds")
        .map_or_else(|| "true".into(), |(s, _)| s);
    let kernel_args = r.kernel_words(&f, "kernel_args").unwrap_or_default();
    let kernel_console = r
        .kernel_words(&f, "kernel_console")
        .unwrap_or_else(|| vec!["console=tty0".into(), "console=ttyS0".into()]);
    let pxe_command = r.string(&f, "pxe_command").and_then(|(s, span)| {
        if s.trim().is_empty() {
            r.error(&span, "`pxe_command` must not be empty").help = Some(
                "leave it out to get the default, which asks you to PXE-boot the machine".into(),
            );
            None
        } else {
            Some(s)
        }
    });
    let snippets = r.snippets(&f, "snippets").unwrap_or_default();
    let installer_snippets = r.snippets(&f, "installer_snippets").unwrap_or_default();
    let policies = [
        ("hold", ChangePolicy::Hold),
        ("reprovision", ChangePolicy::Reprovision),
    ];
    let controllers = r
        .choice(&f, "on_controller_change", &policies)
        .unwrap_or(ChangePolicy::Hold);
    let workers = r
        .choice(&f, "on_worker_change", &policies)
        .unwrap_or(ChangePolicy::Reprovision);
    let netboot_gating = r.bool(&f, "netboot_gating").unwrap_or(true);

    let mut power = Ok(None);
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            let line = src.line_of(span_of(&blocks[0].ident).start);
            r.error(
                &span_of(&b.ident),
                format!("a second `power` block in cluster (the first is on line {line})"),
            );
            power = Err(());
            continue;
        }
        power = power_fields(b, "cluster", r).map(Some).ok_or(());
    }

    let cluster = (|| {
        let boot_server_http = boot_server_http?;
        Some(Cluster {
            source: src.path.clone(),
            name: name?,
            asset_dir: asset_dir?,
            ssh_pubkeys: ssh_pubkeys?,
            pxe_command: pxe_command.unwrap_or_else(|| {
                DEFAULT_PXE_COMMAND.replace("http://MATCHBOX", &boot_server_http)
            }),
            boot_server_http,
            os: Os {
                channel,
                version,
                download_protocol,
                cached_install,
            },
            install: Install {
                target: target?.unwrap_or(InstallTarget::Disk(DEFAULT_INSTALL_DISK.into())),
                wipe_additional_disks: wipe,
                pre_reboot_cmds: pre_reboot,
            },
            kernel_args,
            kernel_console,
            snippets,
            installer_snippets,
            policy: Policy {
                controllers,
                workers,
            },
            netboot_gating,
            nodes: Vec::new(),
        })
    })();
    ClusterPart { cluster, power }
}

fn check_http_url(
    s: &str,
    name: &str,
    span: &Range<usize>,
    r: &mut Reader<'_, '_>,
) -> Option<String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    let bad_char = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "'\"`\\<>{}|^".contains(*c));
    match (rest, bad_char) {
        (None, _) => {
            r.error(
                span,
                format!("`{name}` must be an http:// or https:// URL, found {s:?}"),
            );
            None
        }
        (Some(_), Some(c)) => {
            r.error(
                span,
                format!("`{name}` contains {c:?}, which is not allowed in a URL"),
            );
            None
        }
        (Some(rest), None) if rest.is_empty() || rest.starts_with('/') => {
            r.error(span, format!("`{name}` has no host: {s:?}"));
            None
        }
        _ => Some(s.to_string()),
    }
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
];

/// Why `key` is not an OpenSSH public key line (`TYPE BASE64 [COMMENT]`), if it isn't.
pub(crate) fn pubkey_problem(key: &str) -> Option<String> {
    let key = key.trim();
    if key.contains('\n') {
        return Some("one key per list element: this one spans several lines".into());
    }
    let mut words = key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Some(
            "expected `TYPE BASE64 [COMMENT]`, like the contents of ~/.ssh/id_ed25519.pub".into(),
        );
    };
    if !KEY_TYPES.contains(&kind) {
        if kind.contains("PRIVATE") || kind.starts_with("-----") {
            return Some("this is a private key; use the public key (the .pub file)".into());
        }
        return Some(format!("unknown key type `{kind}`"));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some("the key data is not valid base64".into());
    };
    // The blob is a sequence of SSH strings (u32 length, then bytes), starting with its own
    // type name. Certificates carry fixed-size fields too, so only their type name is checked.
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        match rest.get(4..4 + len) {
            Some(field) => {
                fields.push(field);
                rest = &rest[4 + len..];
            }
            None => break,
        }
        if kind.contains("-cert-") {
            break;
        }
    }
    if fields.first() != Some(&kind.as_bytes()) {
        return Some(format!("the key data does not hold a `{kind}` key"));
    }
    let complete = if kind.contains("-cert-") {
        true
    } else if kind == "ssh-ed25519" {
        rest.is_empty() && fields.len() == 2 && fields[1].len() == 32
    } else {
        rest.is_empty() && fields.len() >= 2
    };
    if !complete {
        return Some(
            "the key data is truncated or damaged; copy the whole line of the .pub file".into(),
        );
    }
    None
}

fn read_pubkeys(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<Vec<String>> {
    let items = r.strings(f, "ssh_pubkeys")?;
    if items.is_empty() {
        let span = span_of(&f.get("ssh_pubkeys")?.value);
        r.error(&span, "`ssh_pubkeys` must not be empty").help =
            Some("without a key nobody can log in to the installer or the nodes".into());
        return None;
    }
    let mut ok = true;
    for (key, span, _) in &items {
        if let Some(problem) = pubkey_problem(key) {
            let shown: String = key.chars().take(30).collect();
            let ellipsis = if key.chars().count() > 30 { "…" } else { "" };
            r.error(span, format!("invalid SSH public key {shown:?}{ellipsis}"))
                .help = Some(problem);
            ok = false;
        }
    }
    ok.then(|| {
        items
            .into_iter()
            .map(|(k, _, _)| k.trim().to_string())
            .collect()
    })
}

/// Power settings as written in one block: the raw attributes, evaluated later per node.
struct PowerFields<'a> {
    block: &'a Block,
    attrs: BTreeMap<&'a str, &'a Attribute>,
}

fn power_fields<'a>(
    block: &'a Block,
    owner: &str,
    r: &mut Reader<'_, '_>,
) -> Option<PowerFields<'a>> {
    let src = r.scope.src;
    let labels_ok = check_labels(block, 0, "power { driver = ... }", src, r.sink);
    let before = r.sink.diags.len();
    let (f, _) = fields(
        &block.body,
        format!("{owner} power"),
        header_span(block),
        POWER_ATTRS,
        &[],
        src,
        r.sink,
    );
    (labels_ok && r.sink.diags.len() == before).then_some(PowerFields {
        block,
        attrs: f.attrs,
    })
}

fn read_power(
    node_name: &str,
    node_power: Option<&PowerFields<'_>>,
    cluster_power: Option<&PowerFields<'_>>,
    r: &mut Reader<'_, '_>,
) -> Option<Option<Power>> {
    // A node's block refines the cluster's defaults, unless it picks another driver: then the
    // defaults (written for a different driver) don't apply.
    // Errors in `driver` are reported when it is read below; here it only steers the merge.
    let scope = &r.scope;
    let driver_text = |p: &PowerFields<'_>| -> Option<String> {
        let attr = p.attrs.get("driver")?;
        eval(&attr.value, scope, &mut Sink::default())?.as_string()
    };
    let mut attrs: BTreeMap<&str, &Attribute> = BTreeMap::new();
    let header = match (node_power, cluster_power) {
        (None, None) => return Some(None),
        (Some(n), Some(c)) => {
            let node_driver = driver_text(n);
            if node_driver.is_none() || node_driver == driver_text(c) {
                attrs.extend(c.attrs.iter().map(|(k, v)| (*k, *v)));
            }
            attrs.extend(n.attrs.iter().map(|(k, v)| (*k, *v)));
            header_span(n.block)
        }
        (Some(p), None) | (None, Some(p)) => {
            attrs.extend(p.attrs.iter().map(|(k, v)| (*k, *v)));
            header_span(p.block)
        }
    };
    let f = Fields {
        what: format!("power settings of node \"{node_name}\""),
        header,
        attrs,
        suggested: Vec::new(),
    };
    let Some(driver_attr) = f.get("driver") else {
        r.missing(&f, "driver", "one of \"command\", \"ipmi\", \"redfish\"");
        return None;
    };
    let driver = r.choice(
        &f,
        "driver",
        &[("command", 0u8), ("ipmi", 1), ("redfish", 2)],
    )?;
    let allowed = [COMMAND_ATTRS, IPMI_ATTRS, REDFISH_ATTRS][driver as usize];
    let mut ok = true;
    for (key, attr) in &f.attrs {
        if !allowed.contains(key) {
            let msg = format!(
                "`{key}` does not apply to the {} power driver",
                DRIVERS[driver as usize]
            );
            let line = r.src().line_of(span_of(driver_attr).start);
            r.error(&span_of(&attr.key), msg).help = Some(format!(
                "the driver is chosen on line {line}; {} takes: {}",
                DRIVERS[driver as usize],
                allowed[1..].join(", ")
            ));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let require = |r: &mut Reader<'_, '_>, name: &str| -> bool {
        if f.get(name).is_none() {
            r.missing(&f, name, "");
            false
        } else {
            true
        }
    };
    let power = match driver {
        0 => {
            if !require(r, "command") {
                return None;
            }
            let command = r.string(&f, "command").and_then(|(s, span)| {
                if s.trim().is_empty() {
                    r.error(&span, "`command` must not be empty");
                    None
                } else {
                    Some(s)
                }
            });
            let timeout = if f.get("timeout_secs").is_some() {
                Some(r.uint(&f, "timeout_secs", 1, 86_400)?)
            } else {
                None
            };
            Power::Command {
                command: command?,
                timeout_secs: timeout.unwrap_or(600),
            }
        }
        1 => {
            let present = [require(r, "address"), require(r, "username")];
            let password = read_secret(&f, r);
            let address = r.line(&f, "address").map(|(s, _)| s);
            let username = r.line(&f, "username").map(|(s, _)| s);
            let port = optional(&f, "port", |r| r.uint(&f, "port", 1, 65_535), r)?.unwrap_or(623);
            let cipher_suite =
                optional(&f, "cipher_suite", |r| r.uint(&f, "cipher_suite", 0, 17), r)?
                    .unwrap_or(3);
            let efi = optional(&f, "efi", |r| r.bool(&f, "efi"), r)?.unwrap_or(true);
            if present.contains(&false) {
                return None;
            }
            Power::Ipmi {
                address: address?,
                port: port as u16,
                username: username?,
                password: password?,
                cipher_suite: cipher_suite as u8,
                efi,
            }
        }
        _ => {
            let present = [require(r, "endpoint"), require(r, "username")];
            let password = read_secret(&f, r);
            let endpoint = r
                .line(&f, "endpoint")
                .and_then(|(s, span)| check_http_url(&s, "endpoint", &span, r))
                .map(|s| s.trim_end_matches('/').to_string());
            let username = r.line(&f, "username").map(|(s, _)| s);
            let system_id = optional(
                &f,
                "system_id",
                |r| r.line(&f, "system_id").map(|(s, _)| s),
                r,
            )?;
            let ca_file = optional(&f, "ca_file", |r| r.path(&f, "ca_file"), r)?;
            let insecure =
                optional(&f, "insecure", |r| r.bool(&f, "insecure"), r)?.unwrap_or(false);
            let efi = optional(&f, "efi", |r| r.bool(&f, "efi"), r)?.unwrap_or(true);
            if present.contains(&false) {
                return None;
            }
            Power::Redfish {
                endpoint: endpoint?,
                system_id,
                username: username?,
                password: password?,
                ca_file,
                insecure,
                efi,
            }
        }
    };
    Some(Some(power))
}

/// `Some(None)` when the attribute is absent, `None` when it is present but invalid.
fn optional<T>(
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

fn read_secret(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<Secret> {
    match (f.get("password_env"), f.get("password_file")) {
        (Some(a), Some(b)) => {
            let (first, second) = if span_of(a).start < span_of(b).start {
                (a, b)
            } else {
                (b, a)
            };
            let line = r.src().line_of(span_of(first).start);
            let msg = format!(
                "`{}` conflicts with `{}` (line {line}): set only one of them",
                second.key.value(),
                first.key.value()
            );
            r.error(&span_of(&second.key), msg);
            None
        }
        (Some(_), None) => {
            let (name, span) = r.line(f, "password_env")?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                r.error(
                    &span,
                    format!("`password_env` must name an environment variable, found {name:?}"),
                )
                .help = Some("the password itself never goes in the cluster file".into());
                return None;
            }
            Some(Secret::Env(name))
        }
        (None, Some(_)) => r.path(f, "password_file").map(Secret::File),
        (None, None) => {
            r.missing(f, "password_env", "set `password_env` (an environment variable holding the password) or `password_file`");
            None
        }
    }
}

/// A node as read, with what uniqueness checks need. The keys are kept even when another
/// setting of the node is invalid, so that a duplicate MAC is reported in the same run.
struct ReadNode {
    /// `None` when some setting was invalid (already reported).
    node: Option<Node>,
    name: String,
    name_span: Range<usize>,
    mac: Option<(Mac, Range<usize>)>,
    domain: Option<(String, Range<usize>)>,
}

fn read_node(
    block: &Block,
    cluster_power: Result<Option<&PowerFields<'_>>, &()>,
    r: &mut Reader<'_, '_>,
) -> Option<ReadNode> {
    let src = r.scope.src;
    if !check_labels(block, 1, "node \"NAME\" { ... }", src, r.sink) {
        return None;
    }
    let name = block.labels[0].as_str().to_string();
    let name_span = span_of(&block.labels[0]);
    let mut ok = true;
    if let Some(problem) = hostname_label_problem(&name) {
        r.error(&name_span, format!("invalid node name {name:?}: {problem}"))
            .help = Some("node names become hostnames and file names: lowercase letters, digits and `-`, at most 63 characters, not starting or ending with `-`".into());
        ok = false;
    }
    let (f, blocks) = fields(
        &block.body,
        format!("node \"{name}\""),
        header_span(block),
        NODE_ATTRS,
        POWER_BLOCK,
        src,
        r.sink,
    );
    for req in ["role", "mac", "domain"] {
        if f.get(req).is_none() {
            let hint = match req {
                "role" => "`role = \"controller\"` or `role = \"worker\"`",
                "mac" => {
                    "the MAC address the machine PXE-boots with, e.g. `mac = \"52:54:00:a1:00:01\"`"
                }
                _ => "the DNS name or IP address SSH reaches the machine at",
            };
            r.missing(&f, req, hint);
            ok = false;
        }
    }
    let role = r.choice(
        &f,
        "role",
        &[("controller", Role::Controller), ("worker", Role::Worker)],
    );
    let mac = r.line(&f, "mac").and_then(|(text, span)| match Mac::parse(text.trim()) {
        Ok(mac) => Some((mac, span)),
        Err(_) => {
            r.error(&span, format!("invalid MAC address {text:?}"))
                .help = Some("write six hex pairs like \"52:54:00:a1:00:01\" (`-` separators and Cisco's \"5254.00a1.0001\" work too)".into());
            None
        }
    });
    let domain = r.line(&f, "domain").and_then(|(d, span)| {
        let d = d.trim().to_string();
        if d.parse::<IpAddr>().is_ok() || is_dns_name(&d) {
            Some((d, span))
        } else {
            r.error(
                &span,
                format!("invalid `domain` {d:?}: expected a DNS name or an IP address"),
            );
            None
        }
    });
    let ssh_port = optional(&f, "ssh_port", |r| r.uint(&f, "ssh_port", 1, 65_535), r);
    let snippets = optional(&f, "snippets", |r| r.snippets(&f, "snippets"), r);
    let installer_snippets = optional(
        &f,
        "installer_snippets",
        |r| r.snippets(&f, "installer_snippets"),
        r,
    );
    let install_target = r.install_target(&f);
    let kernel_args = optional(&f, "kernel_args", |r| r.kernel_words(&f, "kernel_args"), r);

    let mut node_power = None;
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            let line = src.line_of(span_of(&blocks[0].ident).start);
            r.error(
                &span_of(&b.ident),
                format!("a second `power` block in node \"{name}\" (the first is on line {line})"),
            );
            ok = false;
            continue;
        }
        match power_fields(b, &format!("node \"{name}\""), r) {
            Some(p) => node_power = Some(p),
            None => ok = false,
        }
    }
    let power = match cluster_power {
        Ok(cluster_power) if ok => read_power(&name, node_power.as_ref(), cluster_power, r),
        _ => None,
    };

    let node = (|| {
        Some(Node {
            name: name.clone(),
            mac: mac.as_ref()?.0,
            domain: domain.as_ref()?.0.clone(),
            ssh_port: ssh_port?.unwrap_or(22) as u16,
            role: role?,
            snippets: snippets?.unwrap_or_default(),
            installer_snippets: installer_snippets?.unwrap_or_default(),
            install_target: install_target?,
            kernel_args: kernel_args?,
            power: power?,
        })
    })();
    Some(ReadNode {
        node: node.filter(|_| ok),
        name,
        name_span,
        mac,
        domain,
    })
}

/// Why `name` is not a lowercase RFC 1123 label, if it isn't.
pub(crate) fn hostname_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("it has uppercase letters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("only lowercase letters, digits and `-` are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it starts or ends with `-`");
    }
    None
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_unique(nodes: &[ReadNode], src: &Source, sink: &mut Sink) {
    let mut names: HashMap<&str, &ReadNode> = HashMap::new();
    let mut macs: HashMap<Mac, (&ReadNode, &Range<usize>)> = HashMap::new();
    let mut domains: HashMap<String, (&ReadNode, &Range<usize>)> = HashMap::new();
    for n in nodes {
        if let Some(first) = names.get(n.name.as_str()) {
            let line = src.line_of(first.name_span.start);
            sink.error(
                src,
                &n.name_span,
                format!(
                    "node name {:?} is used twice (first on line {line})",
                    n.name
                ),
            );
        } else {
            names.insert(&n.name, n);
        }
        if let Some((mac, span)) = &n.mac {
            if let Some((first, first_span)) = macs.get(mac) {
                let line = src.line_of(first_span.start);
                sink.error(
                    src,
                    span,
                    format!(
                        "MAC {mac} of node \"{}\" is already used by node \"{}\" (line {line})",
                        n.name, first.name
                    ),
                );
            } else {
                macs.insert(*mac, (n, span));
            }
        }
        if let Some((domain, span)) = &n.domain {
            let key = domain.trim_end_matches('.').to_ascii_lowercase();
            if let Some((first, first_span)) = domains.get(&key) {
                let line = src.line_of(first_span.start);
                sink.error(
                    src,
                    span,
                    format!(
                        "domain {domain:?} of node \"{}\" is already used by node \"{}\" (line {line})",
                        n.name, first.name
                    ),
                );
            } else {
                domains.insert(key, (n, span));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkeys() {
        let good =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@x";
        assert_eq!(pubkey_problem(good), None);
        assert_eq!(pubkey_problem(&good.replace("op@x", "")), None);
        assert!(pubkey_problem("ssh-ed25519").is_some());
        assert!(
            pubkey_problem(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml"
            )
            .is_some()
        );
        assert!(pubkey_problem("ssh-ed25519 not*base64").is_some());
        // The type name alone, with the key bytes cut off.
        assert!(
            pubkey_problem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST")
                .unwrap()
                .contains("truncated")
        );
        // Generated with ssh-keygen for this test.
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDZ7zp9oswLjUGSkJe2puQ+klEhJrAYYX3n1DyMPowEvezgztFrS5asACDCXSmqXyoZkeIKWlNradHMTGAbOyPNXZ/lEVCEX9jVq0h5a4jfjHgarT7CxkeYsV7J99NawVS766Y6C2/JiLZ6jkrVsSKbXlL1FzUelC95d+yw2hkpgw== a@b";
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMgN+FidoimNzD8jvaViGGVRzWVxZsMLxyTCk29qecQVEuAlwjUEbsySUmb7V+C2FZOxS0z4dNm9SESi5nCQVa8= e@b";
        assert_eq!(pubkey_problem(ecdsa), None);
        assert_eq!(pubkey_problem(rsa), None);
        assert!(
            pubkey_problem("-----BEGIN OPENSSH PRIVATE KEY----- abc")
                .unwrap()
                .contains("private")
        );
    }

    #[test]
    fn hostname_labels() {
        assert_eq!(hostname_label_problem("worker-1"), None);
        assert_eq!(hostname_label_problem("1a"), None);
        assert!(hostname_label_problem("Worker").is_some());
        assert!(hostname_label_problem("-a").is_some());
        assert!(hostname_label_problem("a_b").is_some());
        assert!(hostname_label_problem("a.b").is_some());
        assert!(hostname_label_problem(&"a".repeat(64)).is_some());
        assert_eq!(hostname_label_problem(&"a".repeat(63)), None);
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("node1.example.com"));
        assert!(is_dns_name("node1.example.com."));
        assert!(!is_dns_name("node_1.example.com"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name(""));
    }
}
