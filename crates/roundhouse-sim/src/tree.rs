//! A machine's file tree as the running OS sees it: a root directory with other directories
//! mounted at fixed places (`/usr`, `/usr/share/oem`, `/boot`), each a directory on the host.

use std::path::{Path, PathBuf};

/// A set of mounts; [`Tree::host_path`] finds where an absolute path of the machine lives on
/// the host.
#[derive(Debug, Clone)]
pub struct Tree {
    // Longest mount point first, so the first prefix that matches is the right one.
    mounts: Vec<(String, PathBuf)>,
}

impl Tree {
    /// A tree that is just `root`.
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        Tree {
            mounts: vec![("/".to_string(), root.into())],
        }
    }

    /// Adds `dir` mounted at `at` (an absolute path without a trailing slash).
    pub fn mount(mut self, at: &str, dir: impl Into<PathBuf>) -> Tree {
        self.mounts
            .push((at.trim_end_matches('/').to_string(), dir.into()));
        self.mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        self
    }

    /// The mounts, longest mount point first.
    pub fn mounts(&self) -> &[(String, PathBuf)] {
        &self.mounts
    }

    /// The root directory on the host.
    pub fn root(&self) -> &Path {
        // The "/" entry is always there and always sorts last.
        &self.mounts[self.mounts.len() - 1].1
    }

    /// Where the machine's absolute path `p` is on the host. `..` components are dropped, so
    /// a path can never leave the tree.
    pub fn host_path(&self, p: &str) -> PathBuf {
        let clean: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != "." && *c != "..")
            .collect();
        let norm = format!("/{}", clean.join("/"));
        for (at, dir) in &self.mounts {
            if at == "/" {
                return dir.join(norm.trim_start_matches('/'));
            }
            if norm == *at {
                return dir.clone();
            }
            if let Some(rest) = norm.strip_prefix(at.as_str())
                && rest.starts_with('/')
            {
                return dir.join(rest.trim_start_matches('/'));
            }
        }
        self.root().join(norm.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = Tree::new("/r")
            .mount("/usr", "/u")
            .mount("/usr/share/oem", "/o");
        assert_eq!(t.host_path("/etc/x"), PathBuf::from("/r/etc/x"));
        assert_eq!(t.host_path("/usr/bin"), PathBuf::from("/u/bin"));
        assert_eq!(
            t.host_path("/usr/share/oem/grub.cfg"),
            PathBuf::from("/o/grub.cfg")
        );
        assert_eq!(t.host_path("/usrx"), PathBuf::from("/r/usrx"));
        assert_eq!(
            t.host_path("/../../etc/passwd"),
            PathBuf::from("/r/etc/passwd")
        );
        assert_eq!(t.host_path("/usr"), PathBuf::from("/u"));
    }
}
