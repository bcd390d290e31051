//! A full boot cycle against a static boot server (python3's http.server over files this test
//! writes): power on, PXE through iPXE's chain, the installer's Ignition and script with the
//! hardware shims, reboot into the disk, first-boot Ignition from the OEM grub.cfg, SSH into
//! the installed OS with its pinned host key, then an in-place re-provision over SSH.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use roundhouse_sim::spec::{DiskSpec, MachineSpec};
use roundhouse_sim::{Fleet, FleetSpec, Mac};

const MAC: &str = "52:54:00:00:00:01";

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pxe_install_first_boot_and_in_place_reprovision() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    fs::create_dir_all(&www).unwrap();
    let server = StaticServer::start(&www).await;
    let base = server.url();
    let (user_key, user_pub) = keygen(&tmp.path().join("user"));
    let (_, host_pub) = keygen(&tmp.path().join("host"));
    let host_priv = fs::read_to_string(tmp.path().join("host")).unwrap();

    // The boot server's files, shaped like roundhouse's answers.
    write(
        &www,
        "boot.ipxe",
        "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n",
    );
    write(
        &www,
        "ipxe",
        &format!(
            "#!ipxe\nkernel /assets/flatcar/current/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz ignition.config.url={base}/ignition?uuid=${{uuid}}&mac=${{mac:hexhyp}} flatcar.first_boot=yes console=ttyS0\ninitrd /assets/flatcar/current/flatcar_production_pxe_image.cpio.gz\nboot\n"
        ),
    );
    write(
        &www,
        "assets/flatcar/current/flatcar_production_pxe.vmlinuz",
        "kernel bytes",
    );
    write(
        &www,
        "assets/flatcar/current/flatcar_production_pxe_image.cpio.gz",
        "initrd bytes",
    );
    write(
        &www,
        "assets/flatcar/3975.2.0/flatcar_production_image.bin.bz2",
        "image bytes",
    );
    let final_url = format!("{base}/final.ign?mac={MAC}&os=installed");
    let script = installer_script(
        &base,
        &final_url,
        "while [ ! -f /tmp/go ]; do sleep 0.05; done\necho pre-reboot > /tmp/pre-reboot-ran",
    );
    write(&www, "ignition", &installer_config(&user_pub, &script));
    write(
        &www,
        "final.ign",
        &final_config(&user_pub, &host_priv, "node-a", "marker-v1"),
    );

    let mac = Mac::parse(MAC).unwrap();
    let spec = FleetSpec {
        boot_url: format!("{base}/boot.ipxe"),
        state_dir: tmp.path().join("lab"),
        time_factor: 0.01,
        durations: Default::default(),
        port_base: None,
        control_port: None,
        machines: vec![MachineSpec {
            mac,
            name: Some("node-a".into()),
            disks: vec![
                DiskSpec {
                    name: "sda".into(),
                    size_gib: 100,
                },
                DiskSpec {
                    name: "sdb".into(),
                    size_gib: 50,
                },
            ],
            boot_order: vec![],
            arch: None,
            faults: Default::default(),
            bmc: Default::default(),
            power_on: false,
        }],
        generate: None,
    };
    let fleet = Fleet::start(spec).await.expect("fleet");
    let m = fleet.machine(&mac).unwrap().clone();
    assert_eq!(m.info().status.power, "off");
    m.power_on();

    // The installer is up, on its port 2222 only.
    let info = m
        .wait_for(Duration::from_secs(60), |i| {
            i.status.os == Some("installer") && i.status.ssh_listening == vec![2222]
        })
        .await
        .unwrap_or_else(|i| panic!("installer never came up: {i:#?}\n{:#?}", m.log()));
    assert_eq!(info.status.ignition_runs, 1);
    let ports = m.ports();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", ports.ssh))
            .await
            .is_err(),
        "port 22 must refuse during install"
    );
    let installer_host =
        fs::read_to_string(m.dir().join("live/etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let kh_installer = tmp.path().join("kh_installer");
    fs::write(
        &kh_installer,
        known_hosts(&installer_host, &[ports.ssh_installer]),
    )
    .unwrap();
    let out = ssh(ports.ssh_installer, &user_key, &kh_installer, "whoami >/dev/null 2>&1; echo $USER; test -x /opt/installer && echo has-installer; touch /tmp/go", None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "core\nhas-installer\n"
    );

    // flatcar-install, reboot, disk boot, first-boot Ignition from the OEM grub.cfg.
    let info = m
        .wait_for(Duration::from_secs(60), |i| {
            i.status.os == Some("installed") && i.status.ssh_listening == vec![22]
        })
        .await
        .unwrap_or_else(|i| panic!("installed OS never came up: {i:#?}\n{:#?}", m.log()));
    assert_eq!(info.status.installs, 1);
    assert_eq!(info.status.ignition_runs, 2);
    let ign = info.status.last_ignition.clone().unwrap();
    assert_eq!(ign.url, final_url);
    assert_eq!(ign.first_boot, "detected");
    let cmdline = info.status.cmdline.clone().unwrap();
    assert!(cmdline.contains("flatcar.first_boot=detected"), "{cmdline}");
    assert!(cmdline.contains("console=ttyS0,115200n8"), "{cmdline}");
    assert!(
        cmdline.contains(&format!("ignition.config.url={final_url}")),
        "{cmdline}"
    );
    assert_eq!(
        info.disks,
        vec!["sda: flatcar stable 3975.2.0", "sdb: blank"]
    );
    assert_eq!(
        fs::read_to_string(m.dir().join("live/tmp/pre-reboot-ran")).unwrap(),
        "pre-reboot\n",
        "install_pre_reboot_cmds ran in the installer"
    );

    // iPXE's requests, as the boot server saw them.
    let reqs = server.requests();
    let uuid = mac.derived_uuid();
    let expected = [
        "GET /boot.ipxe 200".to_string(),
        format!(
            "GET /ipxe?uuid={uuid}&mac=52-54-00-00-00-01&domain=&hostname=&serial=SIM-525400000001&arch=x86_64 200"
        ),
        "GET /assets/flatcar/current/flatcar_production_pxe.vmlinuz 200".into(),
        "GET /assets/flatcar/current/flatcar_production_pxe_image.cpio.gz 200".into(),
        format!("GET /ignition?uuid={uuid}&mac=52-54-00-00-00-01 200"),
        "GET /assets/flatcar/3975.2.0/flatcar_production_image.bin.bz2 200".into(),
        format!("GET /final.ign?mac={MAC}&os=installed 200"),
    ];
    assert_eq!(reqs, expected);

    // The installed OS over SSH, host key pinned by the final config. sshd and the oneshot
    // unit start side by side, as under systemd: the command waits for the unit's file.
    let kh = tmp.path().join("kh");
    fs::write(&kh, known_hosts(&host_pub, &[ports.ssh])).unwrap();
    let out = ssh(ports.ssh, &user_key, &kh, "for i in $(seq 200); do [ -f /var/unit-ran ] && break; sleep 0.05; done; cat /etc/hostname; echo; cat /var/unit-ran; test -f /ignition_ran && echo ran; test -f /etc/marker-v1 && echo v1; test -f /boot/flatcar/first_boot || echo no-flag; cat /usr/share/oem/grub.cfg", None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "node-a\nhello from node-a\nran\nv1\nno-flag\nset linux_append=\"flatcar.autologin ignition.config.url={final_url}\"\nset linux_console=\"console=ttyS0,115200n8\"\n"
        )
    );

    // Flatcar's system users exist, as a controller's post-provision hook expects.
    let out = ssh(
        ports.ssh,
        &user_key,
        &kh,
        "sudo chown etcd:etcd /etc/marker-v1 && stat -c %U:%G /etc/marker-v1",
        None,
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "etcd:etcd\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In-place re-provision, the way roundhouse does it over SSH.
    write(
        &www,
        "final.ign",
        &final_config(&user_pub, &host_priv, "node-b", "marker-v2"),
    );
    let out = ssh(ports.ssh, &user_key, &kh, "sudo rm -f /ignition_ran", None).await;
    assert!(out.status.success());
    let out = ssh(
        ports.ssh,
        &user_key,
        &kh,
        "sudo touch /boot/flatcar/first_boot",
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grub = format!(
        "set linux_append=\"ignition.config.url={final_url}\"\nset linux_console=\"console=ttyS1\"\n"
    );
    let out = ssh(
        ports.ssh,
        &user_key,
        &kh,
        "sudo tee /usr/share/oem/grub.cfg",
        Some(&grub),
    )
    .await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), grub);
    let out = ssh(ports.ssh, &user_key, &kh, "sudo systemctl reboot", None).await;
    assert_eq!(
        out.status.code(),
        Some(255),
        "the connection drops on reboot"
    );

    let mut came_back = false;
    for _ in 0..200 {
        let out = ssh(ports.ssh, &user_key, &kh, "test -f /ignition_ran", None).await;
        if out.status.success() {
            came_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        came_back,
        "never came back: {:#?}\n{:#?}",
        m.info(),
        m.log()
    );
    let out = ssh(ports.ssh, &user_key, &kh, "cat /etc/hostname; echo; test -f /etc/marker-v1 && echo old-root-survived; cat /etc/marker-v2; echo; cat /proc/cmdline 2>/dev/null; sudo rm -f /ignition_ran", None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node-b\nmarker-v2\n");
    let info = m.info();
    assert_eq!(info.status.ignition_runs, 3);
    assert_eq!(info.status.installs, 1, "in place: no second install");
    assert!(info.status.cmdline.unwrap().contains("console=ttyS1"));
    assert!(!m.dir().join("disks/sda/ROOT/ignition_ran").exists());
    if std::env::var_os("SIM_TEST_LOG").is_some() {
        eprintln!(
            "{}",
            fs::read_to_string(m.dir().join("console.log")).unwrap()
        );
    }
    fleet.shutdown().await;
}
