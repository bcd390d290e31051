//! `roundhouse plan`: what `apply` would do to each node, and why. Also the preparation that
//! `plan`, `apply` and `status` share: load, keys, render, desired state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bootdata::Mac;
use roundhouse_apply::keys::{KeyStore, LoadedKeys};
use roundhouse_config::Cluster;
use roundhouse_plan::{Desired, DesiredNode, Observed, Plan};
use roundhouse_render::{RenderOptions, RenderedCluster};
use roundhouse_store::{OpenMode, RedbStore, StateDir, StateStore};

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
    pub fn keys_dir(&self, cluster: &Cluster) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| cluster.asset_dir.join("keys"))
    }
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

/// Opens the cluster's store for a short read, or `None` when there is none yet (reading
/// must not create one).
pub fn open_store_if_exists(cluster: &Cluster) -> anyhow::Result<Option<RedbStore>> {
    let dir = StateDir::new(&cluster.asset_dir);
    if !dir.store_path().exists() {
        return Ok(None);
    }
    Ok(Some(dir.open_store(per_operation())?))
}

/// Per-operation opens, so `status` and `plan` can run while an `apply` holds the lock.
pub fn per_operation() -> OpenMode {
    OpenMode::PerOperation {
        wait: Duration::from_secs(30),
    }
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
/// old config: drift) or none. Writes nothing except SSH keys that do not exist yet (they are part of the config).
///
/// With --detailed-exitcode the exit code is 0 when there is nothing to do and 2 when there
/// are changes (as Terraform's).
///
/// Examples:
///   roundhouse plan cluster.hcl
///   roundhouse plan cluster.hcl --output json --detailed-exitcode
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
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
    let observed = match open_store_if_exists(&prepared.cluster)? {
        Some(store) => store.observed()?,
        None => Observed::default(),
    };
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
