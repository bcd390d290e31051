//! The machine's Ignition: reads an Ignition spec 3.x config and applies it to a machine's
//! tree the way CoreOS Ignition's `files` stage does (users and groups through the passwd
//! files, SSH keys in `authorized_keys.d/ignition`, files, directories, links, systemd units,
//! dropins, masks and a preset file for enablement). The disks stage is reduced to what
//! Flatcar configs use: wiping a filesystem by label.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::tree::Tree;

/// Why a config could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum IgnitionError {
    /// Not JSON, or not the shape of an Ignition config.
    #[error("config is not valid Ignition JSON: {0}")]
    Parse(#[from] serde_json::Error),
    /// A version this applier does not read.
    #[error("unsupported Ignition config version {0:?} (3.x is supported)")]
    Version(String),
    /// A `data:` URL that does not decode.
    #[error("invalid data URL for {path}: {reason}")]
    DataUrl {
        /// The node the source is for.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source URL that was not fetched beforehand.
    #[error("source {0} was not fetched")]
    Missing(String),
    /// Compression other than gzip.
    #[error("unsupported compression {0:?} for {1}")]
    Compression(String, String),
    /// A node exists and `overwrite` is false.
    #[error("{0} already exists and overwrite is false")]
    Exists(String),
    /// A user or group name that does not resolve.
    #[error("unknown {kind} {name:?} for {path}")]
    UnknownId {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The node it was for.
        path: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which machine path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, IgnitionError>;

fn io<T>(op: &'static str, path: &str, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| IgnitionError::Io {
        op,
        path: path.to_string(),
        source,
    })
}

/// An Ignition 3.x config, the parts a Flatcar machine acts on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// `ignition` section: version and config merging.
    pub ignition: IgnitionSection,
    /// Users and groups.
    pub passwd: Passwd,
    /// Filesystems, files, directories, links.
    pub storage: Storage,
    /// Units.
    pub systemd: Systemd,
}

/// The `ignition` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IgnitionSection {
    /// `3.3.0` etc.
    pub version: String,
    /// `config.merge` / `config.replace`.
    pub config: ConfigRefs,
}

/// Other configs this one pulls in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigRefs {
    /// Configs merged over this one, in order.
    pub merge: Vec<Resource>,
    /// A config that replaces this one.
    pub replace: Option<Resource>,
}

/// A source of bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    /// URL: `data:`, `http(s):`.
    pub source: Option<String>,
    /// `gzip` or none.
    pub compression: Option<String>,
}

/// `passwd`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Passwd {
    /// Users to create or modify.
    pub users: Vec<User>,
    /// Groups to create.
    pub groups: Vec<Group>,
}

/// A user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    /// Login name.
    pub name: String,
    /// Keys written to `~/.ssh/authorized_keys.d/ignition`.
    pub ssh_authorized_keys: Vec<String>,
    /// Numeric id.
    pub uid: Option<u32>,
    /// GECOS.
    pub gecos: Option<String>,
    /// Home directory.
    pub home_dir: Option<String>,
    /// Do not create the home directory.
    pub no_create_home: Option<bool>,
    /// Primary group name.
    pub primary_group: Option<String>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// Password hash.
    pub password_hash: Option<String>,
}

/// A group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Group {
    /// Name.
    pub name: String,
    /// Numeric id.
    pub gid: Option<u32>,
    /// Password hash.
    pub password_hash: Option<String>,
}

/// `storage`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Storage {
    /// Filesystems (only wiping by label is acted on).
    pub filesystems: Vec<Filesystem>,
    /// Files.
    pub files: Vec<File>,
    /// Directories.
    pub directories: Vec<Directory>,
    /// Links.
    pub links: Vec<Link>,
}

/// A filesystem.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Filesystem {
    /// Block device path.
    pub device: String,
    /// `ext4`, `xfs`, ...
    pub format: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
    /// Re-create the filesystem.
    pub wipe_filesystem: Option<bool>,
}

/// Owner by id or name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Owner {
    /// Numeric id.
    pub id: Option<u32>,
    /// Name, looked up in the tree's passwd/group files.
    pub name: Option<String>,
}

/// A file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct File {
    /// Absolute path.
    pub path: String,
    /// Replace what is there.
    pub overwrite: Option<bool>,
    /// Contents.
    pub contents: Resource,
    /// Appended fragments.
    pub append: Vec<Resource>,
    /// Permission bits (decimal in JSON).
    pub mode: Option<u32>,
    /// Owner.
    pub user: Owner,
    /// Group.
    pub group: Owner,
}

/// A directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Directory {
    /// Absolute path.
    pub path: String,
    /// Replace what is there.
    pub overwrite: Option<bool>,
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub user: Owner,
    /// Group.
    pub group: Owner,
}

/// A link.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Link {
    /// Absolute path.
    pub path: String,
    /// Replace what is there.
    pub overwrite: Option<bool>,
    /// Link target.
    pub target: String,
    /// A hard link instead of a symbolic one.
    pub hard: Option<bool>,
    /// Owner.
    pub user: Owner,
    /// Group.
    pub group: Owner,
}

/// `systemd`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Systemd {
    /// Units.
    pub units: Vec<Unit>,
}

/// A unit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Unit {
    /// `name.service`.
    pub name: String,
    /// Enable (true), disable (false) or leave alone.
    pub enabled: Option<bool>,
    /// Mask with a link to /dev/null.
    pub mask: Option<bool>,
    /// Unit file contents.
    pub contents: Option<String>,
    /// Dropins.
    pub dropins: Vec<Dropin>,
}

/// A unit dropin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Dropin {
    /// `10-foo.conf`.
    pub name: String,
    /// Contents.
    pub contents: Option<String>,
}

impl Config {
    /// Parses a config and checks that it is spec 3.x.
    pub fn parse(json: &[u8]) -> Result<Config> {
        let c: Config = serde_json::from_slice(json)?;
        if !c.ignition.version.starts_with("3.") {
            return Err(IgnitionError::Version(c.ignition.version));
        }
        Ok(c)
    }

    /// Every non-`data:` source this config needs, to be fetched before [`apply`].
    pub fn remote_sources(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.storage.files {
            for r in std::iter::once(&f.contents).chain(f.append.iter()) {
                if let Some(s) = &r.source
                    && !s.starts_with("data:")
                {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Labels of the filesystems this config wipes (`/dev/disk/by-label/ROOT` or
    /// `label: ROOT` with `wipeFilesystem: true`).
    pub fn wiped_labels(&self) -> Vec<String> {
        self.storage
            .filesystems
            .iter()
            .filter(|f| f.wipe_filesystem == Some(true))
            .filter_map(|f| {
                f.device
                    .strip_prefix("/dev/disk/by-label/")
                    .or_else(|| f.device.strip_prefix("/dev/disk/by-partlabel/"))
                    .map(str::to_string)
                    .or_else(|| f.label.clone())
            })
            .collect()
    }

    /// Merges `child` over `self` as Ignition's `config.merge` does: scalars of the child
    /// win, list entries with the same key (path or name) are replaced, others appended.
    pub fn merge(mut self, child: Config) -> Config {
        fn merge_list<T>(parent: &mut Vec<T>, child: Vec<T>, key: impl Fn(&T) -> String) {
            for c in child {
                let k = key(&c);
                match parent.iter_mut().find(|p| key(p) == k) {
                    Some(p) => *p = c,
                    None => parent.push(c),
                }
            }
        }
        merge_list(&mut self.passwd.users, child.passwd.users, |u| {
            u.name.clone()
        });
        merge_list(&mut self.passwd.groups, child.passwd.groups, |g| {
            g.name.clone()
        });
        merge_list(
            &mut self.storage.filesystems,
            child.storage.filesystems,
            |f| f.device.clone(),
        );
        merge_list(&mut self.storage.files, child.storage.files, |f| {
            f.path.clone()
        });
        merge_list(
            &mut self.storage.directories,
            child.storage.directories,
            |d| d.path.clone(),
        );
        merge_list(&mut self.storage.links, child.storage.links, |l| {
            l.path.clone()
        });
        merge_list(&mut self.systemd.units, child.systemd.units, |u| {
            u.name.clone()
        });
        self
    }
}

/// Decodes a `data:` URL (RFC 2397): percent-encoded, or base64 with `;base64`.
pub fn decode_data_url(url: &str) -> std::result::Result<Vec<u8>, String> {
    let rest = url.strip_prefix("data:").ok_or("not a data URL")?;
    let (meta, data) = rest.split_once(',').ok_or("missing ','")?;
    let bytes = percent_encoding::percent_decode_str(data).collect::<Vec<u8>>();
    if meta.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
        let text: Vec<u8> = bytes
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| format!("bad base64: {e}"))
    } else {
        Ok(bytes)
    }
}

/// Fetched remote sources by URL.
pub type Sources = HashMap<String, Vec<u8>>;

fn read_resource(r: &Resource, path: &str, sources: &Sources) -> Result<Option<Vec<u8>>> {
    let Some(src) = &r.source else {
        return Ok(None);
    };
    let raw = if src.starts_with("data:") {
        decode_data_url(src).map_err(|reason| IgnitionError::DataUrl {
            path: path.to_string(),
            reason,
        })?
    } else {
        sources
            .get(src)
            .cloned()
            .ok_or_else(|| IgnitionError::Missing(src.clone()))?
    };
    match r.compression.as_deref() {
        None | Some("") => Ok(Some(raw)),
        Some("gzip") => {
            let mut out = Vec::new();
            io(
                "gunzip",
                path,
                flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out),
            )?;
            Ok(Some(out))
        }
        Some(other) => Err(IgnitionError::Compression(
            other.to_string(),
            path.to_string(),
        )),
    }
}

/// What [`apply`] did, for the machine's log.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Applied {
    /// Paths written.
    pub written: Vec<String>,
    /// Units enabled through the preset file.
    pub enabled: Vec<String>,
}

/// Applies `cfg` to `tree` like Ignition's `files` stage. `sources` holds every URL of
/// [`Config::remote_sources`]; `days` is today as days since the epoch (for the shadow file).
pub fn apply(cfg: &Config, tree: &Tree, sources: &Sources, days: u64) -> Result<Applied> {
    let mut a = Applied::default();
    let fs = Fs { tree };
    for g in &cfg.passwd.groups {
        fs.ensure_group(g)?;
    }
    for u in &cfg.passwd.users {
        fs.ensure_user(u, days)?;
        if !u.ssh_authorized_keys.is_empty() {
            fs.write_keys(u)?;
        }
    }
    let mut dirs: Vec<&Directory> = cfg.storage.directories.iter().collect();
    dirs.sort_by_key(|d| d.path.matches('/').count());
    for d in dirs {
        fs.directory(d)?;
        a.written.push(d.path.clone());
    }
    for f in &cfg.storage.files {
        fs.file(f, sources)?;
        a.written.push(f.path.clone());
    }
    // Symbolic links first: a hard link may name a file reached through one.
    for l in cfg.storage.links.iter().filter(|l| l.hard != Some(true)) {
        fs.link(l)?;
        a.written.push(l.path.clone());
    }
    for l in cfg.storage.links.iter().filter(|l| l.hard == Some(true)) {
        fs.link(l)?;
        a.written.push(l.path.clone());
    }
    let mut presets = BTreeSet::new();
    for u in &cfg.systemd.units {
        let unit_path = format!("/etc/systemd/system/{}", u.name);
        if let Some(c) = &u.contents {
            fs.write_new(&unit_path, c.as_bytes(), 0o644, 0, 0, true)?;
            a.written.push(unit_path.clone());
        }
        for d in &u.dropins {
            if let Some(c) = &d.contents {
                let p = format!("/etc/systemd/system/{}.d/{}", u.name, d.name);
                fs.write_new(&p, c.as_bytes(), 0o644, 0, 0, true)?;
                a.written.push(p);
            }
        }
        if u.mask == Some(true) {
            let host = fs.prepare(&unit_path)?;
            let _ = fs::remove_file(&host);
            io("mask", &unit_path, symlink("/dev/null", &host))?;
        }
        match u.enabled {
            Some(true) => {
                presets.insert(format!("enable {}", u.name));
                a.enabled.push(u.name.clone());
            }
            Some(false) => {
                presets.insert(format!("disable {}", u.name));
            }
            None => {}
        }
    }
    if !presets.is_empty() {
        let p = "/etc/systemd/system-preset/20-ignition.preset";
        let mut text = presets.into_iter().collect::<Vec<_>>().join("\n");
        text.push('\n');
        fs.write_new(p, text.as_bytes(), 0o644, 0, 0, true)?;
    }
    let result = serde_json::json!({
        "provisioningDate": crate::clock::rfc3339_now(),
        "userConfigProvided": true,
    });
    fs.write_new(
        "/etc/.ignition-result.json",
        serde_json::to_string_pretty(&result)
            .unwrap_or_default()
            .as_bytes(),
        0o600,
        0,
        0,
        true,
    )?;
    Ok(a)
}

struct Fs<'a> {
    tree: &'a Tree,
}

/// A passwd/group style file: colon-separated records.
fn read_db(path: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

fn write_db(path: &Path, rows: &[Vec<String>], mode: u32) -> std::io::Result<()> {
    let mut s = String::new();
    for r in rows {
        s.push_str(&r.join(":"));
        s.push('\n');
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, s)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

impl Fs<'_> {
    /// Host path of a machine path whose parent directories exist (created 0755 root:root
    /// like Ignition does), with symlinks in the parents resolved inside the tree so a
    /// config can never write outside it.
    fn prepare(&self, path: &str) -> Result<PathBuf> {
        let resolved = self.resolve_parents(path);
        let host = self.tree.host_path(&resolved);
        if let Some(parent) = Path::new(&resolved).parent() {
            self.mkdirs(&parent.to_string_lossy())?;
        }
        Ok(host)
    }

    fn resolve_parents(&self, path: &str) -> String {
        let mut comps: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect();
        let Some(last) = comps.pop() else {
            return "/".into();
        };
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        let mut queue: std::collections::VecDeque<String> = comps.into();
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            let p = format!("/{}", cur.join("/"));
            if let Ok(target) = fs::read_link(self.tree.host_path(&p)) {
                hops += 1;
                if hops > 40 {
                    break;
                }
                cur.pop();
                let t = target.to_string_lossy().to_string();
                if t.starts_with('/') {
                    cur.clear();
                }
                for part in t.split('/').filter(|x| !x.is_empty() && *x != ".").rev() {
                    queue.push_front(part.to_string());
                }
            }
        }
        cur.push(last);
        format!("/{}", cur.join("/"))
    }

    fn mkdirs(&self, path: &str) -> Result<()> {
        let mut cur = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(c);
            let host = self.tree.host_path(&cur);
            if fs::symlink_metadata(&host).is_err() {
                io("create directory", &cur, fs::create_dir(&host))?;
                io(
                    "chmod",
                    &cur,
                    fs::set_permissions(&host, fs::Permissions::from_mode(0o755)),
                )?;
            }
        }
        Ok(())
    }

    fn uid(&self, o: &Owner, path: &str) -> Result<u32> {
        self.lookup(o, "/etc/passwd", "user", path)
    }

    fn gid(&self, o: &Owner, path: &str) -> Result<u32> {
        self.lookup(o, "/etc/group", "group", path)
    }

    fn lookup(&self, o: &Owner, db: &str, kind: &'static str, path: &str) -> Result<u32> {
        if let Some(id) = o.id {
            return Ok(id);
        }
        let Some(name) = &o.name else { return Ok(0) };
        read_db(&self.tree.host_path(db))
            .iter()
            .find(|r| r.first() == Some(name))
            .and_then(|r| r.get(2)?.parse().ok())
            .ok_or_else(|| IgnitionError::UnknownId {
                kind,
                name: name.clone(),
                path: path.to_string(),
            })
    }

    fn write_new(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        overwrite: bool,
    ) -> Result<()> {
        let host = self.prepare(path)?;
        if fs::symlink_metadata(&host).is_ok() {
            if !overwrite {
                return Err(IgnitionError::Exists(path.to_string()));
            }
            remove_any(&host).map_err(|source| IgnitionError::Io {
                op: "remove",
                path: path.to_string(),
                source,
            })?;
        }
        io("write", path, fs::write(&host, data))?;
        io(
            "chmod",
            path,
            fs::set_permissions(&host, fs::Permissions::from_mode(mode)),
        )?;
        io("chown", path, crate::os::chown(&host, uid, gid, false))
    }

    fn file(&self, f: &File, sources: &Sources) -> Result<()> {
        let uid = self.uid(&f.user, &f.path)?;
        let gid = self.gid(&f.group, &f.path)?;
        let mode = f.mode.unwrap_or(0o644);
        let contents = read_resource(&f.contents, &f.path, sources)?;
        let host = self.prepare(&f.path)?;
        let exists = fs::symlink_metadata(&host).is_ok();
        let mut data = match (exists, contents, f.overwrite == Some(true)) {
            (true, Some(_), false) => return Err(IgnitionError::Exists(f.path.clone())),
            (true, None, false) => io("read", &f.path, fs::read(&host))?,
            (_, Some(c), _) => c,
            (_, None, _) => Vec::new(),
        };
        for r in &f.append {
            if let Some(more) = read_resource(r, &f.path, sources)? {
                data.extend_from_slice(&more);
            }
        }
        self.write_new(&f.path, &data, mode, uid, gid, true)
    }

    fn directory(&self, d: &Directory) -> Result<()> {
        let uid = self.uid(&d.user, &d.path)?;
        let gid = self.gid(&d.group, &d.path)?;
        let host = self.prepare(&d.path)?;
        match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) if d.overwrite == Some(true) => {
                io("remove", &d.path, remove_any(&host))?;
                io("create directory", &d.path, fs::create_dir(&host))?;
            }
            Ok(_) => return Err(IgnitionError::Exists(d.path.clone())),
            Err(_) => io("create directory", &d.path, fs::create_dir(&host))?,
        }
        io(
            "chmod",
            &d.path,
            fs::set_permissions(&host, fs::Permissions::from_mode(d.mode.unwrap_or(0o755))),
        )?;
        io("chown", &d.path, crate::os::chown(&host, uid, gid, false))
    }

    fn link(&self, l: &Link) -> Result<()> {
        let uid = self.uid(&l.user, &l.path)?;
        let gid = self.gid(&l.group, &l.path)?;
        let host = self.prepare(&l.path)?;
        if fs::symlink_metadata(&host).is_ok() {
            if l.overwrite != Some(true) {
                return Err(IgnitionError::Exists(l.path.clone()));
            }
            io("remove", &l.path, remove_any(&host))?;
        }
        if l.hard == Some(true) {
            let target = self.tree.host_path(&self.resolve_parents(&l.target));
            io("hard link", &l.path, fs::hard_link(&target, &host))?;
        } else {
            io("symlink", &l.path, symlink(&l.target, &host))?;
            io("chown", &l.path, crate::os::chown(&host, uid, gid, true))?;
        }
        Ok(())
    }

    fn ensure_group(&self, g: &Group) -> Result<()> {
        let path = self.tree.host_path("/etc/group");
        let mut rows = read_db(&path);
        if rows.iter().any(|r| r.first() == Some(&g.name)) {
            return Ok(());
        }
        let gid = g.gid.unwrap_or_else(|| next_id(&rows, 2));
        // groupadd keeps the password in /etc/group when the root has no gshadow file.
        let pw = g.password_hash.clone().unwrap_or_else(|| "*".into());
        rows.push(vec![g.name.clone(), pw, gid.to_string(), String::new()]);
        io("write", "/etc/group", write_db(&path, &rows, 0o644))
    }

    /// Creates or modifies a user the way `useradd --root`/`usermod --root` do when the root
    /// has no `login.defs`: new users get the next uid from 1000, group 100, `/bin/bash`.
    fn ensure_user(&self, u: &User, days: u64) -> Result<()> {
        let passwd_path = self.tree.host_path("/etc/passwd");
        let shadow_path = self.tree.host_path("/etc/shadow");
        let group_path = self.tree.host_path("/etc/group");
        let mut passwd = read_db(&passwd_path);
        let mut shadow = read_db(&shadow_path);
        let mut groups = read_db(&group_path);
        let primary_gid = match &u.primary_group {
            Some(pg) => Some(
                groups
                    .iter()
                    .find(|r| r.first() == Some(pg))
                    .and_then(|r| r.get(2).cloned())
                    .ok_or_else(|| IgnitionError::UnknownId {
                        kind: "group",
                        name: pg.clone(),
                        path: format!("user {}", u.name),
                    })?,
            ),
            None => None,
        };
        let existing = passwd.iter().position(|r| r.first() == Some(&u.name));
        let (uid, gid, home) = match existing {
            Some(i) => {
                let r = &mut passwd[i];
                r.resize(7, String::new());
                if let Some(x) = u.uid {
                    r[2] = x.to_string();
                }
                if let Some(g) = &primary_gid {
                    r[3] = g.clone();
                }
                if let Some(x) = &u.gecos {
                    r[4] = x.clone();
                }
                if let Some(x) = &u.home_dir {
                    r[5] = x.clone();
                }
                if let Some(x) = &u.shell {
                    r[6] = x.clone();
                }
                if let Some(h) = &u.password_hash
                    && let Some(s) = shadow.iter_mut().find(|s| s.first() == Some(&u.name))
                {
                    s.resize(9, String::new());
                    s[1] = h.clone();
                }
                (
                    r[2].parse().unwrap_or(0),
                    r[3].parse().unwrap_or(0),
                    r[5].clone(),
                )
            }
            None => {
                let uid = u.uid.unwrap_or_else(|| next_id(&passwd, 2));
                let gid: u32 = primary_gid
                    .as_deref()
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(100);
                let home = u
                    .home_dir
                    .clone()
                    .unwrap_or_else(|| format!("/home/{}", u.name));
                passwd.push(vec![
                    u.name.clone(),
                    "x".into(),
                    uid.to_string(),
                    gid.to_string(),
                    u.gecos.clone().unwrap_or_default(),
                    home.clone(),
                    u.shell.clone().unwrap_or_else(|| "/bin/bash".into()),
                ]);
                let mut s = vec![
                    u.name.clone(),
                    u.password_hash.clone().unwrap_or_else(|| "*".into()),
                    days.to_string(),
                ];
                s.resize(9, String::new());
                shadow.push(s);
                if u.no_create_home != Some(true) {
                    let host = self.prepare(&home)?;
                    if fs::symlink_metadata(&host).is_err() {
                        io("create home", &home, fs::create_dir(&host))?;
                        io(
                            "chmod",
                            &home,
                            fs::set_permissions(&host, fs::Permissions::from_mode(0o755)),
                        )?;
                        io("chown", &home, crate::os::chown(&host, uid, gid, false))?;
                    }
                }
                (uid, gid, home)
            }
        };
        if !u.groups.is_empty() {
            for g in &u.groups {
                if !groups.iter().any(|r| r.first() == Some(g)) {
                    return Err(IgnitionError::UnknownId {
                        kind: "group",
                        name: g.clone(),
                        path: format!("user {}", u.name),
                    });
                }
            }
            for r in groups.iter_mut() {
                r.resize(4, String::new());
                let mut members: Vec<String> = r[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                let wanted = u.groups.contains(&r[0]);
                let has = members.contains(&u.name);
                if wanted && !has {
                    members.push(u.name.clone());
                } else if !wanted && has {
                    members.retain(|m| m != &u.name);
                }
                r[3] = members.join(",");
            }
            io("write", "/etc/group", write_db(&group_path, &groups, 0o644))?;
        }
        let _ = (uid, gid, home);
        io(
            "write",
            "/etc/passwd",
            write_db(&passwd_path, &passwd, 0o644),
        )?;
        let shadow_mode = fs::metadata(&shadow_path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o600);
        io(
            "write",
            "/etc/shadow",
            write_db(&shadow_path, &shadow, shadow_mode),
        )
    }

    /// `~/.ssh/authorized_keys.d/ignition`, directories 0700 and file 0600, owned by the user.
    fn write_keys(&self, u: &User) -> Result<()> {
        let passwd = read_db(&self.tree.host_path("/etc/passwd"));
        let row = passwd
            .iter()
            .find(|r| r.first() == Some(&u.name))
            .ok_or_else(|| IgnitionError::UnknownId {
                kind: "user",
                name: u.name.clone(),
                path: "ssh keys".into(),
            })?;
        let uid: u32 = row.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
        let gid: u32 = row.get(3).and_then(|x| x.parse().ok()).unwrap_or(0);
        let home = row
            .get(5)
            .cloned()
            .unwrap_or_else(|| format!("/home/{}", u.name));
        for d in [
            format!("{home}/.ssh"),
            format!("{home}/.ssh/authorized_keys.d"),
        ] {
            let host = self.prepare(&d)?;
            if fs::symlink_metadata(&host).is_err() {
                io("create directory", &d, fs::create_dir(&host))?;
            }
            io(
                "chmod",
                &d,
                fs::set_permissions(&host, fs::Permissions::from_mode(0o700)),
            )?;
            io("chown", &d, crate::os::chown(&host, uid, gid, false))?;
        }
        let mut text = u.ssh_authorized_keys.join("\n");
        text.push('\n');
        self.write_new(
            &format!("{home}/.ssh/authorized_keys.d/ignition"),
            text.as_bytes(),
            0o600,
            uid,
            gid,
            true,
        )
    }
}

fn next_id(rows: &[Vec<String>], col: usize) -> u32 {
    rows.iter()
        .filter_map(|r| r.get(col)?.parse::<u32>().ok())
        .filter(|id| (1000..60000).contains(id))
        .max()
        .map(|m| m + 1)
        .unwrap_or(1000)
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        assert_eq!(decode_data_url("data:,a%20b%0A").unwrap(), b"a b\n");
        assert_eq!(
            decode_data_url("data:;base64,aGVsbG8K").unwrap(),
            b"hello\n"
        );
        assert_eq!(
            decode_data_url("data:text/plain;charset=utf-8;base64,aGk=").unwrap(),
            b"hi"
        );
        assert!(decode_data_url("data:;base64,@@@").is_err());
        assert!(decode_data_url("http://x").is_err());
    }

    #[test]
    fn rejects_spec_2() {
        assert!(matches!(
            Config::parse(br#"{"ignition":{"version":"2.3.0"}}"#),
            Err(IgnitionError::Version(_))
        ));
    }

    #[test]
    fn wiped_labels_from_device_or_label() {
        let c = Config::parse(
            br#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[
            {"device":"/dev/disk/by-label/ROOT","format":"ext4","label":"ROOT","wipeFilesystem":true},
            {"device":"/dev/sdb","label":"DATA","wipeFilesystem":true},
            {"device":"/dev/sdc","label":"KEEP"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.wiped_labels(), vec!["ROOT", "DATA"]);
    }

    #[test]
    fn merge_replaces_by_key_and_appends_the_rest() {
        let parent = Config::parse(
            br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[
            {"path":"/a","contents":{"source":"data:,parent"}},{"path":"/b"}]},
            "systemd":{"units":[{"name":"x.service","enabled":true}]}}"#,
        )
        .unwrap();
        let child = Config::parse(
            br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[
            {"path":"/a","contents":{"source":"data:,child"}},{"path":"/c"}]},
            "systemd":{"units":[{"name":"x.service","enabled":false}]}}"#,
        )
        .unwrap();
        let m = parent.merge(child);
        let paths: Vec<&str> = m.storage.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/a", "/b", "/c"]);
        assert_eq!(
            m.storage.files[0].contents.source.as_deref(),
            Some("data:,child")
        );
        assert_eq!(m.systemd.units.len(), 1);
        assert_eq!(m.systemd.units[0].enabled, Some(false));
    }

    #[test]
    fn symlinked_parent_stays_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/escape", root.join("etc/dir")).unwrap();
        let tree = Tree::new(&root);
        let fs_ = Fs { tree: &tree };
        assert_eq!(fs_.resolve_parents("/etc/dir/file"), "/escape/file");
        let host = fs_.prepare("/etc/dir/file").unwrap();
        assert!(host.starts_with(&root), "{host:?}");
    }
}
