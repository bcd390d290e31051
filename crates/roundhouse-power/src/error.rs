//! Errors: each names the BMC (or command) and says what it answered.

use std::time::Duration;

/// Why a power or boot-device call failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// No (usable) answer in time, after the allowed retries.
    #[error("{bmc}: no answer to {what} within {after:?} ({attempts} attempt(s)){detail}")]
    Timeout {
        /// Which BMC.
        bmc: String,
        /// Which request.
        what: String,
        /// Total time spent.
        after: Duration,
        /// How many times it was sent.
        attempts: u32,
        /// `; last: ...` or empty: the last thing seen that was not an answer.
        detail: String,
    },
    /// The BMC refused the credentials. Never retried.
    #[error("{bmc}: authentication failed for user {user:?}: {detail}")]
    Auth {
        /// Which BMC.
        bmc: String,
        /// The user name (never the password).
        user: String,
        /// What the BMC answered.
        detail: String,
    },
    /// An IPMI command answered with a non-zero completion code.
    #[error("{bmc}: {what} was rejected with completion code {code:#04x} ({meaning})")]
    Completion {
        /// Which BMC.
        bmc: String,
        /// Which command.
        what: String,
        /// The completion code.
        code: u8,
        /// Its meaning.
        meaning: &'static str,
    },
    /// Establishing an RMCP+ session failed with a status code other than bad credentials.
    #[error("{bmc}: opening an RMCP+ session failed: {detail}")]
    Session {
        /// Which BMC.
        bmc: String,
        /// What it answered.
        detail: String,
        /// The BMC was only out of resources (sessions); worth another try.
        transient: bool,
    },
    /// A Redfish request answered with an HTTP error.
    #[error("{bmc}: {what} answered HTTP {status}: {body}")]
    Http {
        /// Which BMC.
        bmc: String,
        /// Which request.
        what: String,
        /// The status code.
        status: u16,
        /// The start of the body (Redfish error messages live there).
        body: String,
    },
    /// The BMC answered something this client cannot use.
    #[error("{bmc}: {detail}")]
    Protocol {
        /// Which BMC.
        bmc: String,
        /// What was wrong.
        detail: String,
    },
    /// Network, file or process trouble on this side.
    #[error("{bmc}: {what}: {source}")]
    Io {
        /// Which BMC.
        bmc: String,
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The password could not be read (the message names the variable or file, never a value).
    #[error("{0}")]
    Secret(String),
    /// The power state did not reach the wanted state before the deadline.
    #[error("{bmc}: power state still {seen} {after:?} after asking for {wanted}")]
    NotReached {
        /// Which BMC.
        bmc: String,
        /// What was asked for.
        wanted: String,
        /// What was last seen.
        seen: String,
        /// How long it was polled.
        after: Duration,
    },
    /// The driver cannot do this.
    #[error("{driver}: {what} is not something this driver can do")]
    Unsupported {
        /// Which driver.
        driver: String,
        /// The action.
        what: String,
    },
    /// A `command` driver's command failed.
    #[error("{0}")]
    Command(String),
}

impl PowerError {
    /// Worth another try: timeouts, network trouble and busy BMCs. Never credentials or a
    /// rejected parameter, so a wrong password causes no retry storm (BMCs lock accounts out).
    pub fn is_transient(&self) -> bool {
        match self {
            PowerError::Timeout { .. } | PowerError::Io { .. } => true,
            PowerError::Completion { code, .. } => matches!(code, 0xC0 | 0xC3 | 0xD2),
            PowerError::Http { status, .. } => *status >= 500 || *status == 429,
            PowerError::Session { transient, .. } => *transient,
            _ => false,
        }
    }
}
