//! The lab directory: what lives where, and `lab.json`, the record of a running lab.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// File name of the lab record inside the lab directory.
pub const LAB_FILE: &str = "lab.json";

/// Paths inside a lab directory.
#[derive(Debug, Clone)]
pub struct LabDir {
    root: PathBuf,
}

impl LabDir {
    /// The lab in `dir`, made absolute (the power command and the processes run elsewhere).
    pub fn new(dir: &Path) -> Result<LabDir, LabError> {
        let root = std::path::absolute(dir).map_err(LabError::io(dir))?;
        Ok(LabDir { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster file.
    pub fn cluster_file(&self) -> PathBuf {
        self.root.join("cluster.hcl")
    }

    /// Butane snippets referenced by the cluster file.
    pub fn snippets(&self) -> PathBuf {
        self.root.join("snippets")
    }

    /// Files the post-provision hook uploads.
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The cluster's `asset_dir` (state store, keys, boot server data).
    pub fn asset_dir(&self) -> PathBuf {
        self.root.join("assets")
    }

    /// The boot server's data directory (written by apply).
    pub fn data_dir(&self) -> PathBuf {
        self.asset_dir().join("matchbox")
    }

    /// The boot server's state directory (netboot gating, fetch journal).
    pub fn boot_state_dir(&self) -> PathBuf {
        self.asset_dir().join("boot-state")
    }

    /// Stand-ins for Flatcar's kernel, initrd and image, served under `/assets/`.
    pub fn boot_assets(&self) -> PathBuf {
        self.root.join("boot-assets")
    }

    /// The simulator's state directory (disks, console logs, namespaces).
    pub fn sim_dir(&self) -> PathBuf {
        self.root.join("sim")
    }

    /// The fleet spec the simulator runs.
    pub fn fleet_spec(&self) -> PathBuf {
        self.root.join("fleet.json")
    }

    /// Logs of the background processes.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The BMC password file (the Redfish driver's `password_file`).
    pub fn bmc_password_file(&self) -> PathBuf {
        self.root.join("bmc-password")
    }

    /// `lab.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join(LAB_FILE)
    }

    /// The operator's private SSH key, written by the first plan or apply.
    pub fn operator_key(&self) -> PathBuf {
        self.asset_dir().join("keys/operator_ed25519")
    }

    /// A node's pinned SSH host key (public half).
    pub fn host_key_pub(&self, node: &str) -> PathBuf {
        self.asset_dir()
            .join("keys/hosts")
            .join(node)
            .join("ssh_host_ed25519_key.pub")
    }

    /// Reads `lab.json`.
    pub fn load(&self) -> Result<LabState, LabError> {
        let path = self.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NoLab(self.root.clone()));
            }
            Err(e) => return Err(LabError::io(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| LabError::Other(format!("{}: {e}", path.display())))
    }

    /// Writes `lab.json` atomically (a reader never sees half a file).
    pub fn save(&self, state: &LabState) -> Result<(), LabError> {
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| LabError::Other(format!("encoding {}: {e}", path.display())))?;
        std::fs::write(&tmp, text + "\n").map_err(LabError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io(&path))
    }
}

/// A machine of the lab as the cluster file and the simulator know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabMachine {
    /// Node name in the cluster file, machine name in the simulator.
    pub name: String,
    /// `controller` or `worker`.
    pub role: String,
    /// MAC of its NIC.
    pub mac: String,
    /// Its own loopback address (the node's `domain`).
    pub address: String,
    /// Port of the installed OS's sshd (the node's `ssh_port`).
    pub ssh_port: u16,
    /// Base URL of its Redfish BMC.
    pub bmc_url: String,
}

/// A background process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Its pid (also its process group: it was started as a group leader).
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
}

/// `lab.json`: everything later lab commands need to find the lab's pieces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The roundhouse binary the lab runs (and its power command calls).
    pub binary: PathBuf,
    /// The simulator's time factor.
    pub time_scale: f64,
    /// Base URL of the boot server (`http://127.0.0.1:PORT`).
    pub boot_url: String,
    /// The simulator's control API (`127.0.0.1:PORT`).
    pub control: String,
    /// The simulator's first port (kept so a restarted lab keeps its ports, which the cluster
    /// file names).
    pub port_base: u16,
    /// BMC user name (the password is in `bmc-password`).
    pub bmc_username: String,
    /// The machines.
    pub machines: Vec<LabMachine>,
    /// The boot server, while running.
    pub serve: Option<Proc>,
    /// The simulator, while running.
    pub fleet: Option<Proc>,
    /// The QEMU machines and their BMCs of a `lab up --qemu` lab (then `fleet` is unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<crate::qemu::QemuLab>,
}

impl LabState {
    /// The machine called `name`.
    pub fn machine(&self, name: &str) -> Result<&LabMachine, LabError> {
        self.machines
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| LabError::UnknownNode {
                name: name.to_string(),
                known: self
                    .machines
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
