//! roundhouse against a real boot chain: QEMU machines (UEFI firmware, GRUB, a Debian kernel,
//! the real CoreOS Ignition) built by `lab/qemu/build-image.sh`, provisioned and re-provisioned
//! by `roundhouse apply` through `roundhouse serve`.
//!
//! One worker, three applies:
//! 1. First install without PXE: the power command writes the lab's disk image (as an
//!    installer would, OEM `grub.cfg` with the node's `ignition.config.url`) and powers the VM
//!    on. The first boot runs Ignition (ROOT wiped, snippet files, hostname, host key), and
//!    apply confirms it over SSH with the pinned host key.
//! 2. In-place re-provision of a changed snippet and kernel argument: apply's own SSH path
//!    (first_boot flag, OEM `grub.cfg`, reboot). The new file is there, a file written on the
//!    old root is gone, `/proc/cmdline` has the new argument; the VM was never power-cycled.
//! 3. `recreate` + apply with the node's power switched to IPMI: `lab/qemu/bmc.sh` runs
//!    OpenIPMI's `ipmi_sim` in front of the VM; apply sets PXE as the next boot device and
//!    power-cycles the machine; UEFI iPXE from roundhouse serve, the installer
//!    (Ignition in the PXE initrd, `flatcar-install` from `/assets`, OEM `grub.cfg`,
//!    pre-reboot commands, reboot), then the first boot from disk.
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

const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");
const MAC: &str = "52:54:00:ab:00:01";
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
echo "$(date +%s) $name $mac" >> "$lab/power.log"
mkdir -p "$vm"
cp --sparse=always "$IMAGE/disk.img" "$vm/disk.img"
"$LABQEMU/set-oem-grub.sh" "$vm/disk.img" "$lab/oem-$name.cfg"
exec "$LABQEMU/run-vm.sh" --dir "$vm" --disk "$vm/disk.img" --mac "$mac" --ssh-port "$SSH_PORT"
"#;

struct Lab {
    dir: PathBuf,
    serve: Child,
    boot: String,
    ssh_port: u16,
    generation: u32,
    /// UDP port of the machine's BMC (ipmi_sim), used from phase 3 on.
    bmc_port: u16,
    ipmi: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Power the machine off; keep its consoles for whoever reads a failure.
        if self.dir.join("bmc/ipmi_sim.pid").exists() {
            let _ = Command::new("bash")
                .arg(repo().join("lab/qemu/bmc.sh"))
                .arg("stop")
                .arg(self.dir.join("bmc"))
                .status();
        }
        let vm = self.dir.join("vm-w1");
        if let Ok(pid) = std::fs::read_to_string(vm.join("qemu.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

impl Lab {
    fn new(image: &Path) -> Lab {
        let dir = lab_cache().join("last-run");
        if dir.exists() {
            // A previous run's machine may still be on (a killed test): power it off first.
            if dir.join("bmc/ipmi_sim.pid").exists() {
                let _ = Command::new("bash")
                    .arg(repo().join("lab/qemu/bmc.sh"))
                    .arg("stop")
                    .arg(dir.join("bmc"))
                    .status();
            }
            if let Ok(pid) = std::fs::read_to_string(dir.join("vm-w1/qemu.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
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
        let ssh_port = free_port();
        let power = dir.join("power.sh");
        let script = format!(
            "#!/bin/sh\nIMAGE='{}'\nLABQEMU='{}'\nSSH_PORT={ssh_port}\n{}",
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
            ssh_port,
            generation: 1,
            bmc_port: free_udp_port(),
            ipmi: false,
        };
        lab.write_cluster();
        lab
    }

    fn write_cluster(&self) {
        let g = self.generation;
        let cluster = format!(
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
}}

node "w1" {{
  role     = "worker"
  mac      = "{MAC}"
  domain   = "127.0.0.1"
  ssh_port = {port}
{power_block}  snippets = [
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
"#,
            boot = self.boot,
            power = self.dir.join("power.sh").display(),
            port = self.ssh_port,
            power_block = if self.ipmi {
                format!(
                    "  power {{\n    driver = \"ipmi\"\n    address = \"127.0.0.1\"\n    port = {}\n    \
                     username = \"admin\"\n    password_file = \"bmc-password\"\n  }}\n",
                    self.bmc_port
                )
            } else {
                String::new()
            },
        );
        std::fs::write(self.dir.join("cluster.hcl"), cluster).expect("write cluster.hcl");
        // What an installer writes into the OEM grub.cfg (used by the image install mode).
        let oem = format!(
            "set linux_append=\"lab.generation={g} ignition.config.url={}/ignition?mac={MAC}&os=installed\"\n\
             set linux_console=\"console=ttyS0,115200n8\"\n",
            self.boot
        );
        std::fs::write(self.dir.join("oem-w1.cfg"), oem).expect("write oem-w1.cfg");
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
    fn apply(&self, what: &str) -> f64 {
        let started = Instant::now();
        let out = self.roundhouse(&[
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
        ]);
        let secs = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{what}: apply failed after {secs:.0} s\n{}\n--- serial console (tail) ---\n{}",
            text(&out),
            self.serial_tail()
        );
        eprintln!("{what}: apply took {secs:.1} s");
        secs
    }

    fn vm_dir(&self) -> PathBuf {
        self.dir.join("vm-w1")
    }

    /// The current serial console (since the last power-on).
    fn serial(&self) -> String {
        std::fs::read(self.vm_dir().join("serial.log"))
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// How many earlier consoles run-vm.sh has kept (serial.log.1 … .N).
    fn rotated_consoles(&self) -> usize {
        (1..)
            .take_while(|n| self.vm_dir().join(format!("serial.log.{n}")).exists())
            .count()
    }

    /// Every console after the first `skip` kept ones, and the current one, in order.
    fn consoles_since(&self, skip: usize) -> String {
        let mut all = String::new();
        for n in skip + 1..=self.rotated_consoles() {
            if let Ok(b) = std::fs::read(self.vm_dir().join(format!("serial.log.{n}"))) {
                all.push_str(&String::from_utf8_lossy(&b).replace('\r', ""));
            }
        }
        all.push_str(&self.serial());
        all
    }

    /// Starts the machine's BMC and switches the node's power to IPMI.
    fn start_bmc(&mut self) {
        std::fs::write(self.dir.join("bmc-password"), "lab-secret\n").expect("write bmc-password");
        let out = Command::new("bash")
            .arg(repo().join("lab/qemu/bmc.sh"))
            .arg("start")
            .arg(self.dir.join("bmc"))
            .arg(self.bmc_port.to_string())
            .args(["admin", "lab-secret", "--"])
            .arg("--dir")
            .arg(self.vm_dir())
            .arg("--disk")
            .arg(self.vm_dir().join("disk.img"))
            .args(["--mac", MAC, "--ssh-port", &self.ssh_port.to_string()])
            .arg("--pxe")
            .arg(format!("{}/boot.ipxe", self.boot))
            .output()
            .expect("run lab/qemu/bmc.sh start");
        assert!(out.status.success(), "bmc.sh start: {}", text(&out));
        // ipmi_sim answers once it has read its configuration: ask it like apply will.
        let ready = (0..50).any(|_| {
            let st = self.roundhouse(&["power", "cluster.hcl", "w1", "status"]);
            if st.status.success() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            false
        });
        assert!(ready, "the BMC did not answer `roundhouse power … status`");
    }

    fn bmc_calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("bmc/calls")).unwrap_or_default()
    }

    fn serial_tail(&self) -> String {
        let s = self.serial();
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Runs `cmd` on the machine as core, with the operator key and the node's pinned host
    /// key (no other key is accepted).
    fn ssh(&self, cmd: &str) -> Output {
        let keys = self.dir.join("assets/keys");
        let host_pub = std::fs::read_to_string(keys.join("hosts/w1/ssh_host_ed25519_key.pub"))
            .expect("the node's managed host key");
        let known = self.dir.join("known_hosts");
        std::fs::write(
            &known,
            format!("[127.0.0.1]:{} {}\n", self.ssh_port, host_pub.trim()),
        )
        .expect("write known_hosts");
        Command::new("ssh")
            .arg("-i")
            .arg(keys.join("operator_ed25519"))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "IdentitiesOnly=yes",
                "-p",
                &self.ssh_port.to_string(),
                "core@127.0.0.1",
                cmd,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    fn ssh_ok(&self, cmd: &str) -> String {
        let out = self.ssh(cmd);
        assert!(out.status.success(), "ssh `{cmd}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn power_calls(&self) -> usize {
        std::fs::read_to_string(self.dir.join("power.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `status` agrees with the machine: installed, applied = desired, and the config it last
    /// fetched is the one published now.
    fn assert_status_matches(&self, what: &str) {
        let out = self.roundhouse(&["status", "cluster.hcl", "--output", "json"]);
        assert!(out.status.success(), "{what}: status: {}", text(&out));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("status --output json is JSON");
        let node = v["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "w1"))
            .unwrap_or_else(|| panic!("{what}: w1 missing from status: {v}"))
            .clone();
        assert_eq!(node["state"], "installed", "{what}: {node}");
        assert_eq!(
            node["applied_digest"], node["desired_digest"],
            "{what}: {node}"
        );
        assert_eq!(
            node["last_fetch"]["config_digest"], node["applied_digest"],
            "{what}: {node}"
        );
    }

    /// The machine runs generation `g`: its snippet file, its kernel argument, its hostname.
    fn assert_runs_generation(&self, g: u32, what: &str) {
        let seen = self.ssh_ok(&format!(
            "hostname; cat /etc/roundhouse-lab/generation-{g}; cat /proc/cmdline; \
             test ! -e /boot/flatcar/first_boot && echo flag-removed; \
             test ! -e /ignition_ran && echo ignition-ran-cleared"
        ));
        let mut lines = seen.lines();
        assert_eq!(lines.next(), Some("w1"), "{what}: hostname\n{seen}");
        assert_eq!(
            lines.next(),
            Some(format!("generation {g}").as_str()),
            "{what}\n{seen}"
        );
        let cmdline = lines.next().unwrap_or_default();
        let args: Vec<&str> = cmdline.split_whitespace().collect();
        assert!(
            args.contains(&format!("lab.generation={g}").as_str()),
            "{what}: /proc/cmdline: {cmdline}"
        );
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("lab.generation=") && *a != format!("lab.generation={g}")),
            "{what}: /proc/cmdline: {cmdline}"
        );
        // Ignition ran on this boot (GRUB saw the flag), and removed the flag.
        assert!(
            args.contains(&"flatcar.first_boot=detected"),
            "{what}: {cmdline}"
        );
        assert_eq!(lines.next(), Some("flag-removed"), "{what}\n{seen}");
        // apply saw /ignition_ran (its wait requires it) and removed it after confirming.
        assert_eq!(lines.next(), Some("ignition-ran-cleared"), "{what}\n{seen}");
    }
}

#[test]
#[ignore = "slow: boots QEMU machines under TCG; scripts/test runs it in the e2e tier"]
fn qemu_worker_is_installed_reprovisioned_in_place_and_recreated_by_pxe() {
    let image = build_image();
    let mut lab = Lab::new(&image);

    // 1. First install: the image written to the disk, first boot with Ignition.
    let t1 = lab.apply("install from the image");
    assert_eq!(lab.power_calls(), 1, "the power command ran once");
    let serial = lab.serial();
    assert!(
        serial.contains("lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)"),
        "install: Ignition did not finish on the first boot\n{}",
        lab.serial_tail()
    );
    lab.assert_runs_generation(1, "install");
    lab.assert_status_matches("install");
    // The ROOT filesystem Ignition created carries the label the config asked for and the
    // host key is the managed one (ssh pinned it above); the ESP and OEM are mounted like
    // Flatcar's.
    let mounts = lab.ssh_ok("cat /proc/mounts");
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

    // 2. In place: a file on the old root, then a changed snippet and kernel argument.
    lab.ssh_ok("sudo touch /etc/old-root-marker && test -f /etc/old-root-marker");
    lab.generation = 2;
    lab.write_cluster();
    let plan = lab.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
    assert!(plan.status.success(), "plan: {}", text(&plan));
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains("reprovision-in-place"),
        "the worker's change should be applied in place: {plan_text}"
    );
    let t2 = lab.apply("in-place re-provision");
    assert_eq!(
        lab.power_calls(),
        1,
        "an in-place re-provision must not power-cycle the machine"
    );
    lab.assert_runs_generation(2, "in place");
    let gone = lab.ssh_ok(
        "test ! -e /etc/old-root-marker && echo old-gone; \
         test ! -e /etc/roundhouse-lab/generation-1 && echo gen1-gone",
    );
    assert_eq!(
        gone, "old-gone\ngen1-gone\n",
        "in place: the old root survived"
    );
    lab.assert_status_matches("in place");
    let ignition_runs = lab
        .serial()
        .matches("lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)")
        .count();
    assert_eq!(
        ignition_runs,
        2,
        "in place: one Ignition run per boot of this VM\n{}",
        lab.serial_tail()
    );

    // 3. Recreate by PXE over IPMI: the BMC power-cycles the running machine with PXE as the
    //    next boot device; iPXE, the installer, its reboot, the first boot from disk.
    lab.ssh_ok("sudo touch /etc/old-root-marker");
    lab.ipmi = true;
    lab.write_cluster();
    lab.start_bmc();
    // The current console (boots of phases 1 and 2) is kept as the next serial.log.N when the
    // BMC powers the machine on: skip it too.
    let skip = lab.rotated_consoles() + 1;
    let r = lab.roundhouse(&["recreate", "cluster.hcl", "w1"]);
    assert!(r.status.success(), "recreate: {}", text(&r));
    let t3 = lab.apply("recreate by PXE over IPMI");
    assert_eq!(
        lab.power_calls(),
        1,
        "the power command is not used with IPMI"
    );
    let calls = lab.bmc_calls();
    let sets: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, c)| c))
        .filter(|c| c.starts_with("set "))
        .collect();
    assert_eq!(
        sets,
        [
            "set boot pxe",
            "set power 0",
            "set power 1",
            "set boot default"
        ],
        "recreate: BMC calls\n{calls}"
    );
    let serial = lab.consoles_since(skip);
    for marker in [
        "lab-init: PXE boot",
        "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (pxe)",
        "flatcar-install: success",
        "ROUNDHOUSE-LAB-PRE-REBOOT-2",
        "lab-init: ROUNDHOUSE-LAB-IGNITION-DONE (disk)",
    ] {
        assert!(
            serial.contains(marker),
            "recreate: `{marker}` missing from the consoles\n{}",
            lab.serial_tail()
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
    lab.assert_runs_generation(2, "recreate");
    let gone = lab.ssh_ok("test ! -e /etc/old-root-marker && echo old-gone");
    assert_eq!(gone, "old-gone\n", "recreate: the old disk survived");
    lab.assert_status_matches("recreate");

    eprintln!(
        "timings (TCG): install from image {t1:.1} s, in-place {t2:.1} s, PXE recreate {t3:.1} s"
    );
}
