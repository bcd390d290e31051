//! Power actions: how the executor makes a machine PXE-boot, and what it does to the boot
//! device once the install succeeded. The drivers live in `roundhouse-power`; this module adapts
//! them to the executor's small trait (which tests replace with fakes).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use roundhouse_config::{PersistentBoot, Power};
use roundhouse_power::command::CommandTarget;
use roundhouse_power::{Bmc, Driver, Limits};

pub use roundhouse_power::command::CommandDriver;

/// The machine a power action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerTarget {
    /// Node name.
    pub name: String,
    /// Its MAC (colon form).
    pub mac: String,
    /// Its domain.
    pub domain: String,
    /// The cluster's asset directory.
    pub asset_dir: PathBuf,
}

/// What a power action printed or did, for the node's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerOutput {
    /// A command's standard output then standard error (lossily decoded, capped), or one line
    /// per BMC step.
    pub text: String,
}

/// Why a power action failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The driver failed; the message names the BMC or command and what it answered.
    #[error(transparent)]
    Driver(#[from] roundhouse_power::PowerError),
    /// This node's driver cannot be used by this build.
    #[error("power driver {0:?} is not available")]
    Unsupported(&'static str),
}

/// A boxed future, so the trait stays object-safe.
pub type PowerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PowerOutput, PowerError>> + Send + 'a>>;

/// Makes a machine network-boot, and settles its boot device after the install.
pub trait PowerDriver: Send + Sync {
    /// Runs the action for `target`; resolves when the driver is done (the machine is then
    /// booting, not yet installed).
    fn pxe_boot<'a>(&'a self, target: &'a PowerTarget) -> PowerFuture<'a>;

    /// Called once the node proved it runs its new config. Drivers that chose "PXE for the
    /// next boot only" make disk the persistent boot device here, so the machine never comes
    /// back to the installer. The default does nothing (a command cannot know how).
    fn after_install<'a>(&'a self, _target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async { Ok(PowerOutput::default()) })
    }
}

/// A driver that refuses: for drivers configured in the cluster file but not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported(pub &'static str);

impl PowerDriver for Unsupported {
    fn pxe_boot<'a>(&'a self, _target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move { Err(PowerError::Unsupported(self.0)) })
    }
}

impl PowerDriver for CommandDriver {
    fn pxe_boot<'a>(&'a self, target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move {
            let text = self
                .run(&CommandTarget {
                    name: target.name.clone(),
                    mac: target.mac.clone(),
                    domain: target.domain.clone(),
                    asset_dir: target.asset_dir.clone(),
                })
                .await?;
            Ok(PowerOutput { text })
        })
    }
}

/// A BMC (IPMI or Redfish) with the node's boot policy.
pub struct BmcDriver {
    /// The BMC.
    pub bmc: Box<dyn Bmc>,
    /// Boot in EFI mode.
    pub efi: bool,
    /// What happens to the boot device around an install.
    pub persistent_boot: PersistentBoot,
}

impl PowerDriver for BmcDriver {
    fn pxe_boot<'a>(&'a self, _target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move {
            // "network": PXE on every boot, like Racker; the boot server decides what an
            // installed machine boots. "disk": PXE once, disk after the install.
            let persistent = self.persistent_boot == PersistentBoot::Network;
            let out = roundhouse_power::pxe_boot(self.bmc.as_ref(), self.efi, persistent).await?;
            Ok(PowerOutput {
                text: out.steps.join("\n"),
            })
        })
    }

    fn after_install<'a>(&'a self, _target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move {
            if self.persistent_boot == PersistentBoot::Network {
                return Ok(PowerOutput::default());
            }
            let out = roundhouse_power::boot_from_disk(self.bmc.as_ref(), self.efi).await?;
            Ok(PowerOutput {
                text: out.steps.join("\n"),
            })
        })
    }
}

/// The executor's driver for a node's `power` block. Fails when the password cannot be read,
/// so a typo in `password_env` stops the apply before any machine is touched.
pub fn driver_for(
    node: &str,
    power: &Power,
    limits: Limits,
) -> Result<Arc<dyn PowerDriver>, roundhouse_power::PowerError> {
    Ok(match roundhouse_power::from_config(node, power, limits)? {
        Driver::Command(c) => Arc::new(c),
        Driver::Bmc {
            bmc,
            efi,
            persistent_boot,
        } => Arc::new(BmcDriver {
            bmc,
            efi,
            persistent_boot,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use roundhouse_power::{BootOverride, BootSetting, BoxFuture, PowerAction, PowerState};

    use super::*;

    fn target() -> PowerTarget {
        PowerTarget {
            name: "w1".into(),
            mac: "52:54:00:00:00:01".into(),
            domain: "w1.example".into(),
            asset_dir: "/tmp/assets".into(),
        }
    }

    #[tokio::test]
    async fn command_sees_the_node_in_its_environment() {
        let d = CommandDriver {
            command: "echo \"$mac $name $domain $asset_dir\"".into(),
            timeout: Duration::from_secs(10),
        };
        let out = d.pxe_boot(&target()).await.unwrap();
        assert_eq!(out.text, "52:54:00:00:00:01 w1 w1.example /tmp/assets\n");
        // A command has nothing to do after the install.
        assert_eq!(d.after_install(&target()).await.unwrap().text, "");
    }

    /// Records calls into a log the test keeps; always powered on.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Bmc for Recorder {
        fn name(&self) -> &str {
            "fake bmc"
        }
        fn power_state(&self) -> BoxFuture<'_, PowerState> {
            Box::pin(async { Ok(PowerState::On) })
        }
        fn power(&self, action: PowerAction) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(action.to_string());
            Box::pin(async { Ok(()) })
        }
        fn set_boot(&self, boot: BootOverride) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(boot.to_string());
            Box::pin(async { Ok(()) })
        }
        fn boot_setting(&self) -> BoxFuture<'_, BootSetting> {
            Box::pin(async {
                Ok(BootSetting {
                    device: "disk".into(),
                    persistent: Some(true),
                    efi: Some(true),
                    valid: Some(true),
                })
            })
        }
    }

    #[tokio::test]
    async fn boot_policy_decides_what_happens_around_the_install() {
        for (policy, want) in [
            (
                PersistentBoot::Disk,
                vec![
                    "PXE next boot only (EFI)",
                    "power cycle",
                    "disk persistent (EFI)",
                ],
            ),
            (
                PersistentBoot::Network,
                vec!["PXE persistent (EFI)", "power cycle"],
            ),
        ] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let d = BmcDriver {
                bmc: Box::new(Recorder(Arc::clone(&log))),
                efi: true,
                persistent_boot: policy,
            };
            d.pxe_boot(&target()).await.unwrap();
            d.after_install(&target()).await.unwrap();
            assert_eq!(*log.lock().unwrap(), want, "{policy:?}");
        }
    }
}
