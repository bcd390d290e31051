//! Test peers: OpenIPMI's `ipmi_sim` with a recording `chassis_control` script.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roundhouse_power::ipmi::{CipherSuite, IpmiBmc, IpmiConfig};
use roundhouse_power::{Bmc, Limits, Password};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "secret";

/// Fails (does not skip) when a peer CI installs is missing, naming the Debian package.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package `{package}` (scripts/install-test-deps does)"
    );
}

/// A free UDP port on loopback (bound then released; the simulator takes it right after).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A running `ipmi_sim` whose chassis script appends every call to `calls`.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub calls: PathBuf,
    child: Child,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chassis script: records its arguments, keeps power and boot device in files. `get`
/// answers as ipmi_sim expects (`power:1`, `boot:pxe`).
const CHASSIS: &str = r#"#!/bin/sh
d="$(dirname "$0")"
echo "$*" >> "$d/calls"
case "$1 $2" in
  "get power") if [ -f "$d/power" ]; then echo "power:$(cat "$d/power")"; else echo "power:0"; fi;;
  "get boot") if [ -f "$d/boot" ]; then echo "boot:$(cat "$d/boot")"; else echo "boot:default"; fi;;
  "set power") echo "$3" > "$d/power";;
  "set boot") echo "$3" > "$d/boot";;
esac
exit 0
"#;

impl Sim {
    /// Starts a simulator; `chassis_control` false leaves the script out (the simulator then
    /// rejects boot-device changes, like a BMC without that feature).
    pub fn start(chassis_control: bool) -> Sim {
        Sim::start_with(chassis_control.then_some(CHASSIS), |_| {})
    }

    /// As [`Sim::start`] with `script` as the chassis_control script (`None`: no script);
    /// `prepare` may put files beside it (in the simulator's directory) before it starts.
    pub fn start_with(script: Option<&str>, prepare: impl FnOnce(&Path)) -> Sim {
        require("/usr/bin/ipmi_sim", "openipmi");
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let chassis_control = script.is_some();
        let port = free_udp_port();
        let script_path = dir.path().join("chassis.sh");
        std::fs::write(&script_path, script.unwrap_or(CHASSIS)).unwrap();
        let script = script_path;
        let mut perm = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).unwrap();
        let control = if chassis_control {
            format!("  chassis_control \"{}\"\n", script.display())
        } else {
            String::new()
        };
        let lan = format!(
            r#"name "bmc1"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
{control}  poweroff_wait 1
  kill_wait 1
  user 2 true "{USER}" "{PASSWORD}" admin 10 none md2 md5 straight
"#
        );
        std::fs::write(dir.path().join("lan.conf"), lan).unwrap();
        std::fs::write(
            dir.path().join("bmc.emu"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let log = std::fs::File::create(dir.path().join("sim.log")).unwrap();
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.path().join("lan.conf"))
            .arg("-f")
            .arg(dir.path().join("bmc.emu"))
            .arg("-s")
            .arg(dir.path().join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting ipmi_sim");
        let calls = dir.path().join("calls");
        let sim = Sim {
            dir,
            port,
            calls,
            child,
        };
        sim.wait_ready();
        sim
    }

    fn wait_ready(&self) {
        // Our own client is the probe; it runs on a thread of its own because tests call
        // this from inside their async runtime.
        let bmc = self.bmc(PASSWORD, fast_limits());
        let ready = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                (0..50).any(|_| {
                    if rt.block_on(bmc.power_state()).is_ok() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    false
                })
            })
            .join()
            .unwrap()
        });
        assert!(
            ready,
            "ipmi_sim did not answer on port {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
        );
        self.clear_calls();
    }

    pub fn config(&self, password: &str, limits: Limits) -> IpmiConfig {
        IpmiConfig {
            node: "n1".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            username: USER.into(),
            password: Password::new(password),
            suite: CipherSuite::Three,
            limits,
        }
    }

    pub fn bmc(&self, password: &str, limits: Limits) -> IpmiBmc {
        IpmiBmc::new(self.config(password, limits))
    }

    /// Every chassis script call so far.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Only the calls that change something (`set ...`): the simulator's own `get` calls
    /// depend on its internals, not on the client.
    pub fn sets(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("set "))
            .collect()
    }

    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(&self.calls);
    }

    /// `ipmitool -I lanplus -C 3` against this simulator.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        require("/usr/bin/ipmitool", "ipmitool");
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-P", PASSWORD])
            .args(args)
            .output()
            .expect("running ipmitool");
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Short timeouts so fault tests finish fast; power changes in the simulator take about a
/// second (`poweroff_wait 1`).
pub fn fast_limits() -> Limits {
    Limits {
        request_timeout: Duration::from_millis(500),
        retries: 2,
        settle: Duration::from_secs(15),
        poll: Duration::from_millis(200),
    }
}
