//! `lab status`: each machine as the simulator sees it — power, boot settings, disk, and
//! which OS and config it runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::LabError;
use crate::layout::{LabDir, LabState};
use crate::up::running;

/// One machine's row.
#[derive(Debug, Clone, Serialize)]
pub struct MachineStatus {
    /// Node name.
    pub name: String,
    /// `controller` or `worker`.
    pub role: String,
    /// `on` / `off`.
    pub power: String,
    /// Boot phase (`running`, `netboot`, `off`, …).
    pub phase: String,
    /// Boot order and any one-time override, e.g. `disk,pxe` or `pxe once; disk,pxe`.
    pub boot: String,
    /// Disk contents, e.g. `sda: flatcar stable 3975.2.0`.
    pub disks: Vec<String>,
    /// `installer` or `installed` while an OS runs.
    pub os: Option<String>,
    /// SHA-256 of the Ignition config the running OS last applied.
    pub config_sha256: Option<String>,
    /// The roundhouse config digest published with those bytes (from
    /// `published-configs.json`), when known.
    pub config_digest: Option<String>,
    /// `ADDRESS:PORT` of its sshd.
    pub ssh: String,
    /// The machine's last error, if any.
    pub last_error: Option<String>,
    /// Installations (`flatcar-install` runs) since the simulator started.
    pub installs: u64,
    /// Faults in force (the simulator's names), empty when none.
    pub faults: Vec<String>,
}

/// Reads the simulator's machine table and joins it with the lab's nodes.
pub fn collect(lab: &LabDir, state: &LabState) -> Result<Vec<MachineStatus>, LabError> {
    if let Some(q) = &state.qemu {
        return crate::qemu::status(lab, state, q);
    }
    if running(lab, state).len() < 2 {
        return Err(LabError::NotRunning(lab.root().to_path_buf()));
    }
    let rows = fetch_table(&state.control)?;
    let digests = sha_to_digest(lab);
    let mut out = Vec::new();
    for m in &state.machines {
        let row = rows
            .iter()
            .find(|r| r["name"].as_str() == Some(m.name.as_str()))
            .cloned()
            .unwrap_or_default();
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let order: Vec<String> = row["boot"]["order"]
            .as_array()
            .map(|a| a.iter().filter_map(&s).collect())
            .unwrap_or_default();
        let mut boot = order.join(",");
        if let Some(t) = s(&row["boot"]["override_target"])
            && row["boot"]["override_mode"].as_str() != Some("Disabled")
        {
            let mode = s(&row["boot"]["override_mode"]).unwrap_or_default();
            boot = format!("{t} {}; {boot}", mode.to_lowercase());
        }
        let os = s(&row["os"]);
        let sha = if os.is_some() {
            s(&row["last_ignition"]["sha256"])
        } else {
            None
        };
        out.push(MachineStatus {
            name: m.name.clone(),
            role: m.role.clone(),
            power: s(&row["power"]).unwrap_or_else(|| "?".into()),
            phase: s(&row["phase"]).unwrap_or_else(|| "?".into()),
            boot,
            disks: row["disks"]
                .as_array()
                .map(|a| a.iter().filter_map(&s).collect())
                .unwrap_or_default(),
            config_digest: sha.as_ref().and_then(|h| digests.get(bare_hex(h)).cloned()),
            config_sha256: sha,
            os,
            ssh: format!("{}:{}", m.address, m.ssh_port),
            last_error: s(&row["last_error"]),
            installs: row["installs"].as_u64().unwrap_or(0),
            faults: faults_in_force(&row["faults"]),
        });
    }
    Ok(out)
}

/// The faults whose value is not the default (`true`, or a slow-boot factor above 1).
fn faults_in_force(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        match v {
            serde_json::Value::Bool(true) => out.push(k.replace('_', "-")),
            serde_json::Value::Number(n) if n.as_f64().is_some_and(|f| f > 1.0) => {
                out.push(format!("{}={n}", k.replace('_', "-")))
            }
            _ => {}
        }
    }
    out
}

/// `published-configs.json` inverted: SHA-256 of published bytes → config digest.
fn sha_to_digest(lab: &LabDir) -> BTreeMap<String, String> {
    let map: BTreeMap<String, String> =
        std::fs::read(lab.asset_dir().join("published-configs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    map.into_iter()
        .map(|(digest, sha)| (bare_hex(&sha).to_string(), digest))
        .collect()
}

/// roundhouse writes SHA-256 sums as `sha256:<hex>`, the simulator as bare hex.
pub fn bare_hex(sha: &str) -> &str {
    sha.strip_prefix("sha256:").unwrap_or(sha)
}

fn fetch_table(control: &str) -> Result<Vec<serde_json::Value>, LabError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let url = format!("http://{control}/machines");
        let err = |e: &dyn std::fmt::Display| {
            LabError::Http(format!("the simulator's control API ({url}): {e}"))
        };
        let client = reqwest::Client::builder().build().map_err(|e| err(&e))?;
        let resp = client
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| err(&e))?;
        if !resp.status().is_success() {
            return Err(err(&resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| err(&e))?;
        serde_json::from_slice(&body).map_err(|e| err(&e))
    })
}

/// Short form of a digest or SHA-256 for tables: 12 hex digits.
pub fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.get(..12).unwrap_or(hex)
}

/// The table `lab status` prints.
pub fn table(rows: &[MachineStatus]) -> String {
    let mut s = format!(
        "{:<14} {:<10} {:<5} {:<8} {:<26} {:<28} {:<16} RUNS\n",
        "MACHINE", "ROLE", "POWER", "PHASE", "BOOT", "DISK", "SSH"
    );
    for r in rows {
        let runs = match (&r.os, &r.config_digest, &r.config_sha256) {
            (None, _, _) => "-".to_string(),
            (Some(os), Some(d), _) => format!("{os}, config {}", short(d)),
            (Some(os), None, Some(sha)) => format!("{os}, ignition bytes {}", short(sha)),
            (Some(os), None, None) => os.clone(),
        };
        s.push_str(&format!(
            "{:<14} {:<10} {:<5} {:<8} {:<26} {:<28} {:<16} {runs}\n",
            r.name,
            r.role,
            r.power,
            r.phase,
            r.boot,
            r.disks.join(" "),
            r.ssh,
        ));
        if !r.faults.is_empty() {
            s.push_str(&format!("{:<14} faults: {}\n", "", r.faults.join(", ")));
        }
        if let Some(e) = &r.last_error {
            s.push_str(&format!("{:<14} last error: {e}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
