//! Evidence that a machine was installed, looked for outside the state store before any node
//! without a record is planned as a fresh machine (see [`roundhouse_plan::Evidence`]).
//!
//! Sources, cheapest first:
//! - the boot server's netboot gating (`<boot state>/netboot.json`): the MAC is marked
//!   `installed` or `install-pending`;
//! - the boot server's fetch journal: the MAC fetched its final config (group = node name);
//! - the node's SSH port: the server presents the node's managed host key, or any host key
//!   (a probe of the key exchange only; no login).
//!
//! Host keys on disk are **not** evidence: `render` and `plan` generate them before any
//! machine is installed. An unreadable netboot file is an error, not "no evidence": a reader
//! that cannot see the gating must not conclude that nothing was installed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bootdata::Mac;
use roundhouse_boot::state::{FileNetbootState, Netboot, NetbootState, StateError};
use roundhouse_plan::Evidence;
use roundhouse_ssh::PublicKey;

use crate::journal::JournalReader;

/// A node evidence is looked for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Node name (its final config's group).
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Where SSH reaches it.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// Its managed host key(s), to tell "runs roundhouse's config" from "runs some OS".
    pub host_keys: Vec<PublicKey>,
}

/// Where and how to look.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The boot server's state directory (netboot.json, the fetch journal).
    pub boot_state_dir: PathBuf,
    /// Deadline of one SSH probe; `None` skips the probes.
    pub probe_timeout: Option<Duration>,
    /// Probes run at once.
    pub probe_parallel: usize,
}

/// The netboot file exists but cannot be read (the boot server's own reader refused it).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the boot server's netboot gating; without it roundhouse cannot tell installed \
     machines from new ones"
)]
pub struct EvidenceError(#[source] pub StateError);

/// Looks for evidence for every target; targets without any are absent from the result.
pub fn gather(
    targets: &[Target],
    sources: &Sources,
) -> Result<BTreeMap<Mac, Vec<Evidence>>, EvidenceError> {
    let mut found: BTreeMap<Mac, Vec<Evidence>> = BTreeMap::new();
    if targets.is_empty() {
        return Ok(found);
    }
    // The boot server's own reader: the same format, permission and MAC checks it applies.
    if let Some(gating) = FileNetbootState::load(&sources.boot_state_dir).map_err(EvidenceError)? {
        for t in targets {
            let netboot = match gating.netboot(&t.mac) {
                Some(Netboot::Installed) => "installed",
                Some(Netboot::InstallPending) => "install-pending",
                None => continue,
            };
            found.entry(t.mac).or_default().push(Evidence::Gating {
                netboot: netboot.into(),
            });
        }
    }
    let journal = JournalReader::new(&sources.boot_state_dir);
    for t in targets {
        if let Some(f) = journal.last_config_fetch(&t.mac, &t.name)
            && f.status == 200
        {
            found
                .entry(t.mac)
                .or_default()
                .push(Evidence::FinalConfigFetch { at: f.at });
        }
    }
    if let Some(timeout) = sources.probe_timeout {
        for (mac, ev) in probe_all(targets, timeout, sources.probe_parallel.max(1)) {
            found.entry(mac).or_default().push(ev);
        }
    }
    Ok(found)
}

/// Longest TCP connect of one probe.
const CONNECT: Duration = Duration::from_secs(1);

fn probe_all(targets: &[Target], timeout: Duration, parallel: usize) -> Vec<(Mac, Evidence)> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot start the SSH probes: {e}");
            return Vec::new();
        }
    };
    runtime.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut tasks = tokio::task::JoinSet::new();
        for t in targets.iter().cloned() {
            let gate = Arc::clone(&gate);
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                // A machine that is up on the provisioning network answers a TCP connect in
                // milliseconds; one that is off (a fresh fleet) never does. Bounding the
                // connect keeps the first plan of a large powered-off fleet short.
                let connect = timeout.min(CONNECT);
                let key = roundhouse_ssh::host_key(&t.host, t.port, connect, timeout)
                    .await
                    .ok()?;
                let fingerprint = roundhouse_ssh::fingerprint(&key);
                let managed = t.host_keys.iter().any(|k| k.key_data() == key.key_data());
                Some((
                    t.mac,
                    if managed {
                        Evidence::SshManagedHostKey { fingerprint }
                    } else {
                        Evidence::SshOtherHostKey { fingerprint }
                    },
                ))
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(found)) = done {
                out.push(found);
            }
        }
        out.sort_by_key(|(mac, _)| *mac);
        out
    })
}
