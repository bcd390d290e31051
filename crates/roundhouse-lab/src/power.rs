//! `lab power NODE on|off|cycle|pxe|disk`: what an operator does at a BMC, done through the
//! simulated machine's Redfish endpoints (the same requests a real BMC takes).

use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::layout::{LabDir, LabMachine, LabState};

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on (nothing when on).
    On,
    /// Cut power.
    Off,
    /// Off and on again.
    Cycle,
    /// Boot from the network once, then (re)start: what a PXE install needs.
    Pxe,
    /// Boot from the disk once, then (re)start.
    Disk,
}

impl std::str::FromStr for PowerAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "on" => PowerAction::On,
            "off" => PowerAction::Off,
            "cycle" => PowerAction::Cycle,
            "pxe" => PowerAction::Pxe,
            "disk" => PowerAction::Disk,
            _ => return Err(format!("{s:?}: expected on, off, cycle, pxe or disk")),
        })
    }
}

/// A Redfish client for one simulated BMC.
struct Bmc<'a> {
    http: reqwest::Client,
    machine: &'a LabMachine,
    user: &'a str,
    password: String,
}

impl Bmc<'_> {
    fn system(&self) -> String {
        format!("{}/redfish/v1/Systems/1", self.machine.bmc_url)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> LabError {
        LabError::Http(format!(
            "{}: BMC {} ({what}): {e}",
            self.machine.name, self.machine.bmc_url
        ))
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<String, LabError> {
        let resp = req
            .basic_auth(self.user, Some(&self.password))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.err(what, e))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(self.err(what, format!("HTTP {status}: {}", body.trim())));
        }
        Ok(body)
    }

    async fn power_state(&self) -> Result<String, LabError> {
        let body = self
            .send(self.http.get(self.system()), "reading the power state")
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| self.err("reading the power state", e))?;
        Ok(v["PowerState"].as_str().unwrap_or("Unknown").to_string())
    }

    async fn reset(&self, kind: &str) -> Result<(), LabError> {
        let body = serde_json::json!({ "ResetType": kind }).to_string();
        self.send(
            self.http
                .post(format!("{}/Actions/ComputerSystem.Reset", self.system()))
                .header("content-type", "application/json")
                .body(body),
            &format!("reset {kind}"),
        )
        .await
        .map(|_| ())
    }

    async fn boot_once(&self, target: &str) -> Result<(), LabError> {
        let body = serde_json::json!({
            "Boot": { "BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once" }
        })
        .to_string();
        self.send(
            self.http
                .patch(self.system())
                .header("content-type", "application/json")
                .body(body),
            &format!("boot override {target}"),
        )
        .await
        .map(|_| ())
    }

    /// BMCs change power a moment after accepting the request; wait for `want`.
    async fn wait_power(&self, want: &str) -> Result<(), LabError> {
        let start = Instant::now();
        loop {
            if self.power_state().await? == want {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(self.err(
                    "waiting for the power state",
                    format!("still not {want} after 30 s"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Carries out `action` on the machine called `node`; returns a line saying what was done.
pub fn power(dir: &std::path::Path, node: &str, action: PowerAction) -> Result<String, LabError> {
    let lab = LabDir::new(dir)?;
    let state: LabState = lab.load()?;
    let machine = state.machine(node)?;
    if state.qemu.is_some() {
        return Err(LabError::Other(format!(
            "{node} is a QEMU machine behind an IPMI BMC: use `roundhouse power {} {node} ACTION`",
            lab.cluster_file().display()
        )));
    }
    let password = std::fs::read_to_string(lab.bmc_password_file())
        .map_err(LabError::io(lab.bmc_password_file()))?
        .trim()
        .to_string();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| LabError::Other(format!("HTTP client: {e}")))?;
    let bmc = Bmc {
        http,
        machine,
        user: &state.bmc_username,
        password,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let before = bmc.power_state().await?;
        match action {
            PowerAction::On => {
                if before != "On" {
                    bmc.reset("On").await?;
                    bmc.wait_power("On").await?;
                }
            }
            PowerAction::Off => {
                if before != "Off" {
                    bmc.reset("ForceOff").await?;
                    bmc.wait_power("Off").await?;
                }
            }
            PowerAction::Cycle => {
                bmc.reset("PowerCycle").await?;
            }
            PowerAction::Pxe | PowerAction::Disk => {
                let target = if action == PowerAction::Pxe {
                    "Pxe"
                } else {
                    "Hdd"
                };
                bmc.boot_once(target).await?;
                if before == "On" {
                    bmc.reset("ForceRestart").await?;
                } else {
                    bmc.reset("On").await?;
                    bmc.wait_power("On").await?;
                }
            }
        }
        Ok(format!(
            "{node}: {} (was {before}) via BMC {}",
            match action {
                PowerAction::On => "powered on",
                PowerAction::Off => "powered off",
                PowerAction::Cycle => "power-cycled",
                PowerAction::Pxe => "network boot once, restarted",
                PowerAction::Disk => "disk boot once, restarted",
            },
            machine.bmc_url
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse() {
        assert_eq!("pxe".parse::<PowerAction>(), Ok(PowerAction::Pxe));
        assert_eq!("cycle".parse::<PowerAction>(), Ok(PowerAction::Cycle));
        assert!("reboot".parse::<PowerAction>().is_err());
    }
}
