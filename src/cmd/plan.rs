//! `roundhouse plan`: what `apply` would do to each node, and why. Also the preparation that
//! `plan`, `apply` and `status` share: load, keys, render, desired state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bootdata::Mac;
use roundhouse_apply::evidence::{self, Sources, Target};
use roundhouse_apply::keys::{KeyStore, LoadedKeys};
use roundhouse_apply::recover;
use roundhouse_config::Cluster;
use roundhouse_plan::{Desired, DesiredNode, Observed, Plan};
use roundhouse_render::{RenderOptions, RenderedCluster};
use std::sync::Arc;

use roundhouse_store::{StateStore, StoreError};

use crate::cmd::common::{ConfigArgs, OutputFormat};
use crate::exit::{self, Exit};

/// Where a cluster's state lives, when not in the default places under `asset_dir`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Directory of the SSH keys roundhouse manages (operator key, node host keys).
    /// [default: <asset_dir>/keys]
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// The boot server's data directory, where apply publishes the rendered cluster.
    /// [default: <asset_dir>/matchbox]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The boot server's state directory (`roundhouse serve --state-path`): netboot.json and
    /// the fetch journal. [default: <asset_dir>/boot-state]
    #[arg(long, value_name = "DIR")]
    pub boot_state_dir: Option<PathBuf>,
}

impl StateArgs {
    pub fn data_dir(&self, cluster: &Cluster) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| cluster.asset_dir.join("matchbox"))
    }
    pub fn boot_state_dir(&self, cluster: &Cluster) -> PathBuf {
        self.boot_state_dir
            .clone()
            .unwrap_or_else(|| cluster.asset_dir.join("boot-state"))
    }
}

/// A loaded, rendered cluster with its keys, ready to plan.
pub struct Prepared {
    pub cluster: Cluster,
    pub rendered: RenderedCluster,
    pub keys: LoadedKeys,
    pub desired: Desired,
}

impl Prepared {
    /// MAC → node name.
    pub fn names(&self) -> BTreeMap<Mac, String> {
        self.cluster
            .nodes
            .iter()
            .map(|n| (n.mac, n.name.clone()))
            .collect()
    }
}

/// Loads the cluster, loads or generates its keys, renders it, and only then writes new keys:
/// invalid input writes nothing.
pub fn prepare(
    config: &ConfigArgs,
    keys_dir: Option<PathBuf>,
    strict: bool,
) -> anyhow::Result<Prepared> {
    let cluster = config.load()?;
    let keys_dir = keys_dir.unwrap_or_else(|| cluster.asset_dir.join("keys"));
    let mut keys = KeyStore::new(&keys_dir)
        .load_or_generate(&cluster.name, cluster.nodes.iter().map(|n| n.name.as_str()))
        .context("loading the cluster's SSH keys")?;
    let rendered = roundhouse_render::render_cluster(
        &cluster,
        &RenderOptions {
            strict,
            keys: keys.managed(),
        },
    )
    .map_err(Exit::invalid)?;
    for warning in &rendered.warnings {
        eprintln!("{warning}\n");
    }
    keys.persist()
        .with_context(|| format!("writing SSH keys under {}", keys_dir.display()))?;
    let digests: BTreeMap<&str, &str> = rendered
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.digest.as_str()))
        .collect();
    let desired = Desired {
        policy: cluster.policy,
        nodes: cluster
            .nodes
            .iter()
            .map(|n| {
                DesiredNode::from_cluster(
                    &cluster,
                    n,
                    digests.get(n.name.as_str()).copied().unwrap_or_default(),
                )
            })
            .collect(),
    };
    Ok(Prepared {
        cluster,
        rendered,
        keys,
        desired,
    })
}

/// How `plan` and `apply` look for evidence of earlier installations.
#[derive(Debug, Clone, clap::Args)]
pub struct EvidenceArgs {
    /// Seconds one SSH probe may take: a node without a state record is probed on its SSH
    /// port before it may be planned as a new machine (docs/reconciler.md, "Evidence").
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub probe_timeout: f64,
}

/// What to do when the state store cannot be read, printed under the error.
const RECOVERY_HINT: &str = "roundhouse does not plan from a store it cannot read: it could only guess, and a \
wrong guess reinstalls machines. Nothing was written. Ways back (docs/reconciler.md, \"Recovering state\"):
  - the copy the previous apply kept: move the damaged file aside and copy state.redb.1 in its place;
  - a backup from `roundhouse state export`: move the damaged file aside, then `roundhouse state import`;
  - no backup: move the damaged file aside, then `roundhouse state recover CLUSTER` rebuilds the records
    from the boot server's journal and from what each node reports over SSH.";

/// What to do when the PostgreSQL store cannot be reached or read.
const POSTGRES_HINT: &str = "Nothing was done and nothing was written. Check that the database is \
running and reachable from here, and the user, password source and TLS settings (docs/state.md, \
\"Connecting\"); then run the command again.";

/// Maps a store error to its exit code: a store that cannot be read (damaged, a schema this
/// build does not read, or a database that cannot be reached) is [`exit::STATE_UNREADABLE`]
/// with the ways back; anything else is a runtime failure.
pub fn store_error(e: StoreError) -> anyhow::Error {
    let unreadable = |hint: &str| {
        anyhow::Error::new(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!("error: {e}\n\n{hint}"),
        })
    };
    match &e {
        StoreError::Backend { .. } => unreadable(POSTGRES_HINT),
        StoreError::Schema {
            path,
            found,
            supported,
        } if path.to_string_lossy().starts_with("postgres://") => {
            if found < supported {
                unreadable(
                    "Nothing was written. Run `roundhouse state migrate CLUSTER_FILE` to create or \
                     upgrade the schema (docs/state.md, \"Migrations\").",
                )
            } else {
                unreadable(
                    "Nothing was written. This database was written by a newer roundhouse: use \
                     that version (or a newer one).",
                )
            }
        }
        StoreError::Unreadable { .. } | StoreError::Schema { .. } => unreadable(RECOVERY_HINT),
        _ => e.into(),
    }
}

/// Opens the cluster's store to read it, or `None` when there is no embedded store yet.
/// Reading never creates, initialises, migrates, repairs or writes the store.
pub fn open_store_if_exists(cluster: &Cluster) -> anyhow::Result<Option<Arc<dyn StateStore>>> {
    crate::cmd::common::location(cluster)?
        .open_existing()
        .map_err(store_error)
}

/// `nodes` as SSH probes see them: `core@domain:ssh_port` and their pinned host keys.
pub fn probe_nodes<'a>(
    prepared: &Prepared,
    nodes: impl IntoIterator<Item = &'a roundhouse_config::Node>,
) -> anyhow::Result<Vec<recover::Node>> {
    nodes
        .into_iter()
        .map(|n| {
            Ok(recover::Node {
                name: n.name.clone(),
                target: roundhouse_ssh::Target {
                    host: n.domain.clone(),
                    port: n.ssh_port,
                    user: "core".into(),
                },
                host_keys: prepared
                    .keys
                    .pinned_host_keys(&n.name)
                    .with_context(|| format!("node {}: pinned host keys", n.name))?,
            })
        })
        .collect()
}

/// The planner's input: the store's records (read-only), and for every node without a record
/// the evidence that it was installed before (gating, fetch journal, an SSH probe).
pub fn observe(
    prepared: &Prepared,
    state: &StateArgs,
    evidence: &EvidenceArgs,
    store: Option<&dyn StateStore>,
) -> anyhow::Result<Observed> {
    let cluster = &prepared.cluster;
    let mut observed = match store {
        Some(store) => store.observed().map_err(store_error)?,
        None => Observed::default(),
    };
    let probe = Duration::try_from_secs_f64(evidence.probe_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow::Error::new(Exit {
                code: exit::USAGE,
                message: "error: --probe-timeout must be a positive number of seconds".into(),
            })
        })?;
    let unrecorded: Vec<&roundhouse_config::Node> = cluster
        .nodes
        .iter()
        .filter(|n| !observed.nodes.contains_key(&n.mac))
        .collect();
    let targets: Vec<Target> = probe_nodes(prepared, unrecorded.iter().copied())?
        .into_iter()
        .zip(&unrecorded)
        .map(|(p, n)| Target {
            name: p.name,
            mac: n.mac,
            host: p.target.host,
            port: p.target.port,
            host_keys: p.host_keys,
        })
        .collect();
    observed.evidence = evidence::gather(
        &targets,
        &Sources {
            boot_state_dir: state.boot_state_dir(cluster),
            probe_timeout: Some(probe),
            probe_parallel: probe_parallel(),
        },
    )?;
    Ok(observed)
}

/// How many SSH probes run at once: up to 2,048, within half the open-file limit (raised to
/// its hard maximum first, as Go's runtime does), so a large fleet that is powered off costs
/// a few connect timeouts, not thousands.
fn probe_parallel() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(limit / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 2048)
}

/// The error for a plan with `state-lost` rows (after the plan was shown).
pub fn state_lost_error(plan: &Plan, cluster_file: &std::path::Path, done: &str) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: exit::STATE_LOST,
        message: format!(
            "error: {} node(s) have no state record but show evidence of an installation (the \
             `state-lost` rows): the state store was emptied, deleted or replaced. {done}\n\
             Rebuild the records with `roundhouse state recover {}` (docs/reconciler.md, \
             \"Recovering state\"), or restore a backup; `roundhouse recreate NODE` reinstalls a \
             node on purpose.",
            plan.summary.state_lost,
            cluster_file.display()
        ),
    })
}

/// Plans `prepared` against `observed`; duplicate identities are invalid input.
pub fn make_plan(prepared: &Prepared, observed: &Observed) -> anyhow::Result<Plan> {
    roundhouse_plan::plan(&prepared.desired, observed, roundhouse_store::now())
        .map_err(Exit::invalid)
}

/// Show what `apply` would do to each node, and why.
///
/// Compares every node's rendered config digest with what the state store recorded and
/// prints one row per node: provision (PXE), reprovision-in-place (SSH), resume (an
/// interrupted attempt), run-hooks (only post-provision hooks whose inputs changed, or that
/// have not run since the last installation), hold (changed, but the role's policy keeps the
/// old config: drift) or none. Writes nothing except SSH keys that do not exist yet (they are
/// part of the config); the state store is opened read-only.
///
/// A node without a state record is planned as a new machine only if nothing suggests it was
/// installed: its gating mark, a final-config fetch in the boot server's journal, or an SSH
/// answer on its address make it state-lost instead (exit 3; apply refuses such a plan). See
/// `roundhouse state recover`.
///
/// With --detailed-exitcode the exit code is 0 when there is nothing to do and 2 when there
/// are changes (as Terraform's). Other exit codes: 1 error rows, 3 state-lost rows, 65
/// invalid cluster file, 74 unreadable state store.
///
/// Examples:
///   roundhouse plan cluster.hcl
///   roundhouse plan cluster.hcl --output json --detailed-exitcode
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Treat Butane warnings in snippets as errors.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let prepared = prepare(&args.config, args.state.keys_dir.clone(), args.strict)?;
    let store = open_store_if_exists(&prepared.cluster)?;
    let observed = observe(&prepared, &args.state, &args.evidence, store.as_deref())?;
    drop(store);
    let plan = make_plan(&prepared, &observed)?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            write!(out, "{}", roundhouse_plan::render_table(&plan))?;
        }
    }
    out.flush()?;
    if plan.has_state_lost() {
        return Err(state_lost_error(
            &plan,
            &args.config.cluster_file,
            "apply would not run this plan.",
        ));
    }
    if plan.has_errors() {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message:
                "error: the plan refuses some nodes (see `error` rows); apply would not run it"
                    .into(),
        }));
    }
    if args.detailed_exitcode && plan.has_changes() {
        return Err(anyhow::Error::new(Exit {
            code: exit::CHANGES,
            message: String::new(),
        }));
    }
    Ok(())
}
