//! `roundhouse-lab-guest`: a multi-call binary for the lab image.
//!
//! - `roundhouse-lab-guest systemd-dbus [SOCKET]` serves the systemd stand-in (default
//!   `/run/systemd/private`) until killed.
//! - Called as `sudo` (a setuid-root copy or link named `sudo`), or as
//!   `roundhouse-lab-guest sudo …`: runs the command as root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use roundhouse_lab_guest::{sudo, systemd};

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let called = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    args.remove(0);
    let (mode, rest) = if called == "sudo" {
        ("sudo".to_string(), args)
    } else {
        match args.split_first() {
            Some((m, rest)) => (m.to_string_lossy().into_owned(), rest.to_vec()),
            None => (String::new(), Vec::new()),
        }
    };
    match mode.as_str() {
        "sudo" => {
            let err = sudo::exec(&rest);
            eprintln!("sudo: {err}");
            ExitCode::from(1)
        }
        "systemd-dbus" => {
            let socket = rest
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/systemd/private"));
            let options = systemd::Options {
                socket,
                device_timeout: Duration::from_secs(90),
                root: PathBuf::from("/"),
            };
            match systemd::serve(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("systemd stand-in: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!("usage: roundhouse-lab-guest systemd-dbus [SOCKET] | sudo COMMAND [ARG]...");
            ExitCode::from(64)
        }
    }
}
