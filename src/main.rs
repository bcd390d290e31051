//! `roundhouse`: provision and re-provision Flatcar bare-metal fleets.
//!
//! This binary is glue: it parses the command line, calls the library crates and chooses the
//! exit code. See docs/ARCHITECTURE.md.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provision and re-provision fleets of bare-metal Flatcar Container Linux machines.
///
/// roundhouse reads a cluster file (HCL) describing your machines, renders each node's Ignition
/// config and boot profile, serves them to the machines over HTTP (matchbox-compatible), and
/// installs or re-provisions the machines safely.
///
/// Start with:
///   roundhouse render examples/mercury/cluster.hcl --out out/mercury
#[derive(Debug, Parser)]
#[command(name = "roundhouse", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
