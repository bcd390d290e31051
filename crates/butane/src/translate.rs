//! Butane → Ignition: field renaming in Ignition's order plus Butane's sugar (inline/local
//! contents as data URLs, `contents_local`, `ssh_authorized_keys_local`, `with_mount_unit`,
//! `trees`), recording where generated JSON came from so diagnostics point at the YAML.

use std::collections::HashMap;
use std::path::Path as FsPath;

use serde_json::{Map, Value};

use crate::dataurl::make_data_url;
use crate::merge::{is_zero, struct_is_zero};
use crate::path::{Elem, Path};
use crate::report::Kind;
use crate::schema::{self, Hold, JStruct, JTy, Spec, snake};
use crate::unit::path_escape;
use crate::util::{self, ERR_NO_FILES_DIR};

/// A diagnostic before positions are attached; `path` is in YAML (snake_case) terms.
#[derive(Debug, Clone)]
pub struct Diag {
    /// Severity.
    pub kind: Kind,
    /// Message.
    pub message: String,
    /// YAML path.
    pub path: Path,
}

/// JSON-prefix → YAML-prefix translations for output that does not sit at the snake_cased
/// JSON path (renamed, generated, or moved by a merge).
#[derive(Debug, Clone, Default)]
pub struct Translations(HashMap<Path, Path>);

impl Translations {
    fn add(&mut self, json: Path, yaml: Path) {
        self.0.insert(json, yaml);
    }

    /// Maps a JSON path to the YAML it came from: the longest recorded prefix, else the same
    /// path with snake_cased keys (Butane's fallback).
    pub fn to_yaml(&self, json: &Path) -> Path {
        let (rest_from, mut out) = (0..=json.0.len())
            .rev()
            .find_map(|n| {
                self.0
                    .get(&Path(json.0[..n].to_vec()))
                    .map(|y| (n, y.clone()))
            })
            .unwrap_or((0, Path::root()));
        for e in &json.0[rest_from..] {
            match e {
                Elem::Field(f) => out.push_field(&snake(f)),
                Elem::Index(i) => out.push_index(*i),
            }
        }
        out
    }

    /// Rewrites recorded JSON paths under `from` to sit under `to` (list re-indexing).
    fn rebase(&mut self, from: &Path, to: &Path) {
        let moved: Vec<Path> = self
            .0
            .keys()
            .filter(|j| j.starts_with(from))
            .cloned()
            .collect();
        for j in moved {
            if let Some(y) = self.0.remove(&j) {
                let mut n = to.clone();
                n.0.extend_from_slice(&j.0[from.0.len()..]);
                self.0.insert(n, y);
            }
        }
    }
}

pub(crate) const ERR_TOO_MANY_RESOURCE_SOURCES: &str =
    "only one of the following can be set: inline, local, source";
const ERR_NODE_EXISTS: &str = "matching filesystem node has existing contents or different type";
const ERR_FILE_TYPE: &str = "trees may only contain files, directories, and symlinks";
const ERR_TREE_NOT_DIRECTORY: &str = "root of tree must be a directory";

pub struct Translator<'a> {
    pub spec: Spec,
    pub files_dir: Option<&'a FsPath>,
    pub diags: Vec<Diag>,
    pub translations: Translations,
}

fn get_str<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v str> {
    m.get(k).and_then(Value::as_str)
}

/// Re-orders `m` by the struct's Go field order, dropping unknown keys.
pub(crate) fn ordered(m: Map<String, Value>, s: &JStruct) -> Map<String, Value> {
    let mut m = m;
    let mut out = Map::new();
    for f in s.fields {
        if let Some(v) = m.remove(f.name) {
            out.insert(f.name.to_string(), v);
        }
    }
    out
}

impl Translator<'_> {
    fn error(&mut self, path: Path, message: impl Into<String>) {
        self.diags.push(Diag {
            kind: Kind::Error,
            message: message.into(),
            path,
        });
    }

    /// Translates the decoded Butane config into Ignition JSON.
    pub fn translate(&mut self, b: &Value) -> Value {
        let empty = Map::new();
        let bm = b.as_object().unwrap_or(&empty);
        let mut out = self.tr_struct(bm, &schema::J_CONFIG, &Path::root(), &Path::root());
        self.translations.add(
            Path::from_steps(&["ignition", "version"]),
            Path::from_steps(&["version"]),
        );
        self.add_mount_units(bm, &mut out);
        self.process_trees(bm, &mut out);
        Value::Object(out)
    }

    fn tr_struct(
        &mut self,
        b: &Map<String, Value>,
        s: &'static JStruct,
        y: &Path,
        j: &Path,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for f in s.fields {
            if f.v34 && self.spec == Spec::V1_0 {
                continue;
            }
            let key = snake(f.name);
            let bv = b.get(&key);
            match &f.ty {
                JTy::Str | JTy::Int | JTy::Bool => match bv {
                    // A zero plain value is omitted (`omitempty` on a non-pointer field).
                    Some(v) if f.hold == Hold::Plain && is_zero(Some(v), &f.ty, f.hold) => {}
                    Some(v) => {
                        out.insert(f.name.into(), v.clone());
                    }
                    None if f.hold == Hold::Always => {
                        out.insert(
                            f.name.into(),
                            if matches!(f.ty, JTy::Int) {
                                Value::from(0)
                            } else {
                                Value::String(String::new())
                            },
                        );
                    }
                    None => {}
                },
                JTy::Struct(cs) => {
                    let empty = Map::new();
                    let sub = bv.and_then(Value::as_object).unwrap_or(&empty);
                    let r = self.tr_struct(sub, cs, &y.field(&key), &j.field(f.name));
                    if f.hold == Hold::Always || !struct_is_zero(&r, cs) {
                        out.insert(f.name.into(), Value::Object(r));
                    }
                }
                JTy::List(elem) => {
                    let Some(Value::Array(items)) = bv else {
                        continue;
                    };
                    let mut list = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match elem {
                            JTy::Struct(es) => {
                                let empty = Map::new();
                                let im = item.as_object().unwrap_or(&empty);
                                let r = self.tr_struct(
                                    im,
                                    es,
                                    &y.field(&key).index(i),
                                    &j.field(f.name).index(i),
                                );
                                list.push(Value::Object(r));
                            }
                            _ => list.push(item.clone()),
                        }
                    }
                    if !list.is_empty() {
                        out.insert(f.name.into(), Value::Array(list));
                    }
                }
            }
        }
        match s.name {
            "Resource" => self.tr_resource(b, &mut out, y, j),
            "Unit" | "Dropin" => self.tr_contents_local(b, &mut out, y, j),
            "PasswdUser" => self.tr_ssh_keys_local(b, &mut out, y, j),
            "Ignition" => {
                out.insert(
                    "version".into(),
                    Value::String(self.spec.ignition_version().into()),
                );
            }
            _ => {}
        }
        ordered(out, s)
    }

    fn set_data_url(
        &mut self,
        contents: &[u8],
        out: &mut Map<String, Value>,
        from: Path,
        j: &Path,
    ) {
        let current = get_str(out, "compression").map(str::to_string);
        let (url, compression) = make_data_url(contents, current.as_deref(), true);
        out.insert("source".into(), Value::String(url));
        self.translations.add(j.field("source"), from.clone());
        if let Some(c) = compression {
            out.insert("compression".into(), Value::String(c));
            self.translations.add(j.field("compression"), from);
        }
    }

    fn tr_resource(
        &mut self,
        b: &Map<String, Value>,
        out: &mut Map<String, Value>,
        y: &Path,
        j: &Path,
    ) {
        if let Some(local) = get_str(b, "local") {
            let c = y.field("local");
            match util::read_local(local, self.files_dir) {
                Err(e) => {
                    self.error(c, e);
                    return;
                }
                Ok(contents) => self.set_data_url(&contents, out, c, j),
            }
        }
        if let Some(inline) = get_str(b, "inline") {
            self.set_data_url(inline.as_bytes(), out, y.field("inline"), j);
        }
    }

    fn tr_contents_local(
        &mut self,
        b: &Map<String, Value>,
        out: &mut Map<String, Value>,
        y: &Path,
        j: &Path,
    ) {
        let Some(local) = get_str(b, "contents_local").filter(|s| !s.is_empty()) else {
            return;
        };
        let c = y.field("contents_local");
        match util::read_local(local, self.files_dir) {
            Err(e) => self.error(c, e),
            Ok(contents) => {
                out.insert(
                    "contents".into(),
                    Value::String(String::from_utf8_lossy(&contents).into_owned()),
                );
                self.translations.add(j.field("contents"), c);
            }
        }
    }

    fn tr_ssh_keys_local(
        &mut self,
        b: &Map<String, Value>,
        out: &mut Map<String, Value>,
        y: &Path,
        j: &Path,
    ) {
        let Some(Value::Array(files)) = b.get("ssh_authorized_keys_local") else {
            return;
        };
        if files.is_empty() {
            return;
        }
        let c = y.field("ssh_authorized_keys_local");
        if self.files_dir.is_none() {
            self.error(c, ERR_NO_FILES_DIR);
            return;
        }
        let mut keys: Vec<Value> = out
            .get("sshAuthorizedKeys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, f) in files.iter().enumerate() {
            let name = f.as_str().unwrap_or("");
            match util::read_local(name, self.files_dir) {
                Err(e) => self.error(c.index(i), e),
                Ok(data) => {
                    let text = String::from_utf8_lossy(&data);
                    for line in text.split('\n') {
                        let line = line.strip_suffix('\r').unwrap_or(line);
                        if line.is_empty() {
                            continue;
                        }
                        self.translations
                            .add(j.field("sshAuthorizedKeys").index(keys.len()), c.index(i));
                        keys.push(Value::String(line.to_string()));
                    }
                }
            }
        }
        if !keys.is_empty() {
            out.insert("sshAuthorizedKeys".into(), Value::Array(keys));
        }
    }

    /// `with_mount_unit`: generated units form the parent config and the user's config is
    /// merged over it, so user units with the same name override fields of the generated one.
    fn add_mount_units(&mut self, b: &Map<String, Value>, out: &mut Map<String, Value>) {
        let storage = b.get("storage").and_then(Value::as_object);
        let Some(filesystems) = storage
            .and_then(|s| s.get("filesystems"))
            .and_then(Value::as_array)
        else {
            return;
        };
        let luks = storage
            .and_then(|s| s.get("luks"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut generated: Vec<(Value, Path)> = Vec::new();
        for (i, fs) in filesystems.iter().enumerate() {
            let Some(fs) = fs.as_object() else { continue };
            if fs.get("with_mount_unit").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let device = get_str(fs, "device").unwrap_or("");
            let mut remote = false;
            if device.starts_with("/dev/mapper/") || device.starts_with("/dev/disk/by-id/dm-name-")
            {
                for l in &luks {
                    let name = l.get("name").and_then(Value::as_str).unwrap_or("");
                    if device == format!("/dev/mapper/{name}")
                        || device == format!("/dev/disk/by-id/dm-name-{name}")
                    {
                        let tang = l
                            .get("clevis")
                            .and_then(|c| c.get("tang"))
                            .and_then(Value::as_array)
                            .is_some_and(|t| !t.is_empty());
                        if tang {
                            remote = true;
                            break;
                        }
                    }
                }
            }
            let unit = mount_unit(fs, remote);
            generated.push((
                unit,
                Path::from_steps(&["storage", "filesystems"])
                    .index(i)
                    .field("with_mount_unit"),
            ));
        }
        if generated.is_empty() {
            return;
        }
        let user_units: Vec<Value> = out
            .get("systemd")
            .and_then(|s| s.get("units"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let parent_units: Vec<Value> = generated.iter().map(|(u, _)| u.clone()).collect();
        let parent = serde_json::json!({"systemd": {"units": parent_units}});
        let child = serde_json::json!({"systemd": {"units": user_units.clone()}});
        let merged = crate::merge::merge(&parent, &child);
        let units_path = Path::from_steps(&["systemd", "units"]);
        // Where each user unit lands: after the generated ones unless merged into one.
        let name_of = |u: &Value| {
            u.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let gen_names: Vec<String> = generated.iter().map(|(u, _)| name_of(u)).collect();
        let mut moves: Vec<(usize, usize)> = Vec::new();
        let mut next = generated.len();
        for (ci, u) in user_units.iter().enumerate() {
            let n = name_of(u);
            match gen_names.iter().position(|g| *g == n) {
                Some(gi) => moves.push((ci, gi)),
                None => {
                    moves.push((ci, next));
                    next += 1;
                }
            }
        }
        // Rebase in two steps through a scratch prefix so indices cannot collide.
        let scratch = Path::from_steps(&["\u{0}scratch"]);
        for (ci, _) in &moves {
            self.translations
                .rebase(&units_path.index(*ci), &scratch.index(*ci));
        }
        for (ci, ri) in &moves {
            self.translations
                .rebase(&scratch.index(*ci), &units_path.index(*ri));
            self.translations
                .add(units_path.index(*ri), units_path.index(*ci));
        }
        for (gi, (u, from)) in generated.iter().enumerate() {
            let child_unit = moves
                .iter()
                .find(|(_, ri)| *ri == gi)
                .map(|(ci, _)| &user_units[*ci]);
            match child_unit {
                None => self.translations.add(units_path.index(gi), from.clone()),
                Some(cu) => {
                    // Fields only the generated unit has point at with_mount_unit; the rest
                    // at the user's unit.
                    for k in ["contents", "enabled", "name"] {
                        if u.get(k).is_some() && cu.get(k).is_none() {
                            self.translations
                                .add(units_path.index(gi).field(k), from.clone());
                        }
                    }
                }
            }
        }
        if let Some(units) = merged.get("systemd").and_then(|s| s.get("units")) {
            let systemd = out
                .entry("systemd")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(sm) = systemd.as_object_mut() {
                sm.insert("units".into(), units.clone());
            }
        }
    }

    fn process_trees(&mut self, b: &Map<String, Value>, out: &mut Map<String, Value>) {
        let trees = b
            .get("storage")
            .and_then(|s| s.get("trees"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if trees.is_empty() {
            return;
        }
        let storage = out
            .entry("storage")
            .or_insert_with(|| Value::Object(Map::new()));
        let mut storage_map = storage.as_object().cloned().unwrap_or_default();
        let mut files: Vec<Value> = storage_map
            .get("files")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut links: Vec<Value> = storage_map
            .get("links")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let dirs: std::collections::HashSet<String> = storage_map
            .get("directories")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.get("path").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let index = |list: &[Value]| -> HashMap<String, usize> {
            list.iter()
                .enumerate()
                .filter_map(|(k, n)| Some((n.get("path")?.as_str()?.to_string(), k)))
                .collect()
        };
        // Last entry per path wins, as in Butane's node tracker (a Go map filled in order).
        let mut file_index = index(&files);
        let mut link_index = index(&links);
        for (i, tree) in trees.iter().enumerate() {
            let yp = Path::from_steps(&["storage", "trees"]).index(i);
            let Some(files_dir) = self.files_dir else {
                self.error(yp, ERR_NO_FILES_DIR);
                break;
            };
            let local = tree.get("local").and_then(Value::as_str).unwrap_or("");
            let src_base = util::local_path(files_dir, local);
            if let Err(e) = util::within_files_dir(&src_base, &files_dir.to_string_lossy()) {
                self.error(yp, e);
                continue;
            }
            match std::fs::metadata(&src_base) {
                Err(e) => {
                    self.error(yp, util::go_io_error("stat", &src_base, &e));
                    continue;
                }
                Ok(m) if !m.is_dir() => {
                    self.error(yp, ERR_TREE_NOT_DIRECTORY);
                    continue;
                }
                Ok(_) => {}
            }
            let dest_base = tree
                .get("path")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .unwrap_or("/")
                .to_string();
            let mut entries = Vec::new();
            walk(FsPath::new(&src_base), "", &mut entries);
            for (rel, kind) in entries {
                let dest = util::join(&dest_base, &rel);
                let src = if rel.is_empty() {
                    src_base.clone()
                } else {
                    format!("{src_base}/{rel}")
                };
                match kind {
                    Walked::Error(e) => self.error(yp.clone(), e),
                    Walked::Dir => {}
                    Walked::Other => self.error(yp.clone(), ERR_FILE_TYPE),
                    Walked::File { executable } => {
                        let idx = file_index.get(&dest).copied();
                        let idx = match idx {
                            Some(k) => {
                                let has_source = files[k]
                                    .get("contents")
                                    .and_then(|c| c.get("source"))
                                    .and_then(Value::as_str)
                                    .is_some_and(|s| !s.is_empty());
                                if has_source {
                                    self.error(yp.clone(), ERR_NODE_EXISTS);
                                    continue;
                                }
                                k
                            }
                            None => {
                                let exists = links
                                    .iter()
                                    .any(|l| l.get("path").and_then(Value::as_str) == Some(&dest))
                                    || dirs.contains(&dest);
                                if exists {
                                    self.error(yp.clone(), ERR_NODE_EXISTS);
                                    continue;
                                }
                                files.push(serde_json::json!({"path": dest}));
                                let k = files.len() - 1;
                                file_index.insert(dest.clone(), k);
                                self.translations.add(
                                    Path::from_steps(&["storage", "files"]).index(k),
                                    yp.clone(),
                                );
                                k
                            }
                        };
                        let data = match std::fs::read(&src) {
                            Ok(d) => d,
                            Err(e) => {
                                self.error(yp.clone(), util::go_io_error("open", &src, &e));
                                continue;
                            }
                        };
                        let fp = Path::from_steps(&["storage", "files"]).index(idx);
                        let Some(file) = files[idx].as_object_mut() else {
                            continue;
                        };
                        let mut contents = file
                            .get("contents")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default();
                        self.set_data_url(&data, &mut contents, yp.clone(), &fp.field("contents"));
                        self.translations.add(fp.field("contents"), yp.clone());
                        file.insert(
                            "contents".into(),
                            Value::Object(ordered(contents, &schema::J_RESOURCE)),
                        );
                        if file.get("mode").is_none_or(Value::is_null) {
                            file.insert(
                                "mode".into(),
                                Value::from(if executable { 0o755 } else { 0o644 }),
                            );
                            self.translations.add(fp.field("mode"), yp.clone());
                        }
                        let f = std::mem::take(file);
                        *file = ordered(f, &schema::J_FILE);
                    }
                    Walked::Symlink(target) => {
                        let idx = link_index.get(&dest).copied();
                        let idx = match idx {
                            Some(k) => {
                                let has_target = links[k]
                                    .get("target")
                                    .and_then(Value::as_str)
                                    .is_some_and(|s| !s.is_empty());
                                if has_target {
                                    self.error(yp.clone(), ERR_NODE_EXISTS);
                                    continue;
                                }
                                k
                            }
                            None => {
                                let exists = files
                                    .iter()
                                    .any(|f| f.get("path").and_then(Value::as_str) == Some(&dest))
                                    || dirs.contains(&dest);
                                if exists {
                                    self.error(yp.clone(), ERR_NODE_EXISTS);
                                    continue;
                                }
                                links.push(serde_json::json!({"path": dest}));
                                let k = links.len() - 1;
                                link_index.insert(dest.clone(), k);
                                self.translations.add(
                                    Path::from_steps(&["storage", "links"]).index(k),
                                    yp.clone(),
                                );
                                k
                            }
                        };
                        if let Some(link) = links[idx].as_object_mut() {
                            link.insert("target".into(), Value::String(target));
                            let l = std::mem::take(link);
                            *link = ordered(l, &schema::J_LINK);
                        }
                    }
                }
            }
        }
        if !files.is_empty() {
            storage_map.insert("files".into(), Value::Array(files));
        }
        if !links.is_empty() {
            storage_map.insert("links".into(), Value::Array(links));
        }
        *storage = Value::Object(ordered(storage_map, &schema::J_STORAGE));
    }
}

enum Walked {
    Dir,
    File { executable: bool },
    Symlink(String),
    Other,
    Error(String),
}

/// `filepath.Walk`: lexical order, symlinks not followed, the root included.
fn walk(root: &FsPath, rel: &str, out: &mut Vec<(String, Walked)>) {
    use std::os::unix::fs::PermissionsExt;
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) => {
            out.push((
                rel.to_string(),
                Walked::Error(util::go_io_error("lstat", &full.to_string_lossy(), &e)),
            ));
            return;
        }
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        out.push((rel.to_string(), Walked::Dir));
        let mut names: Vec<String> = match std::fs::read_dir(&full) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => {
                out.push((
                    rel.to_string(),
                    Walked::Error(util::go_io_error("open", &full.to_string_lossy(), &e)),
                ));
                return;
            }
        };
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            walk(root, &child, out);
        }
    } else if ft.is_file() {
        out.push((
            rel.to_string(),
            Walked::File {
                executable: meta.permissions().mode() & 0o111 != 0,
            },
        ));
    } else if ft.is_symlink() {
        match std::fs::read_link(&full) {
            Ok(t) => out.push((
                rel.to_string(),
                Walked::Symlink(t.to_string_lossy().into_owned()),
            )),
            Err(e) => out.push((
                rel.to_string(),
                Walked::Error(util::go_io_error("readlink", &full.to_string_lossy(), &e)),
            )),
        }
    } else {
        out.push((rel.to_string(), Walked::Other));
    }
}

/// Butane's mount unit template, rendered.
fn mount_unit(fs: &Map<String, Value>, remote: bool) -> Value {
    let device = get_str(fs, "device").unwrap_or("");
    let format = get_str(fs, "format").unwrap_or("");
    let path = get_str(fs, "path").unwrap_or("");
    let opts: Vec<&str> = fs
        .get("mount_options")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut options = String::new();
    if !opts.is_empty() || remote {
        options.push_str("\nOptions=");
        options.push_str(&opts.join(","));
        if remote {
            if !opts.is_empty() {
                options.push(',');
            }
            options.push_str("_netdev");
        }
    }
    let esc = path_escape(device);
    let (contents, name) = if format == "swap" {
        (
            format!(
                "# Generated by Butane\n[Swap]\nWhat={device}{options}\n\n[Install]\nRequiredBy=swap.target"
            ),
            format!("{esc}.swap"),
        )
    } else {
        let target = if remote {
            "remote-fs.target"
        } else {
            "local-fs.target"
        };
        (
            format!(
                "# Generated by Butane\n[Unit]\nRequires=systemd-fsck@{esc}.service\nAfter=systemd-fsck@{esc}.service\n\n[Mount]\nWhere={path}\nWhat={device}\nType={format}{options}\n\n[Install]\nRequiredBy={target}"
            ),
            format!("{}.mount", path_escape(path)),
        )
    };
    serde_json::json!({"contents": contents, "enabled": true, "name": name})
}
