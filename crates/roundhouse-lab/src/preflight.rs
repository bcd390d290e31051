//! What the simulator needs from this machine, checked before anything starts.

use crate::error::LabError;

/// A program the lab needs, and the Debian package that has it.
struct Needed {
    program: &'static str,
    package: &'static str,
    why: &'static str,
}

const NEEDED: &[Needed] = &[
    Needed {
        program: "sh",
        package: "dash",
        why: "machine commands run in a POSIX shell",
    },
    Needed {
        program: "bash",
        package: "bash",
        why: "roundhouse's installer script is a bash script",
    },
    Needed {
        program: "env",
        package: "coreutils",
        why: "the machine sandbox",
    },
    Needed {
        program: "chroot",
        package: "coreutils",
        why: "commands run chrooted into the machine's own file tree",
    },
    Needed {
        program: "unshare",
        package: "util-linux",
        why: "each machine's tree is assembled in a private mount namespace",
    },
    Needed {
        program: "mount",
        package: "mount",
        why: "the machine's partitions are bind-mounted into its tree",
    },
    Needed {
        program: "umount",
        package: "mount",
        why: "`lab down` removes the simulator's mounts",
    },
];

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// What the check found: one line per finding.
#[derive(Debug, Default)]
pub struct Report {
    /// Blocking problems, each with how to fix it.
    pub missing: Vec<String>,
    /// Things that work but slower or with less fidelity.
    pub notes: Vec<String>,
}

/// Checks programs, privileges and limits for a lab of `machines` machines. Returns the notes
/// (non-blocking) or [`LabError::Prerequisites`] listing everything that is missing at once.
pub async fn check(machines: usize) -> Result<Vec<String>, LabError> {
    let mut report = Report::default();
    let (missing, packages) = missing_programs(on_path);
    report.missing = missing;
    if report.missing.is_empty() {
        // Only meaningful once the programs exist: tries the namespace the simulator uses.
        if let Err(e) = roundhouse_sim::sandbox::Sandbox::detect().await {
            report.missing.push(format!("  - {e}"));
        }
    }
    let root = roundhouse_sim::sandbox::is_root();
    if root && !on_path("nsenter") {
        report.notes.push(
            "nsenter (util-linux) is missing: every machine command assembles its tree anew (slower)"
                .into(),
        );
    }
    if !root {
        report.notes.push(
            "not root: machines run in user namespaces and file ownership is not simulated (hooks' owner settings are skipped)"
                .into(),
        );
    }
    let needed = 5 * machines as u64 + 256;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        report.missing.push(format!(
            "  - the open-files limit is {limit}, {machines} machines need about {needed}: run `ulimit -n {needed}` first"
        ));
    }
    if report.missing.is_empty() {
        Ok(report.notes)
    } else {
        let mut msg = report.missing.join("\n");
        if !packages.is_empty() {
            msg.push_str(&format!(
                "\n  all at once (Debian): apt-get install {}",
                packages.join(" ")
            ));
        }
        Err(LabError::Prerequisites(msg))
    }
}

/// Lines for the programs `present` says are missing, and their packages (each once).
fn missing_programs(present: impl Fn(&str) -> bool) -> (Vec<String>, Vec<&'static str>) {
    let mut lines = Vec::new();
    let mut packages: Vec<&'static str> = Vec::new();
    for n in NEEDED.iter().filter(|n| !present(n.program)) {
        lines.push(format!(
            "  - `{}` is not installed ({}): apt-get install {}",
            n.program, n.why, n.package
        ));
        if !packages.contains(&n.package) {
            packages.push(n.package);
        }
    }
    (lines, packages)
}

fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_installed_lists_every_program_and_each_package_once() {
        let (lines, packages) = missing_programs(|_| false);
        assert_eq!(lines.len(), NEEDED.len());
        assert!(lines[1].contains("`bash`") && lines[1].ends_with("apt-get install bash"));
        assert_eq!(
            packages,
            ["dash", "bash", "coreutils", "util-linux", "mount"]
        );
    }

    #[test]
    fn only_the_missing_program_is_reported() {
        let (lines, packages) = missing_programs(|p| p != "unshare");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("`unshare`"), "{lines:?}");
        assert_eq!(packages, ["util-linux"]);
    }
}
