//! Defaults, overrides, power merging, variables and snippet origins, through the public API.

use std::path::{Path, PathBuf};

use roundhouse_config::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab";

fn minimal(extra_cluster: &str, nodes: &str) -> String {
    format!(
        "cluster {{\n  name = \"lab\"\n  asset_dir = \"state\"\n  ssh_pubkeys = [\"{KEY}\"]\n  boot_server_http = \"https://boot.lab.example:8443/\"\n{extra_cluster}\n}}\n{nodes}"
    )
}

const NODE: &str = "node \"n1\" {\n  role = \"worker\"\n  mac = \"52:54:00:00:00:01\"\n  domain = \"n1.lab.example\"\n}\n";

fn opts() -> LoadOptions {
    LoadOptions {
        env: Some(Vec::new()),
        ..LoadOptions::default()
    }
}

fn load_text(text: &str, options: &LoadOptions) -> Result<Cluster, Diagnostics> {
    load_str(Path::new("site/cluster.hcl"), text, options)
}

fn ok(text: &str) -> Cluster {
    load_text(text, &opts()).unwrap_or_else(|d| panic!("should load:\n{d}\n---\n{text}"))
}

fn errors(text: &str, options: &LoadOptions) -> Diagnostics {
    match load_text(text, options) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(d) => d,
    }
}

#[test]
fn defaults() {
    let c = ok(&minimal("", NODE));
    assert_eq!(c.asset_dir, PathBuf::from("site/state"));
    assert_eq!(c.boot_server_http, "https://boot.lab.example:8443");
    assert_eq!(
        c.os,
        Os {
            channel: Channel::Stable,
            version: "current".into(),
            download_protocol: Protocol::Https,
            cached_install: false,
        }
    );
    assert_eq!(
        c.install,
        Install {
            target: InstallTarget::Disk("/dev/sda".into()),
            wipe_additional_disks: false,
            pre_reboot_cmds: "true".into(),
        }
    );
    assert!(c.kernel_args.is_empty());
    assert_eq!(c.kernel_console, ["console=tty0", "console=ttyS0"]);
    assert_eq!(
        c.pxe_command,
        "echo 'you must (re)provision the node by booting via iPXE from https://boot.lab.example:8443/boot.ipxe'; exit 1"
    );
    assert_eq!(c.policy.for_role(Role::Controller), ChangePolicy::Hold);
    assert_eq!(c.policy.for_role(Role::Worker), ChangePolicy::Reprovision);
    assert!(c.netboot_gating);
    let n = &c.nodes[0];
    assert_eq!(
        (n.ssh_port, n.role, n.power.as_ref()),
        (22, Role::Worker, None)
    );
    assert_eq!(
        n.effective_install_target(&c),
        &InstallTarget::Disk("/dev/sda".into())
    );
}

/// `allow_snippet_overrides`: empty by default, sorted without duplicates, and a node's list
/// replaces the cluster's (an empty one takes every permission away).
#[test]
fn snippet_overrides_default_and_node_replacement() {
    let c = ok(&minimal("", NODE));
    assert!(c.allow_snippet_overrides.is_empty());
    assert!(c.nodes[0].effective_snippet_overrides(&c).is_empty());

    let nodes = format!(
        "{NODE}node \"n2\" {{\n  role = \"worker\"\n  mac = \"52:54:00:00:00:02\"\n  domain = \"n2.lab.example\"\n  allow_snippet_overrides = []\n}}\nnode \"n3\" {{\n  role = \"worker\"\n  mac = \"52:54:00:00:00:03\"\n  domain = \"n3.lab.example\"\n  allow_snippet_overrides = [\"root-wipe\"]\n}}\n"
    );
    let c = ok(&minimal(
        "  allow_snippet_overrides = [\"host-keys\", \"ignition-ran\", \"host-keys\"]",
        &nodes,
    ));
    use SnippetOverride::*;
    assert_eq!(c.allow_snippet_overrides, [IgnitionRan, HostKeys]);
    assert_eq!(c.nodes[0].allow_snippet_overrides, None);
    assert_eq!(
        c.nodes[0].effective_snippet_overrides(&c),
        [IgnitionRan, HostKeys]
    );
    assert_eq!(c.nodes[1].effective_snippet_overrides(&c), []);
    assert_eq!(c.nodes[2].effective_snippet_overrides(&c), [RootWipe]);
    let names: Vec<&str> = SnippetOverride::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(
        names,
        ["root-wipe", "ignition-ran", "host-keys", "authorized-keys"]
    );
}

#[test]
fn smallest_disk_and_node_override() {
    let node = NODE.replace(
        "}\n",
        "  install_disk = \"/dev/vdb\"\n  ssh_port = 2222\n}\n",
    );
    let c = ok(&minimal("  install_to_smallest_disk = true", &node));
    assert_eq!(c.install.target, InstallTarget::SmallestDisk);
    assert_eq!(
        c.nodes[0].install_target,
        Some(InstallTarget::Disk("/dev/vdb".into()))
    );
    assert_eq!(c.nodes[0].ssh_port, 2222);
}

#[test]
fn cluster_power_defaults_merge_under_node_power() {
    let cluster = "  power {\n    driver = \"ipmi\"\n    username = \"admin\"\n    password_file = \"secrets/bmc\"\n  }";
    let nodes = format!(
        "{}{}{}",
        NODE.replace(
            "}\n",
            "  power {\n    address = \"10.0.1.1\"\n    port = 6230\n  }\n}\n"
        ),
        "node \"n2\" {\n  role = \"worker\"\n  mac = \"52:54:00:00:00:02\"\n  domain = \"10.0.0.2\"\n  power {\n    driver = \"command\"\n    command = \"wake $mac\"\n  }\n}\n",
        "node \"n3\" {\n  role = \"worker\"\n  mac = \"52:54:00:00:00:03\"\n  domain = \"10.0.0.3\"\n  power {\n    driver = \"redfish\"\n    endpoint = \"https://bmc3/\"\n    username = \"root\"\n    password_env = \"BMC3\"\n    ca_file = \"ca.pem\"\n  }\n}\n",
    );
    let c = ok(&minimal(cluster, &nodes));
    assert_eq!(
        c.nodes[0].power,
        Some(Power::Ipmi {
            address: "10.0.1.1".into(),
            port: 6230,
            username: "admin".into(),
            password: Secret::File(PathBuf::from("site/secrets/bmc")),
            cipher_suite: 3,
            efi: true,
            persistent_boot: PersistentBoot::Disk,
        })
    );
    // Another driver: the cluster's ipmi defaults don't apply.
    assert_eq!(
        c.nodes[1].power,
        Some(Power::Command {
            command: "wake $mac".into(),
            timeout_secs: 600,
        })
    );
    assert_eq!(
        c.nodes[2].power,
        Some(Power::Redfish {
            endpoint: "https://bmc3".into(),
            system_id: None,
            username: "root".into(),
            password: Secret::Env("BMC3".into()),
            ca_file: Some(PathBuf::from("site/ca.pem")),
            insecure: false,
            efi: true,
            auth: RedfishAuth::Auto,
            persistent_boot: PersistentBoot::Disk,
        })
    );
}

#[test]
fn cluster_power_alone_applies_to_every_node() {
    let cluster = "  power {\n    driver = \"command\"\n    command = \"ssh pdu on $name\"\n    timeout_secs = 30\n  }";
    let c = ok(&minimal(cluster, NODE));
    assert_eq!(
        c.nodes[0].power,
        Some(Power::Command {
            command: "ssh pdu on $name".into(),
            timeout_secs: 30,
        })
    );
}

#[test]
fn snippet_origins() {
    let text = minimal(
        "  snippets = [\n    \"variant: flatcar\\nversion: 1.0.0\\n\",\n    var.extra,\n  ]",
        NODE,
    );
    let text = format!(
        "variable \"extra\" {{\n  default = <<EOT\nvariant: flatcar\nversion: 1.0.0\nEOT\n}}\n{text}"
    );
    let c = ok(&text);
    let file = PathBuf::from("site/cluster.hcl");
    assert_eq!(
        c.snippets[0].origin,
        SnippetOrigin::Inline {
            file: file.clone(),
            line: 13
        }
    );
    // A variable's text keeps pointing at the variable's definition.
    assert_eq!(
        c.snippets[1].origin,
        SnippetOrigin::Inline { file, line: 3 }
    );
    assert_eq!(c.snippets[1].text, "variant: flatcar\nversion: 1.0.0\n");
}

#[test]
fn file_snippet_origin_is_the_resolved_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bu")).expect("mkdir");
    std::fs::write(
        dir.path().join("bu/a.bu"),
        "variant: flatcar\nversion: 1.0.0\n",
    )
    .expect("write");
    let path = dir.path().join("cluster.hcl");
    std::fs::write(
        &path,
        minimal("  installer_snippets = [file(\"bu/a.bu\")]", NODE),
    )
    .expect("write");
    let c = load(&path, &opts()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        c.installer_snippets[0].origin,
        SnippetOrigin::File(dir.path().join("bu/a.bu"))
    );
}

#[test]
fn typed_cli_values_and_env_names() {
    let text = format!(
        "variable \"cached\" {{\n  default = false\n}}\nvariable \"console\" {{\n  default = []\n}}\nvariable \"version\" {{}}\n{}",
        minimal(
            "  cached_install = var.cached\n  kernel_console = var.console\n  os_version = var.version",
            NODE
        )
    );
    let options = LoadOptions {
        vars: vec![
            ("cached".into(), "true".into()),
            ("console".into(), "[\"console=ttyS1\"]".into()),
        ],
        env: Some(vec![("ROUNDHOUSE_VAR_VERSION".into(), "3815.2.0".into())]),
        ..LoadOptions::default()
    };
    let c = load_text(&text, &options).unwrap_or_else(|d| panic!("{d}"));
    assert!(c.os.cached_install);
    assert_eq!(c.kernel_console, ["console=ttyS1"]);
    assert_eq!(c.os.version, "3815.2.0");

    // A bool variable given a non-bool on the command line: the error shows the value.
    let options = LoadOptions {
        vars: vec![
            ("cached".into(), "yes please".into()),
            ("version".into(), "current".into()),
        ],
        env: Some(Vec::new()),
        ..LoadOptions::default()
    };
    let d = errors(&text, &options);
    assert_eq!(d.0.len(), 1, "{d}");
    assert!(
        d.0[0].file.to_string_lossy().contains("--var cached"),
        "{d}"
    );
}

#[test]
fn var_file_errors_point_into_the_var_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = dir.path().join("lab.vars");
    std::fs::write(&vars, "# site values\nflatcar_verison = \"1.2.3\"\n").expect("write");
    let text = format!(
        "variable \"flatcar_version\" {{\n  default = \"current\"\n}}\n{}",
        minimal("", NODE)
    );
    let options = LoadOptions {
        var_files: vec![vars.clone()],
        env: Some(Vec::new()),
        ..LoadOptions::default()
    };
    let d = errors(&text, &options);
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].file, vars);
    assert_eq!((d.0[0].line, d.0[0].column), (2, 1));
    assert_eq!(
        d.0[0].help.as_deref(),
        Some("did you mean `flatcar_version`?")
    );
}

#[test]
fn expressions_and_functions() {
    let text = format!(
        "variable \"rack\" {{\n  default = \"R7\"\n}}\n{}",
        minimal(
            "  name = format(\"lab-%s\", lower(var.rack))\n  kernel_args = [join(\"=\", [\"rack\", var.rack]), \"x=${1 + 1}\"]",
            NODE,
        )
        .replace("  name = \"lab\"\n", "")
    );
    let c = ok(&text);
    assert_eq!(c.name, "lab-r7");
    assert_eq!(c.kernel_args, ["rack=R7", "x=2"]);
}

#[test]
fn errors_are_sorted_and_all_reported() {
    let node2 = "node \"n2\" {\n  role = \"boss\"\n  mac = \"52:54:00:00:00:01\"\n  domain = \"n1.lab.example\"\n}\n";
    let d = errors(
        &minimal("  os_channel = \"nightly\"", &format!("{NODE}{node2}")),
        &opts(),
    );
    let found: Vec<(usize, &str)> = d.0.iter().map(|x| (x.line, x.message.as_str())).collect();
    // A node with a bad `role` still takes part in the MAC and domain checks.
    assert_eq!(
        found,
        [
            (
                6,
                "invalid `os_channel` \"nightly\": expected one of \"stable\", \"beta\", \"alpha\", \"lts\""
            ),
            (
                14,
                "invalid `role` \"boss\": expected one of \"controller\", \"worker\""
            ),
            (
                15,
                "MAC 52:54:00:00:00:01 of node \"n2\" is already used by node \"n1\" (line 10)"
            ),
            (
                16,
                "domain \"n1.lab.example\" of node \"n2\" is already used by node \"n1\" (line 11)"
            ),
        ]
    );
}

#[test]
fn an_invalid_override_is_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = dir.path().join("lab.vars");
    std::fs::write(&vars, "operator_key = file(\"missing.pub\")\n").expect("write");
    let text = format!(
        "variable \"operator_key\" {{}}\n{}",
        minimal("", NODE).replace(&format!("[\"{KEY}\"]"), "[var.operator_key]")
    );
    let options = LoadOptions {
        var_files: vec![vars.clone()],
        env: Some(Vec::new()),
        ..LoadOptions::default()
    };
    let d = errors(&text, &options);
    // Neither "has no value" nor an error at the use of `var.operator_key` follows.
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].file, vars);
    assert!(
        d.0[0]
            .message
            .starts_with("file(\"missing.pub\"): cannot read"),
        "{d}"
    );
}

#[test]
fn byte_order_mark_and_crlf_are_accepted() {
    let text = format!("\u{feff}{}", minimal("", NODE)).replace('\n', "\r\n");
    let c = ok(&text);
    assert_eq!(c.name, "lab");
    assert_eq!(c.nodes[0].domain, "n1.lab.example");
}

/// The directive example of docs/cluster-file.md renders clean YAML.
#[test]
fn documented_for_directive_example() {
    let snippet = "  snippets = [\n    <<-EOT\n    variant: flatcar\n    version: 1.0.0\n    storage:\n      files:\n        - path: /etc/sysctl.d/90-site.conf\n          contents:\n            inline: |\n              %{ for s in var.sysctls }${s}\n              %{ endfor }\n    EOT\n  ]";
    let text = format!(
        "variable \"sysctls\" {{\n  default = [\"vm.max_map_count=262144\", \"fs.inotify.max_user_watches=524288\"]\n}}\n{}",
        minimal(snippet, NODE)
    );
    let c = ok(&text);
    assert_eq!(
        c.snippets[0].text,
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/sysctl.d/90-site.conf\n      contents:\n        inline: |\n          vm.max_map_count=262144\n          fs.inotify.max_user_watches=524288\n          \n"
    );
}

fn load_in(dir: &Path, text: &str) -> Cluster {
    load_str(&dir.join("cluster.hcl"), text, &opts())
        .unwrap_or_else(|d| panic!("should load:\n{d}\n---\n{text}"))
}

const HOOKS: &str = r#"
hook "copy-controller-secrets" {
  roles = ["controller"]
  upload {
    source      = "secrets/etcd-ca.crt"
    destination = "/etc/ssl/etcd/ca.crt"
    mode        = "0600"
    owner       = "etcd:etcd"
  }
  upload {
    content     = "inline text"
    destination = "/etc/motd"
  }
  run     = ["sudo systemctl restart etcd"]
  timeout = 300
}

hook "everywhere" {
  run = ["true", "echo done"]
}
"#;

#[test]
fn hooks_are_read_with_their_defaults_and_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/etcd-ca.crt"), b"CA\x00bytes").expect("write");
    let c = load_in(dir.path(), &format!("{}{HOOKS}", minimal("", NODE)));
    assert_eq!(c.hooks.len(), 2);
    let h = &c.hooks[0];
    assert_eq!(h.name, "copy-controller-secrets");
    assert_eq!(h.roles, vec![Role::Controller]);
    assert_eq!(h.timeout_secs, 300);
    assert_eq!(h.run, vec!["sudo systemctl restart etcd".to_string()]);
    assert_eq!(
        h.uploads[0],
        Upload {
            content: b"CA\x00bytes".to_vec(),
            source: Some(dir.path().join("secrets/etcd-ca.crt")),
            destination: "/etc/ssl/etcd/ca.crt".into(),
            mode: 0o600,
            user: "etcd".into(),
            group: "etcd".into(),
        }
    );
    assert_eq!(
        h.uploads[1],
        Upload {
            content: b"inline text".to_vec(),
            source: None,
            destination: "/etc/motd".into(),
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
        }
    );
    // Secrets never reach logs through Debug.
    let debug = format!("{:?}", h.uploads[1]);
    assert!(!debug.contains("inline text"), "{debug}");
    assert!(debug.contains("<11 bytes>"), "{debug}");

    let every = &c.hooks[1];
    assert_eq!(every.roles, vec![Role::Controller, Role::Worker]);
    assert_eq!(every.timeout_secs, 600);
    assert!(every.uploads.is_empty());
    let names = |role| {
        c.hooks_for(role)
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(Role::Controller),
        vec!["copy-controller-secrets", "everywhere"]
    );
    assert_eq!(names(Role::Worker), vec!["everywhere"]);
}

#[test]
fn hook_input_digest_covers_what_runs_on_the_node_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    let ca = dir.path().join("secrets/etcd-ca.crt");
    std::fs::write(&ca, "one").expect("write");
    let text = format!("{}{HOOKS}", minimal("", NODE));
    let digest = |text: &str| load_in(dir.path(), text).hooks[0].input_digest();
    let base = digest(&text);
    assert!(base.starts_with("sha256:") && base.len() == 71, "{base}");
    assert_eq!(digest(&text), base, "stable");

    // Where and how long it runs is not its input.
    assert_eq!(digest(&text.replace("timeout = 300", "timeout = 30")), base);
    assert_eq!(
        digest(&text.replace(
            "roles = [\"controller\"]",
            "roles = [\"worker\", \"controller\"]"
        )),
        base
    );
    // Everything that lands on the node is.
    let mut changed = vec![
        digest(&text.replace("\"0600\"", "\"0640\"")),
        digest(&text.replace("etcd:etcd", "etcd")),
        digest(&text.replace("/etc/motd", "/etc/motd2")),
        digest(&text.replace("inline text", "inline text!")),
        digest(&text.replace("restart etcd", "restart etcd2")),
        digest(&text.replace(
            "run     = [\"sudo systemctl restart etcd\"]",
            "run     = [\"sudo systemctl\", \"restart etcd\"]",
        )),
    ];
    std::fs::write(&ca, "two").expect("write");
    changed.push(digest(&text));
    for (i, d) in changed.iter().enumerate() {
        assert_ne!(*d, base, "change {i} left the digest alone");
    }
    changed.sort();
    changed.dedup();
    assert_eq!(changed.len(), 7, "two different changes gave one digest");
}

#[test]
fn state_url_from_the_file_and_the_environment() {
    let c = ok(&minimal("", NODE));
    assert_eq!((c.state_url, c.state_password_file), (None, None));

    let text = minimal(
        "  state_url = \"postgres://rh@db1:5432/rh?sslmode=verify-full&sslrootcert=/etc/ca.crt\"\n  state_password_file = \"pg.pw\"",
        NODE,
    );
    let c = ok(&text);
    assert_eq!(
        c.state_url.as_deref(),
        Some("postgres://rh@db1:5432/rh?sslmode=verify-full&sslrootcert=/etc/ca.crt")
    );
    assert_eq!(c.state_password_file, Some(PathBuf::from("site/pg.pw")));

    // ROUNDHOUSE_STATE_URL wins over the file, and is checked the same way.
    let env = |v: &str| LoadOptions {
        env: Some(vec![("ROUNDHOUSE_STATE_URL".into(), v.into())]),
        ..LoadOptions::default()
    };
    let c = load_text(&text, &env("postgres://other@db2/x")).unwrap();
    assert_eq!(c.state_url.as_deref(), Some("postgres://other@db2/x"));
    let c = load_text(&minimal("", NODE), &env("postgresql://other@db2/x")).unwrap();
    assert_eq!(c.state_url.as_deref(), Some("postgresql://other@db2/x"));
    let d = errors(&text, &env("postgres://other:hunter2@db2/x")).to_string();
    assert!(d.contains("<environment ROUNDHOUSE_STATE_URL>"), "{d}");
    assert!(d.contains("holds a password"), "{d}");
    assert!(!d.contains("hunter2"), "{d}");
}
