//! `roundhouse state recover`: rebuilding lost records from what the machines say.
//!
//! For each node without a record, [`probe`] logs in over SSH (pinned host keys, the operator
//! key, as `apply` does) and reads `/etc/roundhouse/config-digest`, which every final config
//! roundhouse renders writes. [`decide`] (pure) turns that finding into the record to adopt:
//!
//! | finding | record |
//! |---|---|
//! | logged in, the file holds a digest | installed, that digest (the next plan compares it as usual) |
//! | logged in, no such file | installed, digest unknown (rendered before the file existed, or replaced): workers re-provision in place, controllers hold, as for adopted nodes |
//! | host key mismatch, login refused, unreachable | nothing: the node stays `state-lost` if it has other evidence (put its key in `previous_host_key.pub`, power it on, or `recreate` it) |
//!
//! Nothing is guessed from the boot server's journal alone: a fetch proves a download, not
//! what runs now.

use std::sync::Arc;
use std::time::Duration;

use roundhouse_plan::{AppliedDigest, Installed, ProvisionPath, Timestamp};
use roundhouse_ssh::{PrivateKey, PublicKey, Session, Target, Timeouts};

/// Where the node keeps its config digest (see `roundhouse_render::DIGEST_FILE`).
pub const DIGEST_FILE: &str = "/etc/roundhouse/config-digest";

/// What a node said over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Logged in with a pinned host key; the file held this digest.
    Digest(String),
    /// Logged in with a pinned host key; the file is missing or does not hold a digest
    /// (`detail` says which).
    NoDigest {
        /// What was read instead.
        detail: String,
    },
    /// No login: unreachable, host key mismatch, authentication refused (the error's text).
    Unreachable(String),
}

/// The record to adopt for a node, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Adopt this installation.
    Adopt(Installed),
    /// Leave the node without a record.
    Skip(String),
}

/// Pure: the record a finding justifies for a node reached at `domain`.
pub fn decide(finding: &Finding, domain: &str, now: Timestamp) -> Recovery {
    let installed = |digest| {
        Recovery::Adopt(Installed {
            digest,
            path: ProvisionPath::Pxe,
            domain: domain.to_string(),
            kernel_args: None,
            at: now,
        })
    };
    match finding {
        Finding::Digest(d) if is_digest(d) => installed(AppliedDigest::Known(d.clone())),
        Finding::Digest(d) => {
            Recovery::Skip(format!("{DIGEST_FILE} holds {d:?}, not a config digest"))
        }
        Finding::NoDigest { .. } => installed(AppliedDigest::Unknown),
        Finding::Unreachable(why) => Recovery::Skip(why.clone()),
    }
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Logs in to `target` and reads its digest file.
pub async fn probe(
    target: &Target,
    operator_key: Arc<PrivateKey>,
    host_keys: Vec<PublicKey>,
    connect_timeout: Duration,
) -> Finding {
    let timeouts = Timeouts {
        connect: connect_timeout,
        command: Duration::from_secs(30),
    };
    let session = match Session::connect(target, operator_key, host_keys, timeouts).await {
        Ok(s) => s,
        Err(e) => return Finding::Unreachable(e.to_string()),
    };
    let command = format!("cat {DIGEST_FILE}");
    let finding = match session.exec(&command).await {
        Ok(out) if out.success() => {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if text.is_empty() {
                Finding::NoDigest {
                    detail: format!("{DIGEST_FILE} is empty"),
                }
            } else {
                Finding::Digest(text)
            }
        }
        Ok(out) => Finding::NoDigest {
            detail: format!(
                "`{command}` exited with status {}: {}",
                out.exit_status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
        Err(e) => Finding::Unreachable(e.to_string()),
    };
    session.close().await;
    finding
}

/// A node to ask: its name, where SSH reaches it, and the host keys it may present.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name (the key of the result).
    pub name: String,
    /// `core@domain:port`.
    pub target: Target,
    /// Its pinned host keys.
    pub host_keys: Vec<PublicKey>,
}

/// [`probe`]s every node at once (each bounded by `connect_timeout` to log in); the result
/// has an entry per node.
pub fn probe_all(
    nodes: Vec<Node>,
    operator_key: Arc<PrivateKey>,
    connect_timeout: Duration,
) -> std::collections::BTreeMap<String, Finding> {
    let mut out = std::collections::BTreeMap::new();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            for n in nodes {
                out.insert(
                    n.name,
                    Finding::Unreachable(format!("no async runtime: {e}")),
                );
            }
            return out;
        }
    };
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for n in nodes {
            let key = Arc::clone(&operator_key);
            tasks.spawn(async move {
                let finding = probe(&n.target, key, n.host_keys, connect_timeout).await;
                (n.name, finding)
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((name, finding)) = done {
                out.insert(name, finding);
            }
        }
    });
    for name in names {
        out.entry(name)
            .or_insert_with(|| Finding::Unreachable("the probe did not finish".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4a8e3acb9eb917471fc5f50456c8edea4ebcf7bffba8f41657baaef187465c09";

    #[test]
    fn every_finding_row() {
        let now = Timestamp::from_unix_millis(1_000);
        let adopt = |digest| {
            Recovery::Adopt(Installed {
                digest,
                path: ProvisionPath::Pxe,
                domain: "n1".into(),
                kernel_args: None,
                at: now,
            })
        };
        let rows: Vec<(&str, Finding, Recovery)> = vec![
            (
                "digest file",
                Finding::Digest(D.into()),
                adopt(AppliedDigest::Known(D.into())),
            ),
            (
                "no digest file",
                Finding::NoDigest {
                    detail: "no such file".into(),
                },
                adopt(AppliedDigest::Unknown),
            ),
            (
                "garbage in the file",
                Finding::Digest("hello".into()),
                Recovery::Skip(format!(
                    "{DIGEST_FILE} holds \"hello\", not a config digest"
                )),
            ),
            (
                "upper-case hex is not ours",
                Finding::Digest(D.to_uppercase().replace("SHA256", "sha256")),
                Recovery::Skip(format!(
                    "{DIGEST_FILE} holds {:?}, not a config digest",
                    D.to_uppercase().replace("SHA256", "sha256")
                )),
            ),
            (
                "unreachable",
                Finding::Unreachable("host key mismatch".into()),
                Recovery::Skip("host key mismatch".into()),
            ),
        ];
        for (row, finding, want) in rows {
            assert_eq!(decide(&finding, "n1", now), want, "{row}");
        }
    }
}
