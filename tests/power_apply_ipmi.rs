//! `apply`'s PXE path over IPMI, end to end: roundhouse's IPMI driver talks RMCP+ to OpenIPMI's
//! `ipmi_sim` (Debian `openipmi`); the simulator's `chassis_control` script records every call
//! and passes it on to a simulated machine (`roundhouse-sim`) through that machine's Redfish BMC,
//! so the machine's power and boot device follow the driver. The exact sequence is asserted:
//! boot PXE set, power on, and, after the install was proven, boot disk set.

#[path = "../crates/roundhouse-power/tests/common/mod.rs"]
mod common;
// This test uses a small part of the shared harness.
#[allow(dead_code)]
mod sim;

use roundhouse_sim::BootDevice;
use roundhouse_sim::machine::OverrideMode;

const PW_VAR: &str = "ROUNDHOUSE_TEST_IPMI_APPLY_PW";

/// The chassis script: records, then drives the simulated machine's BMC with curl. ipmi_sim
/// passes only the device (`pxe`; `default` is its word for the hard disk), so the mapping to
/// once/continuous is this fixture's: PXE for one boot, disk for good, as the driver asked.
const CHASSIS: &str = r#"#!/bin/sh
d="$(dirname "$0")"
echo "$*" >> "$d/calls"
sys="$(cat "$d/bmc_url")/redfish/v1/Systems/1"
j='Content-Type: application/json'
case "$1 $2" in
  "get power")
    if curl -fsS --max-time 5 "$sys" | grep -q '"PowerState": *"On"'; then echo power:1; else echo power:0; fi;;
  "get boot")
    if [ -f "$d/boot" ]; then echo "boot:$(cat "$d/boot")"; else echo boot:default; fi;;
  "set power")
    if [ "$3" = 1 ]; then t=On; else t=ForceOff; fi
    curl -fsS --max-time 5 -X POST -H "$j" -d "{\"ResetType\":\"$t\"}" "$sys/Actions/ComputerSystem.Reset";;
  "set boot")
    echo "$3" > "$d/boot"
    case "$3" in
      pxe) b='{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}';;
      default) b='{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous"}}';;
      *) b='';;
    esac
    if [ -n "$b" ]; then curl -fsS --max-time 5 -X PATCH -H "$j" -d "$b" "$sys"; fi;;
esac
exit 0
"#;

#[test]
fn apply_installs_over_ipmi_in_the_exact_sequence() {
    let lab = sim::Lab::new(&[("w1", "worker")]);
    let bmc_url = lab.node("w1").bmc_url.clone();
    let bmc = common::Sim::start_with(Some(CHASSIS), |dir| {
        std::fs::write(dir.join("bmc_url"), &bmc_url).unwrap();
    });

    // The node's own IPMI block: another driver than the cluster's `command` default.
    let path = lab.root().join("cluster.hcl");
    let hcl = std::fs::read_to_string(&path).unwrap();
    let open = "node \"w1\" {\n";
    assert!(hcl.contains(open), "{hcl}");
    let block = format!(
        "{open}  power {{\n    driver = \"ipmi\"\n    address = \"127.0.0.1\"\n    port = {}\n    username = \"{}\"\n    password_env = \"{PW_VAR}\"\n  }}\n",
        bmc.port,
        common::USER
    );
    std::fs::write(&path, hcl.replace(open, &block)).unwrap();

    let args = sim::Lab::apply_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab
        .command(&args)
        .env(PW_VAR, common::PASSWORD)
        .output()
        .unwrap();
    lab.assert_ok(&out);
    let all = sim::text(&out);
    assert!(all.contains("apply: 1 succeeded, 0 failed"), "{all}");

    assert_eq!(
        bmc.sets(),
        ["set boot pxe", "set power 1", "set boot default"],
        "all chassis calls: {:?}",
        bmc.calls()
    );
    assert_eq!(
        lab.power_actions("w1"),
        0,
        "the lab's curl script must not run"
    );
    let info = lab.info("w1");
    assert_eq!(info.status.installs, 1, "{info:#?}");
    assert_eq!(info.status.os, Some("installed"));
    assert_eq!(
        (info.boot.override_target, info.boot.override_mode),
        (Some(BootDevice::Disk), OverrideMode::Continuous)
    );
}
