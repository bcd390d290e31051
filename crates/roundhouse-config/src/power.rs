//! `power { driver = ... }` blocks: cluster-wide defaults merged under each node's block, and
//! the attributes each driver takes.

use std::collections::BTreeMap;

use hcl::edit::structure::{Attribute, Block};

use crate::checks::check_http_url;
use crate::eval::{Sink, eval, span_of};
use crate::model::*;
use crate::schema::{Fields, Reader, check_labels, fields, header_span, optional};

pub(crate) const DRIVERS: &[&str] = &["command", "ipmi", "redfish"];
pub(crate) const COMMAND_ATTRS: &[&str] = &["driver", "command", "timeout_secs"];
pub(crate) const IPMI_ATTRS: &[&str] = &[
    "driver",
    "address",
    "port",
    "username",
    "password_env",
    "password_file",
    "cipher_suite",
    "efi",
    "persistent_boot",
];
pub(crate) const REDFISH_ATTRS: &[&str] = &[
    "driver",
    "endpoint",
    "system_id",
    "username",
    "password_env",
    "password_file",
    "ca_file",
    "insecure",
    "efi",
    "auth",
    "persistent_boot",
];
pub(crate) const POWER_ATTRS: &[&str] = &[
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
    "auth",
    "persistent_boot",
];

/// Power settings as written in one block: the raw attributes, evaluated later per node.
pub(crate) struct PowerFields<'a> {
    pub block: &'a Block,
    pub attrs: BTreeMap<&'a str, &'a Attribute>,
}

pub(crate) fn power_fields<'a>(
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

/// The power driver of one node. `node_header` is where problems with settings the node
/// inherits from the cluster's `power` block point, since the node is what lacks them.
pub(crate) fn read_power(
    node_name: &str,
    node_header: std::ops::Range<usize>,
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
        (Some(p), None) => {
            attrs.extend(p.attrs.iter().map(|(k, v)| (*k, *v)));
            header_span(p.block)
        }
        (None, Some(p)) => {
            attrs.extend(p.attrs.iter().map(|(k, v)| (*k, *v)));
            node_header
        }
    };
    let f = Fields {
        what: format!("the `power` block of node \"{node_name}\""),
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
    // Only the cluster's block applies: say so, since the node's own text shows no `power`.
    let inherited_from = match (node_power, cluster_power) {
        (None, Some(c)) => Some(r.src().line_of(header_span(c.block).start)),
        _ => None,
    };
    let require = |r: &mut Reader<'_, '_>, name: &str| -> bool {
        if f.get(name).is_none() {
            let hint = inherited_from.map_or(String::new(), |line| {
                format!("the cluster's `power` block (line {line}) does not set it; add `power {{ {name} = ... }}` to this node")
            });
            r.missing(&f, name, &hint);
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
            let persistent_boot = read_persistent_boot(&f, r)?;
            if ![3, 17].contains(&cipher_suite) {
                let span = f.get("cipher_suite").map(|a| span_of(&a.value));
                if let Some(span) = span {
                    r.error(&span, format!("cipher suite {cipher_suite} is not supported"))
                        .help = Some(
                        "roundhouse speaks cipher suite 3 (HMAC-SHA1, AES-CBC-128) and 17 (HMAC-SHA256, AES-CBC-128)".into(),
                    );
                }
                return None;
            }
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
                persistent_boot,
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
            let auth = optional(
                &f,
                "auth",
                |r| {
                    r.choice(
                        &f,
                        "auth",
                        &[
                            ("auto", RedfishAuth::Auto),
                            ("basic", RedfishAuth::Basic),
                            ("session", RedfishAuth::Session),
                        ],
                    )
                },
                r,
            );
            // Both read before bailing out, so one run reports both mistakes.
            let persistent_boot = read_persistent_boot(&f, r);
            let (auth, persistent_boot) = (auth?.unwrap_or_default(), persistent_boot?);
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
                auth,
                persistent_boot,
            }
        }
    };
    Some(Some(power))
}

fn read_persistent_boot(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<PersistentBoot> {
    Some(
        optional(
            f,
            "persistent_boot",
            |r| {
                r.choice(
                    f,
                    "persistent_boot",
                    &[
                        ("disk", PersistentBoot::Disk),
                        ("network", PersistentBoot::Network),
                    ],
                )
            },
            r,
        )?
        .unwrap_or_default(),
    )
}

pub(crate) fn read_secret(f: &Fields<'_>, r: &mut Reader<'_, '_>) -> Option<Secret> {
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
