//! `roundhouse`: provision and re-provision Flatcar bare-metal fleets.
//!
//! This binary is glue: it parses the command line, calls the library crates and chooses the
//! exit code. See docs/ARCHITECTURE.md.

mod cmd;
mod exit;

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
    Render(cmd::render::RenderArgs),
    Plan(cmd::plan::PlanArgs),
    Apply(cmd::apply::ApplyArgs),
    Status(cmd::status::StatusArgs),
    Power(cmd::power::PowerArgs),
    Recreate(cmd::recreate::RecreateArgs),
    ImportLokomotive(cmd::import::ImportArgs),
    Serve(cmd::serve::ServeArgs),
    State(cmd::state::StateArgs),
    Butane(cmd::butane::ButaneArgs),
    Lab(cmd::lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Render(args) => cmd::render::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Power(args) => cmd::power::run(args),
        Command::Recreate(args) => cmd::recreate::run(args),
        Command::ImportLokomotive(args) => cmd::import::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::State(args) => cmd::state::run(args),
        Command::Butane(args) => cmd::butane::run(args),
        Command::Lab(args) => cmd::lab::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(e),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
