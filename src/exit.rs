//! Exit codes, chosen in one place (documented in README "Exit codes").

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// A runtime failure: I/O, network, a machine that did not come back.
pub const FAILURE: u8 = 1;
/// `plan --detailed-exitcode`: success, and there are changes to apply (Terraform's meaning).
pub const CHANGES: u8 = 2;
/// The plan has `state-lost` rows: nodes without a state record show evidence that they were
/// installed. `apply` refuses such a plan; `roundhouse state recover` rebuilds the records.
pub const STATE_LOST: u8 = 3;
/// The command line was wrong (BSD `EX_USAGE`).
pub const USAGE: u8 = 64;
/// The cluster file, a snippet or other input is invalid; nothing was written (`EX_DATAERR`).
pub const INVALID_INPUT: u8 = 65;
/// The state store cannot be read (emptied, truncated, damaged, not a store, a schema this
/// build does not read, or a PostgreSQL store that cannot be reached); nothing was written
/// (`EX_IOERR`).
pub const STATE_UNREADABLE: u8 = 74;
// 69 (`EX_UNAVAILABLE`, the lab's missing prerequisites) is `roundhouse_lab::EXIT_PREREQUISITES`,
// carried by `LabError::exit_code`.

/// An error that knows its exit code. Anything else that reaches `main` exits with [`FAILURE`].
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    /// Already-formatted message for stderr; empty when it was printed already.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// Invalid input, with diagnostics as the message.
    pub fn invalid(message: impl ToString) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code: INVALID_INPUT,
            message: message.to_string(),
        })
    }
}

/// Prints `err` and maps it to an exit code.
pub fn report(err: anyhow::Error) -> ExitCode {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        if !exit.message.is_empty() {
            eprintln!("{}", exit.message);
        }
        return ExitCode::from(exit.code);
    }
    // Broken pipe (e.g. `roundhouse render ... | head`) is not an error worth reporting.
    if err
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::from(OK);
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  -> {cause}");
    }
    ExitCode::from(FAILURE)
}
