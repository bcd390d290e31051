//! The SSH client roundhouse uses to re-provision nodes in place and to wait for them.
//!
//! What Lokomotive did with `ssh -o StrictHostKeyChecking=no` and retry loops, done safely:
//! - **Host keys are pinned.** A connection succeeds only if the server presents one of the keys
//!   the caller expects (roundhouse generates each node's host key and puts it in its Ignition);
//!   anything else is [`SshError::HostKeyMismatch`], never "accept and continue".
//! - **Every network step has a deadline**: connecting, the handshake and authentication, and
//!   each command. A silent host costs at most the connect timeout, not minutes.
//! - **A reboot command that drops the connection succeeded.** `systemctl reboot` often kills the
//!   session before it can report an exit status; [`Session::exec_reboot`] treats that as the
//!   success it is.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client;
pub use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// DNS name or IP address.
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Deadlines for the steps of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, SSH handshake and authentication together.
    pub connect: Duration,
    /// One command, from sending it to its exit status.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(60),
        }
    }
}

/// Why an SSH operation failed. Each variant says which host, so a message in a fleet-wide log
/// stands on its own.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: no answer within {after:?} while {step}")]
    Timeout {
        target: String,
        step: &'static str,
        after: Duration,
    },
    #[error(
        "{target}: host key mismatch: the server presented {presented}, expected {expected}; \
         refusing to connect (the machine was reinstalled outside roundhouse, or this is not \
         the machine you think it is)"
    )]
    HostKeyMismatch {
        target: String,
        presented: String,
        expected: String,
    },
    #[error("{target}: public key authentication as {user:?} was rejected")]
    AuthRejected { target: String, user: String },
    #[error("{target}: SSH protocol error: {source}")]
    Protocol {
        target: String,
        #[source]
        source: russh::Error,
    },
    #[error("{target}: the connection closed before {command:?} reported an exit status")]
    Dropped { target: String, command: String },
}

impl SshError {
    /// Whether trying again later may succeed (the host is down or rebooting), as opposed to a
    /// failure that retrying cannot fix (wrong host key, rejected credentials).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::Timeout { .. }
                | SshError::Dropped { .. }
                | SshError::Protocol { .. }
        )
    }
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub exit_status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.exit_status == 0
    }
}

/// What happened to a reboot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reboot {
    /// The command exited with this output before the connection went away (exit status 0
    /// means the reboot was scheduled).
    Exited(Output),
    /// The connection dropped while the command ran: the machine is going down.
    ConnectionDropped,
}

/// The host-key check: accepts exactly the pinned keys and remembers what the server showed,
/// so a mismatch can be reported with both fingerprints.
struct PinnedHostKey {
    pinned: Arc<Vec<PublicKey>>,
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            // Host certificates are not part of roundhouse's trust model.
            return Ok(false);
        };
        *self.presented.lock().expect("host key slot") = Some(key.clone());
        Ok(self.pinned.iter().any(|k| k.key_data() == key.key_data()))
    }
}

/// Records the host key a server presents and accepts it, for [`host_key`] only (no
/// authentication follows, so accepting any key exposes nothing).
struct Observe {
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Observe {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            return Ok(false);
        };
        *self.presented.lock().expect("host key slot") = Some(key.clone());
        Ok(true)
    }
}

/// The host key the SSH server at `host:port` presents, without logging in: connects (within
/// `connect`), runs the key exchange, disconnects, all within `timeout`. A probe, for evidence
/// that a machine runs an OS (and which host key it has); never a basis for trusting the
/// machine.
pub async fn host_key(
    host: &str,
    port: u16,
    connect: Duration,
    timeout: Duration,
) -> Result<PublicKey, SshError> {
    let name = format!("{host}:{port}");
    let presented = Arc::new(Mutex::new(None));
    let handler = Observe {
        presented: Arc::clone(&presented),
    };
    let attempt = async {
        // An address needs no resolver: going through getaddrinfo for each of thousands of
        // literal addresses cost a blocking-pool round trip and a netlink query apiece.
        let dial = async {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => tokio::net::TcpStream::connect((ip, port)).await,
                Err(_) => tokio::net::TcpStream::connect((host, port)).await,
            }
        };
        let stream = tokio::time::timeout(connect, dial)
            .await
            .map_err(|_| SshError::Timeout {
                target: name.clone(),
                step: "connecting",
                after: connect,
            })?
            .map_err(|source| SshError::Connect {
                target: name.clone(),
                source,
            })?;
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(timeout),
            ..Default::default()
        });
        let handle = client::connect_stream(config, stream, handler)
            .await
            .map_err(|source| SshError::Protocol {
                target: name.clone(),
                source,
            })?;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        Ok(())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| SshError::Timeout {
            target: name.clone(),
            step: "reading the host key",
            after: timeout,
        })??;
    let key = presented.lock().expect("host key slot").take();
    key.ok_or_else(|| SshError::Protocol {
        target: name,
        source: russh::Error::UnknownKey,
    })
}

/// An authenticated SSH session.
pub struct Session {
    handle: client::Handle<PinnedHostKey>,
    target: Target,
    timeouts: Timeouts,
}

/// `SHA256:…` fingerprint as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl Session {
    /// Connects, checks the host key against `pinned_host_keys` and authenticates with `key`.
    pub async fn connect(
        target: &Target,
        key: Arc<PrivateKey>,
        pinned_host_keys: Vec<PublicKey>,
        timeouts: Timeouts,
    ) -> Result<Session, SshError> {
        let name = target.to_string();
        let pinned = Arc::new(pinned_host_keys);
        let presented = Arc::new(Mutex::new(None));
        let handler = PinnedHostKey {
            pinned: Arc::clone(&pinned),
            presented: Arc::clone(&presented),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(timeouts.command.max(timeouts.connect)),
            ..Default::default()
        });
        let attempt = async {
            let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| SshError::Connect {
                    target: name.clone(),
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            let mut handle = client::connect_stream(config, stream, handler)
                .await
                .map_err(|source| {
                    let seen = presented.lock().expect("host key slot").clone();
                    match (source, seen) {
                        (russh::Error::UnknownKey, Some(seen)) => SshError::HostKeyMismatch {
                            target: name.clone(),
                            presented: fingerprint(&seen),
                            expected: pinned
                                .iter()
                                .map(fingerprint)
                                .collect::<Vec<_>>()
                                .join(" or "),
                        },
                        (source, _) => SshError::Protocol {
                            target: name.clone(),
                            source,
                        },
                    }
                })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let auth = handle
                .authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::clone(&key), hash),
                )
                .await
                .map_err(|source| SshError::Protocol {
                    target: name.clone(),
                    source,
                })?;
            if !auth.success() {
                return Err(SshError::AuthRejected {
                    target: name.clone(),
                    user: target.user.clone(),
                });
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(timeouts.connect, attempt)
            .await
            .map_err(|_| SshError::Timeout {
                target: name.clone(),
                step: "connecting and authenticating",
                after: timeouts.connect,
            })??;
        Ok(Session {
            handle,
            target: target.clone(),
            timeouts,
        })
    }

    /// Runs `command` (a shell command line) and collects its output and exit status.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.exec_with_input(command, &[]).await
    }

    /// Like [`Session::exec`], with `input` written to the command's standard input (then
    /// end of file). Keeps file contents (secrets among them) out of the command line, which
    /// other users of the machine could read in the process list.
    pub async fn exec_with_input(&self, command: &str, input: &[u8]) -> Result<Output, SshError> {
        match self.run(command, input).await? {
            Some(output) => Ok(output),
            None => Err(SshError::Dropped {
                target: self.target.to_string(),
                command: command.to_string(),
            }),
        }
    }

    /// Runs a command that reboots the machine. A connection that drops before an exit status
    /// arrives is the expected outcome, not an error.
    pub async fn exec_reboot(&self, command: &str) -> Result<Reboot, SshError> {
        match self.run(command, &[]).await {
            Ok(Some(output)) => Ok(Reboot::Exited(output)),
            Ok(None) => Ok(Reboot::ConnectionDropped),
            // The machine may go down mid-write; the channel then fails as a protocol error.
            Err(SshError::Protocol { .. }) => Ok(Reboot::ConnectionDropped),
            Err(e) => Err(e),
        }
    }

    /// `None` when the channel closed without an exit status.
    async fn run(&self, command: &str, input: &[u8]) -> Result<Option<Output>, SshError> {
        let name = self.target.to_string();
        let work = async {
            let mut channel =
                self.handle
                    .channel_open_session()
                    .await
                    .map_err(|source| SshError::Protocol {
                        target: name.clone(),
                        source,
                    })?;
            channel
                .exec(true, command)
                .await
                .map_err(|source| SshError::Protocol {
                    target: name.clone(),
                    source,
                })?;
            if !input.is_empty() {
                channel
                    .data(input)
                    .await
                    .map_err(|source| SshError::Protocol {
                        target: name.clone(),
                        source,
                    })?;
            }
            // End of input, so a command reading standard input (cat, tee) finishes.
            channel.eof().await.map_err(|source| SshError::Protocol {
                target: name.clone(),
                source,
            })?;
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let mut status = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    _ => {}
                }
            }
            Ok(status.map(|exit_status| Output {
                exit_status,
                stdout,
                stderr,
            }))
        };
        tokio::time::timeout(self.timeouts.command, work)
            .await
            .map_err(|_| SshError::Timeout {
                target: name,
                step: "running a command",
                after: self.timeouts.command,
            })?
    }

    /// Closes the session politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Parses an OpenSSH private key (PEM text as in `~/.ssh/id_ed25519`).
pub fn parse_private_key(text: &str) -> Result<PrivateKey, russh::keys::Error> {
    russh::keys::decode_secret_key(text, None)
}

/// Parses an OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, russh::keys::Error> {
    let mut parts = line.split_whitespace();
    let (Some(_algorithm), Some(base64)) = (parts.next(), parts.next()) else {
        return russh::keys::parse_public_key_base64(line.trim());
    };
    russh::keys::parse_public_key_base64(base64)
}
