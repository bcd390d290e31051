//! roundhouse against a real boot chain: QEMU machines (UEFI firmware, GRUB, a Debian kernel,
//! the real CoreOS Ignition) built by `lab/qemu/build-image.sh`, provisioned and re-provisioned
//! by `roundhouse apply` through `roundhouse serve`.
//!
//! A controller and a worker, each with a blank disk behind its own OpenIPMI `ipmi_sim` BMC
//! (`lab/qemu/bmc.sh`), three applies:
//! 1. First install by PXE over IPMI: apply sets PXE as the next boot device and powers each
//!    machine on; UEFI iPXE from roundhouse serve, the installer (Ignition in the PXE initrd,
//!    `flatcar-install` from `/assets`, OEM `grub.cfg`, pre-reboot commands, reboot), the first
//!    boot from disk runs Ignition (ROOT wiped, snippet files, hostname, host key); apply
//!    confirms it over SSH with the pinned host key and sets disk as the persistent boot
//!    device; the controller's post-provision hook runs.
//! 2. A changed snippet and kernel argument: the worker is re-provisioned in place by apply's
//!    SSH path (first_boot flag, OEM `grub.cfg`, reboot): the new file is there, a file
//!    written on the old root is gone, `/proc/cmdline` has the new argument, no BMC call was
//!    made. The controller's change is held: untouched, drift in `status`.
//! 3. `recreate --allow-controllers` + apply: PXE set, power cycled over IPMI, the whole
//!    install again, the first boot from disk, the hook again.
//!
//! The cluster's `pxe_command` (which would write the image directly) stays configured and is
//! asserted unused: nodes with a `power` block must never fall back to it.
//!
//! After each apply, `roundhouse status` must match what SSH shows.
//!
//! Needs the Debian packages installed by `scripts/install-test-deps` (QEMU, OVMF, iPXE, the
//! image build tools, openssh-client, openipmi) and apt lists that know the image's packages. The image
//! is cached under `<target>/qemu-lab/image/` by input hash. The host's first non-loopback
//! IPv4 address must be reachable from QEMU's user network (it is, via NAT), or set
//! `ROUNDHOUSE_QEMU_HOST_IP`. Serial consoles are kept under `<target>/qemu-lab/last-run/`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

mod pinned_ssh;

const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");
/// `os_version` of the cluster: the directory the image is served from under
/// `/assets/flatcar/`.
const OS_VERSION: &str = "9999.0.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<target dir>/qemu-lab`: the binary under test lives in `<target dir>/<profile>/`.
fn lab_cache() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("qemu-lab"))
        .expect("the roundhouse binary lives in a target directory")
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install the Debian package {package}"
    );
}

fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} missing: install the Debian package {package}"
    );
}

/// The address QEMU's user network reaches the boot server on, and apply too.
fn host_ip() -> String {
    if let Ok(ip) = std::env::var("ROUNDHOUSE_QEMU_HOST_IP") {
        return ip;
    }
    // Connecting a UDP socket sends nothing; it only makes the kernel pick a source address.
    let sock = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    sock.connect("203.0.113.1:9")
        .or_else(|_| sock.connect("10.255.255.254:9"))
        .expect("no route to pick a host address from: set ROUNDHOUSE_QEMU_HOST_IP");
    let ip = sock.local_addr().expect("local address").ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "the host's address is {ip}: QEMU's user network cannot reach a boot server there; \
         set ROUNDHOUSE_QEMU_HOST_IP"
    );
    ip.to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback UDP port")
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds (or finds cached) the lab image; returns its directory.
fn build_image() -> PathBuf {
    for (tool, package) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("fakeroot", "fakeroot"),
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("sgdisk", "gdisk"),
        ("grub-mkstandalone", "grub-common"),
        ("cpio", "cpio"),
        ("zstd", "zstd"),
        ("bzip2", "bzip2"),
        ("readelf", "binutils"),
        ("depmod", "kmod"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ssh", "openssh-client"),
        ("ipmi_sim", "openipmi"),
    ] {
        require(tool, package);
    }
    require_file("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin");
    require_file("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf");
    require_file("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu");
    let out = lab_cache().join("image");
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(repo().join("lab/qemu/build-image.sh"))
        .arg(&out)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("run lab/qemu/build-image.sh");
    assert!(
        status.success(),
        "lab/qemu/build-image.sh failed ({status}); see its output above"
    );
    eprintln!(
        "image ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    out
}

/// The power command (phases 1 and 2): writes the image and the OEM `grub.cfg` an installer
/// would write, and powers the VM on with lab/qemu/run-vm.sh. Logs each call to power.log.
const POWER_SH: &str = r#"#!/bin/sh
set -eu
lab=$(dirname "$asset_dir")
vm="$lab/vm-$name"
read -r addr port < "$lab/ssh-$name"
echo "$(date +%s) $name $mac" >> "$lab/power.log"
mkdir -p "$vm"
cp --sparse=always "$IMAGE/disk.img" "$vm/disk.img"
"$LABQEMU/set-oem-grub.sh" "$vm/disk.img" "$lab/oem-$name.cfg"
exec "$LABQEMU/run-vm.sh" --dir "$vm" --disk "$vm/disk.img" --mac "$mac" \
  --ssh-addr "$addr" --ssh-port "$port"
"#;

/// One lab machine.
struct Node {
    name: &'static str,
    role: &'static str,
    mac: &'static str,
    /// Loopback address its SSH is forwarded from (domains must be unique).
    addr: &'static str,
    ssh_port: u16,
    /// UDP port of its BMC (ipmi_sim), once it has one.
    bmc_port: u16,
    ipmi: bool,
}

struct Lab {
    dir: PathBuf,
    serve: Child,
    boot: String,
    nodes: Vec<Node>,
    generation: u32,
}

/// Powers off every machine of a lab directory (BMCs first, then VMs started directly).
fn power_off_all(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for e in &entries {
        let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("bmc-") && e.join("ipmi_sim.pid").exists() {
            let _ = Command::new("bash")
                .arg(repo().join("lab/qemu/bmc.sh"))
                .arg("stop")
                .arg(e)
                .status();
        }
    }
    for e in &entries {
        let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("vm-")
            && let Ok(pid) = std::fs::read_to_string(e.join("qemu.pid"))
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Keep the directory: its consoles are what one reads after a failure.
        power_off_all(&self.dir);
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

impl Lab {
    fn new(image: &Path) -> Lab {
        let dir = lab_cache().join("last-run");
        if dir.exists() {
            // A previous run's machines may still be on (a killed test).
            power_off_all(&dir);
            std::fs::remove_dir_all(&dir).expect("remove the previous run's directory");
        }
        let www = dir.join("www/flatcar").join(OS_VERSION);
        for d in [
            &dir.join("assets/matchbox"),
            &dir.join("assets/boot-state"),
            &www,
        ] {
            std::fs::create_dir_all(d).expect("create the lab directories");
        }
        for f in [
            "flatcar_production_image.bin.bz2",
            "flatcar_production_pxe.vmlinuz",
            "flatcar_production_pxe_image.cpio.gz",
        ] {
            std::os::unix::fs::symlink(image.join(f), www.join(f)).expect("link the image");
        }
        let ip = host_ip();
        let mut serve = Command::new(BIN)
            .arg("serve")
            .args(["--address", &format!("{ip}:0"), "--reload-interval", "0.2"])
            .arg("--data-path")
            .arg(dir.join("assets/matchbox"))
            .arg("--state-path")
            .arg(dir.join("assets/boot-state"))
            .arg("--assets-path")
            .arg(dir.join("www"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start roundhouse serve");
        let mut lines = BufReader::new(serve.stderr.take().expect("piped stderr")).lines();
        let boot = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => panic!("roundhouse serve exited before listening"),
            }
        };
        let log = dir.join("serve.log");
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok(mut f) = std::fs::File::create(log) {
                for line in lines.map_while(Result::ok) {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let nodes = vec![
            Node {
                name: "c1",
                role: "controller",
                mac: "52:54:00:ab:00:01",
                addr: "127.0.0.1",
                ssh_port: free_port(),
                bmc_port: free_udp_port(),
                ipmi: false,
            },
            Node {
                name: "w1",
                role: "worker",
                mac: "52:54:00:ab:00:02",
                addr: "127.0.0.2",
                ssh_port: free_port(),
                bmc_port: free_udp_port(),
                ipmi: false,
            },
        ];
        for n in &nodes {
            std::fs::write(
                dir.join(format!("ssh-{}", n.name)),
                format!("{} {}\n", n.addr, n.ssh_port),
            )
            .expect("write the node's SSH forward");
        }
        let power = dir.join("power.sh");
        let script = format!(
            "#!/bin/sh\nIMAGE='{}'\nLABQEMU='{}'\n{}",
            image.display(),
            repo().join("lab/qemu").display(),
            POWER_SH.trim_start_matches("#!/bin/sh\n")
        );
        std::fs::write(&power, script).expect("write power.sh");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&power, std::fs::Permissions::from_mode(0o755))
            .expect("chmod power.sh");
        let lab = Lab {
            dir,
            serve,
            boot,
            nodes,
            generation: 1,
        };
        lab.write_cluster();
        lab
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn write_cluster(&self) {
        let g = self.generation;
        let mut cluster = format!(
            r#"cluster {{
  name             = "qemu"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml operator@example"]
  boot_server_http = "{boot}"
  os_channel       = "stable"
  os_version       = "{OS_VERSION}"
  cached_install   = true
  install_disk     = "/dev/vda"
  install_pre_reboot_cmds = "echo ROUNDHOUSE-LAB-PRE-REBOOT-{g}"
  kernel_args      = ["lab.generation={g}"]
  kernel_console   = ["console=ttyS0,115200n8"]
  pxe_command      = "{power}"
  snippets = [
    <<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      files:
        - path: /etc/roundhouse-lab/generation-{g}
          mode: 0644
          contents:
            inline: |
              generation {g}
    EOT
  ]
}}

# Lokomotive's copy-controller-secrets, in small: what must not be in the Ignition config.
hook "lab-secret" {{
  roles = ["controller"]
  upload {{
    content     = "controller secret\n"
    destination = "/etc/roundhouse-lab/secret"
    mode        = "0600"
  }}
  run = ["sudo touch /etc/roundhouse-lab/hook-ran"]
}}
"#,
            boot = self.boot,
            power = self.dir.join("power.sh").display(),
        );
        for n in &self.nodes {
            let power_block = if n.ipmi {
                format!(
                    "  power {{\n    driver = \"ipmi\"\n    address = \"127.0.0.1\"\n    port = {}\n    \
                     username = \"admin\"\n    password_file = \"bmc-password\"\n  }}\n",
                    n.bmc_port
                )
            } else {
                String::new()
            };
            cluster.push_str(&format!(
                "\nnode \"{}\" {{\n  role     = \"{}\"\n  mac      = \"{}\"\n  domain   = \"{}\"\n  \
                 ssh_port = {}\n{power_block}}}\n",
                n.name, n.role, n.mac, n.addr, n.ssh_port
            ));
            // What an installer writes into the OEM grub.cfg (for the image install).
            let oem = format!(
                "set linux_append=\"lab.generation={g} ignition.config.url={}/ignition?mac={}&os=installed\"\n\
                 set linux_console=\"console=ttyS0,115200n8\"\n",
                self.boot, n.mac
            );
            std::fs::write(self.dir.join(format!("oem-{}.cfg", n.name)), oem)
                .expect("write the OEM grub.cfg");
        }
        std::fs::write(self.dir.join("cluster.hcl"), cluster).expect("write cluster.hcl");
    }

    fn roundhouse(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run roundhouse")
    }

    /// `apply --yes`, with deadlines for TCG on a busy 2-core machine. Returns seconds taken.
    /// A machine whose initrd reports a failure powers itself off; apply would then wait for
    /// its whole deadline, so the consoles are watched and apply is stopped at once.
    fn apply(&self, what: &str) -> f64 {
        let started = Instant::now();
        let out_path = self.dir.join("apply.out");
        let err_path = self.dir.join("apply.err");
        let mut child = Command::new(BIN)
            .args([
                "apply",
                "cluster.hcl",
                "--yes",
                "--connect-timeout",
                "10",
                "--poll-initial",
                "2",
                "--poll-max",
                "5",
                "--pxe-timeout",
                "900",
                "--in-place-timeout",
                "600",
                "--reach-timeout",
                "300",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("create apply.out"))
            .stderr(std::fs::File::create(&err_path).expect("create apply.err"))
            .spawn()
            .expect("run roundhouse apply");
        let mut failed_console = None;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for apply") {
                break Some(status);
            }
            if let Some(n) = self
                .nodes
                .iter()
                .find(|n| self.serial(n.name).contains("ROUNDHOUSE-LAB-FAILED"))
            {
                let _ = child.kill();
                let _ = child.wait();
                failed_console = Some(n.name);
                break None;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        };
        let secs = started.elapsed().as_secs_f64();
        let consoles = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {} serial console (tail) ---\n{}",
                    n.name,
                    self.serial_tail(n.name)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let output = format!(
            "--- apply stdout ---\n{}\n--- apply stderr ---\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        if let Some(node) = failed_console {
            panic!(
                "{what}: {node} reported a failure on its console after {secs:.0} s\n{output}\n{consoles}"
            );
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "{what}: apply failed after {secs:.0} s ({status:?})\n{output}\n{consoles}"
        );
        eprintln!("{what}: apply took {secs:.1} s");
        secs
    }

    fn vm_dir(&self, node: &str) -> PathBuf {
        self.dir.join(format!("vm-{node}"))
    }

    /// The node's current serial console (since its last power-on).
    fn serial(&self, node: &str) -> String {
        std::fs::read(self.vm_dir(node).join("serial.log"))
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// How many earlier consoles run-vm.sh has kept (serial.log.1 … .N).
    fn rotated_consoles(&self, node: &str) -> usize {
        (1..)
            .take_while(|n| self.vm_dir(node).join(format!("serial.log.{n}")).exists())
            .count()
    }

    /// Every console after the first `skip` kept ones, and the current one, in order.
    fn consoles_since(&self, node: &str, skip: usize) -> String {
        let mut all = String::new();
        for n in skip + 1..=self.rotated_consoles(node) {
            if let Ok(b) = std::fs::read(self.vm_dir(node).join(format!("serial.log.{n}"))) {
                all.push_str(&String::from_utf8_lossy(&b).replace('\r', ""));
            }
        }
        all.push_str(&self.serial(node));
        all
    }

    fn serial_tail(&self, node: &str) -> String {
        let s = self.serial(node);
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn bmc_dir(&self, node: &str) -> PathBuf {
        self.dir.join(format!("bmc-{node}"))
    }

    /// Starts the node's BMC and switches its power to IPMI.
    fn start_bmc(&mut self, name: &str) {
        std::fs::write(self.dir.join("bmc-password"), "lab-secret\n").expect("write bmc-password");
        let (port, addr, ssh_port, mac) = {
            let n = self.node(name);
            (n.bmc_port, n.addr, n.ssh_port, n.mac)
        };
        let out = Command::new("bash")
            .arg(repo().join("lab/qemu/bmc.sh"))
            .arg("start")
            .arg(self.bmc_dir(name))
            .arg(port.to_string())
            .args(["admin", "lab-secret", "--"])
            .arg("--dir")
            .arg(self.vm_dir(name))
            .arg("--disk")
            .arg(self.vm_dir(name).join("disk.img"))
            .args(["--mac", mac, "--ssh-addr", addr])
            .args(["--ssh-port", &ssh_port.to_string()])
            .arg("--pxe")
            .arg(format!("{}/boot.ipxe", self.boot))
            .output()
            .expect("run lab/qemu/bmc.sh start");
        assert!(out.status.success(), "bmc.sh start: {}", text(&out));
        for n in &mut self.nodes {
            if n.name == name {
                n.ipmi = true;
            }
        }
        self.write_cluster();
        // ipmi_sim answers once it has read its configuration: ask it like apply will.
        let ready = (0..50).any(|_| {
            if self
                .roundhouse(&["power", "cluster.hcl", name, "status"])
                .status
                .success()
            {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            false
        });
        assert!(
            ready,
            "{name}'s BMC did not answer `roundhouse power … status`"
        );
    }

    fn bmc_calls(&self, node: &str) -> String {
        std::fs::read_to_string(self.bmc_dir(node).join("calls")).unwrap_or_default()
    }

    /// The `set …` calls the node's BMC recorded (boot device and power), from the `skip`th on.
    fn bmc_sets(&self, node: &str, skip: usize) -> Vec<String> {
        self.bmc_calls(node)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, c)| c))
            .filter(|c| c.starts_with("set "))
            .skip(skip)
            .map(str::to_string)
            .collect()
    }

    /// A new machine's disk: blank (no partition table), so only the network can boot it.
    fn blank_disk(&self, node: &str) {
        let vm = self.vm_dir(node);
        std::fs::create_dir_all(&vm).expect("create the VM directory");
        let disk = std::fs::File::create(vm.join("disk.img")).expect("create the disk");
        disk.set_len(2 << 30).expect("size the disk");
    }

    /// Runs `cmd` on the machine as core, with the operator key and the node's pinned host
    /// key (no other key is accepted).
    fn ssh(&self, node: &str, cmd: &str) -> Output {
        let n = self.node(node);
        pinned_ssh::ssh(&self.dir.join("assets"), node, n.addr, n.ssh_port, cmd)
    }

    fn ssh_ok(&self, node: &str, cmd: &str) -> String {
        let out = self.ssh(node, cmd);
        assert!(out.status.success(), "ssh {node} `{cmd}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn power_calls(&self, node: &str) -> usize {
        std::fs::read_to_string(self.dir.join("power.log"))
            .map(|s| {
                s.lines()
                    .filter(|l| l.split_whitespace().nth(1) == Some(node))
                    .count()
            })
            .unwrap_or(0)
    }

    fn status(&self, what: &str) -> serde_json::Value {
        let out = self.roundhouse(&["status", "cluster.hcl", "--output", "json"]);
        assert!(out.status.success(), "{what}: status: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status --output json is JSON")
    }

    fn status_of(&self, what: &str, node: &str) -> serde_json::Value {
        let v = self.status(what);
        v["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == node))
            .unwrap_or_else(|| panic!("{what}: {node} missing from status: {v}"))
            .clone()
    }

    /// `status` agrees with the machine: installed, applied = desired, and the config it last
    /// fetched is the one published now.
    fn assert_status_matches(&self, what: &str, node: &str) {
        let s = self.status_of(what, node);
        assert_eq!(s["state"], "installed", "{what}: {node}: {s}");
        assert_eq!(
            s["applied_digest"], s["desired_digest"],
            "{what}: {node}: {s}"
        );
        assert_eq!(
            s["last_fetch"]["config_digest"], s["applied_digest"],
            "{what}: {node}: {s}"
        );
    }

    /// The machine runs generation `g`: its snippet file, its kernel argument, its hostname,
    /// and the boot that got it there ran Ignition.
    fn assert_runs_generation(&self, node: &str, g: u32, what: &str) {
        let seen = self.ssh_ok(
            node,
            &format!(
                "hostname; cat /etc/roundhouse-lab/generation-{g}; cat /proc/cmdline; \
                 test ! -e /boot/flatcar/first_boot && echo flag-removed; \
                 test ! -e /ignition_ran && echo ignition-ran-cleared"
            ),
        );
        let mut lines = seen.lines();
        assert_eq!(lines.next(), Some(node), "{what}: hostname\n{seen}");
        assert_eq!(
            lines.next(),
            Some(format!("generation {g}").as_str()),
            "{what}: {node}\n{seen}"
        );
        let cmdline = lines.next().unwrap_or_default();
        let args: Vec<&str> = cmdline.split_whitespace().collect();
        let want = format!("lab.generation={g}");
        assert!(
            args.contains(&want.as_str()),
            "{what}: {node}: /proc/cmdline: {cmdline}"
        );
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("lab.generation=") && **a != want),
            "{what}: {node}: /proc/cmdline: {cmdline}"
        );
        // GRUB saw the first-boot flag on this boot; the initrd removed it after Ignition.
        assert!(
            args.contains(&"flatcar.first_boot=detected"),
            "{what}: {node}: {cmdline}"
        );
        assert_eq!(lines.next(), Some("flag-removed"), "{what}: {node}\n{seen}");
        // apply saw /ignition_ran (its wait requires it) and removed it after confirming.
        assert_eq!(
            lines.next(),
            Some("ignition-ran-cleared"),
            "{what}: {node}\n{seen}"
        );
    }

    /// The controller's post-provision hook ran on its current root.
    fn assert_hook_ran(&self, what: &str) {
        let seen = self.ssh_ok(
            "c1",
            "sudo cat /etc/roundhouse-lab/secret; stat -c %a /etc/roundhouse-lab/secret; \
             test -f /etc/roundhouse-lab/hook-ran && echo hook-ran",
        );
        assert_eq!(
            seen, "controller secret\n600\nhook-ran\n",
            "{what}: c1 hook"
        );
    }
}

#[test]
#[ignore = "slow: boots QEMU machines under TCG; scripts/test runs it in the e2e tier"]
fn qemu_fleet_is_installed_reprovisioned_in_place_held_and_recreated_over_ipmi() {
    let image = build_image();
    let mut lab = Lab::new(&image);

    // 1. First install of both by PXE over IPMI: blank disks, each machine behind its own
    //    ipmi_sim BMC; apply sets PXE as the next boot device, powers the machine on, and once
    //    the install is proven makes disk the persistent boot device.
    for node in ["c1", "w1"] {
        lab.blank_disk(node);
        lab.start_bmc(node);
    }
    let t1 = lab.apply("PXE install of both over IPMI (controller and worker)");
    for node in ["c1", "w1"] {
        assert_eq!(
            lab.power_calls(node),
            0,
            "{node}: the power command is not used with IPMI"
        );
        assert_eq!(
            lab.bmc_sets(node, 0),
            ["set boot pxe", "set power 1", "set boot default"],
            "install: {node}'s BMC calls\n{}",
            lab.bmc_calls(node)
        );
        // The installer's reboot restarts QEMU under the BMC: its console is a kept one.
        let serial = lab.consoles_since(node, 0);
        for marker in [
            "lab-init: PXE boot",
            "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (pxe)",
            "flatcar-install: success",
            "ROUNDHOUSE-LAB-PRE-REBOOT-1",
            "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)",
        ] {
            assert!(
                serial.contains(marker),
                "install: `{marker}` missing from {node}'s console\n{}",
                lab.serial_tail(node)
            );
        }
        lab.assert_runs_generation(node, 1, "install");
        lab.assert_status_matches("install", node);
    }
    lab.assert_hook_ran("install");
    // The file systems are where Flatcar has them, by label.
    let mounts = lab.ssh_ok("w1", "cat /proc/mounts");
    for (dev, at) in [
        ("/dev/disk/by-label/ROOT", "/ "),
        ("/dev/disk/by-label/USR-A", "/usr "),
        ("/dev/disk/by-label/EFI-SYSTEM", "/boot "),
        ("/dev/disk/by-label/OEM", "/usr/share/oem "),
    ] {
        assert!(
            mounts
                .lines()
                .any(|l| l.starts_with(&format!("{dev} {at}"))),
            "install: {dev} not on {at}\n{mounts}"
        );
    }

    // 2. A changed snippet and kernel argument: the worker is re-provisioned in place, the
    //    controller's change is held.
    for node in ["c1", "w1"] {
        lab.ssh_ok(
            node,
            "sudo touch /etc/old-root-marker && test -f /etc/old-root-marker",
        );
    }
    lab.generation = 2;
    lab.write_cluster();
    let plan = lab.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
    assert!(plan.status.success(), "plan: {}", text(&plan));
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains("reprovision-in-place") && plan_text.contains("hold"),
        "worker in place, controller held: {plan_text}"
    );
    let bmc_before = [lab.bmc_sets("c1", 0).len(), lab.bmc_sets("w1", 0).len()];
    let t2 = lab.apply("in-place re-provision of the worker");
    // In place is SSH only, held is nothing: neither BMC is asked to change anything.
    for (node, before) in [("c1", bmc_before[0]), ("w1", bmc_before[1])] {
        let sets = lab.bmc_sets(node, before);
        assert!(
            sets.is_empty(),
            "in place / held: {node}'s BMC was asked to change something: {sets:?}\n{}",
            lab.bmc_calls(node)
        );
    }
    lab.assert_runs_generation("w1", 2, "in place");
    let gone = lab.ssh_ok(
        "w1",
        "test ! -e /etc/old-root-marker && echo old-gone; \
         test ! -e /etc/roundhouse-lab/generation-1 && echo gen1-gone",
    );
    assert_eq!(
        gone, "old-gone\ngen1-gone\n",
        "in place: the old root survived"
    );
    lab.assert_status_matches("in place", "w1");
    // Every console of w1 since it was powered on: the install's first boot and the in-place
    // reboot each ran Ignition once from disk.
    let ignition_runs = lab
        .consoles_since("w1", 0)
        .matches("lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)")
        .count();
    assert_eq!(
        ignition_runs,
        2,
        "in place: one Ignition run per boot of w1 from disk\n{}",
        lab.serial_tail("w1")
    );
    // The held controller: untouched, and status shows the drift SSH shows.
    let held = lab.ssh_ok(
        "c1",
        "cat /etc/roundhouse-lab/generation-1; test -f /etc/old-root-marker && echo kept",
    );
    assert_eq!(held, "generation 1\nkept\n", "held: c1 was touched");
    let c1 = lab.status_of("held", "c1");
    assert_eq!(c1["state"], "installed", "held: {c1}");
    assert_ne!(c1["applied_digest"], c1["desired_digest"], "held: {c1}");

    // 3. `recreate --allow-controllers` over IPMI: the controller's BMC sets PXE as the next
    //    boot device and power-cycles it; iPXE, the installer, its reboot, the first boot from
    //    disk; then the post-provision hook on the new root.
    let sets_before = lab.bmc_sets("c1", 0).len();
    // The current console (c1's install and first boot) is kept as the next serial.log.N when
    // the BMC power-cycles the machine: skip it too.
    let skip = lab.rotated_consoles("c1") + 1;
    let refused = lab.roundhouse(&["recreate", "cluster.hcl", "c1"]);
    assert!(
        !refused.status.success(),
        "recreate of a controller without --allow-controllers: {}",
        text(&refused)
    );
    let r = lab.roundhouse(&["recreate", "cluster.hcl", "c1", "--allow-controllers"]);
    assert!(r.status.success(), "recreate: {}", text(&r));
    let t3 = lab.apply("recreate of the controller by PXE over IPMI");
    assert_eq!(
        lab.power_calls("c1"),
        0,
        "the power command is not used with IPMI"
    );
    assert_eq!(
        lab.bmc_sets("c1", sets_before),
        [
            "set boot pxe",
            "set power 0",
            "set power 1",
            "set boot default"
        ],
        "recreate: BMC calls\n{}",
        lab.bmc_calls("c1")
    );
    let serial = lab.consoles_since("c1", skip);
    for marker in [
        "lab-init: PXE boot",
        "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (pxe)",
        "flatcar-install: success",
        "ROUNDHOUSE-LAB-PRE-REBOOT-2",
        "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)",
    ] {
        assert!(
            serial.contains(marker),
            "recreate: `{marker}` missing from c1's consoles\n{}",
            lab.serial_tail("c1")
        );
    }
    // The installer ran before the installed system's first boot.
    let pxe_at = serial
        .find("flatcar-install: success")
        .unwrap_or(usize::MAX);
    let disk_at = serial
        .find("lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)")
        .unwrap_or(0);
    assert!(
        pxe_at < disk_at,
        "recreate: installer and first boot out of order"
    );
    lab.assert_runs_generation("c1", 2, "recreate");
    let gone = lab.ssh_ok("c1", "test ! -e /etc/old-root-marker && echo old-gone");
    assert_eq!(gone, "old-gone\n", "recreate: the old disk survived");
    lab.assert_hook_ran("recreate");
    for node in ["c1", "w1"] {
        lab.assert_status_matches("recreate", node);
    }

    eprintln!(
        "timings (TCG): PXE install of 2 over IPMI {t1:.1} s, worker in place {t2:.1} s, \
         controller recreate by PXE over IPMI {t3:.1} s"
    );
}
