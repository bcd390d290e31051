//! `roundhouse serve`: the boot server.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve iPXE scripts, GRUB configs, Ignition configs and assets to machines.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub address: SocketAddr,
    /// matchbox data directory (profiles/, groups/, ignition/, generic/).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Directory served under /assets/.
    #[arg(long)]
    pub assets_path: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("roundhouse serve is not implemented yet")
}
