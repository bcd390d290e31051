//! From cluster-file text to a validated [`Cluster`]: parse, resolve variables, read the
//! `cluster` and `node` blocks against their schemas, then check the nodes against each other.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use bootdata::Mac;
use hcl::edit::structure::{Block, Body};

use crate::LoadOptions;
use crate::checks::{
    check_http_url, hostname_label_problem, is_dns_name, pubkey_problem, state_url_problem,
    within_literal,
};
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::eval::{Scope, Sink, Source, span_of};
use crate::hooks::read_hooks;
use crate::model::*;
use crate::power::{PowerFields, power_fields, read_power};
use crate::schema::{
    CLUSTER_ATTRS, DEFAULT_INSTALL_DISK, Fields, NODE_ATTRS, POWER_BLOCK, Reader, TOP_BLOCKS,
    check_labels, fields, header_span, lokomotive_hint, optional,
};
use crate::vars::resolve_variables;

const DEFAULT_PXE_COMMAND: &str = "echo 'you must (re)provision the node by booting via iPXE from http://MATCHBOX/boot.ipxe'; exit 1";

/// Loads a cluster file from text. The heart of [`crate::load_str`].
pub(crate) fn load(path: &Path, text: &str, options: &LoadOptions) -> Result<Cluster, Diagnostics> {
    // Editors on Windows may start files with a byte-order mark, which HCL does not expect.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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

pub(crate) fn parse_error(src: &Source, e: &hcl::edit::parser::Error) -> Diagnostic {
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
    // `hcl-edit` cannot hold a number beyond f64 and calls it a syntax error somewhere on its
    // line; the number is the problem.
    let line_start = src.text[..offset.min(src.text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = src.text[line_start..]
        .find('\n')
        .map_or(src.text.len(), |i| line_start + i);
    if let Some(at) = overflowing_number(&src.text[line_start..line_end]) {
        let at = (line_start + at.start)..(line_start + at.end);
        let shown = crate::eval::shorten(&src.text[at.clone()]);
        return Diagnostic::error_at(
            &src.path,
            &src.text,
            at.start,
            at.len(),
            format!("number {shown} is out of range"),
        )
        .with_help(crate::eval::NUMBER_RANGE_HELP);
    }
    if let Some(d) = heredoc_parse_error(src, e, offset, line_start) {
        return d;
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

/// Heredoc mistakes `hcl-edit` reports as generic syntax errors: text after the closing
/// marker (`EOT }`), and a heredoc that never finds its marker (reported at the `<<EOT`).
fn heredoc_parse_error(
    src: &Source,
    e: &hcl::edit::parser::Error,
    offset: usize,
    line_start: usize,
) -> Option<Diagnostic> {
    let text = &src.text;
    let offset = offset.min(text.len());
    if e.message().contains("heredoc end delimiter") {
        // The last `<<MARKER` before the error is the heredoc that is not closed.
        let open = text[..offset].rfind("<<")?;
        let after = text[open + 2..].trim_start_matches('-');
        let marker: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if marker.is_empty() {
            return None;
        }
        let len = text[open..]
            .find(marker.as_str())
            .map_or(2, |i| i + marker.len());
        return Some(
            Diagnostic::error_at(
                &src.path,
                text,
                open,
                len,
                format!("heredoc `{}` is never closed: no line holds only `{marker}`", &text[open..open + len]),
            )
            .with_help(format!(
                "end it with a line holding only `{marker}` (optionally indented; the case must match)"
            )),
        );
    }
    // `    EOT }`: the text before the error on its line is a heredoc's marker.
    let before = text[line_start..offset].trim();
    if before.is_empty()
        || !before
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        || !(text[..line_start].contains(&format!("<<{before}"))
            || text[..line_start].contains(&format!("<<-{before}")))
    {
        return None;
    }
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let trailing = text[offset..line_end].trim_end();
    let trailing_start = offset + (trailing.len() - trailing.trim_start().len());
    let trailing = trailing.trim_start();
    if trailing.is_empty() {
        return None;
    }
    Some(
        Diagnostic::error_at(
            &src.path,
            text,
            trailing_start,
            trailing.len(),
            format!(
                "`{trailing}` after the heredoc's closing `{before}`: the marker must be alone on its line"
            ),
        )
        .with_help(format!("move `{trailing}` to the next line, below `{before}`")),
    )
}

/// The byte range of the first number literal on `line` (outside quotes and comments) that is
/// too large for a 64-bit float.
fn overflowing_number(line: &str) -> Option<Range<usize>> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'#' => return None,
            b'/' if bytes.get(i + 1) == Some(&b'/') => return None,
            b'0'..=b'9'
                if i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] == b'_'
                        || bytes[i - 1] == b'.') =>
            {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if matches!(bytes.get(i), Some(b'e' | b'E')) {
                    let mut j = i + 1;
                    if matches!(bytes.get(j), Some(b'+' | b'-')) {
                        j += 1;
                    }
                    if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                        i = j;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                if line[start..i].parse::<f64>().is_ok_and(f64::is_infinite) {
                    return Some(start..i);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
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
    let first_word = line.split_whitespace().next().unwrap_or("");
    let rest_line = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
    let before = line
        .get(..line.len().saturating_sub(rest_line.len()))
        .unwrap_or("");
    Some(if message.contains("heredoc end delimiter") {
        "a heredoc ends with a line holding only its delimiter, e.g. `EOT`".into()
    } else if rest.starts_with(['\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']) {
        "this is a typographic quote (as word processors write them): use a plain `\"`".into()
    } else if rest.starts_with("/*") {
        "a `/*` comment must be closed with `*/`".into()
    } else if rest.starts_with('"') && rest_line.contains("\":") {
        "this looks like JSON: attributes are written `name = value`, without quotes around the name or commas".into()
    } else if rest.starts_with(':') && !before.contains('=') {
        "attributes are written `name = value`, not `name: value`".into()
    } else if message.ends_with("expected `{`")
        && ["node", "cluster", "hook", "variable", "power", "upload"].contains(&first_word)
    {
        format!(
            "a block's settings go in braces: `{} {{ ... }}`",
            line.trim()
        )
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
                        "the top level holds only `variable`, `cluster`, `node` and `hook` blocks"
                            .into()
                    }
                }
            }));
    }
    let mut variables = Vec::new();
    let mut clusters = Vec::new();
    let mut nodes = Vec::new();
    let mut hook_blocks = Vec::new();
    for block in body.blocks() {
        match block.ident.value().as_str() {
            "variable" => variables.push(block),
            "cluster" => clusters.push(block),
            "node" => nodes.push(block),
            "hook" => hook_blocks.push(block),
            other => {
                let d = sink.error(
                    src,
                    &span_of(&block.ident),
                    format!("unknown block `{other}`"),
                );
                d.help = Some(match did_you_mean(other, TOP_BLOCKS) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => {
                        "the top level holds only `variable`, `cluster`, `node` and `hook` blocks"
                            .into()
                    }
                });
            }
        }
    }

    let vars = resolve_variables(&variables, src, options, sink);
    let env_state_url = state_url_from_env(options, sink);
    let scope = || Scope::new(src, Some(&vars));

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
    let hooks = {
        let mut r = Reader {
            scope: scope(),
            sink: &mut *sink,
        };
        read_hooks(&hook_blocks, &mut r)
    };

    let mut cluster = cluster?.cluster?;
    if let Some(url) = env_state_url? {
        cluster.state_url = Some(url);
    }
    cluster.nodes = read_nodes.into_iter().filter_map(|n| n.node).collect();
    cluster.hooks = hooks?;
    if cluster.nodes.len() != nodes.len() {
        return None;
    }
    Some(cluster)
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
    let allow_snippet_overrides = optional(
        &f,
        "allow_snippet_overrides",
        |r| r.snippet_overrides(&f, "allow_snippet_overrides"),
        r,
    );

    let state_url = optional(&f, "state_url", |r| read_state_url(&f, r), r);
    let state_password_file = optional(
        &f,
        "state_password_file",
        |r| r.path(&f, "state_password_file"),
        r,
    );

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
            allow_snippet_overrides: allow_snippet_overrides?.unwrap_or_default(),
            state_url: state_url?,
            state_password_file: state_password_file?,
            nodes: Vec::new(),
            hooks: Vec::new(),
        })
    })();
    ClusterPart { cluster, power }
}

/// `state_url`: a PostgreSQL URL without a password. The diagnostic for a password shows
/// `***` in its excerpt instead.
fn read_state_url(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<String> {
    let (s, span) = r.line(f, "state_url")?;
    let Some(p) = state_url_problem(&s, "state_url") else {
        return Some(s);
    };
    let at =
        p.at.as_ref()
            .map_or_else(|| span.clone(), |at| within_literal(r, &span, &s, at));
    let d = r.error(&at, p.message);
    d.help = p.help;
    if p.secret
        && let Some(pw) = p.at.and_then(|at| s.get(at))
        && !pw.is_empty()
        && d.source_line.contains(pw)
    {
        d.source_line = d.source_line.replace(pw, "***");
        d.span_len = 3;
    }
    None
}

/// `ROUNDHOUSE_STATE_URL` from the environment (`options.env`, else the process's): checked
/// as `state_url` is; a problem is reported against the variable.
fn state_url_from_env(options: &LoadOptions, sink: &mut Sink) -> Option<Option<String>> {
    const VAR: &str = "ROUNDHOUSE_STATE_URL";
    let value = match &options.env {
        Some(env) => env.iter().find(|(k, _)| k == VAR).map(|(_, v)| v.clone()),
        None => std::env::var(VAR).ok(),
    };
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Some(None);
    };
    match state_url_problem(&value, VAR) {
        None => Some(Some(value)),
        Some(p) => {
            let d = sink.error_in_file(Path::new(&format!("<environment {VAR}>")), p.message);
            d.help = p.help;
            None
        }
    }
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
    let allow_snippet_overrides = optional(
        &f,
        "allow_snippet_overrides",
        |r| r.snippet_overrides(&f, "allow_snippet_overrides"),
        r,
    );

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
        Ok(cluster_power) if ok => read_power(
            &name,
            header_span(block),
            node_power.as_ref(),
            cluster_power,
            r,
        ),
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
            allow_snippet_overrides: allow_snippet_overrides?,
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
