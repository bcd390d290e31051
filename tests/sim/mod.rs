//! A lab for end-to-end tests of the `roundhouse` binary against simulated machines: the real
//! boot server (`roundhouse serve`), a fleet from `roundhouse-sim` (iPXE, installer, Ignition,
//! SSH and a Redfish BMC per machine) and a cluster file whose power action is a shell script
//! that drives each machine's BMC with curl, as an operator's `command` driver would.
//!
//! What the tests check on the machines goes through their SSH servers with OpenSSH's `ssh`
//! (pinned host key, the operator key roundhouse generated), so "what SSH shows" is what a
//! person logging in would see. The simulator's own table (`Machine::info`) is used for what
//! only hardware would know: power actions, boots, installs, Ignition runs, faults.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use roundhouse_sim::{Faults, Fleet, FleetSpec, Mac, Machine, MachineInfo};

pub const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");

/// Every simulated duration is multiplied by this: a PXE install's waits add up to 0.75 s.
pub const TIME_FACTOR: f64 = 0.01;

const OPERATOR_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml operator@example";

/// A kernel argument every node carries: the tests look for it in the OEM grub.cfg and on the
/// machine's kernel command line.
pub const KERNEL_ARG: &str = "lab.kernel=sim";

/// The power action: a one-time network boot and a restart through the machine's BMC. A
/// restart of a machine that is off powers it on, so this serves fresh and installed machines.
const POWER_SH: &str = r#"#!/bin/sh
set -e
lab=$(dirname "$asset_dir")
bmc=$(cat "$lab/bmc/$name")
echo "$name $mac" >> "$lab/power.log"
sys="$bmc/redfish/v1/Systems/1"
curl -fsS --max-time 5 -X PATCH -H 'Content-Type: application/json' \
  -d '{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}' "$sys"
curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' \
  -d '{"ResetType":"ForceRestart"}' "$sys/Actions/ComputerSystem.Reset"
echo "$name: one-time PXE boot set, restart requested"
# A slow BMC: the power action itself takes a while (a test kills apply during it).
if [ -f "$lab/slow-bmc" ]; then sleep 10; fi
"#;

/// One node of the lab: its cluster-file entry and its simulated machine.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub role: &'static str,
    pub mac: Mac,
    /// The machine's own loopback address, used as the node's domain.
    pub address: String,
    pub ssh_port: u16,
    pub bmc_url: String,
}

pub struct Lab {
    rt: tokio::runtime::Runtime,
    fleet: Option<Fleet>,
    boot: Child,
    pub boot_url: String,
    pub nodes: Vec<Node>,
    /// Generation written by the cluster snippet into `/etc/lab/generation`, per node.
    generation: BTreeMap<String, u32>,
    /// Config digest → generation, per node, from every plan of a written cluster file.
    digests: BTreeMap<(String, String), u32>,
    /// Environment variables of every `roundhouse` command (e.g. `ROUNDHOUSE_STATE_URL`).
    env: Vec<(String, String)>,
    // Last, so the machines and the boot server are gone before their directory is removed.
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.boot.kill();
        let _ = self.boot.wait();
        if let Some(f) = self.fleet.take() {
            self.rt.block_on(f.shutdown());
        }
    }
}

pub fn check_prerequisites() {
    for (tool, pkg) in [
        ("curl", "curl"),
        ("ssh", "openssh-client"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("chroot", "coreutils"),
        ("bash", "bash"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "{tool} missing: install the Debian package {pkg}");
    }
}

impl Lab {
    /// A lab with `nodes` (name, role): boot server and fleet running (machines off, blank
    /// disks, network boot after disk as on real servers), cluster file written at
    /// generation 1. Nothing is installed.
    pub fn new(nodes: &[(&str, &'static str)]) -> Lab {
        Lab::with_faults(nodes, &[])
    }

    /// As [`Lab::new`], with faults in force from the start for some machines.
    pub fn with_faults(nodes: &[(&str, &'static str)], faults: &[(&str, Faults)]) -> Lab {
        check_prerequisites();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["assets/matchbox", "assets/boot-state", "bmc"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let (boot, boot_url) = start_boot_server(&root);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let machines: Vec<serde_json::Value> = nodes
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let mut m = serde_json::json!({
                    "mac": format!("52:54:00:5e:00:{:02x}", i + 1),
                    "name": name,
                });
                if let Some((_, f)) = faults.iter().find(|(n, _)| n == name) {
                    m["faults"] = serde_json::to_value(f).unwrap();
                }
                m
            })
            .collect();
        let spec = serde_json::json!({
            "boot_url": format!("{boot_url}/boot.ipxe"),
            "state_dir": root.join("sim"),
            "time_factor": TIME_FACTOR,
            "machines": machines,
        });
        let spec = FleetSpec::parse(&spec.to_string()).unwrap();
        let fleet = rt
            .block_on(Fleet::start(spec))
            .unwrap_or_else(|e| panic!("starting the simulated fleet: {e}"));
        let nodes: Vec<Node> = nodes
            .iter()
            .zip(fleet.table())
            .map(|((name, role), info)| Node {
                name: name.to_string(),
                role,
                mac: Mac::parse(&info.mac).unwrap(),
                address: info.address.clone(),
                ssh_port: port_of(&info.ssh),
                bmc_url: info.bmc_url.clone(),
            })
            .collect();
        for n in &nodes {
            std::fs::write(root.join("bmc").join(&n.name), &n.bmc_url).unwrap();
        }
        std::fs::write(root.join("power.sh"), POWER_SH).unwrap();
        chmod(&root.join("power.sh"), 0o755);
        let generation = nodes.iter().map(|n| (n.name.clone(), 1)).collect();
        let mut lab = Lab {
            rt,
            fleet: Some(fleet),
            boot,
            boot_url,
            nodes,
            generation,
            digests: BTreeMap::new(),
            env: Vec::new(),
            dir,
        };
        lab.write_cluster();
        lab
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn machine(&self, name: &str) -> &Machine {
        let mac = self.node(name).mac;
        self.fleet.as_ref().unwrap().machine(&mac).unwrap()
    }

    pub fn info(&self, name: &str) -> MachineInfo {
        self.machine(name).info()
    }

    /// Every machine's table row and recent log, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let m = self.machine(&n.name);
            s.push_str(&format!("--- {} {:#?}\n", n.name, m.info()));
            for l in m.log().iter().rev().take(30).rev() {
                s.push_str(&format!("  {l}\n"));
            }
        }
        s
    }

    /// Asserts that `out` succeeded, with the machines' state in the message.
    pub fn assert_ok(&self, out: &Output) {
        assert!(out.status.success(), "{}\n{}", text(out), self.describe());
    }

    pub fn set_faults(&self, name: &str, faults: Faults) {
        self.machine(name).set_faults(faults);
    }

    /// Waits until machine `name` satisfies `pred`; panics with its table row otherwise.
    pub fn wait_machine(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&MachineInfo) -> bool + Send + 'static,
    ) -> MachineInfo {
        let m = self.machine(name).clone();
        self.rt
            .block_on(m.wait_for(timeout, pred))
            .unwrap_or_else(|row| panic!("{name}: {what} within {timeout:?}: {row:#?}"))
    }

    /// Sets the generation of the given nodes' snippet and rewrites the cluster file.
    pub fn change_snippet(&mut self, names: &[&str], generation: u32) {
        for n in names {
            self.generation.insert(n.to_string(), generation);
        }
        self.write_cluster();
    }

    fn write_cluster(&mut self) {
        let mut s = format!(
            "cluster {{\n  name = \"sim\"\n  asset_dir = \"assets\"\n  ssh_pubkeys = [\"{OPERATOR_PUB}\"]\n  \
             boot_server_http = \"{}\"\n  kernel_args = [\"{KERNEL_ARG}\"]\n  \
             power {{\n    driver = \"command\"\n    command = \"{}\"\n    timeout_secs = 30\n  }}\n}}\n",
            self.boot_url,
            self.root().join("power.sh").display()
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "node \"{}\" {{\n  role = \"{}\"\n  mac = \"{}\"\n  domain = \"{}\"\n  ssh_port = {}\n  \
                 snippets = [<<-EOT\n    variant: flatcar\n    version: 1.0.0\n    storage:\n      files:\n        \
                 - path: /etc/lab/generation\n          contents:\n            inline: \"{}\"\n    EOT\n  ]\n}}\n",
                n.name,
                n.role,
                n.mac,
                n.address,
                n.ssh_port,
                self.generation[&n.name]
            ));
        }
        std::fs::write(self.root().join("cluster.hcl"), s).unwrap();
        // Remember which digest each node's generation has, to tell what a node should run
        // from the digest `status` says it runs.
        let plan = self.plan_json();
        for item in plan["items"].as_array().unwrap() {
            let name = item["name"].as_str().unwrap().to_string();
            let digest = item["new_digest"].as_str().unwrap().to_string();
            let g = self.generation[&name];
            self.digests.insert((name, digest), g);
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).current_dir(self.root()).stdin(Stdio::null());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Sets an environment variable for every later `roundhouse` command of the lab (`None`
    /// removes it), e.g. `ROUNDHOUSE_STATE_URL` to keep the state in PostgreSQL.
    #[allow(dead_code)] // not every test binary sharing this harness uses it
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.env.push((name.to_string(), v.to_string()));
        }
    }

    pub fn roundhouse(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `apply --yes` with waits that suit the time factor. A flag in `extra` replaces the
    /// default.
    pub fn apply_args(extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "apply",
            "cluster.hcl",
            "--yes",
            "--max-parallel",
            "10",
            "--connect-timeout",
            "2",
            "--poll-initial",
            "0.2",
            "--poll-max",
            "0.5",
            "--pxe-timeout",
            "90",
            "--in-place-timeout",
            "90",
            "--reach-timeout",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for pair in extra.chunks(2) {
            match a.iter().position(|x| x == pair[0]) {
                Some(i) if pair.len() == 2 => a[i + 1] = pair[1].to_string(),
                _ => a.extend(pair.iter().map(|s| s.to_string())),
            }
        }
        a
    }

    pub fn apply(&self, extra: &[&str]) -> Output {
        let args = Self::apply_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.roundhouse(&args)
    }

    pub fn plan_json(&self) -> serde_json::Value {
        let out = self.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
        assert!(out.status.success(), "plan: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `plan --detailed-exitcode`'s exit code.
    pub fn plan_exit_code(&self) -> Option<i32> {
        let out = self.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
        out.status.code()
    }

    pub fn status(&self) -> BTreeMap<String, serde_json::Value> {
        let out = self.roundhouse(&["status", "cluster.hcl", "--output", "json"]);
        assert!(out.status.success(), "status: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
            .collect()
    }

    /// The lines of the power actions' log: `NAME MAC` per run.
    pub fn power_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("power.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn power_actions(&self, name: &str) -> usize {
        self.power_log()
            .iter()
            .filter(|l| l.split(' ').next() == Some(name))
            .count()
    }

    /// Runs `cmd` on node `name` over SSH as core, pinning the node's managed host key.
    pub fn ssh(&self, name: &str, cmd: &str) -> Output {
        let n = self.node(name);
        let keys = self.root().join("assets/keys");
        let host_pub = std::fs::read_to_string(
            keys.join("hosts")
                .join(name)
                .join("ssh_host_ed25519_key.pub"),
        )
        .unwrap();
        let kh = self.root().join(format!("known_hosts.{name}"));
        std::fs::write(
            &kh,
            format!("[{}]:{} {}\n", n.address, n.ssh_port, host_pub.trim()),
        )
        .unwrap();
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .arg("-i")
            .arg(keys.join("operator_ed25519"))
            .args(["-p", &n.ssh_port.to_string()])
            .arg(format!("core@{}", n.address))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh (Debian package openssh-client)")
    }

    /// Like [`Lab::ssh`], and the command must succeed.
    pub fn ssh_ok(&self, name: &str, cmd: &str) -> String {
        let out = self.ssh(name, cmd);
        assert!(out.status.success(), "{name}: ssh {cmd:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What each node's `status` row says agrees with what the machine shows: an installed
    /// node answers SSH with its pinned host key, runs the generation whose digest `status`
    /// calls applied, has the kernel arguments and Ignition URL in its OEM grub.cfg and on its
    /// command line, and fetched exactly the bytes whose SHA-256 the boot server journaled.
    /// A node never installed has no installed OS.
    pub fn assert_status_matches_machines(&self) {
        let status = self.status();
        for n in &self.nodes {
            let s = &status[&n.name];
            let info = self.info(&n.name);
            let applied = s["applied_digest"].as_str();
            match (s["state"].as_str().unwrap(), applied) {
                ("installed", Some(digest)) => {
                    let g = self
                        .digests
                        .get(&(n.name.clone(), digest.to_string()))
                        .unwrap_or_else(|| {
                            panic!(
                                "{}: applied digest {digest} is none the lab wrote: {s}",
                                n.name
                            )
                        });
                    let shown = self.ssh_ok(
                        &n.name,
                        "cat /etc/lab/generation; echo; cat /etc/hostname; cat /usr/share/oem/grub.cfg",
                    );
                    let mut lines = shown.lines();
                    assert_eq!(
                        lines.next(),
                        Some(g.to_string().as_str()),
                        "{}: {shown}",
                        n.name
                    );
                    assert_eq!(lines.next(), Some(n.name.as_str()), "{}: {shown}", n.name);
                    let url = format!(
                        "ignition.config.url={}/ignition?mac={}&os=installed",
                        self.boot_url, n.mac
                    );
                    assert!(
                        shown.contains(&format!("set linux_append=\"{KERNEL_ARG} {url}\"")),
                        "{}: grub.cfg: {shown}",
                        n.name
                    );
                    let cmdline = info.status.cmdline.clone().unwrap_or_default();
                    assert!(
                        cmdline.contains(KERNEL_ARG) && cmdline.contains(&url),
                        "{}: {cmdline}",
                        n.name
                    );
                    assert_eq!(info.status.os, Some("installed"), "{}", n.name);
                    // The bytes the machine ran are the bytes the boot server says it served.
                    let fetched = info.status.last_ignition.as_ref().unwrap().sha256.clone();
                    let journaled = s["last_fetch"]["sha256"].as_str().unwrap_or_default();
                    assert!(
                        journaled.ends_with(&fetched),
                        "{}: machine ran {fetched}, boot server journaled {journaled}",
                        n.name
                    );
                    assert_eq!(s["last_fetch"]["config_digest"], digest, "{}: {s}", n.name);
                }
                ("unknown", None) => {
                    assert_ne!(info.status.os, Some("installed"), "{}: {info:#?}", n.name);
                }
                ("failed", None) => {
                    // A first install that failed: whatever the machine does, it does not run a
                    // config roundhouse published for it.
                    let out = self.ssh(&n.name, "cat /etc/lab/generation");
                    assert!(!out.status.success(), "{}: {}", n.name, text(&out));
                }
                _ => {}
            }
        }
    }
}

/// Starts `roundhouse serve` on a free loopback port for `root/assets/matchbox` (state in
/// `root/assets/boot-state`, reloading every 0.1 s) and returns it with its URL.
pub fn start_boot_server(root: &Path) -> (Child, String) {
    let mut boot = Command::new(BIN)
        .args([
            "serve",
            "--address",
            "127.0.0.1:0",
            "--reload-interval",
            "0.1",
        ])
        .arg("--data-path")
        .arg(root.join("assets/matchbox"))
        .arg("--state-path")
        .arg(root.join("assets/boot-state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(boot.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("boot server exited").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (boot, url)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn action_of(plan: &serde_json::Value, node: &str) -> String {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == node)
        .map(|i| i["action"].as_str().unwrap().to_string())
        .unwrap()
}
