//! Shared test fixtures: a static boot server (python3's http.server over a directory the
//! test writes), SSH keys from ssh-keygen, and the installer/final Ignition configs in the
//! shape roundhouse renders them.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::json;

/// python3's http.server with a listen backlog that survives hundreds of machines booting at
/// once (the module's default of 5 drops connections under that load).
const STATIC_SERVER: &str = "import functools, http.server, sys\n\
class S(http.server.ThreadingHTTPServer):\n    request_queue_size = 4096\n    daemon_threads = True\n\
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])\n\
S(('127.0.0.1', int(sys.argv[1])), h).serve_forever()\n";

/// A python3 http.server over `root`, with its request log.
pub struct StaticServer {
    child: tokio::process::Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The directory served.
    pub root: PathBuf,
    log: PathBuf,
}

impl StaticServer {
    pub async fn start(root: &Path) -> StaticServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = root.with_extension("requests.log");
        let child = tokio::process::Command::new("python3")
            .args(["-u", "-c", STATIC_SERVER, &port.to_string()])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is missing: install the Debian package python3");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        StaticServer {
            child,
            port,
            root: root.to_path_buf(),
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Request lines (`GET /path?query`) in order, with their status.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let start = l.find('"')?;
                let rest = &l[start + 1..];
                let end = rest.find('"')?;
                let req = rest[..end]
                    .trim_end_matches(" HTTP/1.1")
                    .trim_end_matches(" HTTP/1.0")
                    .to_string();
                let status = rest[end + 1..].split_whitespace().next().unwrap_or("");
                Some(format!("{req} {status}"))
            })
            .collect()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// An ed25519 key pair from ssh-keygen: (private key path, public key line).
pub fn keygen(path: &Path) -> (PathBuf, String) {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen is missing: install the Debian package openssh-client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        path.to_path_buf(),
        fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string(),
    )
}

pub fn data_url(bytes: &[u8]) -> String {
    format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The installer script roundhouse renders, for `mac`, installing to /dev/sda and appending
/// the OEM grub.cfg lines that point the installed OS at `final_url`.
pub fn installer_script(base: &str, final_url: &str, pre_reboot: &str) -> String {
    format!(
        r#"#!/bin/bash -ex
umount /tmp/oemfs || true
lvchange -an /dev/mapper/* || true
disks="$(lsblk -lnpdb -x SIZE -o NAME | while IFS= read -r drive; do
  if [ -z "$(lsblk -ln -o MOUNTPOINT "$drive")" ]; then echo "$drive"; fi
done)"
for disk in $disks; do
  wipefs -f -a "$disk" || echo "error: failed to wipe $disk"
done
flatcar-install \
  -d /dev/sda \
  -C stable \
  -V 3975.2.0 \
  -b {base}/assets/flatcar
udevadm settle
OEM_DEV="$(blkid -t LABEL=OEM -o device)"
mkdir -p /tmp/oemfs
mount "$OEM_DEV" /tmp/oemfs
echo 'set linux_append="flatcar.autologin ignition.config.url={final_url}"' >> /tmp/oemfs/grub.cfg
echo 'set linux_console="console=ttyS0,115200n8"' >> /tmp/oemfs/grub.cfg
umount /tmp/oemfs
# install_pre_reboot_cmds
{pre_reboot}
systemctl reboot
"#
    )
}

pub fn installer_config(user_key: &str, script: &str) -> String {
    json!({
        "ignition": {"version": "3.3.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [user_key]}]},
        "storage": {"files": [{"path": "/opt/installer", "mode": 0o500, "contents": {"source": data_url(script.as_bytes())}}]},
        "systemd": {"units": [
            {"name": "installer.service", "enabled": true, "contents": "[Unit]\nRequires=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\nRemainAfterExit=true\nRestart=on-failure\nRestartSec=10s\nExecStart=/opt/installer\n[Install]\nWantedBy=multi-user.target\n"},
            {"name": "sshd.socket", "dropins": [{"name": "10-sshd-port.conf", "contents": "[Socket]\nListenStream=\nListenStream=2222\n"}]}
        ]}
    })
    .to_string()
}

/// A final node config: root wipe, the flag files, a pinned host key, a marker file and an
/// enabled oneshot unit.
pub fn final_config(user_key: &str, host_key: &str, hostname: &str, marker: &str) -> String {
    json!({
        "ignition": {"version": "3.4.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [user_key]}]},
        "storage": {
            "filesystems": [{"device": "/dev/disk/by-label/ROOT", "format": "ext4", "label": "ROOT", "wipeFilesystem": true}],
            "files": [
                {"path": "/ignition_ran", "mode": 0o644, "contents": {"source": "data:,flag%20file"}},
                {"path": "/etc/hostname", "mode": 0o644, "contents": {"source": format!("data:,{hostname}")}},
                {"path": "/etc/ssh/ssh_host_ed25519_key", "mode": 0o600, "contents": {"source": data_url(host_key.as_bytes())}},
                {"path": format!("/etc/{marker}"), "contents": {"source": format!("data:,{marker}")}}
            ]
        },
        "systemd": {"units": [{"name": "hello.service", "enabled": true, "contents": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo hello from $(cat /etc/hostname) > /var/unit-ran'\n[Install]\nWantedBy=multi-user.target\n"}]}
    })
    .to_string()
}

/// Runs `ssh` against 127.0.0.1:port as core with a pinned host key.
pub async fn ssh(
    port: u16,
    key: &Path,
    known_hosts: &Path,
    cmd: &str,
    stdin: Option<&str>,
) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new("ssh");
    c.arg("-p")
        .arg(port.to_string())
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg("core@127.0.0.1")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .expect("ssh is missing: install the Debian package openssh-client");
    let mut i = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        i.write_all(s.as_bytes()).await.unwrap();
    }
    drop(i);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("ssh timed out")
        .unwrap()
}

/// known_hosts text pinning `pubkey` for 127.0.0.1 on each port.
pub fn known_hosts(pubkey: &str, ports: &[u16]) -> String {
    let k = pubkey
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    ports
        .iter()
        .map(|p| format!("[127.0.0.1]:{p} {k}\n"))
        .collect()
}
