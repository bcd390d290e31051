//! SSH to a machine the way an operator of a roundhouse cluster would: OpenSSH's `ssh` as
//! `core`, with the operator key roundhouse generated and the node's managed host key as the
//! only key accepted. Shared by the QEMU tests.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` on `node` at `addr:port`. `asset_dir` is the cluster's asset directory (its
/// `keys/` holds the operator key and the node's host key); the known-hosts file is written
/// next to it.
pub fn ssh(asset_dir: &Path, node: &str, addr: &str, port: u16, cmd: &str) -> Output {
    let keys = asset_dir.join("keys");
    let host_pub = std::fs::read_to_string(
        keys.join("hosts")
            .join(node)
            .join("ssh_host_ed25519_key.pub"),
    )
    .expect("the node's managed host key");
    let known = asset_dir.join(format!("known_hosts-{node}"));
    std::fs::write(&known, format!("[{addr}]:{port} {}\n", host_pub.trim()))
        .expect("write known_hosts");
    Command::new("ssh")
        .arg("-i")
        .arg(keys.join("operator_ed25519"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
            &port.to_string(),
            &format!("core@{addr}"),
            cmd,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}
