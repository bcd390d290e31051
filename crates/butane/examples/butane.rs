//! A minimal `butane` look-alike over this crate: `butane [--pretty] [--strict]
//! [--files-dir DIR] [FILE]`, reading stdin without FILE. Useful to compare with CoreOS's CLI.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = butane::Options::default();
    let mut pretty = false;
    let mut input = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-p" | "--pretty" => pretty = true,
            "-s" | "--strict" => opts.strict = true,
            "-d" | "--files-dir" => opts.files_dir = args.next().map(Into::into),
            _ => input = Some(a),
        }
    }
    let mut src = String::new();
    let read = match &input {
        Some(f) => std::fs::read_to_string(f).map(|s| src = s),
        None => std::io::stdin().read_to_string(&mut src).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("failed to read input: {e}");
        return ExitCode::FAILURE;
    }
    match butane::translate(&src, &opts) {
        Ok(t) => {
            eprint!("{}", t.report);
            println!("{}", butane::to_json(&t.config, pretty));
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(r) = e.report()
                && !matches!(e, butane::Error::Types { .. })
            {
                eprint!("{r}");
            }
            // Butane prints the strict failure bare, everything else with this prefix.
            if matches!(e, butane::Error::Strict(_)) {
                eprintln!("{e}");
            } else {
                eprintln!("Error translating config: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
