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
    /// Print diagnostics as one line each (`error at $.path, line L col C: …`) instead of
    /// with a source excerpt.
    #[arg(long)]
    pub raw_errors: bool,
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
    let file_name = args
        .input
        .as_ref()
        .map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
    let print_report = |report: &butane::Report| {
        if report.entries.is_empty() {
            return;
        }
        if args.raw_errors {
            eprint!("{report}");
        } else {
            eprintln!("{}", report.format_pretty(&file_name, &input, false));
        }
    };
    let translation = match butane::translate(&input, &options) {
        Ok(t) => t,
        Err(e) => {
            // Type errors carry their lines in their message already.
            if let Some(report) = e.report()
                && !matches!(e, butane::Error::Types { .. })
            {
                print_report(report);
            }
            // Butane prints the strict failure bare, everything else with this prefix.
            return Err(fail(match e {
                butane::Error::Strict(_) => e.to_string(),
                _ => format!("Error translating config: {e}"),
            }));
        }
    };
    print_report(&translation.report);
    if args.check {
        return Ok(());
    }
    let mut json = butane::to_json(&translation.config, args.pretty);
    if !json.ends_with('\n') {
        json.push('\n');
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, json).map_err(|e| fail(format!("Failed to write output: {e}")))?
        }
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
