//! `roundhouse state export|import|recover`: backups of the state store, and the way back when
//! it was lost.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use roundhouse_apply::recover::{self, Finding, Recovery};
use roundhouse_store::{Change, Export, StateDir, StoreError, now};
use roundhouse_store_pg::{PgConfig, PgStore, SCHEMA_VERSION, StateLocation};

use crate::cmd::common::{ConfigArgs, begin_write, location, write_private};
use crate::cmd::plan::{open_store_if_exists, prepare, probe_nodes, store_error};
use crate::exit::{self, Exit};

/// Back up, restore, recover and migrate the state store (`<asset_dir>/state.redb`, or the
/// PostgreSQL database named by `state_url` / ROUNDHOUSE_STATE_URL).
///
/// The store is roundhouse's record of which machines are installed and with which config.
/// Without it roundhouse refuses to plan installed machines (they show as state-lost) rather
/// than reinstall them. See docs/reconciler.md, "Recovering state", and docs/state.md.
///
/// Examples:
///   roundhouse state export cluster.hcl --out state-backup.json
///   roundhouse state import cluster.hcl state-backup.json
///   roundhouse state recover cluster.hcl
///   roundhouse state migrate cluster.hcl --to postgres://roundhouse@db1/roundhouse
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
    Migrate(MigrateArgs),
}

/// Create or upgrade the PostgreSQL store's schema; or copy the embedded store into PostgreSQL.
///
/// Without --to: applies the schema migrations the configured database (`state_url` or
/// ROUNDHOUSE_STATE_URL) lacks, under an advisory lock, and says which version it is at. The
/// embedded store needs none. Reading commands (plan, status, state export) never migrate: on
/// a database without the schema they stop and point here.
///
/// With --to URL: copies the embedded store (<asset_dir>/state.redb: records, history, hook
/// runs, fetch journal) into the database at URL, which must be empty, then exports both and
/// compares them. Holds the apply lock of both meanwhile. Afterwards set `state_url = URL` in
/// the cluster file (or ROUNDHOUSE_STATE_URL): plan shows what it showed before. The password
/// comes from the cluster file's `state_password_file`, PGPASSWORD or ~/.pgpass, never from
/// the URL.
///
/// Examples:
///   roundhouse state migrate cluster.hcl
///   roundhouse state migrate cluster.hcl --to 'postgres://roundhouse@db1/roundhouse?sslmode=verify-full&sslrootcert=/etc/roundhouse/pg-ca.crt'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Copy the embedded store into the (empty) PostgreSQL database at this URL.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
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
        StateCommand::Migrate(a) => migrate(a),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let Some(store) = open_store_if_exists(&cluster)? else {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: there is no state store at {} (nothing to export)",
                location(&cluster)?
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
    let session = begin_write(&cluster, "state import")?;
    let store = session.write().map_err(store_error)?;
    store.import(&doc).map_err(|e| match e {
        e @ roundhouse_store::StoreError::NotEmpty { .. } => anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!("error: {e}; move it aside first (nothing was written)"),
        }),
        e => store_error(e),
    })?;
    eprintln!(
        "imported {} records, {} events, {} fetches into {}",
        doc.nodes.len(),
        doc.events.len(),
        doc.fetches.len(),
        location(&cluster)?
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
    let session = begin_write(cluster, "state recover")?;
    // Read first, read-only: a damaged store must be moved aside by the user, not overwritten.
    let recorded = match session.read().map_err(store_error)? {
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
    session.keep_previous().map_err(store_error)?;
    let store = session.write().map_err(store_error)?;
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

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let Some(to) = &args.to else {
        return match location(&cluster)? {
            StateLocation::Embedded(dir) => {
                eprintln!(
                    "the state store is the embedded one ({}): it needs no migration (set \
                     `state_url` for PostgreSQL, or copy it there with --to URL)",
                    dir.store_path().display()
                );
                Ok(())
            }
            StateLocation::Postgres(config) => {
                let (before, now) = PgStore::migrate(&config).map_err(store_error)?;
                if before == now {
                    eprintln!("{config}: schema version {now}, up to date");
                } else if before == 0 {
                    eprintln!("{config}: schema created (version {now})");
                } else {
                    eprintln!("{config}: schema migrated from version {before} to {now}");
                }
                Ok(())
            }
        };
    };
    if url_has_password(to) {
        return Err(anyhow::Error::new(Exit {
            code: exit::USAGE,
            message: "error: --to: the URL holds a password; secrets don't belong on the command \
                      line (shell history, process lists): use the cluster file's \
                      `state_password_file`, PGPASSWORD or ~/.pgpass"
                .into(),
        }));
    }
    let mut target = PgConfig::parse(to).map_err(|e| {
        anyhow::Error::new(Exit {
            code: exit::USAGE,
            message: format!("error: --to: {e}"),
        })
    })?;
    if let Some(file) = &cluster.state_password_file {
        target = target.with_password_file(file);
    }
    let source = StateLocation::Embedded(StateDir::new(&cluster.asset_dir));
    let target = StateLocation::Postgres(Box::new(target));
    // Both apply locks: nothing writes either store while it is copied.
    let lock_error = |e: roundhouse_store_pg::PgLockError| match e {
        roundhouse_store_pg::PgLockError::Held(e) => anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!("error: {e}"),
        }),
        roundhouse_store_pg::PgLockError::Store(e) => store_error(e),
        e => e.into(),
    };
    let from = source.begin_write("state migrate").map_err(lock_error)?;
    let Some(from_store) = from.read().map_err(store_error)? else {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: there is no embedded state store at {source} (nothing to copy)"
            ),
        }));
    };
    let into = target.begin_write("state migrate").map_err(lock_error)?;
    let into_store = into.write().map_err(store_error)?;
    let at = now();
    let doc = from_store.export(at).map_err(store_error)?;
    into_store.import(&doc).map_err(|e| match e {
        e @ StoreError::NotEmpty { .. } => anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: {e}: state migrate copies only into an empty database (nothing was written)"
            ),
        }),
        e => store_error(e),
    })?;
    let copy = into_store.export(at).map_err(store_error)?;
    if copy != doc {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: format!(
                "error: the copy in {target} differs from {source} ({} records, {} events, {} \
                 fetches copied; {} , {}, {} read back): keep using the embedded store and \
                 report this",
                doc.nodes.len(),
                doc.events.len(),
                doc.fetches.len(),
                copy.nodes.len(),
                copy.events.len(),
                copy.fetches.len()
            ),
        }));
    }
    eprintln!(
        "copied {} records, {} events, {} fetches from {source} to {target} (schema version \
         {SCHEMA_VERSION}) and verified the copy.\nNext: set `state_url = \"{target}\"` in the \
         cluster block (or ROUNDHOUSE_STATE_URL) and run `roundhouse plan {}`; keep {source} as \
         a backup.",
        doc.nodes.len(),
        doc.events.len(),
        doc.fetches.len(),
        args.config.cluster_file.display()
    );
    Ok(())
}

/// Whether a `postgres://` URL carries a password (`user:password@` or `password=`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let in_userinfo = authority
        .rfind('@')
        .is_some_and(|at| authority[..at].contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("password=")));
    in_userinfo || in_query
}
