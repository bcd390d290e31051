//! `lab fault NODE FAULT…`: the simulator's faults on demand (docs/simulator.md#faults),
//! without hand-written JSON.

use std::time::Duration;

use crate::error::LabError;
use crate::layout::LabDir;

/// Fault names as the command line takes them; `slow-boot=F` takes a factor.
pub const FAULTS: &[&str] = &[
    "bmc-unreachable",
    "netboot-fails",
    "installer-fails",
    "hang-after-reboot",
    "ssh-refused",
    "slow-boot=F",
];

/// The simulator's faults object for `names` (replacing every fault in force; `none` or no
/// names clears them).
pub fn faults_object(names: &[String]) -> Result<serde_json::Value, LabError> {
    let mut obj = serde_json::Map::new();
    for n in names {
        if n == "none" {
            continue;
        }
        if let Some(f) = n.strip_prefix("slow-boot=") {
            let factor: f64 = f
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 1.0)
                .ok_or_else(|| {
                    LabError::Other(format!("{n:?}: slow-boot takes a factor of 1 or more"))
                })?;
            obj.insert("slow_boot".into(), factor.into());
        } else if FAULTS.contains(&n.as_str()) && n != "slow-boot=F" {
            obj.insert(n.replace('-', "_"), true.into());
        } else {
            return Err(LabError::Other(format!(
                "unknown fault {n:?}: expected none or {}",
                FAULTS.join(", ")
            )));
        }
    }
    Ok(serde_json::Value::Object(obj))
}

/// Sets the faults of the machine called `node`; returns a line saying what is in force.
pub fn set(dir: &std::path::Path, node: &str, names: &[String]) -> Result<String, LabError> {
    let lab = LabDir::new(dir)?;
    let state = lab.load()?;
    let machine = state.machine(node)?;
    if state.qemu.is_some() {
        return Err(LabError::Other(
            "faults are a simulator feature; a QEMU lab's machines are real VMs".into(),
        ));
    }
    let faults = faults_object(names)?;
    let url = format!("http://{}/machines/{}/faults", state.control, machine.mac);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let err = |e: &dyn std::fmt::Display| {
            LabError::Http(format!("the simulator's control API ({url}): {e}"))
        };
        let client = reqwest::Client::builder().build().map_err(|e| err(&e))?;
        let resp = client
            .put(&url)
            .header("content-type", "application/json")
            .body(faults.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| err(&e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(err(&format!("HTTP {status}: {}", body.trim())));
        }
        Ok(())
    })?;
    Ok(if faults.as_object().is_some_and(|o| o.is_empty()) {
        format!("{node}: no faults")
    } else {
        format!("{node}: faults {faults}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_become_the_simulators_fields() {
        assert_eq!(
            faults_object(&names(&["installer-fails", "slow-boot=3"])).unwrap(),
            serde_json::json!({"installer_fails": true, "slow_boot": 3.0})
        );
        assert_eq!(
            faults_object(&names(&["none"])).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn unknown_faults_and_bad_factors_are_refused() {
        assert!(faults_object(&names(&["disk-on-fire"])).is_err());
        assert!(faults_object(&names(&["slow-boot=F"])).is_err());
        assert!(faults_object(&names(&["slow-boot=0.5"])).is_err());
    }
}
