//! `roundhouse butane`: a drop-in for CoreOS's `butane` CLI on the flatcar variant.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::exit::{Exit, FAILURE};

/// Translate a Butane config (variant flatcar 1.0.0 or 1.1.0) to Ignition JSON.
///
/// Behaves like CoreOS's `butane` command: reads FILE or stdin, writes Ignition JSON to stdout
/// or --output, prints warnings and errors with line and column to stderr, exits 1 on failure.
///
/// Example:
///   roundhouse butane --pretty --files-dir snippets/ < node.bu > node.ign
#[derive(Debug, clap::Args)]
pub struct ButaneArgs {
    /// Butane config to translate [default: stdin].
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Indent the JSON output.
    #[arg(short, long)]
    pub pretty: bool,
    /// Fail on any warning.
    #[arg(short, long)]
    pub strict: bool,
    /// Directory for `local:` file contents and trees.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
    /// Write the output here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only check the config; write nothing.
    #[arg(short, long)]
    pub check: bool,
}

pub fn run(args: ButaneArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    let read = match &args.input {
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut input)),
        None => std::io::stdin().read_to_string(&mut input),
    };
    if let Err(e) = read {
        return Err(fail(format!("Error reading input: {e}")));
    }
    let options = butane::Options {
        files_dir: args.files_dir.clone(),
        strict: args.strict,
    };
    let translation = match butane::translate(&input, &options) {
        Ok(t) => t,
        Err(e) => {
            if let Some(report) = e.report() {
                eprint!("{report}");
            }
            return Err(fail(format!("Error translating config: {e}")));
        }
    };
    if !translation.report.entries.is_empty() {
        eprint!("{}", translation.report);
    }
    if args.check {
        return Ok(());
    }
    let mut json = butane::to_json(&translation.config, args.pretty);
    if !json.ends_with('\n') {
        json.push('\n');
    }
    match &args.output {
        Some(path) => std::fs::write(path, json)
            .map_err(|e| fail(format!("Failed to write output: {e}")))?,
        None => std::io::stdout().lock().write_all(json.as_bytes())?,
    }
    Ok(())
}

fn fail(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: FAILURE,
        message,
    })
}
