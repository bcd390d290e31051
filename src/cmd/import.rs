//! `roundhouse import-lokomotive`: adopt a cluster Lokomotive provisioned.

use std::path::PathBuf;

use roundhouse_store::{import_lokomotive, now};

use crate::cmd::common::ConfigArgs;

/// Adopt nodes that Lokomotive installed, without reinstalling them.
///
/// Reads Lokomotive's flag files, ASSET_DIR/cluster-assets/<MAC> (each holds the node's
/// domain), and records each as installed by PXE with an unknown config digest. The next plan
/// re-provisions them in place where the role's policy allows (to reach a known config) and
/// holds them otherwise. MACs that already have state are left alone.
///
/// Before the first in-place re-provision of an adopted node, roundhouse must be able to log
/// in: add <asset_dir>/keys/operator_ed25519.pub to core's authorized keys on it, and put its
/// current host key (`ssh-keyscan`, verified) in
/// <asset_dir>/keys/hosts/<node>/previous_host_key.pub. See docs/reconciler.md.
///
/// Example:
///   roundhouse import-lokomotive cluster.hcl ~/lokoctl-assets/mycluster
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Lokomotive's asset directory (the one holding cluster-assets/).
    #[arg(value_name = "ASSET_DIR")]
    pub lokomotive_asset_dir: PathBuf,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let cluster = args.config.load()?;
    let session = crate::cmd::common::begin_write(&cluster, "import-lokomotive")?;
    let store = session.write().map_err(crate::cmd::plan::store_error)?;
    let report = import_lokomotive(store.as_ref(), &args.lokomotive_asset_dir, now())?;
    let names: std::collections::BTreeMap<_, _> = cluster
        .nodes
        .iter()
        .map(|n| (n.mac, n.name.as_str()))
        .collect();
    for (mac, domain) in &report.adopted {
        match names.get(mac) {
            Some(name) => println!("adopted {name} ({mac}, domain {domain})"),
            None => println!(
                "adopted {mac} (domain {domain}); no node in the cluster file has this MAC"
            ),
        }
    }
    for (path, why) in &report.skipped {
        println!("skipped {}: {why}", path.display());
    }
    println!(
        "{} adopted, {} skipped, {} other entries ignored",
        report.adopted.len(),
        report.skipped.len(),
        report.ignored
    );
    Ok(())
}
