//! IPMI v2.0 over LAN (RMCP+, what `ipmitool -I lanplus` speaks), in Rust.
//!
//! Each call opens a session (cipher suite 3 or 17), raises it to administrator, sends its
//! commands and closes it: BMCs hold few sessions and drop idle ones, so nothing is kept open
//! between the minutes-apart steps of an install.

pub mod crypto;
pub mod packet;
mod session;

use std::time::{Duration, Instant};

pub use crypto::CipherSuite;

use crate::{
    Bmc, BootDevice, BootOverride, BootSetting, BoxFuture, Limits, Password, PowerAction,
    PowerError, PowerState,
};
use session::Session;

/// Network function: chassis.
const NETFN_CHASSIS: u8 = 0x00;
const GET_CHASSIS_STATUS: u8 = 0x01;
const CHASSIS_CONTROL: u8 = 0x02;
const SET_BOOT_OPTIONS: u8 = 0x08;
const GET_BOOT_OPTIONS: u8 = 0x09;

/// How to reach one BMC.
#[derive(Debug, Clone)]
pub struct IpmiConfig {
    /// Node name, for messages.
    pub node: String,
    /// BMC host name or address.
    pub host: String,
    /// UDP port (623).
    pub port: u16,
    /// User name (at most 16 bytes).
    pub username: String,
    /// Password (at most 20 bytes).
    pub password: Password,
    /// Cipher suite.
    pub suite: CipherSuite,
    /// Timeouts and retries.
    pub limits: Limits,
}

/// An IPMI BMC.
pub struct IpmiBmc {
    cfg: IpmiConfig,
    name: String,
}

impl IpmiBmc {
    /// A driver for this BMC; nothing is sent until a call.
    pub fn new(cfg: IpmiConfig) -> Self {
        let name = format!(
            "node {}: ipmi BMC {}:{} (cipher suite {})",
            cfg.node,
            cfg.host,
            cfg.port,
            cfg.suite.id()
        );
        IpmiBmc { cfg, name }
    }

    /// Runs `f` in a fresh administrator session and closes it.
    async fn with_session<T>(
        &self,
        f: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, PowerError>,
    ) -> Result<T, PowerError> {
        let mut s = Session::open(&self.cfg, &self.name).await?;
        let out = f(&mut s).await;
        s.close().await;
        out
    }

    async fn status(&self) -> Result<PowerState, PowerError> {
        self.with_session(async |s| read_power(s, &self.name).await)
            .await
    }

    /// Sends Chassis Control; done once the BMC acknowledged it.
    async fn control(&self, action: PowerAction) -> Result<(), PowerError> {
        let code = match action {
            PowerAction::On => 0x01,
            PowerAction::Off => 0x00,
            PowerAction::Cycle => 0x02,
        };
        self.with_session(async |s| {
            s.command(
                NETFN_CHASSIS,
                CHASSIS_CONTROL,
                &[code],
                &format!("Chassis Control ({action})"),
            )
            .await
            .map(drop)
        })
        .await
    }

    /// Switches power and waits until the power state shows it: BMCs acknowledge before the
    /// power changes. Only the request is retried, never after its acknowledgement, which
    /// would switch the power twice.
    async fn switch(&self, action: PowerAction) -> Result<(), PowerError> {
        let limits = self.cfg.limits;
        retried(limits, || self.control(action)).await?;
        let wanted = match action {
            PowerAction::Off => PowerState::Off,
            PowerAction::On | PowerAction::Cycle => PowerState::On,
        };
        let start = Instant::now();
        loop {
            let seen = retried(limits, || self.status()).await?;
            if seen == wanted {
                return Ok(());
            }
            if start.elapsed() >= limits.settle {
                return Err(PowerError::NotReached {
                    bmc: self.name.clone(),
                    wanted: wanted.to_string(),
                    seen: seen.to_string(),
                    after: start.elapsed(),
                });
            }
            tokio::time::sleep(limits.poll).await;
        }
    }

    async fn boot(&self, boot: BootOverride) -> Result<(), PowerError> {
        self.with_session(async |s| {
            // Parameter 3: don't let the BMC clear the boot flags after 60 s, on a power
            // button, reset or watchdog, so the setting survives a slow power-on (Racker's
            // `raw 0x0 0x8 0x3 0x1f`).
            s.command(
                NETFN_CHASSIS,
                SET_BOOT_OPTIONS,
                &[0x03, 0x1F],
                "Set System Boot Options parameter 3 (boot flag valid bit clearing)",
            )
            .await?;
            s.command(
                NETFN_CHASSIS,
                SET_BOOT_OPTIONS,
                &boot_flags(boot),
                &format!("Set System Boot Options parameter 5 (boot flags: {boot})"),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn read_boot(&self) -> Result<BootSetting, PowerError> {
        let name = &self.name;
        self.with_session(async |s| {
            let d = s
                .command(
                    NETFN_CHASSIS,
                    GET_BOOT_OPTIONS,
                    &[0x05, 0x00, 0x00],
                    "Get System Boot Options parameter 5",
                )
                .await?;
            parse_boot_flags(&d).ok_or_else(|| PowerError::Protocol {
                bmc: name.clone(),
                detail: format!("boot flags reply too short or for another parameter: {d:02x?}"),
            })
        })
        .await
    }
}

async fn read_power(s: &mut Session<'_>, bmc: &str) -> Result<PowerState, PowerError> {
    let d = s
        .command(NETFN_CHASSIS, GET_CHASSIS_STATUS, &[], "Get Chassis Status")
        .await?;
    match d.first() {
        Some(b) if b & 1 == 1 => Ok(PowerState::On),
        Some(_) => Ok(PowerState::Off),
        None => Err(PowerError::Protocol {
            bmc: bmc.to_string(),
            detail: "Get Chassis Status answered no data".into(),
        }),
    }
}

/// Parameter 5 request data: valid bit, persistence, EFI, then the device selector.
pub fn boot_flags(boot: BootOverride) -> [u8; 6] {
    let mut b1 = 0x80;
    if boot.persistent {
        b1 |= 0x40;
    }
    if boot.efi {
        b1 |= 0x20;
    }
    let device = match boot.device {
        BootDevice::Pxe => 0x04,
        BootDevice::Disk => 0x08,
    };
    [0x05, b1, device, 0x00, 0x00, 0x00]
}

/// Reads a Get System Boot Options parameter 5 answer (version, parameter, five data bytes).
pub fn parse_boot_flags(d: &[u8]) -> Option<BootSetting> {
    if d.len() < 4 || d[1] & 0x7F != 0x05 {
        return None;
    }
    let (b1, b2) = (d[2], d[3]);
    let device = match (b2 >> 2) & 0x0F {
        0x0 => "none",
        0x1 => "pxe",
        0x2 => "disk",
        0x3 => "disk-safe-mode",
        0x4 => "diagnostic",
        0x5 => "cdrom",
        0x6 => "bios-setup",
        0x7 => "remote-floppy",
        0x8 => "remote-cdrom",
        0x9 => "remote-media",
        0xB => "remote-disk",
        0xF => "floppy",
        _ => "reserved",
    };
    Some(BootSetting {
        device: device.to_string(),
        persistent: Some(b1 & 0x40 != 0),
        efi: Some(b1 & 0x20 != 0),
        valid: Some(b1 & 0x80 != 0),
    })
}

/// Retries a whole call (new session) on transient failures, a bounded number of times.
async fn retried<T, F, Fut>(limits: Limits, mut f: F) -> Result<T, PowerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PowerError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            // A timeout already used up its own retransmissions: not again.
            Err(e)
                if e.is_transient()
                    && !matches!(e, PowerError::Timeout { .. })
                    && tries < limits.retries =>
            {
                tries += 1;
                tracing::debug!(error = %e, tries, "retrying an IPMI call");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
            }
            other => return other,
        }
    }
}

impl Bmc for IpmiBmc {
    fn name(&self) -> &str {
        &self.name
    }

    fn power_state(&self) -> BoxFuture<'_, PowerState> {
        Box::pin(async move { retried(self.cfg.limits, || self.status()).await })
    }

    fn power(&self, action: PowerAction) -> BoxFuture<'_, ()> {
        Box::pin(self.switch(action))
    }

    fn set_boot(&self, boot: BootOverride) -> BoxFuture<'_, ()> {
        Box::pin(async move { retried(self.cfg.limits, || self.boot(boot)).await })
    }

    fn boot_setting(&self) -> BoxFuture<'_, BootSetting> {
        Box::pin(async move { retried(self.cfg.limits, || self.read_boot()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racker_bytes_for_persistent_efi_pxe() {
        // Racker's pxe-boot.sh: raw 0x00 0x08 0x05 0xe0 0x04 0x00 0x00 0x00.
        let b = boot_flags(BootOverride {
            device: BootDevice::Pxe,
            persistent: true,
            efi: true,
        });
        assert_eq!(b, [0x05, 0xE0, 0x04, 0, 0, 0]);
        let once = boot_flags(BootOverride {
            device: BootDevice::Pxe,
            persistent: false,
            efi: false,
        });
        assert_eq!(once, [0x05, 0x80, 0x04, 0, 0, 0]);
    }

    #[test]
    fn boot_flags_read_back() {
        let s = parse_boot_flags(&[0x01, 0x05, 0xE0, 0x08, 0, 0, 0]).unwrap();
        assert_eq!(s.device, "disk");
        assert_eq!(
            (s.persistent, s.efi, s.valid),
            (Some(true), Some(true), Some(true))
        );
        assert!(parse_boot_flags(&[0x01, 0x03, 0x1F]).is_none());
        assert!(parse_boot_flags(&[]).is_none());
    }
}
