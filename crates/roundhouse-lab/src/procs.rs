//! Background processes and mounts of a lab: start detached, find out whether they still
//! run, stop them, and remove what the simulator mounted.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::LabError;
use crate::layout::Proc;

/// `log` opened for appending, twice: a child's stdout and stderr.
pub fn append_log(log: &Path) -> Result<(std::fs::File, std::fs::File), LabError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io(log))?;
    let err = out.try_clone().map_err(LabError::io(log))?;
    Ok((out, err))
}

/// Starts `cmd` with stdin closed and stdout and stderr appended to `log`. With `detach` it
/// gets its own process group, so it outlives a Ctrl-C in the caller's terminal and stopping
/// it reaches its children too; without, a Ctrl-C reaches it with the caller (the simulator
/// and the boot server shut down cleanly on SIGINT).
pub fn spawn(mut cmd: Command, what: &str, log: &Path, detach: bool) -> Result<Proc, LabError> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    }
    let (out, err) = append_log(log)?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    if detach {
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|e| LabError::Process {
        what: what.to_string(),
        why: format!("could not start {:?}: {e}", cmd.get_program()),
        log: None,
    })?;
    // The child is not waited for: it outlives this process. Until this process exits it
    // stays a zombie after it ends, which `alive` treats as gone.
    Ok(Proc {
        pid: child.id(),
        log: log.to_path_buf(),
    })
}

/// Whether `pid` is a live (not zombie) process whose command line mentions `marker` (the lab
/// directory), so a pid reused by an unrelated process is never taken for ours.
pub fn alive(pid: u32, marker: &Path) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // The state follows the parenthesised command name, which may itself contain ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // A child that `spawn` just returned may still be inside exec, with no command line yet.
    if cmdline.is_empty() {
        return true;
    }
    let needle = marker.as_os_str().as_encoded_bytes();
    !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Stops a lab process: SIGTERM (the simulator then powers its machines off and unmounts
/// their namespaces), up to `grace` to exit, then SIGKILL to its whole process group.
/// Returns whether it had to be killed.
pub fn stop(proc: &Proc, marker: &Path, grace: Duration) -> bool {
    let Some(pid) = pid_of(proc.pid) else {
        return false;
    };
    if !alive(proc.pid, marker) {
        kill_group(pid);
        return false;
    }
    let _ = rustix::process::kill_process(pid, Signal::TERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if !alive(proc.pid, marker) {
            kill_group(pid);
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_group(pid);
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    true
}

/// Kills what is left of the group the lab started (machine shells of a simulator that was
/// killed). The group id is the lab process's pid; no other group can have it while any
/// member lives, and for a process that was not detached there is no such group.
fn kill_group(pgid: Pid) {
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
}

/// Mount points at or below `dir` in this process's mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or below `dir`; errors name what is still mounted.
pub fn unmount_all(dir: &Path) -> Result<usize, LabError> {
    let mounts = mounts_under(dir);
    for m in &mounts {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(m)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(mounts.len())
    } else {
        Err(LabError::Mounts(
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/x\134y"), r"/tmp/x\y");
        assert_eq!(unescape_mountinfo(r"/tmp/end\04"), r"/tmp/end\04");
    }

    #[test]
    fn this_process_is_alive_and_recognised_by_its_command_line() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        assert!(alive(me, &exe));
        assert!(!alive(me, Path::new("/no/such/lab/dir")));
    }

    #[test]
    fn a_spawned_process_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker-arg");
        // The marker is the shell's $0, so it shows in the command line like a lab dir does.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 30; true").arg(&marker);
        let p = spawn(cmd, "sleeper", &dir.path().join("log"), true).unwrap();
        assert!(alive(p.pid, &marker));
        let killed = stop(&p, &marker, Duration::from_secs(5));
        assert!(!killed, "sh exits on SIGTERM");
        assert!(!alive(p.pid, &marker));
    }
}
