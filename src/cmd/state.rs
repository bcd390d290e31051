//! `roundhouse state export|import|recover`: backups of the state store, and the way back when
//! it was lost.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use roundhouse_apply::recover::{self, Finding, Recovery};
use roundhouse_store::{Change, Export, StateDir, StateStore, now};

use crate::cmd::common::{ConfigArgs, take_lock, write_private};
use crate::cmd::plan::{open_store_if_exists, per_operation, prepare, probe_nodes, store_error};
use crate::exit::{self, Exit};

/// Back up, restore and recover the state store (`<asset_dir>/state.redb`).
///
/// The store is roundhouse's record of which machines are installed and with which config.
/// Without it roundhouse refuses to plan installed machines (they show as state-lost) rather
/// than reinstall them. See docs/reconciler.md, "Recovering state".
///
/// Examples:
///   roundhouse state export cluster.hcl --out state-backup.json
///   roundhouse state import cluster.hcl state-backup.json
///   roundhouse state recover cluster.hcl
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    Export(ExportArgs),
    Import(ImportArgs),
    Recover(RecoverArgs),
}

/// Write the whole store (records, history, fetch journal) as one JSON document.
///
/// The format (`roundhouse-state/v1`) is stable and documented in docs/reconciler.md. The store
/// is opened read-only; the file written is 0600 (it names every machine).
///
/// Examples:
///   roundhouse state export cluster.hcl --out state-backup.json
///   roundhouse state export cluster.hcl > state-backup.json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Write here (0600, replaced atomically) instead of to standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Load a `state export` document into an empty or missing store.
///
/// Refuses a store that holds any record or event (merging two histories would invent one
/// that never happened): move a damaged store aside first. Takes the apply lock.
///
/// Examples:
///   mv assets/state.redb assets/state.redb.damaged
///   roundhouse state import cluster.hcl state-backup.json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ImportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The export document.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Rebuild lost records from what the machines report.
///
/// For every node without a record (or those named with --node), log in over SSH as core
/// with the node's pinned host key and the operator key, as apply does, and read
/// /etc/roundhouse/config-digest, which every final config roundhouse renders writes. A node
/// that names a digest is recorded as installed with it (the next plan compares it with the
/// cluster file as usual); one reached without the file is recorded with an unknown digest
/// (workers are then re-provisioned in place, controllers held); a node that cannot be
/// reached or shows another host key gets no record and stays state-lost. Shows what it
/// would record and asks first (--yes to skip). Takes the apply lock.
///
/// Examples:
///   roundhouse state recover cluster.hcl
///   roundhouse state recover cluster.hcl --node worker-2 --yes
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Directory of the SSH keys roundhouse manages. [default: <asset_dir>/keys]
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Seconds for one SSH connection attempt.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(args: StateArgs) -> anyhow::Result<()> {
    match args.command {
        StateCommand::Export(a) => export(a),
        StateCommand::Import(a) => import(a),
        StateCommand::Recover(a) => recover(a),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let Some(store) = open_store_if_exists(&cluster)? else {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: there is no state store at {} (nothing to export)",
                StateDir::new(&cluster.asset_dir).store_path().display()
            ),
        }));
    };
    let doc = store.export(now()).map_err(store_error)?;
    let bytes = doc.to_json();
    match &args.out {
        Some(path) => {
            write_private(path, &bytes)?;
            eprintln!(
                "exported {} records, {} events, {} fetches to {}",
                doc.nodes.len(),
                doc.events.len(),
                doc.fetches.len(),
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let doc = Export::from_json(&bytes)
        .map_err(|e| Exit::invalid(format!("error: {}: {e}", args.file.display())))?;
    let dir = StateDir::new(&cluster.asset_dir);
    let _lock = take_lock(&dir, "state import")?;
    let store = dir.open_store(per_operation()).map_err(store_error)?;
    store.import(&doc).map_err(|e| match e {
        e @ roundhouse_store::StoreError::NotEmpty { .. } => anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!("error: {e}; move it aside first (nothing was written)"),
        }),
        e => e.into(),
    })?;
    eprintln!(
        "imported {} records, {} events, {} fetches into {}",
        doc.nodes.len(),
        doc.events.len(),
        doc.fetches.len(),
        dir.store_path().display()
    );
    Ok(())
}

fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let prepared = prepare(&args.config, args.keys_dir.clone(), false)?;
    let cluster = &prepared.cluster;
    for name in &args.nodes {
        if !cluster.nodes.iter().any(|n| &n.name == name) {
            return Err(Exit::invalid(format!(
                "error: no node named {name:?} in {}",
                cluster.source.display()
            )));
        }
    }
    let dir = StateDir::new(&cluster.asset_dir);
    let _lock = take_lock(&dir, "state recover")?;
    // Read first, read-only: a damaged store must be moved aside by the user, not overwritten.
    let recorded = match open_store_if_exists(cluster)? {
        Some(store) => store.observed().map_err(store_error)?,
        None => Default::default(),
    };
    let candidates: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|n| args.nodes.is_empty() || args.nodes.contains(&n.name))
        .filter(|n| !recorded.nodes.contains_key(&n.mac))
        .collect();
    if candidates.is_empty() {
        eprintln!("every node has a record: nothing to recover");
        return Ok(());
    }
    let nodes = probe_nodes(&prepared, candidates.iter().copied())?;
    eprintln!("asking {} node(s) over SSH what they run…", nodes.len());
    let findings = recover::probe_all(
        nodes,
        prepared.keys.operator.private(),
        Duration::from_secs(args.connect_timeout.max(1)),
    );

    let at = now();
    let mut changes = Vec::new();
    let mut skipped = 0;
    for n in &candidates {
        let finding = findings
            .get(&n.name)
            .cloned()
            .unwrap_or_else(|| Finding::Unreachable("the probe did not finish".into()));
        match recover::decide(&finding, &n.domain, at) {
            Recovery::Adopt(installed) => {
                let what = match installed.digest.known() {
                    Some(d) => format!(
                        "installed, runs config {}",
                        roundhouse_plan::short_digest(d)
                    ),
                    None => match &finding {
                        Finding::NoDigest { detail } => {
                            format!("installed, config unknown ({detail})")
                        }
                        _ => "installed, config unknown".into(),
                    },
                };
                println!("{:<20} record: {what}", n.name);
                changes.push((n.mac, Change::Adopt(installed), n.name.clone(), what));
            }
            Recovery::Skip(why) => {
                skipped += 1;
                println!("{:<20} no record: {why}", n.name);
            }
        }
    }
    if changes.is_empty() {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: no node could be recovered ({skipped} unreachable or refused); nothing was written"
            ),
        }));
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(anyhow::Error::new(Exit {
                code: exit::USAGE,
                message: "error: recover asks for confirmation but standard input is not a terminal; pass --yes".into(),
            }));
        }
        eprint!("\nRecord {} node(s) as above? Type `yes`: ", changes.len());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            return Err(anyhow::Error::new(Exit {
                code: exit::FAILURE,
                message: "recover cancelled; nothing was written".into(),
            }));
        }
    }
    let count = changes.len();
    dir.keep_previous().map_err(store_error)?;
    let store = dir.open_store(per_operation()).map_err(store_error)?;
    let notes: Vec<_> = changes
        .iter()
        .map(|(mac, _, name, what)| (*mac, format!("state recover: {name} {what}")))
        .collect();
    store
        .apply_batch(
            changes.into_iter().map(|(mac, c, _, _)| (mac, c)).collect(),
            at,
        )
        .map_err(store_error)?;
    for (mac, note) in notes {
        store.note(&mac, &note, at).map_err(store_error)?;
    }
    eprintln!(
        "recorded {} node(s){}; run `roundhouse plan {}` next",
        count,
        if skipped > 0 {
            format!(", {skipped} left without a record")
        } else {
            String::new()
        },
        args.config.cluster_file.display()
    );
    Ok(())
}
