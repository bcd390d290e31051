//! The fleet spec: what machines to simulate and how (JSON or TOML; see docs/simulator.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mac::Mac;

/// A boot device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// Network boot (iPXE).
    Pxe,
    /// The first local disk.
    Disk,
}

/// Faults a machine shows on demand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The BMC does not answer (its port refuses connections).
    pub bmc_unreachable: bool,
    /// Network boot fails (no DHCP answer); firmware moves on to the next boot device.
    pub netboot_fails: bool,
    /// `flatcar-install` fails with an I/O error.
    pub installer_fails: bool,
    /// After an OS-initiated reboot or a reset, the machine hangs in firmware.
    pub hang_after_reboot: bool,
    /// sshd never starts: SSH connections are refused.
    pub ssh_refused: bool,
    /// Multiplies every boot duration (1 or less: no effect).
    pub slow_boot: f64,
}

/// A local disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Kernel name: `sda`, `vdb`, `nvme0n1`.
    pub name: String,
    /// Size in GiB (for `flatcar-install -s` and `lsblk`).
    #[serde(default = "default_disk_gib")]
    pub size_gib: u64,
}

fn default_disk_gib() -> u64 {
    100
}

/// BMC settings of a machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BmcSpec {
    /// HTTP basic-auth user; no authentication when empty.
    pub username: String,
    /// HTTP basic-auth password.
    pub password: String,
    /// Seconds (scaled by the time factor) between a reset request and the power change.
    pub power_delay_secs: f64,
}

/// One machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// MAC of its single NIC.
    pub mac: Mac,
    /// A label for tables (defaults to the MAC).
    #[serde(default)]
    pub name: Option<String>,
    /// Local disks (default: one 100 GiB `sda`).
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// Firmware boot order (default: disk, then pxe).
    #[serde(default)]
    pub boot_order: Vec<BootDevice>,
    /// iPXE `${buildarch}`: `x86_64` (UEFI) or `i386` (BIOS undionly).
    #[serde(default)]
    pub arch: Option<String>,
    /// Faults from the start.
    #[serde(default)]
    pub faults: Faults,
    /// BMC settings.
    #[serde(default)]
    pub bmc: BmcSpec,
    /// Power the machine on when the fleet starts.
    #[serde(default)]
    pub power_on: bool,
}

/// Generated machines: `count` machines with MACs `52:54:00:xx:xx:xx` from `first`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// How many.
    pub count: u32,
    /// Index of the first MAC (`Mac::nth`), default 1.
    #[serde(default = "one")]
    pub first: u32,
    /// Name prefix: `node-1`, `node-2`, ...
    #[serde(default)]
    pub name_prefix: Option<String>,
    /// Power them on at start.
    #[serde(default)]
    pub power_on: bool,
    /// Boot order for all of them.
    #[serde(default)]
    pub boot_order: Vec<BootDevice>,
}

fn one() -> u32 {
    1
}

/// Boot stage durations in seconds before scaling; the defaults follow what a Flatcar-like
/// machine under QEMU took (docs/simulator.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Durations {
    /// Power-on self test until the first boot device is tried.
    pub firmware: f64,
    /// DHCP until iPXE fetches its first script.
    pub dhcp: f64,
    /// Kernel start until the initrd runs.
    pub kernel: f64,
    /// Ignition's stages.
    pub ignition: f64,
    /// Userspace until sshd answers.
    pub userspace: f64,
    /// Image download and write before the installer's script runs.
    pub install_download: f64,
    /// Shutdown on reboot.
    pub shutdown: f64,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            firmware: 5.0,
            dhcp: 5.0,
            kernel: 5.0,
            ignition: 6.0,
            userspace: 8.0,
            install_download: 20.0,
            shutdown: 2.0,
        }
    }
}

/// The whole fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The DHCP boot file URL every machine's iPXE starts from, e.g.
    /// `http://127.0.0.1:8080/boot.ipxe`.
    pub boot_url: String,
    /// Where machine disks and logs live (created if missing).
    pub state_dir: PathBuf,
    /// Multiplies every duration: 0.01 turns a 60 s PXE install into under a second.
    #[serde(default = "default_factor")]
    pub time_factor: f64,
    /// Stage durations before scaling.
    #[serde(default)]
    pub durations: Durations,
    /// First loopback port of the per-machine port block (BMC, SSH "22", SSH "2222" for each
    /// machine in turn); chosen automatically below 32768 when absent.
    #[serde(default)]
    pub port_base: Option<u16>,
    /// Port of the fleet's control API (0 or absent: any free port).
    #[serde(default)]
    pub control_port: Option<u16>,
    /// Machines listed one by one.
    #[serde(default)]
    pub machines: Vec<MachineSpec>,
    /// Machines generated in bulk.
    #[serde(default)]
    pub generate: Option<Generate>,
}

fn default_factor() -> f64 {
    1.0
}

/// A spec that does not read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// JSON error.
    #[error("fleet spec (JSON): {0}")]
    Json(#[from] serde_json::Error),
    /// TOML error.
    #[error("fleet spec (TOML): {0}")]
    Toml(#[from] toml::de::Error),
    /// Something inconsistent.
    #[error("fleet spec: {0}")]
    Invalid(String),
}

impl FleetSpec {
    /// Reads JSON (text starting with `{`) or TOML.
    pub fn parse(text: &str) -> Result<FleetSpec, SpecError> {
        let spec: FleetSpec = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)?
        } else {
            toml::from_str(text)?
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.time_factor > 0.0 && self.time_factor.is_finite()) {
            return Err(SpecError::Invalid(
                "time_factor must be a positive number".into(),
            ));
        }
        let all = self.all_machines();
        let mut seen = std::collections::HashSet::new();
        for m in &all {
            if !seen.insert(m.mac) {
                return Err(SpecError::Invalid(format!("MAC {} appears twice", m.mac)));
            }
        }
        if all.len() > 20_000 {
            return Err(SpecError::Invalid("more than 20000 machines".into()));
        }
        Ok(())
    }

    /// Listed plus generated machines.
    pub fn all_machines(&self) -> Vec<MachineSpec> {
        let mut out = self.machines.clone();
        if let Some(g) = &self.generate {
            for i in 0..g.count {
                let n = g.first + i;
                out.push(MachineSpec {
                    mac: Mac::nth(n),
                    name: g.name_prefix.as_ref().map(|p| format!("{p}{n}")),
                    disks: Vec::new(),
                    boot_order: g.boot_order.clone(),
                    arch: None,
                    faults: Faults::default(),
                    bmc: BmcSpec::default(),
                    power_on: g.power_on,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same() {
        let t = FleetSpec::parse(
            r#"boot_url = "http://127.0.0.1:8080/boot.ipxe"
state_dir = "/tmp/lab"
time_factor = 0.01
[[machines]]
mac = "52:54:00:00:00:01"
boot_order = ["pxe", "disk"]
faults = { installer_fails = true }
[generate]
count = 3
first = 10
"#,
        )
        .unwrap();
        let j = FleetSpec::parse(
            r#"{"boot_url":"http://127.0.0.1:8080/boot.ipxe","state_dir":"/tmp/lab","time_factor":0.01,
            "machines":[{"mac":"52-54-00-00-00-01","boot_order":["pxe","disk"],"faults":{"installer_fails":true}}],
            "generate":{"count":3,"first":10}}"#,
        )
        .unwrap();
        assert_eq!(t.all_machines().len(), 4);
        assert_eq!(j.all_machines().len(), 4);
        assert_eq!(t.all_machines()[3].mac.to_string(), "52:54:00:00:00:0c");
        assert!(t.machines[0].faults.installer_fails);
        assert_eq!(t.machines[0].boot_order, j.machines[0].boot_order);
    }

    #[test]
    fn rejects_duplicates_and_bad_factor() {
        let dup = r#"{"boot_url":"http://x/boot.ipxe","state_dir":"/t","machines":[{"mac":"52:54:00:00:00:01"}],"generate":{"count":1}}"#;
        assert!(FleetSpec::parse(dup).is_err());
        let bad = r#"{"boot_url":"http://x/boot.ipxe","state_dir":"/t","time_factor":0}"#;
        assert!(FleetSpec::parse(bad).is_err());
        let unknown = r#"{"boot_url":"http://x/boot.ipxe","state_dir":"/t","machines":[{"mac":"52:54:00:00:00:01","colour":"red"}]}"#;
        assert!(FleetSpec::parse(unknown).is_err());
    }
}
