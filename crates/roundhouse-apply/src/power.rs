//! Power actions: how the executor makes a machine PXE-boot. A small trait so BMC drivers
//! (IPMI, Redfish) plug in beside the `command` driver (Lokomotive's `pxe_commands`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The machine a power action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerTarget {
    /// Node name.
    pub name: String,
    /// Its MAC (colon form).
    pub mac: String,
    /// Its domain.
    pub domain: String,
    /// The cluster's asset directory.
    pub asset_dir: PathBuf,
}

/// What a power action printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerOutput {
    /// Standard output and standard error, interleaved per stream (stdout first), lossily
    /// decoded and capped.
    pub text: String,
}

/// Why a power action failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The command could not be started.
    #[error("starting the power command: {0}")]
    Spawn(std::io::Error),
    /// It ran longer than allowed and was killed.
    #[error("the power command did not finish within {0:?} and was killed{1}")]
    Timeout(Duration, String),
    /// It exited unsuccessfully.
    #[error("the power command failed ({status}){output}")]
    Failed {
        /// Exit status as text.
        status: String,
        /// `: <output tail>` or empty.
        output: String,
    },
    /// This node's driver cannot be used by this build.
    #[error(
        "power driver {0:?} is not available yet; use driver \"command\" or cluster pxe_command"
    )]
    Unsupported(&'static str),
}

/// A boxed future, so the trait stays object-safe.
pub type PowerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PowerOutput, PowerError>> + Send + 'a>>;

/// Makes a machine network-boot (power cycle with PXE as the next boot device).
pub trait PowerDriver: Send + Sync {
    /// Runs the action for `target`; resolves when the driver is done (the machine is then
    /// booting, not yet installed).
    fn pxe_boot<'a>(&'a self, target: &'a PowerTarget) -> PowerFuture<'a>;
}

/// A shell command run on the operator's machine with `$mac $name $domain $asset_dir` in its
/// environment, killed after a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDriver {
    /// Shell text (`sh -c`).
    pub command: String,
    /// How long it may run.
    pub timeout: Duration,
}

/// A driver that refuses: for drivers configured in the cluster file but not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported(pub &'static str);

impl PowerDriver for Unsupported {
    fn pxe_boot<'a>(&'a self, _target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move { Err(PowerError::Unsupported(self.0)) })
    }
}

/// Output kept from a power command (its tail), so a chatty script cannot fill the store.
const MAX_OUTPUT: usize = 16 * 1024;

impl PowerDriver for CommandDriver {
    fn pxe_boot<'a>(&'a self, target: &'a PowerTarget) -> PowerFuture<'a> {
        Box::pin(async move {
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&self.command)
                .env("mac", &target.mac)
                .env("name", &target.name)
                .env("domain", &target.domain)
                .env("asset_dir", &target.asset_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                // Its own process group, so a timeout kills the whole script, children too.
                .process_group(0)
                .spawn()
                .map_err(PowerError::Spawn)?;
            let mut stdout = child.stdout.take();
            let mut stderr = child.stderr.take();
            let read_all = async {
                let mut out = Vec::new();
                let mut err = Vec::new();
                let a = async {
                    if let Some(s) = stdout.as_mut() {
                        let _ = s.read_to_end(&mut out).await;
                    }
                };
                let b = async {
                    if let Some(s) = stderr.as_mut() {
                        let _ = s.read_to_end(&mut err).await;
                    }
                };
                tokio::join!(a, b);
                out.extend_from_slice(&err);
                out
            };
            let pid = child.id();
            let run = async {
                let (bytes, status) = tokio::join!(read_all, child.wait());
                (bytes, status)
            };
            match tokio::time::timeout(self.timeout, run).await {
                Ok((bytes, status)) => {
                    let text = tail(&bytes);
                    let status = status.map_err(PowerError::Spawn)?;
                    if status.success() {
                        Ok(PowerOutput { text })
                    } else {
                        Err(PowerError::Failed {
                            status: status.to_string(),
                            output: if text.trim().is_empty() {
                                String::new()
                            } else {
                                format!(": {}", text.trim_end())
                            },
                        })
                    }
                }
                Err(_) => {
                    if let Some(pid) = pid {
                        kill_group(pid);
                    }
                    Err(PowerError::Timeout(self.timeout, String::new()))
                }
            }
        })
    }
}

fn kill_group(pid: u32) {
    // The child leads its own process group (process_group(0)): signal the group so that
    // whatever the script started dies with it.
    // `--` is essential: procps-ng's kill reads `-KILL -1234` without it as options, not as
    // the process group 1234.
    if pid <= 1 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> PowerTarget {
        PowerTarget {
            name: "w1".into(),
            mac: "52:54:00:00:00:01".into(),
            domain: "w1.example".into(),
            asset_dir: "/tmp/assets".into(),
        }
    }

    #[tokio::test]
    async fn command_sees_the_node_in_its_environment() {
        let d = CommandDriver {
            command: "echo \"$mac $name $domain $asset_dir\"; echo oops >&2".into(),
            timeout: Duration::from_secs(10),
        };
        let out = d.pxe_boot(&target()).await.unwrap();
        assert_eq!(
            out.text,
            "52:54:00:00:00:01 w1 w1.example /tmp/assets\noops\n"
        );
    }

    #[tokio::test]
    async fn failure_carries_the_output_and_timeout_kills() {
        let d = CommandDriver {
            command: "echo no bmc; exit 3".into(),
            timeout: Duration::from_secs(10),
        };
        let err = d.pxe_boot(&target()).await.unwrap_err().to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("no bmc"),
            "{err}"
        );

        let d = CommandDriver {
            command: "sleep 30 & wait".into(),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = d.pxe_boot(&target()).await.unwrap_err();
        assert!(matches!(err, PowerError::Timeout(..)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
