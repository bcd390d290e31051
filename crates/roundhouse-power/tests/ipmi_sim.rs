//! The IPMI driver against OpenIPMI's BMC simulator (`ipmi_sim`, Debian `openipmi`), with
//! `ipmitool -I lanplus` (Debian `ipmitool`) as a second client of the same simulator.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{PASSWORD, Sim, fast_limits};
use roundhouse_power::ipmi::{CipherSuite, IpmiBmc, IpmiConfig};
use roundhouse_power::{
    Bmc, BootDevice, BootOverride, Password, PowerAction, PowerError, PowerState, boot_from_disk,
    pxe_boot,
};

#[tokio::test]
async fn install_sequence_reaches_the_chassis_in_order() {
    let sim = Sim::start(true);
    let bmc = sim.bmc(PASSWORD, fast_limits());
    // A machine that is running (its old OS): the install must cycle it.
    bmc.power(PowerAction::On).await.unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
    sim.clear_calls();

    let out = pxe_boot(&bmc, true, false).await.unwrap();
    assert!(
        out.steps
            .iter()
            .any(|s| s.contains("power was on: power cycle")),
        "{out:?}"
    );
    // ... the installer runs, the reconciler sees it succeed, then:
    let out = boot_from_disk(&bmc, true).await.unwrap();
    assert!(out.steps[0].contains("disk persistent (EFI)"), "{out:?}");

    // Exactly: boot PXE set, power off + on (a cycle), boot disk set after the install.
    // ipmi_sim names device selector 0010b ("force boot from default hard-drive") `default`;
    // ipmitool's `chassis bootdev disk` produces the same call.
    assert_eq!(
        sim.sets(),
        [
            "set boot pxe",
            "set power 0",
            "set power 1",
            "set boot default"
        ],
        "all calls: {:?}",
        sim.calls()
    );
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn install_of_a_machine_that_is_off_powers_it_on() {
    let sim = Sim::start(true);
    let bmc = sim.bmc(PASSWORD, fast_limits());
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    let out = pxe_boot(&bmc, false, false).await.unwrap();
    assert!(
        out.steps
            .iter()
            .any(|s| s.contains("power was off: power on")),
        "{out:?}"
    );
    assert_eq!(sim.sets(), ["set boot pxe", "set power 1"]);
}

#[tokio::test]
async fn ipmitool_and_this_client_agree() {
    let sim = Sim::start(true);
    let bmc = sim.bmc(PASSWORD, fast_limits());

    // What we set, ipmitool reads.
    bmc.set_boot(BootOverride {
        device: BootDevice::Pxe,
        persistent: false,
        efi: true,
    })
    .await
    .unwrap();
    let param5 = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(param5.contains("Force PXE"), "{param5}");
    bmc.power(PowerAction::On).await.unwrap();
    let status = sim.ipmitool(&["chassis", "power", "status"]);
    assert_eq!(status.trim(), "Chassis Power is on");

    // What ipmitool sets, we read.
    sim.ipmitool(&["chassis", "bootdev", "disk"]);
    let setting = bmc.boot_setting().await.unwrap();
    assert_eq!(setting.device, "disk", "{setting}");
    sim.ipmitool(&["chassis", "power", "off"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = bmc.power_state().await.unwrap();
        if s == PowerState::Off {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {s} after ipmitool power off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both clients' changes reached the chassis in the order they were made.
    assert_eq!(
        sim.sets(),
        [
            "set boot pxe",
            "set power 1",
            "set boot default",
            "set power 0"
        ]
    );
}

/// Counts datagrams from the client on their way to the simulator.
async fn counting_relay(target: u16) -> (u16, Arc<AtomicUsize>) {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(("127.0.0.1", target)).await.unwrap();
    let port = front.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        let mut client = None;
        let mut a = vec![0u8; 2048];
        let mut b = vec![0u8; 2048];
        loop {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    c.fetch_add(1, Ordering::SeqCst);
                    let _ = back.send(&a[..n]).await;
                }
                r = back.recv(&mut b) => {
                    let Ok(n) = r else { return };
                    if let Some(to) = client {
                        let _ = front.send_to(&b[..n], to).await;
                    }
                }
            }
        }
    });
    (port, count)
}

#[tokio::test]
async fn wrong_password_fails_once_clearly_without_a_retry_storm() {
    let sim = Sim::start(true);
    let (port, sent) = counting_relay(sim.port).await;
    let mut cfg = sim.config("not-the-password", fast_limits());
    cfg.port = port;
    let bmc = IpmiBmc::new(cfg);
    let started = Instant::now();
    let err = bmc.power(PowerAction::On).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Auth { .. }), "{msg}");
    assert!(
        msg.contains("node n1") && msg.contains("wrong password"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-password"),
        "the password leaked: {msg}"
    );
    // Open Session Request and RAKP 1: nothing retried, nothing after the mismatch.
    assert_eq!(sent.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(sim.sets().is_empty(), "{:?}", sim.calls());
}

#[tokio::test]
async fn unknown_user_is_an_authentication_error() {
    let sim = Sim::start(true);
    let mut cfg = sim.config(PASSWORD, fast_limits());
    cfg.username = "nobody".into();
    let err = IpmiBmc::new(cfg).power_state().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Auth { .. }), "{msg}");
    assert!(
        msg.contains("\"nobody\"") && msg.contains("node n1"),
        "{msg}"
    );
}

#[tokio::test]
async fn silent_bmc_times_out_within_the_bound() {
    // A socket that never answers: a BMC that is down or firewalled.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let limits = fast_limits();
    let bmc = IpmiBmc::new(IpmiConfig {
        node: "n7".into(),
        host: "127.0.0.1".into(),
        port,
        username: "admin".into(),
        password: Password::new("x"),
        suite: CipherSuite::Three,
        limits,
    });
    let started = Instant::now();
    let err = bmc.power_state().await.unwrap_err();
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(
        matches!(err, PowerError::Timeout { attempts: 3, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("node n7"),
        "{msg}"
    );
    // (1 + retries) x request timeout, and not a whole-call retry on top.
    let bound = limits.request_timeout * (limits.retries + 1);
    assert!(
        took >= bound && took < bound + Duration::from_secs(1),
        "{took:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn rejected_boot_parameter_reports_the_completion_code() {
    // Without a chassis_control script ipmi_sim refuses boot-device changes.
    let sim = Sim::start(false);
    let bmc = sim.bmc(PASSWORD, fast_limits());
    let err = bmc
        .set_boot(BootOverride {
            device: BootDevice::Pxe,
            persistent: false,
            efi: true,
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, PowerError::Completion { code: 0xCC, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("parameter 5") && msg.contains("0xcc") && msg.contains("invalid data field"),
        "{msg}"
    );
}

#[tokio::test]
async fn suite_17_is_refused_by_a_bmc_without_it_with_a_clear_message() {
    // OpenIPMI 2.0.33's simulator offers no HMAC-SHA256 suites; the driver must say so rather
    // than time out.
    let sim = Sim::start(true);
    let mut cfg = sim.config(PASSWORD, fast_limits());
    cfg.suite = CipherSuite::Seventeen;
    let err = IpmiBmc::new(cfg).power_state().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Session { .. }), "{msg}");
    assert!(
        msg.contains("cipher suite 17") && msg.contains("cipher_suite = 3"),
        "{msg}"
    );
}
