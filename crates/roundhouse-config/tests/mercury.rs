//! The example cluster in `examples/mercury` loads, and every setting lands in the model.

use std::path::{Path, PathBuf};

use bootdata::Mac;
use roundhouse_config::*;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mercury")
}

fn options() -> LoadOptions {
    LoadOptions {
        env: Some(Vec::new()),
        ..LoadOptions::default()
    }
}

fn load_with(options: &LoadOptions) -> Cluster {
    let path = example_dir().join("cluster.hcl");
    match load(&path, options) {
        Ok(c) => c,
        Err(d) => panic!("examples/mercury/cluster.hcl must load:\n{d}"),
    }
}

fn file_snippet(rel: &str) -> Snippet {
    let path = example_dir().join(rel);
    let text = std::fs::read_to_string(&path).expect("example snippet exists");
    Snippet {
        text,
        origin: SnippetOrigin::File(path),
    }
}

fn mac(s: &str) -> Mac {
    Mac::parse(s).expect("test MAC")
}

fn node(name: &str, role: Role, mac_text: &str, domain: &str) -> Node {
    Node {
        name: name.into(),
        mac: mac(mac_text),
        domain: domain.into(),
        ssh_port: 22,
        role,
        snippets: vec![],
        installer_snippets: vec![],
        install_target: None,
        kernel_args: None,
        power: None,
        allow_snippet_overrides: None,
    }
}

#[test]
fn mercury_model() {
    let c = load_with(&options());
    let dir = example_dir();
    let path = dir.join("cluster.hcl");

    let mut controller_1 = node(
        "controller-1",
        Role::Controller,
        "52:54:00:a1:00:01",
        "10.10.0.11",
    );
    controller_1.installer_snippets = vec![file_snippet("snippets/installer-static-net-11.bu")];
    let mut worker_1 = node("worker-1", Role::Worker, "52:54:00:b1:00:01", "10.10.0.21");
    worker_1.snippets = vec![Snippet {
        // `<<-EOT` removes the 4 spaces every line shares, keeping the YAML's own indentation.
        text: "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/roundhouse/role\n      mode: 0644\n      contents:\n        inline: |\n          worker with local NVMe scratch\n".into(),
        origin: SnippetOrigin::Inline { file: path.clone(), line: 69 },
    }];
    let mut worker_3 = node("worker-3", Role::Worker, "52:54:00:b1:00:03", "10.10.0.23");
    worker_3.install_target = Some(InstallTarget::Disk("/dev/nvme0n1".into()));
    worker_3.kernel_args = Some(vec!["flatcar.autologin".into(), "intel_iommu=on".into()]);

    let expected = Cluster {
        source: path.clone(),
        name: "mercury".into(),
        asset_dir: dir.join("assets"),
        ssh_pubkeys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml operator@example".into()],
        boot_server_http: "http://10.10.0.2:8080".into(),
        os: Os {
            channel: Channel::Stable,
            version: "3815.2.0".into(),
            download_protocol: Protocol::Https,
            cached_install: true,
        },
        install: Install {
            target: InstallTarget::Disk("/dev/sda".into()),
            wipe_additional_disks: true,
            pre_reboot_cmds: "ipmitool chassis bootdev disk options=persistent,efiboot".into(),
        },
        kernel_args: vec!["flatcar.autologin".into()],
        kernel_console: vec!["console=tty0".into(), "console=ttyS0,115200n8".into()],
        pxe_command: "echo 'you must (re)provision the node by booting via iPXE from http://10.10.0.2:8080/boot.ipxe'; exit 1".into(),
        snippets: vec![
            file_snippet("snippets/node-exporter.bu"),
            file_snippet("snippets/sysctl.bu"),
        ],
        installer_snippets: vec![],
        policy: Policy {
            controllers: ChangePolicy::Hold,
            workers: ChangePolicy::Reprovision,
        },
        netboot_gating: true,
        state_url: None,
        state_password_file: None,
        allow_snippet_overrides: vec![],
        nodes: vec![
            controller_1,
            node("controller-2", Role::Controller, "52:54:00:a1:00:02", "10.10.0.12"),
            node("controller-3", Role::Controller, "52:54:00:a1:00:03", "10.10.0.13"),
            worker_1,
            node("worker-2", Role::Worker, "52:54:00:b1:00:02", "10.10.0.22"),
            worker_3,
        ],
        hooks: vec![],
    };
    assert_eq!(c, expected);
}

#[test]
fn heredoc_origin_line_is_the_first_line_of_its_text() {
    let c = load_with(&options());
    let text = std::fs::read_to_string(example_dir().join("cluster.hcl")).expect("example");
    let SnippetOrigin::Inline { line, .. } = &c.nodes[3].snippets[0].origin else {
        panic!("worker-1's snippet is inline");
    };
    let at_line = text.lines().nth(line - 1).expect("line exists");
    assert_eq!(
        at_line.trim(),
        c.nodes[3].snippets[0]
            .text
            .lines()
            .next()
            .expect("text")
            .trim()
    );
}

#[test]
fn overrides_replace_defaults_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let var_file = dir.path().join("site.vars");
    std::fs::write(&var_file, "flatcar_version = \"3900.0.0\"\n").expect("write var file");

    // Environment < var file < --var.
    let env = vec![(
        "ROUNDHOUSE_VAR_flatcar_version".to_string(),
        "3700.0.0".to_string(),
    )];
    let mut opts = LoadOptions {
        env: Some(env.clone()),
        ..LoadOptions::default()
    };
    assert_eq!(load_with(&opts).os.version, "3700.0.0");
    opts.var_files = vec![var_file];
    assert_eq!(load_with(&opts).os.version, "3900.0.0");
    opts.vars = vec![("flatcar_version".into(), "4000.1.0".into())];
    assert_eq!(load_with(&opts).os.version, "4000.1.0");
}

#[test]
fn undeclared_var_is_an_error() {
    let opts = LoadOptions {
        vars: vec![("flatcar_versoin".into(), "1.2.3".into())],
        env: Some(Vec::new()),
        ..LoadOptions::default()
    };
    let err = load(&example_dir().join("cluster.hcl"), &opts).expect_err("undeclared --var");
    assert_eq!(err.0.len(), 1);
    assert_eq!(
        err.0[0].message,
        "--var sets `flatcar_versoin`, which the cluster file does not declare"
    );
    assert_eq!(
        err.0[0].help.as_deref(),
        Some("did you mean `flatcar_version`?")
    );
}
