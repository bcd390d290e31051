//! `roundhouse apply` end to end against real peers: the real boot server (`roundhouse serve`,
//! its netboot gating and fetch journal), OpenSSH `sshd` standing in for each node's SSH, and a
//! real power command (a shell script).
//!
//! Each fake node is an `sshd` running in its own mount namespace, chrooted into a throwaway
//! overlay of the host's root: the executor's real commands (`sudo touch /boot/flatcar/first_boot`,
//! `sudo tee /usr/share/oem/grub.cfg`, `test -f /ignition_ran`, …) run against real paths
//! that exist only for that node. User `core` exists only in the overlay. `sudo` is a shim that
//! logs and runs its arguments; `systemctl reboot` is a shim that simulates a reboot: the
//! node's sshd stops answering, then "Ignition" fetches the node's final config from the boot
//! server with curl, creates `/ignition_ran`, and sshd answers again. The power command
//! simulates a PXE install the same way. Needs root (mount namespaces) and the Debian packages
//! openssh-server, openssh-client, curl and util-linux.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// The boot server start-up and small helpers are the simulator harness's; its lab is not used
// here (these tests run real OpenSSH servers as nodes).
#[allow(dead_code)]
mod sim;
use sim::{action_of, chmod, text};

const SSHD: &str = "/usr/sbin/sshd";
const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check_prerequisites() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} missing: install the Debian package openssh-server"
    );
    for tool in ["curl", "unshare", "chroot", "setsid"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            found,
            "{tool} missing: install the Debian packages curl, util-linux and coreutils"
        );
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "these tests run fake nodes in mount namespaces and must run as root"
    );
}

/// Runs a node: a private mount namespace, an overlay of `/` with the node's own writable
/// layer, shims, user core, then sshd chrooted into it. `exec` keeps the pid, so the test's
/// child pid is the node's sshd (whose /proc/PID/root is the node's file system).
const NODE_SH: &str = r#"#!/bin/sh
set -e
W=$1; CONFIG=$2; BOOT=$3; MAC=$4
mount -t tmpfs tmpfs "$W"
mkdir -p "$W/u" "$W/w" "$W/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/u",workdir="$W/w" "$W/root"
R="$W/root"
for d in proc dev sys run tmp; do mount --rbind "/$d" "$R/$d"; done
echo 'core:x:0:0:core:/root:/bin/sh' >> "$R/etc/passwd"
echo 'etcd:x:232:232:etcd:/var/lib/etcd:/bin/false' >> "$R/etc/passwd"
echo 'etcd:x:232:' >> "$R/etc/group"
mkdir -p "$R/boot/flatcar" "$R/usr/share/oem" "$R/var/log" "$R/run/sshd"
rm -f "$R/ignition_ran"
echo $$ > "$R/etc/sim-master.pid"
echo ok > "$R/etc/sim-mode"
echo 1 > "$R/etc/sim-down"
cat > "$R/usr/local/bin/sudo" <<'EOF'
#!/bin/sh
echo "sudo $*" >> /var/log/shim.log
if [ "$1" = touch ] && [ -f /etc/sim-readonly-boot ]; then
  echo "touch: cannot touch '$2': Read-only file system" >&2
  exit 1
fi
exec "$@"
EOF
cat > "$R/usr/local/bin/systemctl" <<EOF
#!/bin/sh
echo "systemctl \$*" >> /var/log/shim.log
if [ "\$1" = reboot ]; then
  master=\$(cat /etc/sim-master.pid); mode=\$(cat /etc/sim-mode); down=\$(cat /etc/sim-down)
  setsid sh -c "kill -STOP \$master; sleep \$down; if [ \$mode != nofetch ]; then curl -fsS '$BOOT/ignition?mac=$MAC&os=installed' -o /dev/null && touch /ignition_ran && rm -f /boot/flatcar/first_boot; fi; kill -CONT \$master" </dev/null >/dev/null 2>&1 &
  kill -9 \$PPID
fi
EOF
chmod 755 "$R/usr/local/bin/sudo" "$R/usr/local/bin/systemctl"
# A blank machine runs no OS: nothing answers SSH on its address until the power action has
# started its installation (a machine answering with its managed host key before roundhouse
# installed it cannot exist, and is evidence of an earlier installation to `plan`).
while [ ! -e "$W.powered" ]; do sleep 0.05; done
exec chroot "$R" /usr/sbin/sshd -D -e -f "$CONFIG"
"#;

/// The PXE power action: records its environment, then plays the machine: boots (asks for
/// iPXE), installs, and on first boot Ignition fetches the final config and creates
/// /ignition_ran. With `nofetch` in nodes/NAME.mode the machine never gets that far.
const POWER_SH: &str = r#"#!/bin/sh
lab="$asset_dir/.."
echo "mac=$mac name=$name domain=$domain asset_dir=$asset_dir" >> "$lab/power.log"
touch "$lab/nodes/$name.powered"
mode=$(cat "$lab/nodes/$name.mode" 2>/dev/null || echo ok)
[ "$mode" = nofetch ] && exit 0
boot=$(cat "$lab/boot-url")
pid=$(cat "$lab/nodes/$name.pid")
# The machine, powered on, goes its own way; the power action returns at once.
(
  curl -fsS "$boot/ipxe?mac=$mac" -o /dev/null || exit 1
  curl -fsS "$boot/ignition?mac=$mac" -o /dev/null || exit 1
  echo "$name" >> "$lab/booted.log"
  if [ "$mode" = slow ]; then sleep 3; else sleep 1.5; fi
  # The installer reboots; firmware that tries the network first asks the boot server again.
  curl -fsS "$boot/ipxe?mac=$mac" -o "$lab/nodes/$name.ipxe-after-install"
  curl -fsS "$boot/ignition?mac=$mac&os=installed" -o /dev/null || exit 1
  touch "/proc/$pid/root/ignition_ran"
) </dev/null >/dev/null 2>&1 &
echo "machine $name powered on"
# A slow BMC: the power action itself takes a while (apply is killed during it in a test).
[ "$mode" = slow ] && sleep 5
exit 0
"#;

struct Node {
    name: String,
    role: &'static str,
    mac: String,
    /// Its own loopback address (domains must be unique), e.g. 127.0.0.2.
    addr: String,
    port: u16,
    child: Option<Child>,
}

struct Lab {
    dir: tempfile::TempDir,
    boot: Child,
    boot_url: String,
    nodes: Vec<Node>,
    kernel_arg: String,
    /// `hook` blocks appended to the cluster file.
    hooks: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.boot.kill();
        let _ = self.boot.wait();
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Lab {
    /// A lab with `nodes` (name, role): boot server running, cluster file written, keys
    /// rendered, every node's sshd running. Nothing installed yet.
    fn new(nodes: &[(&str, &'static str)]) -> Lab {
        check_prerequisites();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["assets/matchbox", "assets/boot-state", "nodes"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let (boot, boot_url) = sim::start_boot_server(root);
        std::fs::write(root.join("boot-url"), &boot_url).unwrap();
        std::fs::write(root.join("node.sh"), NODE_SH).unwrap();
        std::fs::write(root.join("power.sh"), POWER_SH).unwrap();
        for f in ["node.sh", "power.sh"] {
            chmod(&root.join(f), 0o755);
        }
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, (name, role))| Node {
                name: name.to_string(),
                role,
                mac: format!("52:54:00:00:00:{:02x}", i + 1),
                addr: format!("127.0.0.{}", i + 2),
                port: free_port(),
                child: None,
            })
            .collect();
        let mut lab = Lab {
            dir,
            boot,
            boot_url,
            nodes,
            kernel_arg: "lab.generation=1".into(),
            hooks: String::new(),
        };
        lab.write_cluster();
        let r = lab.roundhouse(&["render", "cluster.hcl"]);
        assert!(
            r.status.success(),
            "render: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        for i in 0..lab.nodes.len() {
            lab.start_node(i);
        }
        lab
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_cluster(&self) {
        let mut s = format!(
            "cluster {{\n  name = \"lab\"\n  asset_dir = \"assets\"\n  ssh_pubkeys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml operator@example\"]\n  \
             boot_server_http = \"{}\"\n  kernel_args = [\"{}\"]\n  pxe_command = \"{}\"\n}}\n",
            self.boot_url,
            self.kernel_arg,
            self.root().join("power.sh").display()
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "node \"{}\" {{\n  role = \"{}\"\n  mac = \"{}\"\n  domain = \"{}\"\n  ssh_port = {}\n}}\n",
                n.name, n.role, n.mac, n.addr, n.port
            ));
        }
        s.push_str(&self.hooks);
        std::fs::write(self.root().join("cluster.hcl"), s).unwrap();
    }

    /// Changes every node's kernel arguments: a config change that re-provisions workers.
    fn change_config(&mut self, generation: u32) {
        self.kernel_arg = format!("lab.generation={generation}");
        self.write_cluster();
    }

    fn start_node(&mut self, i: usize) {
        let key = self
            .root()
            .join("assets/keys/hosts")
            .join(&self.nodes[i].name)
            .join("ssh_host_ed25519_key");
        self.start_node_with_host_key(i, &key);
    }

    /// Starts node `i`'s sshd with host key `host_key` (normally its managed key).
    fn start_node_with_host_key(&mut self, i: usize, host_key: &Path) {
        let root = self.root().to_path_buf();
        let n = &self.nodes[i];
        let work = root.join("nodes").join(&n.name);
        std::fs::create_dir_all(&work).unwrap();
        let keys = root.join("assets/keys");
        let config = root.join("nodes").join(format!("{}.sshd_config", n.name));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {}:{}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\n\
                 UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nLogLevel ERROR\n",
                n.addr,
                n.port,
                host_key.display(),
                keys.join("operator_ed25519.pub").display()
            ),
        )
        .unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(root.join("node.sh"))
            .arg(&work)
            .arg(&config)
            .arg(&self.boot_url)
            .arg(&n.mac)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(
            root.join("nodes").join(format!("{}.pid", n.name)),
            child.id().to_string(),
        )
        .unwrap();
        let (addr, port) = (n.addr.clone(), n.port);
        let powered = root.join("nodes").join(format!("{}.powered", n.name));
        self.nodes[i].child = Some(child);
        if !powered.exists() {
            // Never powered on: its SSH comes up with the first power action (node.sh).
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((addr.as_str(), port)).is_err() {
            assert!(Instant::now() < deadline, "fake node sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Powers node `name` on outside roundhouse (a machine another tool installed), and waits
    /// until its SSH answers.
    fn power_on(&self, name: &str) {
        let n = self.nodes.iter().find(|n| n.name == name).unwrap();
        std::fs::write(
            self.root().join("nodes").join(format!("{name}.powered")),
            "",
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((n.addr.as_str(), n.port)).is_err() {
            assert!(Instant::now() < deadline, "fake node sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_node(&mut self, name: &str) {
        let n = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        let mut c = n.child.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// A path inside node `name`'s own file system.
    fn node_path(&self, name: &str, path: &str) -> PathBuf {
        let n = self.nodes.iter().find(|n| n.name == name).unwrap();
        let pid = n.child.as_ref().unwrap().id();
        PathBuf::from(format!("/proc/{pid}/root{path}"))
    }

    fn node_file(&self, name: &str, path: &str) -> String {
        std::fs::read_to_string(self.node_path(name, path)).unwrap_or_default()
    }

    fn set_node(&self, name: &str, file: &str, value: &str) {
        std::fs::write(self.node_path(name, &format!("/etc/{file}")), value).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).current_dir(self.root()).stdin(Stdio::null());
        c
    }

    fn roundhouse(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `apply --yes` with waits short enough for a test.
    fn apply_args(extra: &[&'static str]) -> Vec<&'static str> {
        let mut a = vec![
            "apply",
            "cluster.hcl",
            "--yes",
            "--connect-timeout",
            "1",
            "--poll-initial",
            "0.2",
            "--poll-max",
            "1",
            "--pxe-timeout",
            "30",
            "--in-place-timeout",
            "30",
            "--reach-timeout",
            "10",
        ];
        // A flag given in `extra` replaces the default above.
        for pair in extra.chunks(2) {
            if let Some(i) = a.iter().position(|x| *x == pair[0])
                && pair[0].starts_with("--")
                && pair.len() == 2
                && pair[0] != "--output"
            {
                a[i + 1] = pair[1];
            } else {
                a.extend_from_slice(pair);
            }
        }
        a
    }

    fn apply(&self, extra: &[&'static str]) -> Output {
        self.roundhouse(&Self::apply_args(extra))
    }

    fn status(&self) -> BTreeMap<String, serde_json::Value> {
        let out = self.roundhouse(&["status", "cluster.hcl", "--output", "json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
            .collect()
    }

    fn plan_json(&self) -> serde_json::Value {
        let out = self.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
        assert!(
            out.status.success(),
            "plan: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// First apply PXE-installs every node through the power command; the result is what status
/// reports, and a second plan has nothing to do. A config change then re-provisions the
/// workers in place over SSH (exact commands checked on the node) and holds the controller.
#[test]
fn pxe_install_then_in_place_reprovision_then_nothing_to_do() {
    let mut lab = Lab::new(&[("c1", "controller"), ("w1", "worker"), ("w2", "worker")]);
    let plan = lab.plan_json();
    for n in ["c1", "w1", "w2"] {
        assert_eq!(action_of(&plan, n), "provision");
    }

    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let power = std::fs::read_to_string(lab.root().join("power.log")).unwrap();
    let asset_dir = lab.root().join("assets");
    for n in &lab.nodes {
        let line = format!(
            "mac={} name={} domain={} asset_dir={}",
            n.mac,
            n.name,
            n.addr,
            asset_dir.display()
        );
        assert!(power.contains(&line), "power.log lacks {line:?}:\n{power}");
        // Success removed the flag, so the next run's flag proves a fresh Ignition run.
        assert!(!lab.node_path(&n.name, "/ignition_ran").exists());
    }
    for n in &lab.nodes {
        // Once its installer ran, the boot server told the machine to boot from its disk.
        let again = std::fs::read_to_string(
            lab.root()
                .join("nodes")
                .join(format!("{}.ipxe-after-install", n.name)),
        )
        .unwrap();
        assert!(
            again.contains("booting from local disk"),
            "{}: {again}",
            n.name
        );
    }
    let status = lab.status();
    for (name, s) in &status {
        assert_eq!(s["state"], "installed", "{name}: {s}");
        assert_eq!(s["applied_digest"], s["desired_digest"], "{name}");
        assert_eq!(s["drift"], false);
        assert_eq!(s["last_fetch"]["current"], true, "{name}: {s}");
        assert_eq!(
            s["last_fetch"]["config_digest"], s["applied_digest"],
            "{name}: {s}"
        );
        assert_eq!(s["last_action"]["kind"], "confirmed");
    }
    let netboot: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.root().join("assets/boot-state/netboot.json")).unwrap(),
    )
    .unwrap();
    for n in &lab.nodes {
        assert_eq!(
            netboot["nodes"][&n.mac]["netboot"], "installed",
            "{netboot}"
        );
    }
    let again = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    // `render` uses the same managed keys: its output is byte for byte what apply published.
    let rendered = lab.root().join("rendered");
    let r = lab.roundhouse(&["render", "cluster.hcl", "--out", rendered.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    for n in &lab.nodes {
        let file = format!("ignition/{}.ign", n.name);
        assert_eq!(
            std::fs::read(rendered.join(&file)).unwrap(),
            std::fs::read(lab.root().join("assets/matchbox").join(&file)).unwrap(),
            "{file}"
        );
    }

    lab.change_config(2);
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "c1"), "hold");
    assert_eq!(action_of(&plan, "w1"), "reprovision-in-place");
    let detailed = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(detailed.status.code(), Some(2));

    let out = lab.apply(&["--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "plan");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["report"]["outcomes"].as_array().unwrap().len(), 2);
    for w in ["w1", "w2"] {
        let log = lab.node_file(w, "/var/log/shim.log");
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            vec![
                // Confirming the PXE install.
                "sudo rm -f /ignition_ran",
                // The in-place re-provision.
                "sudo touch /boot/flatcar/first_boot",
                "sudo tee /usr/share/oem/grub.cfg",
                "sudo rm -f /ignition_ran",
                "sudo systemctl reboot",
                "systemctl reboot",
                // Confirming it.
                "sudo rm -f /ignition_ran",
            ],
            "{w}"
        );
        let mac = &lab.nodes.iter().find(|n| n.name == w).unwrap().mac;
        assert_eq!(
            lab.node_file(w, "/usr/share/oem/grub.cfg"),
            format!(
                "set linux_append=\"lab.generation=2 ignition.config.url={}/ignition?mac={mac}&os=installed\"\n\
                 set linux_console=\"console=tty0 console=ttyS0\"\n",
                lab.boot_url
            )
        );
    }
    assert_eq!(
        lab.node_file("c1", "/var/log/shim.log"),
        "sudo rm -f /ignition_ran\n",
        "the held controller was touched only to confirm its PXE install"
    );
    let status = lab.status();
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
    assert_eq!(status["c1"]["drift"], true);
    assert_eq!(status["c1"]["state"], "installed");
    let detailed = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(detailed.status.code(), Some(0), "{}", text(&detailed));
}

/// One node's SSH never answers and another reboots but never fetches its new config: both
/// fail within their deadlines with errors naming the node, the step and the digest; the
/// third node is re-provisioned as if nothing happened.
#[test]
fn unreachable_and_never_fetching_nodes_fail_alone() {
    let mut lab = Lab::new(&[("w1", "worker"), ("w2", "worker"), ("w3", "worker")]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));

    lab.stop_node("w2");
    lab.set_node("w3", "sim-mode", "nofetch");
    lab.change_config(2);
    let new_digest = lab.plan_json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "w3")
        .unwrap()["new_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let out = lab.apply(&["--reach-timeout", "3", "--in-place-timeout", "6"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (w2_addr, w2_port) = (&lab.nodes[1].addr, lab.nodes[1].port);
    assert!(
        stderr.contains(&format!(
            "failed: node w2: preparing the in-place re-provision: cannot reach core@{w2_addr}:{w2_port} over SSH within 3s"
        )),
        "{stderr}"
    );
    let short = &new_digest[7..19];
    assert!(
        stderr.contains(&format!(
            "failed: node w3: did not fetch its new final config (config {short}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("apply: 1 succeeded, 2 failed, 0 not started"),
        "{stderr}"
    );
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "installed");
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
    assert_eq!(status["w3"]["desired_digest"], new_digest.as_str());
    assert_ne!(status["w3"]["applied_digest"], new_digest.as_str());
    assert_eq!(status["w2"]["state"], "failed");
    assert_eq!(status["w3"]["state"], "failed");
    assert!(
        status["w3"]["last_action"]["message"]
            .as_str()
            .unwrap()
            .contains(short),
        "{}",
        status["w3"]
    );
    // A failed in-place attempt keeps the old installation: the next plan tries in place again.
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w2"), "reprovision-in-place");
    assert_eq!(action_of(&plan, "w1"), "none");
}

/// kill -9 of apply right after the reboot was issued: the next apply resumes from the
/// journal, waits for that reboot and confirms it, without rebooting the node again. While the
/// first apply runs, a second one refuses, naming the first's pid.
#[test]
fn killed_apply_resumes_without_a_second_reboot_and_applies_do_not_overlap() {
    let mut lab = Lab::new(&[("w1", "worker")]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));

    lab.set_node("w1", "sim-down", "4");
    lab.change_config(2);
    let mut first = lab
        .command(&Lab::apply_args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab
        .node_file("w1", "/var/log/shim.log")
        .contains("systemctl reboot")
    {
        assert!(
            Instant::now() < deadline,
            "the first apply never rebooted w1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let second = lab.apply(&[]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another roundhouse is already writing")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let status = lab.status();
    assert!(
        status["w1"]["pending_intent"].is_object(),
        "the intent was journaled before the reboot: {}",
        status["w1"]
    );

    let resumed = lab.apply(&[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("resuming"),
        "{}",
        text(&resumed)
    );
    let log = lab.node_file("w1", "/var/log/shim.log");
    assert_eq!(
        log.matches("systemctl reboot").count(),
        2, // the `sudo systemctl reboot` line and the shim's own
        "rebooted again:\n{log}"
    );
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "installed");
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
    let detailed = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(detailed.status.code(), Some(0), "{}", text(&detailed));
}

/// `recreate` forces a PXE install of an installed node: it is marked install-pending on the
/// boot server, its power action runs again, and the request is cleared once confirmed.
/// Controllers need --allow-controllers.
#[test]
fn recreate_reinstalls_by_pxe_and_guards_controllers() {
    let lab = Lab::new(&[("c1", "controller"), ("w1", "worker")]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));

    let refused = lab.roundhouse(&["recreate", "cluster.hcl", "c1"]);
    assert_eq!(refused.status.code(), Some(64), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-controllers"));
    let unknown = lab.roundhouse(&["recreate", "cluster.hcl", "nope"]);
    assert_eq!(unknown.status.code(), Some(65), "{}", text(&unknown));

    let ok = lab.roundhouse(&["recreate", "cluster.hcl", "w1"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "provision");
    assert_eq!(action_of(&plan, "c1"), "none");
    let item = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "w1")
        .unwrap();
    assert_eq!(item["recreate"], true);

    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let power = std::fs::read_to_string(lab.root().join("power.log")).unwrap();
    assert_eq!(power.matches("name=w1 ").count(), 2, "{power}");
    assert_eq!(power.matches("name=c1 ").count(), 1, "{power}");
    let events = lab.status();
    assert_eq!(events["w1"]["state"], "installed");
    assert_eq!(events["w1"]["last_action"]["kind"], "confirmed");
    let again = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "the request was cleared: {}",
        text(&again)
    );
}

/// Nodes adopted from Lokomotive's flag files run host keys roundhouse does not know: the
/// in-place re-provision refuses the unknown key at once, and succeeds once the operator pins
/// the node's current key in previous_host_key.pub. The controller is held.
#[test]
fn lokomotive_nodes_are_adopted_and_pinned_before_reprovisioning() {
    let mut lab = Lab::new(&[("c1", "controller"), ("w1", "worker")]);
    // w1 runs the host key "its OS generated", not the managed one.
    let old_key = lab.root().join("nodes/w1-os-key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&old_key)
        .status()
        .expect("running ssh-keygen (Debian package openssh-client)");
    assert!(status.success());
    // Lokomotive installed both: they are running.
    lab.power_on("c1");
    lab.power_on("w1");
    lab.stop_node("w1");
    lab.start_node_with_host_key(1, &old_key);

    let loko = lab.root().join("lokomotive/cluster-assets");
    std::fs::create_dir_all(&loko).unwrap();
    for n in &lab.nodes {
        std::fs::write(loko.join(&n.mac), format!("{}\n", n.addr)).unwrap();
    }
    std::fs::write(loko.join("kubeconfig"), "not a flag file").unwrap();
    let out = lab.roundhouse(&["import-lokomotive", "cluster.hcl", "lokomotive"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("2 adopted, 0 skipped, 1 other entries ignored"),
        "{}",
        text(&out)
    );
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "reprovision-in-place");
    assert_eq!(action_of(&plan, "c1"), "hold");
    let status = lab.status();
    assert_eq!(status["w1"]["applied_digest"], "unknown");

    let out = lab.apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed: node w1: preparing the in-place re-provision:"),
        "{stderr}"
    );
    assert!(stderr.contains("host key mismatch"), "{stderr}");
    assert_eq!(
        lab.node_file("w1", "/var/log/shim.log"),
        "",
        "nothing ran on w1"
    );

    let mut pubkey = old_key.into_os_string();
    pubkey.push(".pub");
    std::fs::copy(
        &pubkey,
        lab.root()
            .join("assets/keys/hosts/w1/previous_host_key.pub"),
    )
    .unwrap();
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let status = lab.status();
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
    assert_eq!(status["c1"]["applied_digest"], "unknown");
    assert_eq!(status["c1"]["drift"], true);
    assert!(
        lab.node_file("w1", "/var/log/shim.log")
            .contains("systemctl reboot")
    );
}

/// kill -9 of apply while a PXE install is under way (the power action started, the machine
/// asked for iPXE, nothing confirmed): the next apply sees the boot request in the fetch
/// journal, does not run the power action again, and confirms the install.
#[test]
fn killed_apply_during_pxe_does_not_power_cycle_again() {
    let lab = Lab::new(&[("w1", "worker")]);
    std::fs::write(lab.root().join("nodes/w1.mode"), "slow").unwrap();
    let mut first = lab
        .command(&Lab::apply_args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let booted = lab.root().join("booted.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&booted)
        .unwrap_or_default()
        .contains("w1")
    {
        assert!(Instant::now() < deadline, "the power action never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "resume", "{plan}");

    let resumed = lab.apply(&[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("not running it again"),
        "{}",
        text(&resumed)
    );
    let power = std::fs::read_to_string(lab.root().join("power.log")).unwrap();
    assert_eq!(power.lines().count(), 1, "power action ran again:\n{power}");
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "installed");
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
}

/// Without --yes, apply asks; with no terminal to ask on it refuses before touching anything.
#[test]
fn apply_without_yes_and_without_a_terminal_changes_nothing() {
    let lab = Lab::new(&[("w1", "worker")]);
    let out = lab.roundhouse(&["apply", "cluster.hcl"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
        "{}",
        text(&out)
    );
    assert!(!lab.root().join("power.log").exists());
    assert!(!lab.root().join("assets/boot-state/netboot.json").exists());
    assert_eq!(lab.status()["w1"]["state"], "unknown");
}

/// A remote step that fails is reported with the node, the step, the command, its exit status
/// and its stderr; nothing after it runs (no reboot), and the node keeps its installation, so
/// the next plan tries in place again.
#[test]
fn a_failing_remote_step_stops_before_the_reboot() {
    let mut lab = Lab::new(&[("w1", "worker")]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    lab.set_node("w1", "sim-readonly-boot", "");
    lab.change_config(2);
    let out = lab.apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "failed: node w1: creating /boot/flatcar/first_boot: `sudo touch /boot/flatcar/first_boot` \
             exited with status 1: touch: cannot touch '/boot/flatcar/first_boot': Read-only file system"
        ),
        "{stderr}"
    );
    let log = lab.node_file("w1", "/var/log/shim.log");
    assert!(!log.contains("reboot"), "{log}");
    assert!(!log.contains("grub.cfg"), "{log}");
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "failed");
    assert_eq!(status["w1"]["drift"], true);
    assert_eq!(action_of(&lab.plan_json(), "w1"), "reprovision-in-place");
}

fn hooks_of<'a>(plan: &'a serde_json::Value, node: &str) -> Vec<&'a str> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == node)
        .unwrap()["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect()
}

fn hook_states(status: &serde_json::Value) -> Vec<(String, String)> {
    status["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hook_file(secret_command: &str, everywhere_command: &str) -> String {
    format!(
        r#"
hook "copy-controller-secrets" {{
  roles = ["controller"]
  upload {{
    source      = "secrets/etcd-ca.crt"
    destination = "/etc/ssl/etcd/ca.crt"
    mode        = "0600"
    owner       = "etcd:etcd"
  }}
  run = ["{secret_command}"]
}}

hook "everywhere" {{
  upload {{
    content     = "hello from roundhouse\n"
    destination = "/etc/roundhouse-hello"
  }}
  run     = ["{everywhere_command}"]
  timeout = 20
}}
"#
    )
}

const SECRET_RUN: &str = "sudo sh -c 'cat /etc/ssl/etcd/ca.crt >> /var/log/secret-runs'";
const EVERYWHERE_RUN: &str = "sudo sh -c 'echo run >> /var/log/everywhere-runs'";

/// Post-provision hooks end to end: after the PXE install each node gets its role's hooks
/// (files with mode and owner, commands in order); changing one hook's input re-runs only that
/// hook on only its nodes, without re-provisioning; a failing command fails the node with the
/// hook, the command and its output, leaves the installation recorded and the hook pending;
/// a PXE re-creation runs the hooks again.
#[test]
fn hooks_run_after_install_rerun_on_change_and_fail_with_their_output() {
    let mut lab = Lab::new(&[("c1", "controller"), ("w1", "worker")]);
    std::fs::create_dir_all(lab.root().join("secrets")).unwrap();
    std::fs::write(lab.root().join("secrets/etcd-ca.crt"), "CA one\n").unwrap();
    lab.hooks = hook_file(SECRET_RUN, EVERYWHERE_RUN);
    lab.write_cluster();

    let plan = lab.plan_json();
    assert_eq!(
        hooks_of(&plan, "c1"),
        vec!["copy-controller-secrets", "everywhere"]
    );
    assert_eq!(hooks_of(&plan, "w1"), vec!["everywhere"]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));

    use std::os::unix::fs::MetadataExt;
    let ca = lab.node_path("c1", "/etc/ssl/etcd/ca.crt");
    let meta = std::fs::metadata(&ca).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (232, 232), "owner etcd:etcd");
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), "CA one\n");
    assert!(
        !lab.node_path("w1", "/etc/ssl/etcd/ca.crt").exists(),
        "controllers only"
    );
    for n in ["c1", "w1"] {
        let hello = lab.node_path(n, "/etc/roundhouse-hello");
        let meta = std::fs::metadata(&hello).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644, "default mode");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "default owner root:root");
        assert_eq!(
            lab.node_file(n, "/etc/roundhouse-hello"),
            "hello from roundhouse\n"
        );
        assert_eq!(lab.node_file(n, "/var/log/everywhere-runs"), "run\n", "{n}");
        // The upload went through `sudo install` into a staged name, then a rename.
        let log = lab.node_file(n, "/var/log/shim.log");
        assert!(
            log.contains("sudo install -D -m 0644 -o root -g root"),
            "{n}: {log}"
        );
    }
    assert_eq!(lab.node_file("c1", "/var/log/secret-runs"), "CA one\n");
    let status = lab.status();
    for n in ["c1", "w1"] {
        assert!(
            hook_states(&status[n]).iter().all(|(_, s)| s == "done"),
            "{n}: {}",
            status[n]
        );
    }
    let again = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // The secret changes: only the controller's secret hook runs again; nothing is
    // re-provisioned.
    std::fs::write(lab.root().join("secrets/etcd-ca.crt"), "CA two\n").unwrap();
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "c1"), "run-hooks");
    assert_eq!(hooks_of(&plan, "c1"), vec!["copy-controller-secrets"]);
    assert_eq!(action_of(&plan, "w1"), "none");
    let status = lab.status();
    assert_eq!(
        hook_states(&status["c1"]),
        vec![
            ("copy-controller-secrets".to_string(), "pending".to_string()),
            ("everywhere".to_string(), "done".to_string())
        ]
    );
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lab.node_file("c1", "/var/log/secret-runs"),
        "CA one\nCA two\n"
    );
    assert_eq!(lab.node_file("c1", "/var/log/everywhere-runs"), "run\n");
    assert_eq!(lab.node_file("w1", "/var/log/everywhere-runs"), "run\n");
    assert_eq!(lab.node_file("c1", "/etc/ssl/etcd/ca.crt"), "CA two\n");
    let power = std::fs::read_to_string(lab.root().join("power.log")).unwrap();
    assert_eq!(power.lines().count(), 2, "no PXE install: {power}");
    assert!(!lab.node_file("c1", "/var/log/shim.log").contains("reboot"));
    assert_eq!(lab.status()["c1"]["state"], "installed");

    // A failing command fails the node with the hook, the command and its output.
    let failing = "sh -c 'echo some output; echo it broke >&2; exit 3'";
    lab.hooks = hook_file(SECRET_RUN, failing);
    lab.write_cluster();
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "run-hooks");
    assert_eq!(hooks_of(&plan, "w1"), vec!["everywhere"]);
    let out = lab.apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in ["c1", "w1"] {
        assert!(
            stderr.contains(&format!(
                "failed: node {n}: hook everywhere: `{failing}` exited with status 3: some output"
            )),
            "{stderr}"
        );
    }
    assert!(stderr.contains("it broke"), "{stderr}");
    let status = lab.status();
    for n in ["c1", "w1"] {
        assert_eq!(
            status[n]["state"], "installed",
            "the installation stays recorded"
        );
        assert_eq!(status[n]["applied_digest"], status[n]["desired_digest"]);
        assert_eq!(
            status[n]["last_action"]["kind"], "hook-failed",
            "{}",
            status[n]
        );
        assert!(
            hook_states(&status[n]).contains(&("everywhere".to_string(), "pending".to_string())),
            "{}",
            status[n]
        );
    }
    let plan = lab.plan_json();
    assert_eq!(
        action_of(&plan, "w1"),
        "run-hooks",
        "still pending: the next apply retries"
    );

    // Fixed: it runs and is done.
    lab.hooks = hook_file(
        SECRET_RUN,
        "sudo sh -c 'echo fixed >> /var/log/everywhere-runs'",
    );
    lab.write_cluster();
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lab.node_file("w1", "/var/log/everywhere-runs"),
        "run\nfixed\n"
    );

    // A PXE re-creation wipes the node: every one of its hooks runs again.
    let out = lab.roundhouse(&["recreate", "cluster.hcl", "w1"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "provision");
    assert_eq!(hooks_of(&plan, "w1"), vec!["everywhere"]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lab.node_file("w1", "/var/log/everywhere-runs"),
        "run\nfixed\nfixed\n"
    );
    assert_eq!(
        lab.node_file("c1", "/var/log/secret-runs"),
        "CA one\nCA two\n"
    );
    let detailed = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(detailed.status.code(), Some(0), "{}", text(&detailed));
}

/// An in-place re-provision wipes the root file system, so every hook of the node runs again
/// after it; a hook that outlives its `timeout` fails the node saying so, and stays pending.
#[test]
fn hooks_rerun_after_in_place_reprovision_and_time_out() {
    let mut lab = Lab::new(&[("w1", "worker")]);
    let hook = |run: &str, timeout: u32| {
        format!("hook \"everywhere\" {{\n  run = [\"{run}\"]\n  timeout = {timeout}\n}}\n")
    };
    lab.hooks = hook(EVERYWHERE_RUN, 30);
    lab.write_cluster();
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.node_file("w1", "/var/log/everywhere-runs"), "run\n");

    lab.change_config(2);
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "reprovision-in-place");
    assert_eq!(hooks_of(&plan, "w1"), vec!["everywhere"]);
    let out = lab.apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lab.node_file("w1", "/var/log/everywhere-runs"),
        "run\nrun\n"
    );
    let log = lab.node_file("w1", "/var/log/shim.log");
    let reboot = log.find("systemctl reboot").expect("rebooted");
    let hook_ran = log.rfind("sudo sh -c echo run").expect("hook ran");
    assert!(
        hook_ran > reboot,
        "the hook ran after the re-provision:\n{log}"
    );

    lab.hooks = hook("sleep 30", 2);
    lab.write_cluster();
    assert_eq!(action_of(&lab.plan_json(), "w1"), "run-hooks");
    let started = Instant::now();
    let out = lab.apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("failed: node w1: hook everywhere: did not finish within 2s (its `timeout`)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        hook_states(&lab.status()["w1"]),
        vec![("everywhere".to_string(), "pending".to_string())]
    );
}
