//! `roundhouse status`: what each node runs, what it should run, and what it last fetched.

use std::io::Write;

use std::time::Duration;

use roundhouse_apply::journal::JournalReader;
use roundhouse_apply::recover::{self, Finding};
use roundhouse_plan::{AppliedDigest, short_digest};
use roundhouse_render::{MANIFEST_FILE, Manifest};
use roundhouse_store::EventQuery;
use serde::Serialize;

use crate::cmd::common::{ConfigArgs, OutputFormat};
use crate::cmd::plan::{StateArgs, open_store_if_exists, prepare, probe_nodes};

/// Show each node's desired and applied config, its last fetch and its last action.
///
/// Per node: the config digest the cluster file renders (desired), the digest roundhouse last
/// confirmed on the machine (applied; `unknown` for nodes adopted from Lokomotive), the
/// lifecycle state, the final config the machine last fetched from the boot server and when
/// (from the boot server's fetch journal; `current` when those are the bytes published now),
/// the last recorded action and its result, drift (desired differs from applied), and each
/// post-provision hook: done (succeeded with its current inputs since the last installation)
/// or pending.
///
/// Examples:
///   roundhouse status cluster.hcl
///   roundhouse status cluster.hcl --output json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Also ask every node over SSH (pinned host key, operator key) which config it runs
    /// (/etc/roundhouse/config-digest), and say where that differs from the store.
    #[arg(long)]
    pub probe: bool,
    /// Seconds for one SSH connection attempt with --probe.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Serialize)]
struct NodeStatus {
    name: String,
    role: &'static str,
    mac: String,
    state: &'static str,
    desired_digest: String,
    applied_digest: Option<AppliedDigest>,
    drift: bool,
    last_fetch: Option<LastFetch>,
    last_action: Option<LastAction>,
    pending_intent: Option<roundhouse_plan::Intent>,
    hooks: Vec<HookStatus>,
    /// With --probe: what the node itself says it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<Running>,
}

/// What a node reported over SSH (`status --probe`).
#[derive(Debug, Serialize)]
struct Running {
    /// The digest in its /etc/roundhouse/config-digest, if it could be read.
    digest: Option<String>,
    /// Why there is none (unreachable, no such file, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The node's digest equals the applied digest the store records.
    matches_applied: bool,
}

/// A post-provision hook on one node: `done` when it succeeded with its current inputs since
/// the node's last installation, else `pending` (the next plan runs it).
#[derive(Debug, Serialize)]
struct HookStatus {
    name: String,
    state: &'static str,
    /// Its current input digest.
    digest: String,
    /// The inputs and time of its last success since the last installation.
    done_digest: Option<String>,
    done_at: Option<roundhouse_plan::Timestamp>,
}

#[derive(Debug, Serialize)]
struct LastFetch {
    at: roundhouse_plan::Timestamp,
    /// SHA-256 of the bytes served.
    sha256: Option<String>,
    /// The config digest those bytes were published for, when roundhouse published them.
    config_digest: Option<String>,
    /// Whether those are the bytes published now for this node.
    current: bool,
}

#[derive(Debug, Serialize)]
struct LastAction {
    at: roundhouse_plan::Timestamp,
    kind: String,
    digest: Option<String>,
    message: String,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let prepared = prepare(&args.config, args.state.keys_dir.clone(), false)?;
    let cluster = &prepared.cluster;
    let store = open_store_if_exists(cluster)?;
    let journal = JournalReader::new(args.state.boot_state_dir(cluster));
    let manifest: Option<Manifest> =
        std::fs::read(args.state.data_dir(cluster).join(MANIFEST_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
    let published = roundhouse_apply::publish::Published::load(&cluster.asset_dir);
    let mut probed = if args.probe {
        let nodes = probe_nodes(&prepared, &cluster.nodes)?;
        recover::probe_all(
            nodes,
            prepared.keys.operator.private(),
            Duration::from_secs(args.connect_timeout.max(1)),
        )
    } else {
        Default::default()
    };
    let mut rows = Vec::new();
    for (node, rendered) in cluster.nodes.iter().zip(&prepared.rendered.nodes) {
        let record = match &store {
            Some(s) => s.node(&node.mac)?,
            None => None,
        };
        let last_action = match &store {
            Some(s) => s
                .events(&node.mac, EventQuery::newest(50))?
                .into_iter()
                .find(|e| e.kind != "note")
                .map(|e| LastAction {
                    at: e.at,
                    kind: e.kind,
                    digest: e.digest,
                    message: e.message,
                }),
            None => None,
        };
        let published_sha = manifest
            .as_ref()
            .and_then(|m| m.nodes.iter().find(|n| n.name == node.name))
            .map(|n| n.final_ignition_sha256.as_str().to_string());
        let desired = rendered.digest.as_str().to_string();
        let applied = record.as_ref().and_then(|r| r.applied_digest().cloned());
        let applied_known = applied.as_ref().and_then(|a| a.known());
        let last_fetch = journal
            .last_config_fetch(&node.mac, &node.name)
            .map(|f| LastFetch {
                at: f.at,
                current: f.digest.is_some() && f.digest == published_sha,
                config_digest: f
                    .digest
                    .as_deref()
                    .and_then(|sha| published.digest_for_sha(sha, applied_known)),
                sha256: f.digest,
            });
        let hooks = cluster
            .hooks_for(node.role)
            .map(|h| {
                let digest = h.input_digest();
                let done = record.as_ref().and_then(|r| r.hooks.get(&h.name));
                HookStatus {
                    name: h.name.clone(),
                    state: if done.is_some_and(|d| d.digest == digest) {
                        "done"
                    } else {
                        "pending"
                    },
                    digest,
                    done_digest: done.map(|d| d.digest.clone()),
                    done_at: done.map(|d| d.at),
                }
            })
            .collect();
        let running = probed.remove(&node.name).map(|f| {
            let (digest, error) = match f {
                Finding::Digest(d) => (Some(d), None),
                Finding::NoDigest { detail } => (None, Some(detail)),
                Finding::Unreachable(why) => (None, Some(why)),
            };
            Running {
                matches_applied: digest.is_some() && digest.as_deref() == applied_known,
                digest,
                error,
            }
        });
        rows.push(NodeStatus {
            running,
            hooks,
            name: node.name.clone(),
            role: node.role.as_str(),
            mac: node.mac.to_string(),
            state: record.as_ref().map_or("unknown", |r| r.state.name()),
            drift: applied
                .as_ref()
                .is_some_and(|a| a.known() != Some(desired.as_str())),
            desired_digest: desired,
            applied_digest: applied,
            last_fetch,
            last_action,
            pending_intent: record
                .as_ref()
                .and_then(|r| r.state.pending_intent().cloned()),
        });
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "nodes": rows }))?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "{:<16} {:<10} {:<14} {:<12} {:<12} {:<5} {:<34} {:<18} LAST ACTION",
                "NODE", "ROLE", "STATE", "DESIRED", "APPLIED", "DRIFT", "LAST FETCH", "HOOKS"
            )?;
            for r in &rows {
                let fetch = r.last_fetch.as_ref().map_or("-".to_string(), |f| {
                    format!(
                        "{} {}",
                        if f.current {
                            "current"
                        } else {
                            f.sha256.as_deref().map(short_digest).unwrap_or("?")
                        },
                        f.at
                    )
                });
                let action = r.last_action.as_ref().map_or("-".to_string(), |a| {
                    let mut s = format!("{} {}", a.kind, a.at);
                    if !a.message.is_empty() {
                        s.push_str(&format!(": {}", a.message.lines().next().unwrap_or("")));
                    }
                    s
                });
                let pending = r.hooks.iter().filter(|h| h.state == "pending").count();
                let hooks = match (r.hooks.len(), pending) {
                    (0, _) => "-".to_string(),
                    (n, 0) => format!("{n} done"),
                    (n, p) => format!("{} done, {p} pending", n - p),
                };
                writeln!(
                    out,
                    "{:<16} {:<10} {:<14} {:<12} {:<12} {:<5} {:<34} {:<18} {}",
                    r.name,
                    r.role,
                    r.state,
                    short_digest(&r.desired_digest),
                    r.applied_digest.as_ref().map_or("-", |a| a.short()),
                    if r.drift { "yes" } else { "no" },
                    fetch,
                    hooks,
                    action
                )?;
            }
            if args.probe {
                writeln!(out, "\nWhat each node says it runs (--probe):")?;
                for r in &rows {
                    let Some(run) = &r.running else { continue };
                    let said = match (&run.digest, &run.error) {
                        (Some(d), _) if run.matches_applied => {
                            format!("{} (as recorded)", short_digest(d))
                        }
                        (Some(d), _) => format!(
                            "{}, but the store records {}",
                            short_digest(d),
                            r.applied_digest.as_ref().map_or("nothing", |a| a.short())
                        ),
                        (None, Some(e)) => format!("unknown: {e}"),
                        (None, None) => "unknown".to_string(),
                    };
                    writeln!(out, "{:<16} {said}", r.name)?;
                }
            }
        }
    }
    Ok(())
}
