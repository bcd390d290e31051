//! Why a lab command failed.

use std::path::PathBuf;

/// A lab command failed. [`LabError::exit_code`] maps it to the process exit code.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The host lacks a program or a privilege the simulator needs. The message says what is
    /// missing and how to get it.
    #[error("this machine cannot run the lab yet:\n{0}")]
    Prerequisites(String),
    /// A file or directory of the lab.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// There is no lab in the directory (no `lab.json`).
    #[error("no lab in {}: run `roundhouse lab up --dir {}` first", .0.display(), .0.display())]
    NoLab(PathBuf),
    /// The lab's processes are not running.
    #[error("the lab in {} is not running: run `roundhouse lab up --dir {}`", .0.display(), .0.display())]
    NotRunning(PathBuf),
    /// The lab's processes are running already.
    #[error("the lab in {} is running already (pids {pids}); `roundhouse lab down --dir {}` stops it", .dir.display(), .dir.display())]
    Running {
        /// The lab directory.
        dir: PathBuf,
        /// Its running pids.
        pids: String,
    },
    /// A background process did not start or died.
    #[error("{what}: {why}{}", log_tail(.log))]
    Process {
        /// Which process.
        what: String,
        /// What went wrong.
        why: String,
        /// Its log file, whose tail is shown.
        log: Option<PathBuf>,
    },
    /// The simulator's control API or a BMC answered unexpectedly.
    #[error("{0}")]
    Http(String),
    /// An unknown node name.
    #[error("no machine named {name:?} in this lab (machines: {known})")]
    UnknownNode {
        /// The name given.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The demo found something that is not as it should be.
    #[error("demo failed: {0}")]
    Demo(String),
    /// Mounts under the lab directory could not be removed.
    #[error("mounts left under the lab directory: {0}")]
    Mounts(String),
    /// Anything else (a refused argument, an unreadable lab file).
    #[error("{0}")]
    Other(String),
}

/// Exit code for missing prerequisites: sysexits' `EX_UNAVAILABLE` ("a support program or
/// file does not exist"), so scripts can tell "install something" from "it broke".
pub const EXIT_PREREQUISITES: u8 = 69;

impl LabError {
    /// The process exit code for this error: [`EXIT_PREREQUISITES`] when something must be
    /// installed or allowed first, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            LabError::Prerequisites(_) => EXIT_PREREQUISITES,
            _ => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }
}

/// The last lines of a log file, indented, for error messages.
fn log_tail(log: &Option<PathBuf>) -> String {
    let Some(path) = log else {
        return String::new();
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    if tail.is_empty() {
        return format!(" (log {} is empty)", path.display());
    }
    format!(
        "\n  last lines of {}:\n{}",
        path.display(),
        tail.iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}
