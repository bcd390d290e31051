//! What systemd does with the units Ignition wrote: applies the preset file on first boot
//! (enablement becomes `.wants/` symlinks from `[Install]`), finds the oneshot services to
//! run at boot, and reads the ports `sshd.socket` listens on after its dropins.

use std::fs;
use std::os::unix::fs::symlink;

use crate::tree::Tree;

const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
];

/// A parsed unit file with its dropins applied: (section, key, value) in file order.
#[derive(Debug, Default, Clone)]
pub struct UnitFile {
    entries: Vec<(String, String, String)>,
}

impl UnitFile {
    /// Parses INI-style unit text, appending to what is already there (dropins after the unit).
    pub fn add(&mut self, text: &str) {
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if l.starts_with('[') && l.ends_with(']') {
                section = l[1..l.len() - 1].to_string();
                continue;
            }
            if let Some((k, v)) = l.split_once('=') {
                self.entries
                    .push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
    }

    /// Values of a list setting: an empty assignment resets the list, as systemd does.
    pub fn list(&self, section: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (s, k, v) in &self.entries {
            if s == section && k == key {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.extend(v.split_whitespace().map(str::to_string));
                }
            }
        }
        out
    }

    /// The last value of a setting.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.clone())
    }

    /// Every `ExecStart=` line, in order (an empty one resets).
    pub fn exec_start(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (s, k, v) in &self.entries {
            if s == "Service" && k == "ExecStart" {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.push(v.clone());
                }
            }
        }
        out
    }
}

/// The template file name of an instance (`foo@bar.service` → `foo@.service`).
fn template_of(name: &str) -> Option<String> {
    let (base, rest) = name.split_once('@')?;
    let ext = rest.rsplit_once('.')?.1;
    Some(format!("{base}@.{ext}"))
}

/// Loads `name` with its dropins from the unit directories of `tree`; `None` when there is
/// no unit file (or it is masked).
pub fn load_unit(tree: &Tree, name: &str) -> Option<(String, UnitFile)> {
    let mut found = None;
    for dir in UNIT_DIRS {
        for cand in std::iter::once(name.to_string()).chain(template_of(name)) {
            let p = format!("{dir}/{cand}");
            let host = tree.host_path(&p);
            if let Ok(target) = fs::read_link(&host)
                && target.as_os_str() == "/dev/null"
            {
                return None;
            }
            if let Ok(text) = fs::read_to_string(&host) {
                found = Some((p, text));
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let (path, text) = found?;
    let mut unit = UnitFile::default();
    unit.add(&text);
    for dir in UNIT_DIRS {
        let d = tree.host_path(&format!("{dir}/{name}.d"));
        let mut names: Vec<_> = fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        for n in names {
            if let Ok(t) = fs::read_to_string(d.join(&n)) {
                unit.add(&t);
            }
        }
    }
    Some((path, unit))
}

/// Applies `/etc/systemd/system-preset/*.preset` like `systemctl preset-all` on first boot:
/// `enable X` links X into the `.wants/`/`.requires/` of its `[Install]` targets, `disable X`
/// removes such links. Returns the units enabled.
pub fn apply_presets(tree: &Tree) -> Vec<String> {
    let dir = tree.host_path("/etc/systemd/system-preset");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "preset"))
        .collect();
    files.sort();
    let mut enabled = Vec::new();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next()) {
                (Some("enable"), Some(name)) if enable(tree, name) => {
                    enabled.push(name.to_string());
                }
                (Some("disable"), Some(name)) => disable(tree, name),
                _ => {}
            }
        }
    }
    enabled
}

fn install_links(unit: &UnitFile, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in unit.list("Install", "WantedBy") {
        out.push(format!("/etc/systemd/system/{t}.wants/{name}"));
    }
    for t in unit.list("Install", "RequiredBy") {
        out.push(format!("/etc/systemd/system/{t}.requires/{name}"));
    }
    for a in unit.list("Install", "Alias") {
        out.push(format!("/etc/systemd/system/{a}"));
    }
    out
}

fn enable(tree: &Tree, name: &str) -> bool {
    let Some((path, unit)) = load_unit(tree, name) else {
        return false;
    };
    let links = install_links(&unit, name);
    for l in &links {
        let host = tree.host_path(l);
        if let Some(parent) = host.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = fs::remove_file(&host);
        let _ = symlink(&path, &host);
    }
    !links.is_empty()
}

fn disable(tree: &Tree, name: &str) {
    if let Some((_, unit)) = load_unit(tree, name) {
        for l in install_links(&unit, name) {
            let _ = fs::remove_file(tree.host_path(&l));
        }
    }
}

/// Units pulled in by `target` through `.wants/` and `.requires/` links, sorted.
pub fn wanted_by(tree: &Tree, target: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["wants", "requires"] {
        for dir in UNIT_DIRS {
            let d = tree.host_path(&format!("{dir}/{target}.{kind}"));
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                out.push(e.file_name().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// TCP ports `sshd.socket` listens on (22 unless dropins say otherwise).
pub fn sshd_ports(tree: &Tree) -> Vec<u16> {
    let mut unit = UnitFile::default();
    unit.add("[Socket]\nListenStream=22\n");
    if let Some((_, u)) = load_unit(tree, "sshd.socket") {
        unit = u;
        if unit.list("Socket", "ListenStream").is_empty()
            && unit.get("Socket", "ListenStream").is_none()
        {
            unit.add("[Socket]\nListenStream=22\n");
        }
    } else {
        for dir in UNIT_DIRS {
            let d = tree.host_path(&format!("{dir}/sshd.socket.d"));
            let mut names: Vec<_> = fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for n in names {
                if let Ok(t) = fs::read_to_string(n) {
                    unit.add(&t);
                }
            }
        }
    }
    unit.list("Socket", "ListenStream")
        .iter()
        .filter_map(|l| l.rsplit(':').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_moves_sshd() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        assert_eq!(sshd_ports(&tree), vec![22]);
        let dd = d.path().join("etc/systemd/system/sshd.socket.d");
        fs::create_dir_all(&dd).unwrap();
        fs::write(
            dd.join("10-port.conf"),
            "[Socket]\nListenStream=\nListenStream=2222\n",
        )
        .unwrap();
        assert_eq!(sshd_ports(&tree), vec![2222]);
    }

    #[test]
    fn presets_become_links() {
        let d = tempfile::tempdir().unwrap();
        let tree = Tree::new(d.path());
        let sys = d.path().join("etc/systemd/system");
        fs::create_dir_all(&sys).unwrap();
        fs::write(
            sys.join("a.service"),
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        let p = d.path().join("etc/systemd/system-preset");
        fs::create_dir_all(&p).unwrap();
        fs::write(
            p.join("20-ignition.preset"),
            "enable a.service\nenable missing.service\n",
        )
        .unwrap();
        assert_eq!(apply_presets(&tree), vec!["a.service"]);
        assert_eq!(
            fs::read_link(sys.join("multi-user.target.wants/a.service")).unwrap(),
            std::path::PathBuf::from("/etc/systemd/system/a.service")
        );
        assert_eq!(wanted_by(&tree, "multi-user.target"), vec!["a.service"]);
    }
}
