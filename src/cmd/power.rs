//! `roundhouse power`: one node's power and boot device, by hand, through its `power` block.

use std::time::Duration;

use anyhow::{Context, bail};
use roundhouse_config::{PersistentBoot, Power};
use roundhouse_power::command::CommandTarget;
use roundhouse_power::{Bmc, Driver, Limits, PowerAction, boot_from_disk, pxe_boot};
use serde::Serialize;

use crate::cmd::common::{ConfigArgs, OutputFormat};
use crate::exit::{Exit, USAGE};

/// Switch a node's power or choose its boot device through its BMC.
///
/// Uses the node's `power` block (IPMI, Redfish or a command; see docs/power.md). The password
/// is read from the variable or file the block names and is never printed.
///
/// Actions:
///   status  power state and the boot setting the BMC holds
///   on, off, cycle
///   pxe     what `apply` does to install: next boot from the network (every boot with
///           persistent_boot = "network"), then power cycle, or power on when off
///   disk    what `apply` does after an install: disk as the persistent boot device
///
/// A node without a `power` block uses the cluster's `pxe_command`, which can only `pxe`.
///
/// Examples:
///   roundhouse power cluster.hcl worker-3 status
///   roundhouse power cluster.hcl worker-3 pxe
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PowerArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The node's name.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// What to do.
    #[arg(value_enum, value_name = "ACTION")]
    pub action: Action,
    /// Seconds to wait for one answer from the BMC.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub request_timeout: u64,
    /// Extra tries of a request that got no answer.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// Seconds a power change may take to show in the power state.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub settle: u64,
    /// Seconds the cluster's `pxe_command` may run (a `power` block's `timeout_secs` wins).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub command_timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// A power action from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Status,
    On,
    Off,
    Cycle,
    Pxe,
    Disk,
}

#[derive(Debug, Serialize)]
struct Report {
    node: String,
    bmc: String,
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    power: Option<roundhouse_power::PowerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot: Option<roundhouse_power::BootSetting>,
    steps: Vec<String>,
}

pub fn run(args: PowerArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let Some(node) = cluster.nodes.iter().find(|n| n.name == args.node) else {
        let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(anyhow::Error::new(Exit {
            code: USAGE,
            message: format!(
                "error: no node {:?} in {}; nodes: {}",
                args.node,
                args.config.cluster_file.display(),
                names.join(", ")
            ),
        }));
    };
    let limits = Limits {
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        retries: args.retries,
        settle: Duration::from_secs(args.settle),
        poll: Duration::from_secs(1),
    };
    let power = node.power.clone().unwrap_or_else(|| Power::Command {
        command: cluster.pxe_command.clone(),
        timeout_secs: args.command_timeout,
    });
    let driver = roundhouse_power::from_config(&node.name, &power, limits)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = Report {
        node: node.name.clone(),
        bmc: String::new(),
        action: format!("{:?}", args.action).to_lowercase(),
        power: None,
        boot: None,
        steps: Vec::new(),
    };
    match driver {
        Driver::Command(cmd) => {
            report.bmc = "command".into();
            if args.action != Action::Pxe {
                bail!(
                    "node {}: its power driver is a command, which can only `pxe` (it cannot {})",
                    node.name,
                    report.action
                );
            }
            let target = CommandTarget {
                name: node.name.clone(),
                mac: node.mac.to_string(),
                domain: node.domain.clone(),
                asset_dir: std::path::absolute(&cluster.asset_dir)
                    .unwrap_or_else(|_| cluster.asset_dir.clone()),
            };
            let out = runtime.block_on(cmd.run(&target))?;
            report.steps.extend(out.lines().map(str::to_string));
        }
        Driver::Bmc {
            bmc,
            efi,
            persistent_boot,
        } => {
            report.bmc = bmc.name().to_string();
            runtime.block_on(act(
                bmc.as_ref(),
                args.action,
                efi,
                persistent_boot,
                &mut report,
            ))?;
        }
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&report)?),
        OutputFormat::Text => {
            if let Some(p) = report.power {
                println!("power: {p}");
            }
            if let Some(b) = &report.boot {
                println!("boot:  {b}");
            }
            for s in &report.steps {
                println!("{s}");
            }
        }
    }
    Ok(())
}

async fn act(
    bmc: &dyn Bmc,
    action: Action,
    efi: bool,
    policy: PersistentBoot,
    report: &mut Report,
) -> anyhow::Result<()> {
    match action {
        Action::Status => {
            report.power = Some(bmc.power_state().await?);
            report.boot = Some(bmc.boot_setting().await?);
        }
        Action::On | Action::Off | Action::Cycle => {
            let a = match action {
                Action::On => PowerAction::On,
                Action::Off => PowerAction::Off,
                _ => PowerAction::Cycle,
            };
            bmc.power(a).await?;
            report.steps.push(format!("{}: {a}: done", bmc.name()));
            report.power = Some(bmc.power_state().await?);
        }
        Action::Pxe => {
            let out = pxe_boot(bmc, efi, policy == PersistentBoot::Network).await?;
            report.steps = out.steps;
        }
        Action::Disk => {
            let out = boot_from_disk(bmc, efi).await?;
            report.steps = out.steps;
        }
    }
    Ok(())
}
