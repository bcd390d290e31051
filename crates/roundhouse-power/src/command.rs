//! The `command` driver: a shell command on the operator's machine (Lokomotive's
//! `pxe_commands`), with `$mac $name $domain $asset_dir` in its environment, its output
//! captured and a timeout that kills the whole process group.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::PowerError;

/// The machine a command runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTarget {
    /// Node name.
    pub name: String,
    /// Its MAC (colon form).
    pub mac: String,
    /// Its domain.
    pub domain: String,
    /// The cluster's asset directory.
    pub asset_dir: PathBuf,
}

/// A shell command (`sh -c`), killed after `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDriver {
    /// Shell text.
    pub command: String,
    /// How long it may run.
    pub timeout: Duration,
}

/// Output kept from a command (its tail), so a chatty script cannot fill the store.
const MAX_OUTPUT: usize = 16 * 1024;

impl CommandDriver {
    /// Runs the command for `target`; returns what it printed (stdout, then stderr).
    pub async fn run(&self, target: &CommandTarget) -> Result<String, PowerError> {
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
            .map_err(|e| PowerError::Command(format!("starting the power command: {e}")))?;
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
        let run = async { tokio::join!(read_all, child.wait()) };
        match tokio::time::timeout(self.timeout, run).await {
            Ok((bytes, status)) => {
                let text = tail(&bytes);
                let status = status.map_err(|e| {
                    PowerError::Command(format!("waiting for the power command: {e}"))
                })?;
                if status.success() {
                    Ok(text)
                } else {
                    let output = if text.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", text.trim_end())
                    };
                    Err(PowerError::Command(format!(
                        "the power command failed ({status}){output}"
                    )))
                }
            }
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                Err(PowerError::Command(format!(
                    "the power command did not finish within {:?} and was killed",
                    self.timeout
                )))
            }
        }
    }
}

fn kill_group(pid: u32) {
    // The child leads its own process group (process_group(0)): signal the group so that
    // whatever the script started dies with it. `--` matters: procps-ng's kill reads
    // `-KILL -1234` without it as options, not as the process group 1234.
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

    fn target() -> CommandTarget {
        CommandTarget {
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
        let out = d.run(&target()).await.unwrap();
        assert_eq!(out, "52:54:00:00:00:01 w1 w1.example /tmp/assets\noops\n");
    }

    #[tokio::test]
    async fn failure_carries_the_output_and_timeout_kills() {
        let d = CommandDriver {
            command: "echo no bmc; exit 3".into(),
            timeout: Duration::from_secs(10),
        };
        let err = d.run(&target()).await.unwrap_err().to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("no bmc"),
            "{err}"
        );

        let d = CommandDriver {
            command: "sleep 30 & wait".into(),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = d.run(&target()).await.unwrap_err().to_string();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
