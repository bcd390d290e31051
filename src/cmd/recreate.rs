//! `roundhouse recreate NODE…`: force a PXE install of nodes on the next apply.

use roundhouse_config::Role;
use roundhouse_store::{Change, now};

use crate::cmd::common::ConfigArgs;
use crate::exit::{self, Exit};

/// Mark nodes for re-creation: the next apply PXE-installs them (wiping their disks).
///
/// Replaces Lokomotive's "delete the flag file and make a no-op edit". The request is
/// recorded in the state store and shown by `plan`; it is cleared when the PXE install is
/// confirmed. Controllers need --allow-controllers (a re-install wipes their etcd member),
/// and `plan` warns when re-creating controllers would leave fewer than a majority untouched.
///
/// Examples:
///   roundhouse recreate cluster.hcl worker-2 worker-3
///   roundhouse recreate cluster.hcl controller-1 --allow-controllers
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RecreateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Nodes to re-create, by name.
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Allow re-creating controllers.
    #[arg(long)]
    pub allow_controllers: bool,
    /// Withdraw pending re-creation requests instead.
    #[arg(long)]
    pub cancel: bool,
}

pub fn run(args: RecreateArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let mut targets = Vec::new();
    for name in &args.nodes {
        let Some(node) = cluster.nodes.iter().find(|n| &n.name == name) else {
            let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(Exit::invalid(format!(
                "error: no node named {name:?} in {} (nodes: {})",
                cluster.source.display(),
                names.join(", ")
            )));
        };
        if node.role == Role::Controller && !args.allow_controllers && !args.cancel {
            return Err(anyhow::Error::new(Exit {
                code: exit::USAGE,
                message: format!(
                    "error: {name} is a controller: re-creating it wipes its etcd member; pass --allow-controllers if you mean it"
                ),
            }));
        }
        targets.push(node);
    }
    let session = crate::cmd::common::begin_write(&cluster, "recreate")?;
    let store = session.write().map_err(crate::cmd::plan::store_error)?;
    for node in targets {
        let change = if args.cancel {
            Change::CancelRecreate
        } else {
            Change::RequestRecreate {
                allow_controller: args.allow_controllers,
            }
        };
        store.apply(&node.mac, change, now())?;
        println!(
            "{}: {}",
            node.name,
            if args.cancel {
                "re-creation request withdrawn"
            } else {
                "will be PXE-installed on the next apply"
            }
        );
    }
    Ok(())
}
