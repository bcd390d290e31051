//! `apply`'s PXE path through the Redfish driver: each node's `power { driver = "redfish" }`
//! points at its simulated machine's BMC (`roundhouse-sim`), instead of the lab's curl script.
//! The machine must be installed by PXE exactly once, and end with disk as its persistent boot
//! device (the default `persistent_boot = "disk"`), so it can never loop into the installer.

// This test uses a small part of the shared harness.
#[allow(dead_code)]
mod sim;

use roundhouse_sim::BootDevice;
use roundhouse_sim::machine::OverrideMode;
use sim::{Lab, text};

const PW_VAR: &str = "ROUNDHOUSE_TEST_SIM_BMC_PW";

/// Gives every node its own Redfish `power` block; a different driver than the cluster's
/// `command` default, so none of the cluster's settings apply to it.
fn use_redfish(lab: &Lab, names: &[&str]) {
    let path = lab.root().join("cluster.hcl");
    let mut hcl = std::fs::read_to_string(&path).unwrap();
    for name in names {
        let open = format!("node \"{name}\" {{\n");
        let block = format!(
            "{open}  power {{\n    driver = \"redfish\"\n    endpoint = \"{}\"\n    username = \"admin\"\n    password_env = \"{PW_VAR}\"\n  }}\n",
            lab.node(name).bmc_url
        );
        assert!(hcl.contains(&open), "{hcl}");
        hcl = hcl.replace(&open, &block);
    }
    std::fs::write(&path, hcl).unwrap();
}

fn apply(lab: &Lab) -> std::process::Output {
    let args = Lab::apply_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.command(&args)
        .env(PW_VAR, "unused-by-the-sim")
        .output()
        .unwrap()
}

#[test]
fn apply_installs_through_the_redfish_driver_and_leaves_disk_persistent() {
    let lab = Lab::new(&[("w1", "worker"), ("w2", "worker")]);
    use_redfish(&lab, &["w1", "w2"]);
    let out = apply(&lab);
    lab.assert_ok(&out);
    let all = text(&out);
    assert!(
        all.contains("apply: 2 succeeded, 0 failed, 0 not started"),
        "{all}"
    );
    for n in ["w1", "w2"] {
        // The lab's curl script never ran: the driver did the work.
        assert_eq!(lab.power_actions(n), 0, "{:?}", lab.power_log());
        let info = lab.info(n);
        assert_eq!(info.status.installs, 1, "{n}: {info:#?}");
        assert_eq!(info.status.os, Some("installed"), "{n}");
        assert_eq!(
            (info.boot.override_target, info.boot.override_mode),
            (Some(BootDevice::Disk), OverrideMode::Continuous),
            "{n}: the install must end with disk as the persistent boot device"
        );
    }
    // What the driver did is in the progress lines.
    assert!(
        all.contains("next boot set to PXE next boot only (EFI)"),
        "{all}"
    );
    assert!(all.contains("power was off: power on"), "{all}");
    assert!(
        all.contains("boot device set to disk persistent (EFI)"),
        "{all}"
    );
}

/// `persistent_boot = "network"`: the machine keeps the network as its first boot device, so
/// when the installer reboots it, it asks the boot server again before apply has seen the
/// install. The boot server answers "boot from disk" as soon as the installer has fetched its
/// config under the current install-pending mark: one installation, not a loop.
#[test]
fn with_persistent_network_boot_the_installer_reboot_boots_the_disk() {
    let lab = Lab::new(&[("w1", "worker")]);
    use_redfish(&lab, &["w1"]);
    let path = lab.root().join("cluster.hcl");
    let hcl = std::fs::read_to_string(&path).unwrap();
    let hcl = hcl.replacen(
        "    driver = \"redfish\"\n",
        "    driver = \"redfish\"\n    persistent_boot = \"network\"\n",
        1,
    );
    std::fs::write(&path, hcl).unwrap();
    let out = apply(&lab);
    lab.assert_ok(&out);
    let all = text(&out);
    assert!(all.contains("apply: 1 succeeded"), "{all}");
    let info = lab.info("w1");
    assert_eq!(info.status.installs, 1, "{info:#?}\n{all}");
    assert_eq!(info.status.os, Some("installed"));
    assert_ne!(
        (info.boot.override_target, info.boot.override_mode),
        (Some(BootDevice::Disk), OverrideMode::Continuous),
        "persistent_boot = \"network\" must not be turned into disk"
    );
    // The boot server's journal shows the answer that stopped the loop.
    let journal =
        std::fs::read_to_string(lab.root().join("assets/boot-state/fetch-journal.jsonl")).unwrap();
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"route\":\"ipxe\"") && l.contains("\"local_boot\":true")),
        "{journal}"
    );
}
