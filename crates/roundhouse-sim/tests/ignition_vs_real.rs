//! The simulator's Ignition applier against the real CoreOS Ignition binary (Debian package
//! `ignition`): same config, same starting tree, same resulting tree.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use roundhouse_sim::ignition::{self, Config};
use roundhouse_sim::os::seed_root;
use roundhouse_sim::tree::Tree;

const REAL_IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Files the real tool leaves that are side effects of shadow-utils, not of the config.
const SIDE_EFFECTS: [&str; 5] = [
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/.pwd.lock",
];

fn prepared_root(dir: &Path) -> PathBuf {
    let root = dir.to_path_buf();
    fs::create_dir_all(root.join("etc/selinux")).unwrap();
    // The real Ignition relabels unless SELinux is declared disabled.
    fs::write(
        root.join("etc/selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    seed_root(&root).unwrap();
    root
}

fn run_real(cfg: &str, work: &Path, root: &Path) {
    assert!(
        Path::new(REAL_IGNITION).exists(),
        "{REAL_IGNITION} is missing: install the Debian package `ignition` (apt-get install -y ignition)"
    );
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    // Ignition calls `setfiles` for SELinux labels; a no-op stands in.
    fs::write(bin.join("setfiles"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(bin.join("setfiles"), fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_path = work.join("config.ign");
    fs::write(&cfg_path, cfg).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (stage, extra) in [
        ("fetch-offline", vec!["-neednet", "neednet"]),
        ("files", vec!["-root", root.to_str().unwrap()]),
    ] {
        let out = Command::new(REAL_IGNITION)
            .current_dir(work)
            .env("PATH", &path)
            .env("IGNITION_CONFIG_FILE", &cfg_path)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout"])
            .args(["-config-cache", "cache.json", "-state-file", "state"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "real ignition stage {stage} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Path → description of type, mode, owner, contents or target, and hard-link identity.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if SIDE_EFFECTS.contains(&rel.as_str()) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let owner = format!("{}:{} {:o}", m.uid(), m.gid(), m.mode() & 0o7777);
            let desc = if m.file_type().is_symlink() {
                format!(
                    "link -> {} {}:{}",
                    fs::read_link(&p).unwrap().display(),
                    m.uid(),
                    m.gid()
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {owner}")
            } else if rel == "etc/systemd/system-preset/20-ignition.preset" {
                // The real tool writes preset lines in Go map order, which varies per run.
                let text = fs::read_to_string(&p).unwrap();
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort();
                format!("file {owner} presets {lines:?}")
            } else if rel == "etc/.ignition-result.json" {
                // Holds a timestamp and boot id: only its presence and mode are compared.
                format!("file {owner} <result>")
            } else {
                let link = if m.nlink() > 1 {
                    let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                    format!(" hardlink-group={first}")
                } else {
                    String::new()
                };
                format!(
                    "file {owner} {:?}{link}",
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn compare(name: &str, cfg: &str) {
    let work = tempfile::tempdir().unwrap();
    let real_root = prepared_root(&work.path().join("real"));
    let sim_root = prepared_root(&work.path().join("sim"));
    run_real(cfg, work.path(), &real_root);
    let parsed = Config::parse(cfg.as_bytes()).unwrap();
    ignition::apply(
        &parsed,
        &Tree::new(&sim_root),
        &Default::default(),
        roundhouse_sim::clock::days_since_epoch(),
    )
    .unwrap();
    let real = snapshot(&real_root);
    let sim = snapshot(&sim_root);
    let mut diffs = Vec::new();
    for k in real
        .keys()
        .chain(sim.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, b) = (real.get(k), sim.get(k));
        if a != b {
            diffs.push(format!("{k}\n  real: {a:?}\n  sim:  {b:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}: trees differ:\n{}",
        diffs.join("\n")
    );
    // The comparison must have seen what the config wrote.
    assert!(real.len() > 10, "{name}: suspiciously small tree: {real:?}");
}

#[test]
fn final_node_config_matches_real_ignition() {
    compare(
        "final",
        r#"{"ignition":{"version":"3.3.0"},
"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 a@b","ssh-rsa AAAAB3NzaC1yc2E x@y"]},
  {"name":"alice","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1 c@d"],"groups":["wheel","docker"]}]},
"storage":{"filesystems":[{"device":"/dev/disk/by-label/ROOT","format":"ext4","label":"ROOT","wipeFilesystem":true}],
"files":[{"path":"/etc/hostname","contents":{"source":"data:,node1"},"mode":420},
  {"path":"/ignition_ran","contents":{"source":"data:,"}},
  {"path":"/opt/bin/tool","mode":493,"contents":{"source":"data:;base64,IyEvYmluL3NoCmVjaG8gaGkK"}},
  {"path":"/opt/gz","contents":{"compression":"gzip","source":"data:;base64,H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA=="}},
  {"path":"/etc/app.conf","contents":{"source":"data:,a%20b%0A"},"append":[{"source":"data:,more"}]},
  {"path":"/etc/empty"},
  {"path":"/home/core/f","user":{"name":"core"},"group":{"id":500},"contents":{"source":"data:,x"}},
  {"path":"/etc/ssh/ssh_host_ed25519_key","mode":384,"contents":{"source":"data:,KEY"}}],
"directories":[{"path":"/var/lib/d","mode":448},{"path":"/srv/o","user":{"id":500}},{"path":"/srv/o/p","group":{"name":"docker"}}],
"links":[{"path":"/etc/l1","target":"/opt/gz"},{"path":"/etc/l2","target":"/opt/bin/tool","hard":true},
  {"path":"/var/rel","target":"../etc/app.conf"}]},
"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"},
  {"name":"b.service","mask":true},
  {"name":"docker.service","dropins":[{"name":"10-a.conf","contents":"[Service]\nEnvironment=A=1\n"},{"name":"20-b.conf","contents":"[Service]\nEnvironment=B=2\n"}]},
  {"name":"c.service","enabled":false},
  {"name":"kubelet.service","enabled":true,"contents":"[Service]\nExecStart=/bin/kubelet\n[Install]\nWantedBy=multi-user.target\n"}]}}"#,
    );
}

#[test]
fn installer_config_matches_real_ignition() {
    compare(
        "installer",
        r#"{"ignition":{"version":"3.3.0"},
"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 op@laptop"]}]},
"storage":{"files":[{"path":"/opt/installer","mode":320,"contents":{"source":"data:,%23!%2Fbin%2Fbash%20-ex%0Aflatcar-install%20-d%20%2Fdev%2Fsda%20-C%20stable%20-V%20current%0Asystemctl%20reboot%0A"}}]},
"systemd":{"units":[{"name":"installer.service","enabled":true,"contents":"[Unit]\nRequires=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\nRemainAfterExit=true\nRestart=on-failure\nRestartSec=10s\nExecStart=/opt/installer\n[Install]\nWantedBy=multi-user.target\n"},
  {"name":"sshd.socket","dropins":[{"name":"10-sshd-port.conf","contents":"[Socket]\nListenStream=\nListenStream=2222\n"}]}]}}"#,
    );
}

#[test]
fn new_users_and_groups_match_real_ignition() {
    compare(
        "users",
        // Ignition 2.14 reads specs up to 3.3.0.
        r#"{"ignition":{"version":"3.3.0"},
"passwd":{"groups":[{"name":"ops"},{"name":"fixed","gid":4000}],
  "users":[{"name":"bob","uid":1500,"gecos":"Bob B","shell":"/bin/sh","primaryGroup":"ops","groups":["fixed"],"sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx2 bob"]},
    {"name":"carol","homeDir":"/var/home/carol"},
    {"name":"svc","noCreateHome":true,"passwordHash":"$6$abc$def"}]},
"storage":{"files":[{"path":"/var/home/carol/notes","user":{"name":"carol"},"contents":{"source":"data:,hi"}}]}}"#,
    );
}
