//! `roundhouse apply` end to end against simulated machines (`roundhouse-sim`): one test per
//! planner action and one per machine fault. The machines are powered through the `command`
//! power driver, a shell script that asks each machine's Redfish BMC for a one-time network
//! boot and a restart with curl. After every apply, `status --output json` is checked against
//! what the machines show over SSH (see `sim::Lab::assert_status_matches_machines`).
//!
//! Needs root (the simulator's mount namespaces) and the Debian packages curl, openssh-client,
//! util-linux and bash.

mod sim;

use std::process::Stdio;
use std::time::Duration;

use roundhouse_sim::Faults;
use sim::{Lab, action_of, text};

const WORKERS: &[(&str, &str)] = &[("w1", "worker"), ("w2", "worker"), ("w3", "worker")];

/// Installs every node by PXE and checks the outcome; the starting point of most tests.
fn provisioned(nodes: &[(&str, &'static str)]) -> Lab {
    let lab = Lab::new(nodes);
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    lab
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// provision: fresh machines with blank disks are installed by PXE through their BMCs; each
/// machine was powered once, installed once and ran Ignition twice (installer, first boot);
/// status agrees with the machines.
#[test]
fn provision_installs_fresh_machines_by_pxe() {
    let lab = Lab::new(&[("c1", "controller"), ("w1", "worker"), ("w2", "worker")]);
    let plan = lab.plan_json();
    for n in ["c1", "w1", "w2"] {
        assert_eq!(action_of(&plan, n), "provision", "{plan}");
        assert_eq!(lab.info(n).disks, vec!["sda: blank".to_string()]);
    }
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    assert!(
        stderr(&out).contains("apply: 3 succeeded, 0 failed, 0 not started"),
        "{}",
        text(&out)
    );
    for n in ["c1", "w1", "w2"] {
        assert_eq!(lab.power_actions(n), 1, "{:?}", lab.power_log());
        let info = lab.info(n);
        assert_eq!(info.status.installs, 1, "{n}: {info:#?}");
        assert_eq!(info.status.ignition_runs, 2, "{n}: {info:#?}");
        assert_eq!(info.status.os, Some("installed"), "{n}");
        assert!(
            info.disks[0].starts_with("sda: flatcar"),
            "{n}: {:?}",
            info.disks
        );
        // The one-time override was consumed; the installed machine boots its disk.
        assert_eq!(
            info.boot.override_mode,
            roundhouse_sim::machine::OverrideMode::Disabled
        );
    }
    let status = lab.status();
    for (name, s) in &status {
        assert_eq!(s["state"], "installed", "{name}: {s}");
        assert_eq!(s["applied_digest"], s["desired_digest"], "{name}");
        assert_eq!(s["last_action"]["kind"], "confirmed", "{name}");
    }
    lab.assert_status_matches_machines();
}

/// none: a second apply over an installed fleet plans nothing (`--detailed-exitcode` 0),
/// touches no machine (no power action, no boot, no Ignition run) and changes no status.
#[test]
fn second_apply_changes_nothing() {
    let lab = provisioned(&[("c1", "controller"), ("w1", "worker")]);
    assert_eq!(lab.plan_exit_code(), Some(0));
    let before: Vec<_> = ["c1", "w1"].iter().map(|n| lab.info(n).status).collect();
    let status_before = lab.status();
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    for (n, b) in ["c1", "w1"].iter().zip(&before) {
        let now = lab.info(n).status;
        assert_eq!(
            (now.boots, now.installs, now.ignition_runs),
            (b.boots, b.installs, b.ignition_runs),
            "{n} was touched"
        );
        assert_eq!(lab.power_actions(n), 1);
    }
    let status_after = lab.status();
    for n in ["c1", "w1"] {
        assert_eq!(
            status_before[n]["last_action"], status_after[n]["last_action"],
            "{n}"
        );
        assert_eq!(
            status_before[n]["applied_digest"],
            status_after[n]["applied_digest"]
        );
    }
    assert_eq!(lab.plan_exit_code(), Some(0));
    lab.assert_status_matches_machines();
}

/// reprovision-in-place: after a snippet change a worker is re-provisioned over SSH without a
/// power action or a new install: the new file is on the machine, a file written on the old
/// root filesystem is gone (Ignition wiped ROOT), and the OEM grub.cfg carries the kernel
/// arguments and the Ignition URL.
#[test]
fn snippet_change_reprovisions_a_worker_in_place() {
    let mut lab = provisioned(&[("w1", "worker")]);
    lab.ssh_ok(
        "w1",
        "echo old | sudo tee /var/lib/old-root-file >/dev/null",
    );
    assert_eq!(lab.ssh_ok("w1", "cat /etc/lab/generation"), "1");
    let before = lab.info("w1").status;

    lab.change_snippet(&["w1"], 2);
    assert_eq!(action_of(&lab.plan_json(), "w1"), "reprovision-in-place");
    assert_eq!(lab.plan_exit_code(), Some(2));
    let out = lab.apply(&[]);
    lab.assert_ok(&out);

    assert_eq!(lab.ssh_ok("w1", "cat /etc/lab/generation"), "2");
    let gone = lab.ssh("w1", "test -e /var/lib/old-root-file");
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    let grub = lab.ssh_ok("w1", "cat /usr/share/oem/grub.cfg");
    let n = lab.node("w1");
    assert_eq!(
        grub,
        format!(
            "set linux_append=\"{} ignition.config.url={}/ignition?mac={}&os=installed\"\n\
             set linux_console=\"console=tty0 console=ttyS0\"\n",
            sim::KERNEL_ARG,
            lab.boot_url,
            n.mac
        )
    );
    let after = lab.info("w1").status;
    assert_eq!(
        lab.power_actions("w1"),
        1,
        "no power action for an in-place change"
    );
    assert_eq!(after.installs, before.installs, "no new install");
    assert_eq!(after.boots, before.boots + 1, "one reboot");
    assert_eq!(after.ignition_runs, before.ignition_runs + 1);
    assert_eq!(after.last_ignition.unwrap().first_boot, "detected");
    let status = lab.status();
    assert_eq!(
        status["w1"]["applied_digest"],
        status["w1"]["desired_digest"]
    );
    assert_eq!(lab.plan_exit_code(), Some(0));
    lab.assert_status_matches_machines();
}

/// hold: the same change on a controller is held (its policy is hold): the controller is not
/// touched, still runs the old generation, and `status` shows the drift; the next plan has no
/// changes (hold is drift, not a change).
#[test]
fn snippet_change_holds_a_controller() {
    let mut lab = provisioned(&[("c1", "controller"), ("w1", "worker")]);
    let before = lab.info("c1").status;
    lab.change_snippet(&["c1", "w1"], 2);
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "c1"), "hold");
    assert_eq!(action_of(&plan, "w1"), "reprovision-in-place");
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    let after = lab.info("c1").status;
    assert_eq!(
        (after.boots, after.ignition_runs),
        (before.boots, before.ignition_runs),
        "the held controller was rebooted"
    );
    assert_eq!(lab.ssh_ok("c1", "cat /etc/lab/generation"), "1");
    assert_eq!(lab.ssh_ok("w1", "cat /etc/lab/generation"), "2");
    let status = lab.status();
    assert_eq!(status["c1"]["drift"], true);
    assert_eq!(status["c1"]["state"], "installed");
    assert_ne!(
        status["c1"]["applied_digest"],
        status["c1"]["desired_digest"]
    );
    assert_eq!(status["w1"]["drift"], false);
    assert_eq!(lab.plan_exit_code(), Some(0));
    lab.assert_status_matches_machines();
}

/// recreate: `roundhouse recreate` forces a PXE install of an installed worker: its power
/// action runs again, the machine network-boots past its bootable disk (one-time override),
/// is installed again (the old root is gone) and the request is cleared.
#[test]
fn recreate_reinstalls_by_pxe() {
    let lab = provisioned(&[("w1", "worker"), ("w2", "worker")]);
    lab.ssh_ok(
        "w1",
        "echo old | sudo tee /var/lib/old-root-file >/dev/null",
    );
    let out = lab.roundhouse(&["recreate", "cluster.hcl", "w1"]);
    lab.assert_ok(&out);
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "provision");
    assert_eq!(action_of(&plan, "w2"), "none");

    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    assert_eq!(lab.power_actions("w1"), 2, "{:?}", lab.power_log());
    assert_eq!(lab.power_actions("w2"), 1);
    let info = lab.info("w1");
    assert_eq!(info.status.installs, 2, "{info:#?}");
    assert_eq!(
        info.status.last_ignition.as_ref().unwrap().first_boot,
        "detected"
    );
    assert_eq!(lab.info("w2").status.installs, 1);
    let gone = lab.ssh("w1", "test -e /var/lib/old-root-file");
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "installed");
    assert_eq!(status["w1"]["last_action"]["kind"], "confirmed");
    assert_eq!(
        lab.plan_exit_code(),
        Some(0),
        "the recreate request was cleared"
    );
    lab.assert_status_matches_machines();
}

/// resume (in place): apply is killed with SIGKILL while the worker reboots into its new
/// config; the next apply resumes from the journal and waits for that reboot: the machine
/// reboots once in all and runs Ignition once, with no power action.
#[test]
fn killed_apply_during_an_in_place_reboot_resumes_without_rebooting_again() {
    let mut lab = provisioned(&[("w1", "worker")]);
    let before = lab.info("w1").status;
    // A slow boot keeps the reboot going long enough to kill apply in the middle of it.
    lab.set_faults(
        "w1",
        Faults {
            slow_boot: 30.0,
            ..Faults::default()
        },
    );
    lab.change_snippet(&["w1"], 2);
    let args = Lab::apply_args(&[]);
    let mut first = lab
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let boots = before.boots;
    lab.wait_machine("w1", Duration::from_secs(60), "reboot", move |i| {
        i.status.boots > boots && i.status.phase != "running"
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_ne!(lab.info("w1").status.phase, "running", "killed too late");
    // apply journals `triggered` when the reboot command's connection drops; a kill in the
    // instant between leaves `started`, and the resume must then find the reboot's evidence
    // (the fetch of the new config) rather than reboot again. Either way: no second reboot.
    let status = lab.status();
    let stage = status["w1"]["pending_intent"]["stage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(action_of(&lab.plan_json(), "w1"), "resume");

    let resumed = lab.apply(&[]);
    lab.assert_ok(&resumed);
    let expected = match stage.as_str() {
        "triggered" => "not triggering again",
        "started" => "not rebooting it again",
        other => panic!(
            "no intent in flight after the kill (stage {other:?}): {}",
            status["w1"]
        ),
    };
    assert!(stderr(&resumed).contains(expected), "{}", text(&resumed));
    let after = lab.info("w1").status;
    assert_eq!(after.boots, before.boots + 1, "rebooted again");
    assert_eq!(after.ignition_runs, before.ignition_runs + 1, "wiped again");
    assert_eq!(after.installs, before.installs);
    assert_eq!(lab.power_actions("w1"), 1);
    assert_eq!(lab.plan_exit_code(), Some(0));
    lab.assert_status_matches_machines();
}

/// resume (PXE): apply is killed with SIGKILL while the power action is still running (a
/// slow BMC) and the machine it powered on is already network-booting, so the journal has the
/// intent but not that the power action ran. The next apply finds the machine's boot request
/// in the fetch journal and only waits: one power action, one install.
#[test]
fn killed_apply_during_a_pxe_install_resumes_without_a_second_power_action() {
    let lab = Lab::with_faults(
        &[("w1", "worker")],
        &[(
            "w1",
            Faults {
                slow_boot: 15.0,
                ..Faults::default()
            },
        )],
    );
    std::fs::write(lab.root().join("slow-bmc"), "").unwrap();
    let args = Lab::apply_args(&[]);
    let mut first = lab
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.wait_machine("w1", Duration::from_secs(60), "network boot", |i| {
        i.status.os == Some("installer") || i.status.phase == "kernel"
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(lab.info("w1").status.installs, 0, "killed too late");
    let status = lab.status();
    assert_eq!(
        status["w1"]["pending_intent"]["stage"], "started",
        "{}",
        status["w1"]
    );
    assert_eq!(action_of(&lab.plan_json(), "w1"), "resume");
    std::fs::remove_file(lab.root().join("slow-bmc")).unwrap();

    let resumed = lab.apply(&[]);
    lab.assert_ok(&resumed);
    assert!(
        stderr(&resumed).contains("not running it again"),
        "{}",
        text(&resumed)
    );
    assert_eq!(lab.power_actions("w1"), 1, "{:?}", lab.power_log());
    let info = lab.info("w1");
    assert_eq!(info.status.installs, 1, "installed twice: {info:#?}");
    assert_eq!(info.status.ignition_runs, 2);
    assert_eq!(lab.plan_exit_code(), Some(0));
    lab.assert_status_matches_machines();
}

/// Runs a first apply over w1 (with `fault`), w2 and w3, and checks the common outcome of a
/// fault: apply exits 1, reports w1 failed with `reason` followed (on the same line) by
/// `detail`, the other two are installed, status records the reason, and status matches the
/// machines.
fn one_machine_fails_the_rest_finish(
    fault: Faults,
    extra: &[&str],
    reason: &str,
    detail: &str,
) -> Lab {
    let lab = Lab::with_faults(WORKERS, &[("w1", fault)]);
    let out = lab.apply(extra);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for l in err.lines().filter(|l| l.contains("failed: node")) {
        eprintln!("{l}");
    }
    let line = err
        .lines()
        .find(|l| l.contains(&format!("failed: node w1: {reason}")))
        .unwrap_or_else(|| panic!("no failure of w1 with {reason:?}: {}", text(&out)));
    assert!(line.contains(detail), "{line}");
    assert!(
        err.contains("apply: 2 succeeded, 1 failed, 0 not started"),
        "{err}"
    );
    let status = lab.status();
    assert_eq!(status["w1"]["state"], "failed", "{}", status["w1"]);
    assert!(
        status["w1"]["last_action"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(reason),
        "{}",
        status["w1"]
    );
    for w in ["w2", "w3"] {
        assert_eq!(status[w]["state"], "installed", "{w}: {}", status[w]);
        assert_eq!(lab.info(w).status.installs, 1);
    }
    lab.assert_status_matches_machines();
    // A failed first install is retried by PXE.
    assert_eq!(action_of(&lab.plan_json(), "w1"), "provision");
    lab
}

#[test]
fn fault_bmc_unreachable() {
    let lab = one_machine_fails_the_rest_finish(
        Faults {
            bmc_unreachable: true,
            ..Faults::default()
        },
        &[],
        "power action: the power command failed (exit status: 7)",
        "Failed to connect to 127.0.0.1",
    );
    let info = lab.info("w1");
    assert_eq!(info.status.power, "off");
    assert_eq!(info.status.boots, 0);
}

#[test]
fn fault_network_boot_fails() {
    let lab = one_machine_fails_the_rest_finish(
        Faults {
            netboot_fails: true,
            ..Faults::default()
        },
        &["--pxe-timeout", "20"],
        "did not fetch its new final config",
        "shows no request from 52:54:00:5e:00:01 since the action started",
    );
    let info = lab.info("w1");
    assert_eq!(info.status.phase, "no-boot-device", "{info:#?}");
    assert!(
        info.status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no DHCP offer"),
        "{info:#?}"
    );
}

#[test]
fn fault_installer_fails() {
    let lab = one_machine_fails_the_rest_finish(
        Faults {
            installer_fails: true,
            ..Faults::default()
        },
        &["--pxe-timeout", "20"],
        "did not fetch its new final config",
        "but never fetched its final config",
    );
    let info = lab.info("w1");
    assert_eq!(info.status.os, Some("installer"), "{info:#?}");
    assert!(
        info.status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("installer.service failed"),
        "{info:#?}"
    );
}

#[test]
fn fault_never_comes_back_after_reboot() {
    let lab = one_machine_fails_the_rest_finish(
        Faults {
            hang_after_reboot: true,
            ..Faults::default()
        },
        &["--pxe-timeout", "20"],
        "did not fetch its new final config",
        "but never fetched its final config",
    );
    let info = lab.info("w1");
    assert_eq!(info.status.phase, "hung", "{info:#?}");
    assert_eq!(
        info.status.installs, 1,
        "it installed, then hung in its reboot"
    );
}

#[test]
fn fault_ssh_refused() {
    let lab = one_machine_fails_the_rest_finish(
        Faults {
            ssh_refused: true,
            ..Faults::default()
        },
        &["--pxe-timeout", "20"],
        "fetched config",
        "but did not show /ignition_ran over SSH within 20s (last: connecting to core@127.1.0.1:",
    );
    let info = lab.info("w1");
    assert_eq!(info.status.os, Some("installed"), "{info:#?}");
    assert!(info.status.ssh_listening.is_empty(), "{info:#?}");
}

/// A slow machine (every boot stage 5 times longer) is waited for within the deadline:
/// everything succeeds, and the slow machine took longer than the others.
#[test]
fn fault_slow_boot_within_the_deadline() {
    let lab = Lab::with_faults(
        WORKERS,
        &[(
            "w1",
            Faults {
                slow_boot: 5.0,
                ..Faults::default()
            },
        )],
    );
    let out = lab.apply(&["--pxe-timeout", "60"]);
    lab.assert_ok(&out);
    let status = lab.status();
    for w in ["w1", "w2", "w3"] {
        assert_eq!(status[w]["state"], "installed", "{w}");
    }
    let at = |w: &str| status[w]["last_action"]["at"].as_str().unwrap().to_string();
    assert!(at("w1") > at("w2") && at("w1") > at("w3"), "{status:?}");
    lab.assert_status_matches_machines();
}

/// Faults during an in-place re-provision: w1 hangs in firmware after the reboot, w2's sshd
/// refuses connections. Both fail with their reasons; w3 is re-provisioned; the failed nodes
/// keep their confirmed installation in the store (the next plan tries in place again) and w2,
/// which was never touched, still runs its old config.
#[test]
fn faults_during_in_place_reprovisioning() {
    let mut lab = provisioned(WORKERS);
    lab.set_faults(
        "w1",
        Faults {
            hang_after_reboot: true,
            ..Faults::default()
        },
    );
    lab.set_faults(
        "w2",
        Faults {
            ssh_refused: true,
            ..Faults::default()
        },
    );
    lab.wait_machine("w2", Duration::from_secs(10), "sshd stopped", |i| {
        i.status.ssh_listening.is_empty()
    });
    let before = lab.status();
    lab.change_snippet(&["w1", "w2", "w3"], 2);
    let out = lab.apply(&["--in-place-timeout", "15", "--reach-timeout", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("failed: node w1: did not fetch its new final config"),
        "{}",
        text(&out)
    );
    let w2 = lab.node("w2");
    assert!(
        err.contains(&format!(
            "failed: node w2: preparing the in-place re-provision: cannot reach core@{}:{} over SSH within 5s",
            w2.address, w2.ssh_port
        )),
        "{}",
        text(&out)
    );
    assert!(
        err.contains("apply: 1 succeeded, 2 failed, 0 not started"),
        "{err}"
    );
    assert_eq!(lab.info("w1").status.phase, "hung");
    let status = lab.status();
    for w in ["w1", "w2"] {
        assert_eq!(status[w]["state"], "failed", "{w}: {}", status[w]);
        assert_eq!(
            status[w]["applied_digest"], before[w]["applied_digest"],
            "{w}: the confirmed installation stays recorded"
        );
        assert_eq!(status[w]["drift"], true, "{w}");
    }
    assert_eq!(status["w3"]["state"], "installed");
    let plan = lab.plan_json();
    assert_eq!(action_of(&plan, "w1"), "reprovision-in-place");
    assert_eq!(action_of(&plan, "w2"), "reprovision-in-place");
    // w2 was never touched: with sshd back it shows the generation status says it runs.
    lab.set_faults("w2", Faults::default());
    lab.wait_machine("w2", Duration::from_secs(10), "sshd back", |i| {
        i.status.ssh_listening == vec![22]
    });
    assert_eq!(lab.ssh_ok("w2", "cat /etc/lab/generation"), "1");
    assert_eq!(lab.ssh_ok("w3", "cat /etc/lab/generation"), "2");
    lab.assert_status_matches_machines();
}
