//! Scale check: N simulated machines in one process, PXE-installed from a static boot server
//! (python3 http.server), then re-provisioned in place over SSH with OpenSSH's `ssh` the way
//! roundhouse does it, at most P machines at a time. Prints wall times and the process's peak
//! memory.
//!
//! `cargo run --release -p roundhouse-sim --example scale -- [N] [P] [TIME_FACTOR]`
//! (`SCALE_DIR=/dev/shm` keeps the disks in memory).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use roundhouse_sim::spec::{Durations, Generate};
use roundhouse_sim::{Fleet, FleetSpec, Machine};
use serde_json::json;

/// python3's http.server with a listen backlog that survives hundreds of machines booting at
/// once (the module's default of 5 drops connections under that load).
const STATIC_SERVER: &str = "import functools, http.server, sys\n\
class S(http.server.ThreadingHTTPServer):\n    request_queue_size = 4096\n    daemon_threads = True\n\
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])\n\
S(('127.0.0.1', int(sys.argv[1])), h).serve_forever()\n";
use tokio::sync::Semaphore;

fn data_url(b: &[u8]) -> String {
    format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

fn keygen(path: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "scale", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian package openssh-client)");
    assert!(out.status.success());
    fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn mem(field: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn ssh(port: u16, key: &Path, kh: &Path, cmd: &str, stdin: Option<&str>) -> Option<i32> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("ssh")
        .arg("-p")
        .arg(port.to_string())
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "core@127.0.0.1",
            cmd,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut i = child.stdin.take()?;
    if let Some(s) = stdin {
        let _ = i.write_all(s.as_bytes()).await;
    }
    drop(i);
    tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .ok()?
        .ok()?
        .code()
}

async fn reprovision(m: Machine, key: PathBuf, kh: PathBuf, grub: String) -> Result<(), String> {
    let port = m.ports().ssh;
    let run = |cmd: &'static str| {
        let (key, kh) = (key.clone(), kh.clone());
        async move { ssh(port, &key, &kh, cmd, None).await }
    };
    if run("sudo rm -f /ignition_ran").await != Some(0) {
        return Err(format!("{}: rm", m.mac()));
    }
    if run("sudo touch /boot/flatcar/first_boot").await != Some(0) {
        return Err(format!("{}: touch", m.mac()));
    }
    if ssh(
        port,
        &key,
        &kh,
        "sudo tee /usr/share/oem/grub.cfg >/dev/null",
        Some(&grub),
    )
    .await
        != Some(0)
    {
        return Err(format!("{}: tee", m.mac()));
    }
    let _ = run("sudo systemctl reboot").await;
    for _ in 0..600 {
        if run("test -f /ignition_ran").await == Some(0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("{}: never came back", m.mac()))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let p: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let factor: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0.01);
    // SCALE_DIR (default: the system temp dir) holds the machines' disks.
    let tmp = match std::env::var_os("SCALE_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let www = tmp.path().join("www");
    fs::create_dir_all(www.join("assets")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("python3")
        .args(["-u", "-c", STATIC_SERVER, &port.to_string()])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let base = format!("http://127.0.0.1:{port}");
    let user_pub = keygen(&tmp.path().join("user"));
    let host_pub = keygen(&tmp.path().join("host"));
    let host_priv = fs::read_to_string(tmp.path().join("host")).unwrap();
    let final_url = format!("{base}/final.ign?os=installed");
    let script = format!(
        "#!/bin/bash -ex\numount /tmp/oemfs || true\nflatcar-install -d /dev/sda -C stable -V current\nudevadm settle\nOEM_DEV=\"$(blkid -t LABEL=OEM -o device)\"\nmkdir -p /tmp/oemfs\nmount \"$OEM_DEV\" /tmp/oemfs\necho 'set linux_append=\"ignition.config.url={final_url}\"' >> /tmp/oemfs/grub.cfg\numount /tmp/oemfs\ntrue\nsystemctl reboot\n"
    );
    fs::write(www.join("boot.ipxe"), "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n").unwrap();
    fs::write(www.join("ipxe"), format!("#!ipxe\nkernel /assets/k ignition.config.url={base}/ignition?uuid=${{uuid}}&mac=${{mac:hexhyp}} flatcar.first_boot=yes\ninitrd /assets/i\nboot\n")).unwrap();
    fs::write(www.join("assets/k"), vec![0u8; 1 << 20]).unwrap();
    fs::write(www.join("assets/i"), vec![0u8; 1 << 20]).unwrap();
    fs::write(
        www.join("ignition"),
        json!({"ignition": {"version": "3.3.0"},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [user_pub]}]},
            "storage": {"files": [{"path": "/opt/installer", "mode": 0o500, "contents": {"source": data_url(script.as_bytes())}}]},
            "systemd": {"units": [
                {"name": "installer.service", "enabled": true, "contents": "[Service]\nType=oneshot\nExecStart=/opt/installer\n[Install]\nWantedBy=multi-user.target\n"},
                {"name": "sshd.socket", "dropins": [{"name": "10-port.conf", "contents": "[Socket]\nListenStream=\nListenStream=2222\n"}]}]}})
        .to_string(),
    )
    .unwrap();
    fs::write(
        www.join("final.ign"),
        json!({"ignition": {"version": "3.3.0"},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [user_pub]}]},
            "storage": {"filesystems": [{"device": "/dev/disk/by-label/ROOT", "format": "ext4", "label": "ROOT", "wipeFilesystem": true}],
                "files": [{"path": "/ignition_ran", "contents": {"source": "data:,"}},
                    {"path": "/etc/hostname", "contents": {"source": "data:,node"}},
                    {"path": "/etc/ssh/ssh_host_ed25519_key", "mode": 0o600, "contents": {"source": data_url(host_priv.as_bytes())}}]}})
        .to_string(),
    )
    .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec = FleetSpec {
        boot_url: format!("{base}/boot.ipxe"),
        state_dir: tmp.path().join("lab"),
        time_factor: factor,
        durations: Durations::default(),
        port_base: None,
        control_port: None,
        machines: vec![],
        generate: Some(Generate {
            count: n,
            first: 1,
            name_prefix: Some("node-".into()),
            power_on: false,
            boot_order: vec![],
        }),
    };
    let t0 = Instant::now();
    let fleet = Fleet::start(spec).await.expect("fleet");
    println!(
        "started {n} machines in {:.2?}; rss {}",
        t0.elapsed(),
        mem("VmRSS")
    );
    let machines: Vec<Machine> = fleet.machines().cloned().collect();
    let kh = tmp.path().join("known_hosts");
    let k = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    fs::write(
        &kh,
        machines
            .iter()
            .map(|m| format!("[127.0.0.1]:{} {k}\n", m.ports().ssh))
            .collect::<String>(),
    )
    .unwrap();

    let t1 = Instant::now();
    for m in &machines {
        m.power_on();
    }
    let mut failed = 0;
    for m in &machines {
        let r = m
            .wait_for(Duration::from_secs(1800), |i| {
                i.status.os == Some("installed") && !i.status.ssh_listening.is_empty()
            })
            .await;
        if r.is_err() {
            failed += 1;
        }
    }
    let install = t1.elapsed();
    println!(
        "PXE install of {n}: {install:.2?} ({failed} failed); rss {} peak {}",
        mem("VmRSS"),
        mem("VmHWM")
    );

    let grub = format!("set linux_append=\"ignition.config.url={final_url}\"\n");
    let sem = Arc::new(Semaphore::new(p));
    let t2 = Instant::now();
    let mut tasks = Vec::new();
    for m in machines.clone() {
        let (sem, key, kh, grub) = (
            sem.clone(),
            tmp.path().join("user"),
            kh.clone(),
            grub.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            reprovision(m, key, kh, grub).await
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            errors.push(e);
        }
    }
    let inplace = t2.elapsed();
    let runs: u32 = machines.iter().map(|m| m.info().status.ignition_runs).sum();
    println!(
        "in-place re-provision of {n} (max {p} at a time): {inplace:.2?}, {} failed {:?}; ignition runs {runs}; rss {} peak {}",
        errors.len(),
        errors.iter().take(3).collect::<Vec<_>>(),
        mem("VmRSS"),
        mem("VmHWM")
    );
    fleet.shutdown().await;
    let _ = server.start_kill();
}
