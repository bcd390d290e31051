//! `roundhouse apply`: carry out the plan on the machines.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_apply::exec::{Executor, HookSpec, NodeSpec, Settings};
use roundhouse_apply::journal::JournalReader;
use roundhouse_apply::netboot::{Decision, NetbootWriter};
use roundhouse_apply::power::{CommandDriver, PowerDriver, driver_for};
use roundhouse_apply::publish::{Published, initial_netboot, publish_data};
use roundhouse_config::Power;
use roundhouse_store::StateStore;

use crate::cmd::common::{ConfigArgs, OutputFormat};

mod progress;

use crate::cmd::plan::{
    EvidenceArgs, StateArgs, make_plan, observe, prepare, state_lost_error, store_error,
};
use crate::exit::{self, Exit};
use progress::{BarReporter, JsonReporter, LineReporter, Reporter};

/// Install and re-provision the machines so they run the cluster file's configs.
///
/// Plans (see `roundhouse plan`), shows the plan and asks for confirmation (skip with --yes),
/// publishes the rendered configs to the boot server's data directory, then works through
/// the changed nodes: PXE installs run the node's power action (its `power` block or the
/// cluster's `pxe_command`); in-place re-provisions log in over SSH as core (pinned host
/// key), set first_boot, rewrite the OEM grub.cfg and reboot. A node counts as done only when
/// the boot server's fetch journal shows it fetched its new config and it shows a fresh
/// /ignition_ran over SSH. Then the node's post-provision hooks (`hook` blocks) run over SSH;
/// nodes planned as run-hooks only run the hooks whose inputs changed.
///
/// Every attempt is journaled before the machine is touched, so after a crash or Ctrl-C the
/// next apply resumes it (waiting for a reboot already triggered instead of triggering
/// again). Only one apply runs per asset directory at a time.
///
/// A node without a state record is never installed when there is evidence that it was
/// installed before (its gating mark, a final-config fetch, an SSH answer): the plan shows it
/// as state-lost and apply does nothing (exit 3; see `roundhouse state recover`).
///
/// Exit codes: 0 every change confirmed (or nothing to do), 1 a node failed or was not
/// started, 3 state-lost nodes (nothing done), 65 invalid cluster file, 74 unreadable state
/// store (nothing done).
///
/// Examples:
///   roundhouse apply cluster.hcl
///   roundhouse apply cluster.hcl --yes --max-parallel 20 --max-failures 2
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output: text progress on stderr, or JSON event lines on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Nodes worked on at once (controllers are always one at a time).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    /// Workers worked on at once [default: --max-parallel].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel_workers: Option<u32>,
    /// Stop starting new nodes after this many failures (running ones finish; the rest stay
    /// queued for the next apply).
    #[arg(long)]
    pub max_failures: Option<usize>,
    /// Seconds a PXE-installed node may take to fetch its config and come up.
    #[arg(long, default_value_t = 2700, value_name = "SECONDS")]
    pub pxe_timeout: u64,
    /// Seconds an in-place re-provisioned node may take to fetch its config and come up.
    #[arg(long, default_value_t = 1200, value_name = "SECONDS")]
    pub in_place_timeout: u64,
    /// Seconds to keep trying to reach a node over SSH before re-provisioning it in place.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub reach_timeout: u64,
    /// Seconds for one SSH connection attempt (TCP, handshake, authentication).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub connect_timeout: f64,
    /// First pause between polls, in seconds; doubles up to --poll-max.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub poll_initial: f64,
    /// Longest pause between polls, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub poll_max: f64,
    /// Seconds the cluster's `pxe_command` may run before it is killed (a `power` block's
    /// `timeout_secs` wins).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub power_timeout: u64,
    /// Treat Butane warnings in snippets as errors.
    #[arg(long)]
    pub strict: bool,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(anyhow::Error::new(Exit {
            code: exit::USAGE,
            message: format!("error: --{name} must be a positive number of seconds"),
        }))
    }
}

pub fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let settings = Settings {
        ssh_user: "core".into(),
        connect_timeout: seconds("connect-timeout", args.connect_timeout)?,
        command_timeout: Duration::from_secs(60),
        reach_deadline: Duration::from_secs(args.reach_timeout),
        pxe_deadline: Duration::from_secs(args.pxe_timeout),
        in_place_deadline: Duration::from_secs(args.in_place_timeout),
        poll_initial: seconds("poll-initial", args.poll_initial)?,
        poll_max: seconds("poll-max", args.poll_max)?,
        max_parallel: args.max_parallel as usize,
        max_parallel_workers: args.max_parallel_workers.unwrap_or(args.max_parallel) as usize,
        max_failures: args.max_failures,
    };
    let prepared = prepare(&args.config, args.state.keys_dir.clone(), args.strict)?;
    let cluster = &prepared.cluster;
    // The apply lock first (on PostgreSQL: connect, bring the schema up to date, take the
    // database's lock): a database that cannot be reached stops the apply here.
    let session = crate::cmd::common::begin_write(cluster, "apply")?;
    // Plan from a read-only look first: a store that cannot be read, or records lost for
    // machines that were installed, stop the apply before anything is written.
    let observed = {
        let store = session.read().map_err(store_error)?;
        observe(&prepared, &args.state, &args.evidence, store.as_deref())?
    };
    let plan = make_plan(&prepared, &observed)?;
    let json = args.output == OutputFormat::Json;
    // Live bars only where a person watches; logs and pipes get lines they can grep.
    let reporter: Arc<dyn Reporter> = if json {
        Arc::new(JsonReporter::new(Box::new(std::io::stdout())))
    } else if std::io::stderr().is_terminal() {
        Arc::new(BarReporter::stderr())
    } else {
        Arc::new(LineReporter::new(Box::new(std::io::stderr())))
    };
    reporter.plan(&plan);
    if plan.has_state_lost() {
        return Err(state_lost_error(
            &plan,
            &args.config.cluster_file,
            "Nothing was done.",
        ));
    }
    if plan.has_errors() {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: "error: the plan refuses some nodes (see `error` rows); nothing was done"
                .into(),
        }));
    }

    // Publish even when nothing changes: the boot server should always serve the current
    // configs (a held node that PXE-boots by accident must get what the cluster file says).
    let data_dir = args.state.data_dir(cluster);
    let boot_state = args.state.boot_state_dir(cluster);
    if plan.has_changes() && !args.yes {
        confirm(&plan)?;
    }
    // One generation back, for an embedded store damaged later (docs/reconciler.md,
    // "Backups"); a database has its own.
    session.keep_previous().map_err(store_error)?;
    let store: Arc<dyn StateStore> = session.write().map_err(store_error)?;
    let manifest = publish_data(&prepared.rendered, &data_dir)?;
    let records = store.nodes().map_err(store_error)?;
    let mut published = Published::load(&cluster.asset_dir);
    published.update(&manifest, &records)?;
    std::fs::create_dir_all(&boot_state).with_context(|| {
        format!(
            "creating the boot server's state directory {}",
            boot_state.display()
        )
    })?;
    let netboot = if cluster.netboot_gating {
        let run_started = roundhouse_store::now();
        let mut decisions = initial_netboot(&records, &prepared.names());
        // Machines that never ran an installation get the installer from the start: one
        // publication instead of one per node (each waits for the boot server to reload). A
        // machine with an installation is switched only right before its own power action,
        // so one that is never started (--max-failures) cannot reinstall itself on a reboot.
        for item in &plan.items {
            if item.action == roundhouse_plan::Action::Provision && item.old_digest.is_none() {
                decisions.insert(item.mac, Decision::pending(&item.name, run_started));
            }
        }
        let w = NetbootWriter::new(&boot_state, decisions, run_started);
        w.write()?;
        Some(Arc::new(w))
    } else {
        None
    };
    let published_at = std::time::SystemTime::now();
    let boot = roundhouse_apply::bootserver::BootProbe::new(&cluster.boot_server_http);
    if plan.has_changes()
        && let Some(probe) = &boot
    {
        // Wait for the boot server to serve the new configs before any machine boots.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if let Err(e) =
            runtime.block_on(probe.wait_loaded_after(published_at, Duration::from_secs(30)))
        {
            eprintln!("warning: {e}");
        }
    }
    if !plan.has_changes() {
        if !json {
            eprintln!(
                "nothing to do; published {} node configs to {}",
                manifest.nodes.len(),
                data_dir.display()
            );
        }
        return Ok(());
    }

    let shas: BTreeMap<&str, &str> = manifest
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.final_ignition_sha256.as_str()))
        .collect();
    let mut specs = BTreeMap::new();
    for (node, rendered) in cluster.nodes.iter().zip(&prepared.rendered.nodes) {
        let host_keys = prepared
            .keys
            .pinned_host_keys(&node.name)
            .with_context(|| format!("node {}: pinned host keys", node.name))?;
        let power: Arc<dyn PowerDriver> = match &node.power {
            Some(Power::Command {
                command,
                timeout_secs,
            }) => Arc::new(CommandDriver {
                command: command.clone(),
                timeout: Duration::from_secs(*timeout_secs),
            }),
            // The password is read here: a missing one stops the apply before any machine
            // is touched.
            Some(p @ (Power::Ipmi { .. } | Power::Redfish { .. })) => {
                driver_for(&node.name, p, Default::default())
                    .with_context(|| format!("node {}: power driver", node.name))?
            }
            None => Arc::new(CommandDriver {
                command: cluster.pxe_command.clone(),
                timeout: Duration::from_secs(args.power_timeout),
            }),
        };
        specs.insert(
            node.name.clone(),
            NodeSpec {
                name: node.name.clone(),
                mac: node.mac,
                role: node.role,
                domain: node.domain.clone(),
                ssh_port: node.ssh_port,
                digest: rendered.digest.as_str().to_string(),
                final_sha256: shas
                    .get(node.name.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_string(),
                kernel_args: node.effective_kernel_args(cluster).to_vec(),
                linux_append: roundhouse_render::linux_append(cluster, node),
                linux_console: roundhouse_render::linux_console(cluster),
                host_keys,
                power,
                hooks: cluster
                    .hooks_for(node.role)
                    .map(|h| HookSpec::new(h.clone()))
                    .collect(),
            },
        );
    }

    let progress = progress::sink(Arc::clone(&reporter));
    let executor = Arc::new(Executor {
        store: Arc::clone(&store),
        journal: Arc::new(JournalReader::new(&boot_state)),
        netboot,
        operator_key: prepared.keys.operator.private(),
        published,
        // Absolute: the power command may change directory before using it.
        asset_dir: std::path::absolute(&cluster.asset_dir)
            .unwrap_or_else(|_| cluster.asset_dir.clone()),
        settings,
        progress,
        boot,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(executor.run(&plan, Arc::new(specs)));

    reporter.finish(&report);
    if report.failed() + report.not_started() > 0 {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: String::new(),
        }));
    }
    Ok(())
}

fn confirm(plan: &roundhouse_plan::Plan) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(anyhow::Error::new(Exit {
            code: exit::USAGE,
            message: "error: apply asks for confirmation but standard input is not a terminal; pass --yes to apply without asking".into(),
        }));
    }
    eprint!(
        "\n{} node(s) will be changed. Type `yes` to apply: ",
        plan.summary.changes()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        return Err(anyhow::Error::new(Exit {
            code: exit::FAILURE,
            message: "apply cancelled; nothing was changed".into(),
        }));
    }
    Ok(())
}
