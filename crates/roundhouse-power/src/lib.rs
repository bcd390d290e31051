//! Power and boot-device drivers for bare-metal machines.
//!
//! A [`Bmc`] switches a machine's power and chooses its next boot device. Three drivers:
//! - [`ipmi::IpmiBmc`]: IPMI v2.0 over LAN (RMCP+, "lanplus"), written here in Rust, cipher
//!   suites 3 and 17;
//! - [`redfish::RedfishBmc`]: Redfish over HTTPS;
//! - [`command::CommandDriver`]: a shell command (Lokomotive's `pxe_commands`), which can only
//!   PXE-boot.
//!
//! [`from_config`] builds the driver a node's `power` block describes. [`pxe_boot`] and
//! [`boot_from_disk`] are the two sequences the reconciler runs around a PXE install. See
//! docs/power.md.

pub mod command;
pub mod error;
pub mod ipmi;
pub mod redfish;
mod secret;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use error::PowerError;
pub use secret::Password;

use roundhouse_config::{PersistentBoot, Power};

/// A boxed future, so [`Bmc`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PowerError>> + Send + 'a>>;

/// Chassis power as the BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on (no-op when on).
    On,
    /// Hard power off.
    Off,
    /// Off, then on (hard).
    Cycle,
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::Cycle => "power cycle",
        })
    }
}

/// A boot device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// Network (PXE).
    Pxe,
    /// The default hard disk.
    Disk,
}

impl std::fmt::Display for BootDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BootDevice::Pxe => "PXE",
            BootDevice::Disk => "disk",
        })
    }
}

/// What to boot from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOverride {
    /// The device.
    pub device: BootDevice,
    /// Every boot from now on (`true`) or the next boot only.
    pub persistent: bool,
    /// UEFI (`true`) or legacy BIOS boot.
    pub efi: bool,
}

impl std::fmt::Display for BootOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.device,
            if self.persistent {
                "persistent"
            } else {
                "next boot only"
            },
            if self.efi { "EFI" } else { "BIOS" }
        )
    }
}

/// The boot setting as read back from the BMC. Fields the BMC does not report are `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootSetting {
    /// `pxe`, `disk`, `none`, or the BMC's own word for anything else.
    pub device: String,
    /// Whether the override applies to every boot.
    pub persistent: Option<bool>,
    /// Whether it boots in EFI mode.
    pub efi: Option<bool>,
    /// IPMI: the boot-flags-valid bit. Redfish: whether an override is enabled at all.
    pub valid: Option<bool>,
}

impl std::fmt::Display for BootSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tri = |v: Option<bool>, yes: &str, no: &str| match v {
            Some(true) => yes.to_string(),
            Some(false) => no.to_string(),
            None => "?".to_string(),
        };
        write!(
            f,
            "{} {}, {}, {}",
            self.device,
            tri(self.persistent, "persistent", "next boot only"),
            tri(self.efi, "EFI", "BIOS"),
            tri(self.valid, "valid", "not valid")
        )
    }
}

/// Timeouts and bounded retries for every call to a BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One request (an IPMI packet's answer, an HTTP request).
    pub request_timeout: Duration,
    /// Extra tries of one request after a timeout (IPMI retransmits, HTTP retries on 5xx).
    pub retries: u32,
    /// How long a power change may take to show in the reported power state.
    pub settle: Duration,
    /// Pause between polls of the power state.
    pub poll: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(2),
            retries: 3,
            settle: Duration::from_secs(120),
            poll: Duration::from_secs(1),
        }
    }
}

/// A baseboard management controller (or anything that can switch power and choose the boot
/// device).
pub trait Bmc: Send + Sync {
    /// How errors and logs name it: driver and address, never credentials.
    fn name(&self) -> &str;
    /// The chassis power state.
    fn power_state(&self) -> BoxFuture<'_, PowerState>;
    /// Switches power.
    fn power(&self, action: PowerAction) -> BoxFuture<'_, ()>;
    /// Sets the next boot device.
    fn set_boot(&self, boot: BootOverride) -> BoxFuture<'_, ()>;
    /// Reads the boot setting back.
    fn boot_setting(&self) -> BoxFuture<'_, BootSetting>;
}

/// What [`pxe_boot`] did, in words for the node's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One line per step.
    pub steps: Vec<String>,
}

/// The install sequence: next boot from the network, then power cycle (or power on when the
/// machine is off). `persistent` keeps PXE for every boot (the boot server then decides what
/// an installed machine boots).
pub async fn pxe_boot(bmc: &dyn Bmc, efi: bool, persistent: bool) -> Result<Outcome, PowerError> {
    let boot = BootOverride {
        device: BootDevice::Pxe,
        persistent,
        efi,
    };
    let mut steps = Vec::new();
    bmc.set_boot(boot).await?;
    steps.push(format!("{}: next boot set to {boot}", bmc.name()));
    let state = bmc.power_state().await?;
    let action = match state {
        PowerState::On => PowerAction::Cycle,
        PowerState::Off => PowerAction::On,
    };
    bmc.power(action).await?;
    steps.push(format!("{}: power was {state}: {action}", bmc.name()));
    Ok(Outcome { steps })
}

/// After a successful install: boot from disk on every boot from now on, and read the setting
/// back so the events show what the BMC holds.
pub async fn boot_from_disk(bmc: &dyn Bmc, efi: bool) -> Result<Outcome, PowerError> {
    let boot = BootOverride {
        device: BootDevice::Disk,
        persistent: true,
        efi,
    };
    bmc.set_boot(boot).await?;
    let mut steps = vec![format!("{}: boot device set to {boot}", bmc.name())];
    match bmc.boot_setting().await {
        Ok(s) => steps.push(format!("{}: boot setting reads back as {s}", bmc.name())),
        Err(e) => steps.push(format!("reading the boot setting back failed: {e}")),
    }
    Ok(Outcome { steps })
}

/// A node's driver, built from its `power` block.
pub enum Driver {
    /// A BMC (IPMI or Redfish) and the node's boot settings.
    Bmc {
        /// The BMC.
        bmc: Box<dyn Bmc>,
        /// Boot in EFI mode.
        efi: bool,
        /// What happens to the boot device around an install.
        persistent_boot: PersistentBoot,
    },
    /// A shell command: can only PXE-boot the machine.
    Command(command::CommandDriver),
}

/// Builds the driver a `power` block describes. The password is read here (from its variable
/// or file), so a missing secret fails before anything is sent.
pub fn from_config(node: &str, power: &Power, limits: Limits) -> Result<Driver, PowerError> {
    let resolve = |secret| {
        Password::resolve(secret).map_err(|e| PowerError::Secret(format!("node {node}: {e}")))
    };
    Ok(match power {
        Power::Command {
            command,
            timeout_secs,
        } => Driver::Command(command::CommandDriver {
            command: command.clone(),
            timeout: Duration::from_secs(*timeout_secs),
        }),
        Power::Ipmi {
            address,
            port,
            username,
            password,
            cipher_suite,
            efi,
            persistent_boot,
        } => {
            let suite = ipmi::CipherSuite::from_id(*cipher_suite).ok_or_else(|| {
                PowerError::Unsupported {
                    driver: format!("ipmi {address}:{port} (node {node})"),
                    what: format!("cipher suite {cipher_suite} (use 3 or 17)"),
                }
            })?;
            let bmc = ipmi::IpmiBmc::new(ipmi::IpmiConfig {
                node: node.to_string(),
                host: address.clone(),
                port: *port,
                username: username.clone(),
                password: resolve(password)?,
                suite,
                limits,
            });
            Driver::Bmc {
                bmc: Box::new(bmc),
                efi: *efi,
                persistent_boot: *persistent_boot,
            }
        }
        Power::Redfish {
            endpoint,
            system_id,
            username,
            password,
            ca_file,
            insecure,
            efi,
            auth,
            persistent_boot,
        } => {
            let bmc = redfish::RedfishBmc::new(redfish::RedfishConfig {
                node: node.to_string(),
                endpoint: endpoint.clone(),
                system_id: system_id.clone(),
                username: username.clone(),
                password: resolve(password)?,
                ca_file: ca_file.clone(),
                insecure: *insecure,
                auth: *auth,
                limits,
            })?;
            Driver::Bmc {
                bmc: Box::new(bmc),
                efi: *efi,
                persistent_boot: *persistent_boot,
            }
        }
    })
}
