//! What snippets must leave alone: the parts of the base config that re-provisioning and the
//! executor rely on ([`SnippetOverride`]). A snippet that changes one of them is an error
//! unless the cluster file lists the item in `allow_snippet_overrides`.
//!
//! The check looks at each snippet's translated Ignition config on its own, before merging,
//! so that every finding points at the snippet text that causes it. Ignition's merge cannot
//! remove a parent's list items, so what a snippet can do to the base config is: override
//! fields of an item with the same key (a filesystem's `wipeFilesystem`, a file's contents),
//! put another kind of node on a path (files, directories and links share one key space, so a
//! link at `/ignition_ran` drops the base file), or write files the base config's items
//! produce (core's authorized-keys files, which Ignition writes from `sshAuthorizedKeys`).

use roundhouse_config::SnippetOverride;
use serde_json::Value;

/// The root filesystem as the base config declares it.
pub(crate) const ROOT_DEVICE: &str = "/dev/disk/by-label/ROOT";
/// Other names of Flatcar's root partition.
const ROOT_ALIASES: &[&str] = &["/dev/disk/by-label/ROOT", "/dev/disk/by-partlabel/ROOT"];
/// The flag file the executor polls for after a re-provision.
pub(crate) const IGNITION_RAN: &str = "/ignition_ran";
/// The managed host key files.
pub(crate) const HOST_KEY_FILES: &[&str] = &[
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
];
/// Where Ignition (Flatcar) puts user `core`'s keys, and the file sshd reads.
const AUTHORIZED_KEYS: &[&str] = &[
    "/home/core/.ssh/authorized_keys",
    "/home/core/.ssh/authorized_keys.d",
];
/// Paths that must stay directories for core's keys to be read: a file or link there breaks
/// them.
const KEY_DIRS: &[&str] = &["/home", "/home/core", "/home/core/.ssh"];

/// One thing a snippet changes that it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub item: SnippetOverride,
    /// The Ignition JSON path to blame, dot-separated (`storage.files.0.path`).
    pub json_path: String,
    /// What the snippet does, in one line.
    pub message: String,
}

/// Everything `config` (one snippet's translated Ignition config) changes of the base config.
pub(crate) fn violations(config: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let list = |key: &str| {
        config
            .pointer(&format!("/storage/{key}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    for (i, fs) in list("filesystems").iter().enumerate() {
        let device = fs.get("device").and_then(Value::as_str).unwrap_or("");
        let label = fs.get("label").and_then(Value::as_str);
        let wipe = fs.get("wipeFilesystem").and_then(Value::as_bool);
        if device == ROOT_DEVICE {
            // Same merge key as the base's entry: only an explicit `false` overrides its wipe.
            if wipe == Some(false) {
                out.push(Violation {
                    item: SnippetOverride::RootWipe,
                    json_path: format!("storage.filesystems.{i}.wipeFilesystem"),
                    message: format!(
                        "snippet turns off the wipe of the root filesystem ({ROOT_DEVICE})"
                    ),
                });
            }
        } else if (ROOT_ALIASES.contains(&device) || label == Some("ROOT")) && wipe != Some(true) {
            // Another entry for the root partition, which Ignition would keep as it is while
            // the base's entry wipes it: which one wins is a race.
            let blame = if wipe.is_some() {
                "wipeFilesystem"
            } else {
                "device"
            };
            out.push(Violation {
                item: SnippetOverride::RootWipe,
                json_path: format!("storage.filesystems.{i}.{blame}"),
                message: format!(
                    "snippet declares the root partition again ({}) without `wipe_filesystem: true`",
                    if device.is_empty() { "label ROOT" } else { device }
                ),
            });
        }
    }
    for kind in ["files", "directories", "links"] {
        for (i, node) in list(kind).iter().enumerate() {
            let Some(raw) = node.get("path").and_then(Value::as_str) else {
                continue;
            };
            // Ignition refuses paths that are not fully simplified (`//x`, `/a/../x`), so
            // comparing the text is enough.
            let path = raw.to_string();
            let json_path = format!("storage.{kind}.{i}.path");
            let what = match kind {
                "files" => "a file",
                "directories" => "a directory",
                _ => "a link",
            };
            // "with a link", or "with a file at /ignition_ran/x" for a path under it.
            let with = |protected: &str| {
                if path == protected {
                    format!("with {what}")
                } else {
                    format!("with {what} at {raw}")
                }
            };
            let mut push = |item, message: String| {
                out.push(Violation {
                    item,
                    json_path: json_path.clone(),
                    message,
                })
            };
            if at_or_under(&path, IGNITION_RAN) {
                push(
                    SnippetOverride::IgnitionRan,
                    format!(
                        "snippet replaces {IGNITION_RAN}, which roundhouse checks to confirm Ignition ran, {}",
                        with(IGNITION_RAN)
                    ),
                );
            } else if let Some(key) = HOST_KEY_FILES.iter().find(|k| at_or_under(&path, k)) {
                push(
                    SnippetOverride::HostKeys,
                    format!(
                        "snippet replaces the SSH host key roundhouse manages, {key}, {}",
                        with(key)
                    ),
                );
            } else if AUTHORIZED_KEYS.iter().any(|k| at_or_under(&path, k))
                || (kind != "directories" && KEY_DIRS.contains(&path.as_str()))
            {
                push(
                    SnippetOverride::AuthorizedKeys,
                    format!(
                        "snippet replaces user core's authorized keys, which hold roundhouse's operator key, with {what} at {raw}"
                    ),
                );
            }
        }
    }
    out
}

/// The help that goes with a violation: why it matters, and how to opt in.
pub(crate) fn help(item: SnippetOverride) -> String {
    let why = match item {
        SnippetOverride::RootWipe => {
            "re-provisioning in place relies on a freshly formatted root filesystem"
        }
        SnippetOverride::IgnitionRan => {
            "without it roundhouse cannot tell that a re-provision happened"
        }
        SnippetOverride::HostKeys => {
            "roundhouse pins this key to recognise the node, and refuses to connect to a node with another one"
        }
        SnippetOverride::AuthorizedKeys => {
            "to add keys, list them in `ssh_authorized_keys` of user core under `passwd.users`, which keeps the operator key"
        }
    };
    format!(
        "{why}; to allow it anyway, add \"{}\" to `allow_snippet_overrides` in the cluster block (or this node's)",
        item.as_str()
    )
}

fn at_or_under(path: &str, protected: &str) -> bool {
    path == protected
        || path
            .strip_prefix(protected)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnippetOverride::*;

    fn check(yaml_body: &str) -> Vec<(SnippetOverride, String)> {
        let text = format!("variant: flatcar\nversion: 1.0.0\n{yaml_body}");
        let t = butane::translate(&text, &butane::Options::default())
            .unwrap_or_else(|e| panic!("{e}: {:?}\n{text}", e.report()));
        violations(&t.config)
            .into_iter()
            .map(|v| {
                let (yaml_path, pos) = t.locate(&v.json_path);
                assert!(pos.is_some(), "{yaml_path} not located");
                (v.item, yaml_path)
            })
            .collect()
    }

    fn file(path: &str) -> String {
        format!("storage:\n  files:\n    - path: {path}\n      contents:\n        inline: x\n")
    }
    fn dir(path: &str) -> String {
        format!("storage:\n  directories:\n    - path: {path}\n")
    }
    fn link(path: &str) -> String {
        format!("storage:\n  links:\n    - path: {path}\n      target: /dev/null\n")
    }
    fn fs(device: &str, extra: &str) -> String {
        format!("storage:\n  filesystems:\n    - device: {device}\n      format: ext4\n{extra}")
    }

    /// Each protected item against the snippet variants that change it, and neighbours that
    /// must pass.
    #[test]
    fn protected_items_table() {
        let files = "$.storage.files.0.path";
        let dirs = "$.storage.directories.0.path";
        let links = "$.storage.links.0.path";
        /// What the case is, the snippet's YAML after `version`, the item and YAML path it
        /// must be refused for (`None`: it must pass).
        type Case<'a> = (&'a str, String, Option<(SnippetOverride, &'a str)>);
        let cases: Vec<Case> = vec![
            // root-wipe
            (
                "wipe off on the base device",
                fs(ROOT_DEVICE, "      label: ROOT\n      wipe_filesystem: false\n"),
                Some((RootWipe, "$.storage.filesystems.0.wipe_filesystem")),
            ),
            (
                "wipe off by partlabel",
                fs(
                    "/dev/disk/by-partlabel/ROOT",
                    "      label: ROOT\n      wipe_filesystem: false\n",
                ),
                Some((RootWipe, "$.storage.filesystems.0.wipe_filesystem")),
            ),
            (
                "root partition again, wipe unset",
                fs("/dev/disk/by-partlabel/ROOT", "      label: ROOT\n"),
                Some((RootWipe, "$.storage.filesystems.0.device")),
            ),
            (
                "ROOT label on another device, no wipe",
                fs("/dev/sda9", "      label: ROOT\n"),
                Some((RootWipe, "$.storage.filesystems.0.device")),
            ),
            (
                "restating the base root filesystem",
                fs(ROOT_DEVICE, "      label: ROOT\n      wipe_filesystem: true\n"),
                None,
            ),
            (
                "base device, wipe unset (the base's true stays)",
                fs(ROOT_DEVICE, "      label: ROOT\n"),
                None,
            ),
            (
                "btrfs root by partlabel, wiped (Flatcar's documented way)",
                "storage:\n  filesystems:\n    - device: /dev/disk/by-partlabel/ROOT\n      format: btrfs\n      label: ROOT\n      wipe_filesystem: true\n".into(),
                None,
            ),
            (
                "a data disk kept across provisions",
                fs(
                    "/dev/disk/by-label/DATA",
                    "      label: DATA\n      wipe_filesystem: false\n",
                ),
                None,
            ),
            // ignition-ran
            ("file /ignition_ran", file("/ignition_ran"), Some((IgnitionRan, files))),
            ("directory /ignition_ran", dir("/ignition_ran"), Some((IgnitionRan, dirs))),
            ("link /ignition_ran", link("/ignition_ran"), Some((IgnitionRan, links))),
            ("file under it", file("/ignition_ran/x"), Some((IgnitionRan, files))),
            ("a neighbour", file("/ignition_ran2"), None),
            ("another flag", file("/etc/ignition_ran"), None),
            // host-keys
            (
                "private host key",
                file("/etc/ssh/ssh_host_ed25519_key"),
                Some((HostKeys, files)),
            ),
            (
                "public host key",
                file("/etc/ssh/ssh_host_ed25519_key.pub"),
                Some((HostKeys, files)),
            ),
            (
                "link over the host key",
                link("/etc/ssh/ssh_host_ed25519_key"),
                Some((HostKeys, links)),
            ),
            ("sshd drop-in", file("/etc/ssh/sshd_config.d/10-x.conf"), None),
            ("an RSA host key", file("/etc/ssh/ssh_host_rsa_key"), None),
            ("the /etc/ssh directory", dir("/etc/ssh"), None),
            // authorized-keys
            (
                "authorized_keys file",
                file("/home/core/.ssh/authorized_keys"),
                Some((AuthorizedKeys, files)),
            ),
            (
                "Ignition's key file",
                file("/home/core/.ssh/authorized_keys.d/ignition"),
                Some((AuthorizedKeys, files)),
            ),
            (
                "authorized_keys.d as a link",
                link("/home/core/.ssh/authorized_keys.d"),
                Some((AuthorizedKeys, links)),
            ),
            (
                ".ssh as a file",
                file("/home/core/.ssh"),
                Some((AuthorizedKeys, files)),
            ),
            (
                "home as a link",
                link("/home/core"),
                Some((AuthorizedKeys, links)),
            ),
            ("ssh client config", file("/home/core/.ssh/config"), None),
            ("the .ssh directory", dir("/home/core/.ssh"), None),
            (
                "another user's keys",
                file("/home/alice/.ssh/authorized_keys"),
                None,
            ),
            (
                "more keys for core",
                "passwd:\n  users:\n    - name: core\n      ssh_authorized_keys:\n        - ssh-ed25519 AAAA extra\n".into(),
                None,
            ),
            ("a bashrc", file("/home/core/.bashrc"), None),
        ];
        for (what, body, want) in cases {
            let got = check(&body);
            let want: Vec<(SnippetOverride, String)> =
                want.into_iter().map(|(i, p)| (i, p.to_string())).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    /// Butane/Ignition refuse unsimplified paths, so `//./ignition_ran` cannot slip past.
    #[test]
    fn unsimplified_paths_are_refused_by_butane() {
        let text = format!(
            "variant: flatcar\nversion: 1.0.0\n{}",
            file("//./ignition_ran")
        );
        assert!(butane::translate(&text, &butane::Options::default()).is_err());
    }

    #[test]
    fn several_in_one_snippet_are_all_reported() {
        let body = "storage:\n  files:\n    - path: /etc/motd\n    - path: /ignition_ran\n    - path: /etc/ssh/ssh_host_ed25519_key.pub\n  filesystems:\n    - device: /dev/disk/by-label/ROOT\n      wipe_filesystem: false\n";
        let items: Vec<SnippetOverride> = check(body).into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [RootWipe, IgnitionRan, HostKeys]);
    }

    #[test]
    fn protected_paths_and_what_is_under_them() {
        assert!(at_or_under("/ignition_ran", IGNITION_RAN));
        assert!(!at_or_under("/ignition_ran.bak", IGNITION_RAN));
    }
}
