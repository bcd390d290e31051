//! `roundhouse render`: cluster file → matchbox data directory, or one rendered item.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use roundhouse_render::Item;

use crate::cmd::common::{ConfigArgs, OutputFormat};
use crate::exit::Exit;

/// Render every node's Ignition configs, boot profiles and groups.
///
/// Writes a matchbox data directory (profiles/, groups/, ignition/ and render-manifest.json)
/// that `roundhouse serve` or matchbox itself serves unchanged. The directory is replaced as a
/// whole; a directory that roundhouse did not write is never overwritten. A boot-server state
/// directory inside it (<DIR>/roundhouse: netboot.json and the fetch journal, the default
/// `serve --state-path`) is kept: moved into the new tree. Anything else render did not write
/// makes it refuse, with nothing written. With --node, prints one rendered item instead and
/// writes nothing.
///
/// The Ignition configs hold each node's SSH host private key: ignition/ is created 0700 and
/// its files 0600 whatever the umask (run `roundhouse serve` as the same user).
///
/// Each node's final config includes the SSH host key roundhouse manages for it, and user
/// core's keys include roundhouse's operator key; both are generated under <asset_dir>/keys
/// on first use (also with --node) and reused after, so this output equals what `apply`
/// publishes.
///
/// Nothing is written when the cluster file or a snippet is invalid: the errors name file,
/// line and column, and the exit code is 65.
///
/// Examples:
///   roundhouse render examples/mercury/cluster.hcl --out out/mercury
///   roundhouse render examples/mercury/cluster.hcl --node worker-1 --what installer
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output directory [default: <asset_dir>/matchbox].
    #[arg(long, value_name = "DIR", conflicts_with = "node")]
    pub out: Option<PathBuf>,
    /// Print one node's rendered item to stdout instead of writing a directory.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Which item --node prints: the installed OS's Ignition config, the PXE installer's
    /// Ignition config, or the boot profiles and groups.
    #[arg(long, value_enum, default_value = "final", requires = "node")]
    pub what: What,
    /// Treat Butane warnings in snippets as errors.
    #[arg(long)]
    pub strict: bool,
    /// Directory of the SSH keys roundhouse manages. [default: <asset_dir>/keys]
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum What {
    Final,
    Installer,
    Profile,
}

pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    let prepared = crate::cmd::plan::prepare(&args.config, args.keys_dir.clone(), args.strict)?;
    let (cluster, rendered) = (prepared.cluster, prepared.rendered);

    if let Some(name) = &args.node {
        let Some(node) = rendered.nodes.iter().find(|n| &n.name == name) else {
            let names: Vec<&str> = rendered.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(Exit::invalid(format!(
                "error: no node named {name:?} in {} (nodes: {})",
                cluster.source.display(),
                names.join(", ")
            )));
        };
        let item = match args.what {
            What::Final => Item::Final,
            What::Installer => Item::Installer,
            What::Profile => Item::Profile,
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &node.item(item))?;
        writeln!(out)?;
        return Ok(());
    }

    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| cluster.asset_dir.join("matchbox"));
    let manifest = roundhouse_render::write_matchbox_dir(&rendered, &out_dir)
        .with_context(|| format!("writing matchbox data directory {}", out_dir.display()))?;

    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &manifest)?;
            writeln!(stdout)?;
        }
        OutputFormat::Text => {
            writeln!(stdout, "{:<20} {:<10} {:<17} DIGEST", "NODE", "ROLE", "MAC")?;
            for node in &manifest.nodes {
                writeln!(
                    stdout,
                    "{:<20} {:<10} {:<17} {}",
                    node.name,
                    node.role,
                    node.mac,
                    &node.digest.as_str()[7..19]
                )?;
            }
            writeln!(
                stdout,
                "\nrendered {} nodes into {} (profiles/, groups/, ignition/)",
                manifest.nodes.len(),
                out_dir.display()
            )?;
            writeln!(
                stdout,
                "serve it with: roundhouse serve --data-path {}",
                out_dir.display()
            )?;
        }
    }
    Ok(())
}
