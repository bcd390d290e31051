//! The in-memory index of a matchbox data directory, and group selection over it.
//!
//! An [`Index`] is built once per load and never changes; reloading builds a new one and swaps
//! it in whole, so a request sees one consistent generation of groups, profiles and configs.
//!
//! # Selection in O(1) of the fleet size
//!
//! matchbox sorts all groups by precedence (most selectors first, then the selector string,
//! greatest first) and takes the first whose selectors all equal the request's labels. We keep
//! that exact order as each group's *rank*, and file every group under one of its selectors
//! (preferring `mac`, then `uuid`, `serial`, `hostname`, then the first key by name): a group
//! filed under `mac=X` can only match a request whose `mac` label is `X`. A request therefore
//! only looks at the groups filed under its own label values, plus the few groups without a
//! usable selector (catch-alls, or selectors whose value is empty, which Go matches against a
//! missing label). The first match in rank order among those candidates is exactly matchbox's
//! answer.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bootdata::{Boot, Group, Mac, Profile};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::engine::{self, Template};
use crate::ignition;
use crate::labels::Labels;
use crate::render;

/// Largest file the loader reads; anything bigger is reported and skipped.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// How deep the loader descends into `ignition/` and `generic/`.
pub const MAX_DEPTH: usize = 8;
/// Rendered template responses kept per index generation.
const RENDER_CACHE_ENTRIES: usize = 8192;

/// Selector keys worth filing groups under, most selective first.
const PREFERRED_KEYS: &[&str] = &["mac", "uuid", "serial", "hostname"];

/// A response body with its digest, shared between requests without copying.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes served.
    pub bytes: Bytes,
    /// `sha256:<hex>` of `bytes`.
    pub digest: Arc<str>,
}

impl Body {
    /// Wraps bytes and computes their digest.
    pub fn new(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        Body {
            bytes,
            digest: digest.into(),
        }
    }
}

/// A group as loaded, compacted: the server keeps tens of thousands of these, so strings that
/// repeat across groups (selector keys, `installed`, a node's MAC in its two groups, profile
/// names) are shared, and fields the server never reads (`name`) are not kept.
#[derive(Debug)]
pub struct GroupEntry {
    /// Group id.
    pub id: Arc<str>,
    /// Name of the profile this group boots.
    pub profile: Arc<str>,
    /// Selectors in key order, `mac` values normalised as matchbox normalises them.
    selector: Box<[(Arc<str>, Arc<str>)]>,
    /// Template data; `None` when empty (almost always, for generated fleets).
    metadata: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Position in matchbox's precedence order.
    pub rank: u32,
    /// File it came from, relative to the data directory.
    pub source: Box<str>,
    /// The profile resolved when the index was built, so a request does no lookup.
    profile_slot: Option<u32>,
}

impl GroupEntry {
    /// Whether every selector equals the label of the same key. A missing label reads as the
    /// empty string, as a Go map lookup does.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| labels.get(k).unwrap_or("") == &**v)
    }

    /// The selectors, in key order.
    pub fn selector(&self) -> impl Iterator<Item = (&str, &str)> {
        self.selector.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The group as a [`Group`] again (for templates and `/metadata`); `name` is not kept.
    pub fn to_group(&self) -> Group {
        Group {
            id: self.id.to_string(),
            name: String::new(),
            profile: self.profile.to_string(),
            selector: self
                .selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metadata: self.metadata.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// Boot settings with their pre-rendered scripts, shared by every profile with the same
/// settings (a generated fleet's install profiles usually all boot the same kernel line).
#[derive(Debug)]
pub struct BootEntry {
    /// The settings.
    pub boot: Boot,
    /// `/ipxe` body.
    pub ipxe: Body,
    /// `/grub` body, rendered on first use: few fleets boot GRUB.
    grub: std::sync::OnceLock<Body>,
}

impl BootEntry {
    /// `/grub` body.
    pub fn grub(&self) -> &Body {
        self.grub
            .get_or_init(|| Body::new(render::grub_config(&self.boot)))
    }
}

/// A profile as the server needs it: its id, what it serves, and where those are in the index.
#[derive(Debug)]
pub struct ProfileEntry {
    /// Profile id (matchbox refuses a profile without one).
    pub id: Arc<str>,
    /// File under `ignition/` served at `/ignition`.
    pub ignition_id: Box<str>,
    /// File under `generic/` served at `/generic`.
    pub generic_id: Box<str>,
    /// Boot settings and scripts, when the profile has them.
    pub boot: Option<Arc<BootEntry>>,
    /// `ignition_id` and `generic_id` resolved when the index was built.
    ignition_slot: Option<u32>,
    generic_slot: Option<u32>,
}

impl ProfileEntry {
    /// `/ipxe` body, when the profile has boot settings.
    pub fn ipxe(&self) -> Option<&Body> {
        self.boot.as_ref().map(|b| &b.ipxe)
    }

    /// `/grub` body, when the profile has boot settings.
    pub fn grub(&self) -> Option<&Body> {
        self.boot.as_ref().map(|b| b.grub())
    }
}

/// A file under `ignition/` or `generic/`, prepared at load time.
#[derive(Debug, Clone)]
pub enum ConfigFile {
    /// An Ignition config (`*.ign`, `*.ignition`), validated; `Err` holds why it is unusable.
    Ignition(Result<Body, Arc<str>>),
    /// A template (Butane under `ignition/`, anything under `generic/`), parsed.
    Template(Result<Template, Arc<str>>),
}

/// A file or document the loader could not use, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// Path relative to the data directory.
    pub path: String,
    /// Why it was skipped or marked unusable.
    pub reason: String,
}

/// Counts and problems of one load.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Groups loaded.
    pub groups: usize,
    /// Profiles loaded.
    pub profiles: usize,
    /// Files under `ignition/` and `generic/` loaded.
    pub files: usize,
    /// Everything that could not be used.
    pub problems: Vec<Problem>,
    /// Of those: `groups/` or `profiles/` missing, by name (`"groups"`).
    pub missing_dirs: Vec<String>,
    /// Of those: files refused because others can modify them ([`insecure_mode`]).
    pub insecure: Vec<Problem>,
}

/// Why a data directory could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The data directory itself cannot be read.
    #[error("reading data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The directory was replaced while it was being read; a retry will see the new one.
    #[error("data directory {0} changed while it was being loaded")]
    Changed(PathBuf),
}

/// Why a request cannot be answered from the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// Nothing to serve (no group, no profile, no config, template error): matchbox's 404.
    #[error("{0}")]
    NotFound(String),
    /// The data exists but is unusable (an invalid Ignition config): a 500, never an empty 200.
    #[error("{0}")]
    Broken(String),
}

struct KeyIndex {
    key: Arc<str>,
    by_value: HashMap<Arc<str>, Box<[u32]>>,
}

type RenderKey = (u32, String, String);

/// One immutable generation of a data directory.
pub struct Index {
    groups: Vec<GroupEntry>,
    keyed: Vec<KeyIndex>,
    unindexed: Vec<u32>,
    profiles: Vec<ProfileEntry>,
    /// Profile slots by path relative to the data directory (`profiles/<stem>.json`).
    profile_slots: HashMap<Box<str>, u32>,
    files: Vec<ConfigFile>,
    /// File slots by path relative to the data directory (`ignition/x.ign`, `generic/y`).
    file_slots: HashMap<Box<str>, u32>,
    render_cache: Mutex<HashMap<RenderKey, Result<Body, ServeError>>>,
    report: LoadReport,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("groups", &self.groups.len())
            .field("profiles", &self.profiles.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// Shares equal strings: a fleet's groups repeat the same keys, values and profile names.
#[derive(Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = s.into();
        self.strings.insert(arc.clone());
        arc
    }
}

/// Collects groups, profiles and files one at a time, compacting each as it arrives so a load
/// never holds the parsed documents of the whole fleet at once.
#[derive(Default)]
struct Builder {
    interner: Interner,
    groups: Vec<GroupEntry>,
    profiles: Vec<ProfileEntry>,
    profile_slots: HashMap<Box<str>, u32>,
    boots: HashMap<String, Arc<BootEntry>>,
    files: Vec<ConfigFile>,
    file_slots: HashMap<Box<str>, u32>,
    report: LoadReport,
}

impl Builder {
    fn group(&mut self, source: String, group: Group) {
        let group = match normalise_group(group) {
            Ok(g) => g,
            Err(reason) => {
                self.report.problems.push(Problem {
                    path: source,
                    reason,
                });
                return;
            }
        };
        let it = &mut self.interner;
        let selector = group
            .selector
            .iter()
            .map(|(k, v)| (it.get(k), it.get(v)))
            .collect();
        self.groups.push(GroupEntry {
            id: it.get(&group.id),
            profile: it.get(&group.profile),
            selector,
            metadata: (!group.metadata.is_empty()).then(|| Box::new(group.metadata)),
            rank: 0,
            source: source.into(),
            profile_slot: None,
        });
    }

    /// A profile read from `path` (`profiles/<stem>.json`).
    fn profile(&mut self, path: String, profile: Profile) {
        let boot = profile.boot.map(|boot| {
            // Keyed by the settings themselves: two different settings can render the same
            // iPXE script but not the same GRUB config.
            let key = serde_json::to_string(&boot).unwrap_or_default();
            self.boots
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(BootEntry {
                        ipxe: Body::new(render::ipxe_script(&boot)),
                        boot,
                        grub: std::sync::OnceLock::new(),
                    })
                })
                .clone()
        });
        let entry = ProfileEntry {
            id: self.interner.get(&profile.id),
            ignition_id: profile.ignition_id.into(),
            generic_id: profile.generic_id.into(),
            boot,
            ignition_slot: None,
            generic_slot: None,
        };
        match self.profile_slots.get(path.as_str()) {
            Some(&slot) => self.profiles[slot as usize] = entry,
            None => {
                self.profile_slots
                    .insert(path.into(), self.profiles.len() as u32);
                self.profiles.push(entry);
            }
        }
    }

    /// A file under `ignition/` or `generic/`, by its path relative to the data directory.
    fn file(&mut self, path: String, bytes: Vec<u8>) {
        let file = prepare_file(&path, bytes);
        if let Some(reason) = file_problem(&file) {
            self.report.problems.push(Problem {
                path: path.clone(),
                reason,
            });
        }
        match self.file_slots.get(path.as_str()) {
            Some(&slot) => self.files[slot as usize] = file,
            None => {
                self.file_slots.insert(path.into(), self.files.len() as u32);
                self.files.push(file);
            }
        }
    }

    fn finish(self) -> Index {
        let Builder {
            groups,
            mut profiles,
            profile_slots,
            files,
            file_slots,
            mut report,
            ..
        } = self;
        // matchbox: sort.Reverse(ByReqs): more selectors first, then greater selector string
        // first. Go's sort is not stable, so for two groups with identical selectors matchbox's
        // choice is arbitrary; we break the tie by file name so it is at least repeatable.
        let mut keyed_groups: Vec<(usize, String, GroupEntry)> = groups
            .into_iter()
            .map(|g| (g.selector.len(), selector_string(g.selector()), g))
            .collect();
        keyed_groups.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.2.source.cmp(&b.2.source))
        });

        let file_slot = |dir: &str, name: &str| {
            if name.is_empty() {
                return None;
            }
            file_slots.get(clean_join(dir, name)?.as_str()).copied()
        };
        for p in &mut profiles {
            p.ignition_slot = file_slot("ignition", &p.ignition_id);
            p.generic_slot = file_slot("generic", &p.generic_id);
        }

        let mut entries = Vec::with_capacity(keyed_groups.len());
        // Per selector key: groups by selector value, in rank order.
        type Filed = HashMap<Arc<str>, Vec<u32>>;
        let mut keyed: Vec<(Arc<str>, Filed)> = Vec::new();
        let mut unindexed = Vec::new();
        for (rank, (_, _, mut group)) in keyed_groups.into_iter().enumerate() {
            let rank = rank as u32;
            match index_key(&group.selector) {
                Some((k, v)) => {
                    let slot = match keyed.iter().position(|ki| ki.0 == *k) {
                        Some(i) => i,
                        None => {
                            keyed.push((k.clone(), HashMap::new()));
                            keyed.len() - 1
                        }
                    };
                    keyed[slot].1.entry(v.clone()).or_default().push(rank);
                }
                None => unindexed.push(rank),
            }
            group.rank = rank;
            group.profile_slot = clean_join("profiles", &format!("{}.json", group.profile))
                .and_then(|key| profile_slots.get(key.as_str()).copied())
                // matchbox's ProfileGet refuses a profile without an id.
                .filter(|&slot| !profiles[slot as usize].id.is_empty());
            entries.push(group);
        }
        let keyed = keyed
            .into_iter()
            .map(|(key, by_value)| KeyIndex {
                key,
                by_value: by_value
                    .into_iter()
                    .map(|(v, ranks)| (v, ranks.into_boxed_slice()))
                    .collect(),
            })
            .collect();
        report.groups = entries.len();
        report.profiles = profiles.len();
        report.files = files.len();
        Index {
            groups: entries,
            keyed,
            unindexed,
            profiles,
            profile_slots,
            files,
            file_slots,
            render_cache: Mutex::new(HashMap::new()),
            report,
        }
    }
}

impl Index {
    /// An index with nothing in it (every selection fails).
    pub fn empty() -> Index {
        Builder::default().finish()
    }

    /// Builds an index from groups (with their source names), profiles keyed by file stem, and
    /// config files keyed by their path relative to the data directory
    /// (`ignition/x.ign`, `generic/y`).
    pub fn from_parts(
        groups: Vec<(String, Group)>,
        profiles: Vec<(String, Profile)>,
        files: Vec<(String, Vec<u8>)>,
    ) -> Index {
        let mut b = Builder::default();
        for (source, group) in groups {
            b.group(source, group);
        }
        for (stem, p) in profiles {
            b.profile(format!("profiles/{stem}.json"), p);
        }
        for (path, bytes) in files {
            b.file(path, bytes);
        }
        b.finish()
    }

    /// What this load found and what it could not use.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// All groups in precedence order.
    pub fn groups(&self) -> &[GroupEntry] {
        &self.groups
    }

    /// The group matchbox would select for these labels.
    pub fn select_group(&self, labels: &Labels) -> Option<&GroupEntry> {
        let mut best: Option<u32> = None;
        let mut consider = |ranks: &[u32]| {
            for &r in ranks {
                if best.is_some_and(|b| r >= b) {
                    break;
                }
                if self.groups[r as usize].matches(labels) {
                    best = Some(r);
                    break;
                }
            }
        };
        for ki in &self.keyed {
            if let Some(ranks) = labels.get(&ki.key).and_then(|v| ki.by_value.get(v)) {
                consider(ranks);
            }
        }
        consider(&self.unindexed);
        best.map(|r| &self.groups[r as usize])
    }

    /// The profile a group names, looked up as matchbox reads `profiles/<name>.json`.
    pub fn profile(&self, name: &str) -> Result<&ProfileEntry, ServeError> {
        let key = clean_join("profiles", &format!("{name}.json"))
            .ok_or_else(|| ServeError::NotFound(format!("invalid profile name {name:?}")))?;
        let entry = self
            .profile_slots
            .get(key.as_str())
            .map(|&slot| &self.profiles[slot as usize])
            .ok_or_else(|| ServeError::NotFound(format!("no profile named {name:?}")))?;
        // matchbox's ProfileGet refuses a profile without an id.
        if entry.id.is_empty() {
            return Err(ServeError::NotFound(format!("profile {name:?} has no id")));
        }
        Ok(entry)
    }

    /// The profile of a selected group (resolved when the index was built).
    pub fn profile_of(&self, entry: &GroupEntry) -> Result<&ProfileEntry, ServeError> {
        match entry.profile_slot {
            Some(slot) => Ok(&self.profiles[slot as usize]),
            // The slow lookup again, for its precise reason.
            None => self.profile(&entry.profile),
        }
    }

    /// The file `name` under `dir` (`ignition` or `generic`), resolved as matchbox resolves it.
    pub fn file(&self, dir: &str, name: &str) -> Option<&ConfigFile> {
        self.file_slots
            .get(clean_join(dir, name)?.as_str())
            .map(|&slot| &self.files[slot as usize])
    }

    /// The body for `/ignition`: a stored Ignition config as is, or a Butane template rendered
    /// with the request's data and translated.
    pub fn ignition(
        &self,
        entry: &GroupEntry,
        labels: &Labels,
        raw_query: &str,
    ) -> Result<Body, ServeError> {
        let profile = self.profile_of(entry)?;
        let name = &*profile.ignition_id;
        let file = profile
            .ignition_slot
            .map(|slot| &self.files[slot as usize])
            .ok_or_else(|| {
                ServeError::NotFound(format!(
                    "no Ignition config or Butane template named {name:?}"
                ))
            })?;
        match file {
            ConfigFile::Ignition(Ok(body)) => Ok(body.clone()),
            ConfigFile::Ignition(Err(reason)) => Err(ServeError::Broken(format!(
                "Ignition config {name:?} is invalid: {reason}"
            ))),
            ConfigFile::Template(t) => self.cached(entry, name, raw_query, || {
                let text = execute(t, name, entry, labels, raw_query)?;
                let ign = engine::butane_to_ignition(&text).map_err(|e| {
                    ServeError::NotFound(format!("translating Butane config {name:?}: {e}"))
                })?;
                ignition::check(&ign).map_err(|e| {
                    ServeError::Broken(format!("Butane config {name:?} translated to {e}"))
                })?;
                Ok(Body::new(ign))
            }),
        }
    }

    /// The body for `/generic`: the profile's generic template, rendered.
    pub fn generic(
        &self,
        entry: &GroupEntry,
        labels: &Labels,
        raw_query: &str,
    ) -> Result<Body, ServeError> {
        let profile = self.profile_of(entry)?;
        let name = &*profile.generic_id;
        let file = profile
            .generic_slot
            .map(|slot| &self.files[slot as usize])
            .ok_or_else(|| ServeError::NotFound(format!("no generic template named {name:?}")))?;
        match file {
            ConfigFile::Template(t) => self.cached(entry, name, raw_query, || {
                Ok(Body::new(execute(t, name, entry, labels, raw_query)?))
            }),
            // A `.ign` name under generic/ is still a template to matchbox.
            ConfigFile::Ignition(_) => Err(ServeError::Broken(format!(
                "generic template {name:?} could not be prepared"
            ))),
        }
    }

    fn cached(
        &self,
        entry: &GroupEntry,
        name: &str,
        raw_query: &str,
        render: impl FnOnce() -> Result<Body, ServeError>,
    ) -> Result<Body, ServeError> {
        // The output depends only on the template, the group and the query (labels derive
        // from it), all fixed for this index generation.
        let key = (entry.rank, name.to_string(), raw_query.to_string());
        if let Some(hit) = self.lock_cache().get(&key) {
            return hit.clone();
        }
        let result = render();
        let mut cache = self.lock_cache();
        if cache.len() >= RENDER_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result
    }

    fn lock_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RenderKey, Result<Body, ServeError>>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.render_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn execute(
    t: &Result<Template, Arc<str>>,
    name: &str,
    entry: &GroupEntry,
    labels: &Labels,
    raw_query: &str,
) -> Result<String, ServeError> {
    let t = t
        .as_ref()
        .map_err(|e| ServeError::NotFound(format!("template {name:?} does not parse: {e}")))?;
    t.render(&entry.to_group(), labels, raw_query)
        .map_err(|e| ServeError::NotFound(format!("rendering template {name:?}: {e}")))
}

/// `k=v` pairs sorted and joined with `,` (matchbox's `selectorString`).
fn selector_string<'a>(selector: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut reqs: Vec<String> = selector.map(|(k, v)| format!("{k}={v}")).collect();
    reqs.sort();
    reqs.join(",")
}

fn index_key(selector: &[(Arc<str>, Arc<str>)]) -> Option<(&Arc<str>, &Arc<str>)> {
    let usable = |(k, v): &&(Arc<str>, Arc<str>)| !v.is_empty() && !k.is_empty();
    PREFERRED_KEYS
        .iter()
        .find_map(|p| selector.iter().filter(usable).find(|(k, _)| &**k == *p))
        .or_else(|| selector.iter().find(usable))
        .map(|(k, v)| (k, v))
}

/// matchbox's `Group.Normalize`: a selector whose key is `mac` in any case must hold a valid
/// MAC, stored in canonical form; otherwise the group is not loaded.
fn normalise_group(mut g: Group) -> Result<Group, String> {
    for (k, v) in g.selector.iter_mut() {
        if k.eq_ignore_ascii_case("mac") {
            *v = Mac::parse(v).map_err(|e| e.to_string())?.to_string();
        }
    }
    Ok(g)
}

fn prepare_file(path: &str, bytes: Vec<u8>) -> ConfigFile {
    let is_ignition =
        path.starts_with("ignition/") && (path.ends_with(".ign") || path.ends_with(".ignition"));
    if is_ignition {
        return ConfigFile::Ignition(
            ignition::check(&bytes)
                .map(|_| Body::new(bytes))
                .map_err(|e| e.to_string().into()),
        );
    }
    ConfigFile::Template(match String::from_utf8(bytes) {
        Ok(text) => engine::compile(path, &text).map_err(Into::into),
        Err(_) => Err("template is not valid UTF-8".into()),
    })
}

fn file_problem(file: &ConfigFile) -> Option<String> {
    match file {
        ConfigFile::Ignition(Err(e)) | ConfigFile::Template(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

/// `path.Clean("/" + dir + "/" + name)` without the leading slash, as matchbox's `Dir.sanitize`
/// confines a name to the data directory. `None` for names with NUL bytes.
pub fn clean_join(dir: &str, name: &str) -> Option<String> {
    if name.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/').chain(name.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Reads a data directory into an [`Index`]. Unusable files are skipped (groups, profiles) or
/// kept as unusable (configs) and listed in the report; matchbox skips them the same way.
pub fn load(data: &Path) -> Result<Index, LoadError> {
    let before = dir_identity(data)?;
    let mut b = Builder::default();
    fn problem(report: &mut LoadReport) -> impl FnMut(String, String, Kind) + '_ {
        move |path, reason, kind| {
            let p = Problem { path, reason };
            match kind {
                Kind::Plain => {}
                Kind::Missing => report
                    .missing_dirs
                    .push(p.path.trim_end_matches('/').to_string()),
                Kind::Insecure => report.insecure.push(p.clone()),
            }
            report.problems.push(p);
        }
    }

    let found = read_json_dir(data, "groups", &mut problem(&mut b.report));
    for (rel, bytes) in found {
        match serde_json::from_slice::<Group>(&bytes) {
            Ok(g) => b.group(rel, g),
            Err(e) => b.report.problems.push(Problem {
                path: rel,
                reason: format!("invalid group: {e}"),
            }),
        }
    }
    let found = read_json_dir(data, "profiles", &mut problem(&mut b.report));
    for (rel, bytes) in found {
        match serde_json::from_slice::<Profile>(&bytes) {
            Ok(p) => b.profile(rel, p),
            Err(e) => b.report.problems.push(Problem {
                path: rel,
                reason: format!("invalid profile: {e}"),
            }),
        }
    }
    for dir in ["ignition", "generic"] {
        let mut found = Vec::new();
        walk(data, dir, 0, &mut found, &mut problem(&mut b.report));
        for (rel, bytes) in found {
            b.file(rel, bytes);
        }
    }
    if dir_identity(data)? != before {
        return Err(LoadError::Changed(data.to_path_buf()));
    }
    Ok(b.finish())
}

/// Device and inode of the directory, to notice it being swapped for another mid-load
/// (`roundhouse render` replaces the whole directory with two renames).
fn dir_identity(data: &Path) -> Result<(u64, u64), LoadError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(data).map_err(|source| LoadError::DataDir {
        path: data.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(LoadError::DataDir {
            path: data.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    Ok((meta.dev(), meta.ino()))
}

/// What kind of problem a reader found.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    /// `groups/` or `profiles/` is missing.
    Missing,
    /// Others can modify the file.
    Insecure,
}

/// Lists `data/rel`. A missing `groups/` or `profiles/` is a problem (a load that silently
/// found zero groups would replace the serving index with an empty one); a missing `ignition/`
/// or `generic/` is not (matchbox data directories often have none). A directory that exists
/// but cannot be read is always a problem.
fn list_dir(
    data: &Path,
    rel: &str,
    required: bool,
    problem: &mut impl FnMut(String, String, Kind),
) -> Option<std::fs::ReadDir> {
    match std::fs::read_dir(data.join(rel)) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problem(
                format!("{rel}/"),
                "directory is missing (an empty directory is valid; a missing one is damage)"
                    .into(),
                Kind::Missing,
            );
            None
        }
        Err(e) => {
            problem(
                format!("{rel}/"),
                format!("cannot read directory: {e}"),
                Kind::Plain,
            );
            None
        }
    }
}

/// The `*.json` regular files directly in `data/dir`, as `(relative path, bytes)`.
fn read_json_dir(
    data: &Path,
    dir: &str,
    problem: &mut impl FnMut(String, String, Kind),
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(entries) = list_dir(data, dir, true, problem) else {
        return out;
    };
    let mut names: Vec<_> = entries.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            problem(
                format!("{dir}/{}", entry.file_name().to_string_lossy()),
                "file name is not UTF-8".into(),
                Kind::Plain,
            );
            continue;
        };
        if !name.ends_with(".json") {
            continue;
        }
        let rel = format!("{dir}/{name}");
        if let Some(bytes) = read_bounded(&entry.path(), &rel, problem) {
            out.push((rel, bytes));
        }
    }
    out
}

fn walk(
    data: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
    problem: &mut impl FnMut(String, String, Kind),
) {
    // The top directories are optional; a subdirectory listed a moment ago must be readable.
    let Some(entries) = list_dir(data, rel, false, problem) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            problem(
                format!("{rel}/{}", entry.file_name().to_string_lossy()),
                "file name is not UTF-8".into(),
                Kind::Plain,
            );
            continue;
        };
        let child = format!("{rel}/{name}");
        // Follows symlinks, as matchbox's os.ReadFile does.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            if depth + 1 < MAX_DEPTH {
                walk(data, &child, depth + 1, out, problem);
            }
        } else if meta.is_file()
            && let Some(bytes) = read_bounded(&entry.path(), &child, problem)
        {
            out.push((child, bytes));
        }
    }
}

/// Whether a world-readable config under `ignition/` was already reported (once per process:
/// matchbox data directories written by other tools commonly have 0644 configs).
static WARNED_READABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Why a file may not be served because others can modify it: anyone who can write a config
/// decides what a machine installs. Files under `ignition/` (they hold secrets, and are what
/// machines run as root) must not be writable by group or others; everything else must not be
/// writable by others. World-readable configs are served, with one warning.
pub fn insecure_mode(path: &Path, rel: &str, mode: u32) -> Option<String> {
    let secret = rel.starts_with("ignition/");
    let forbidden = if secret { 0o022 } else { 0o002 };
    if mode & forbidden != 0 {
        let who = if mode & 0o002 != 0 {
            "others"
        } else {
            "its group"
        };
        let fix = if secret { "go-w" } else { "o-w" };
        return Some(format!(
            "writable by {who} (mode {:04o}): refusing to serve it; run chmod {fix} {}",
            mode & 0o7777,
            path.display()
        ));
    }
    if secret
        && mode & 0o004 != 0
        && !WARNED_READABLE.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{:04o}", mode & 0o7777),
            "Ignition config is readable by every local user (configs may hold secrets; roundhouse render writes them 0600); served anyway. Reported once."
        );
    }
    None
}

fn read_bounded(
    path: &Path,
    rel: &str,
    problem: &mut impl FnMut(String, String, Kind),
) -> Option<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            problem(
                rel.to_string(),
                format!("larger than {MAX_FILE_BYTES} bytes"),
                Kind::Plain,
            );
            return None;
        }
        Err(e) => {
            problem(rel.to_string(), e.to_string(), Kind::Plain);
            return None;
        }
        Ok(m) => {
            if let Some(reason) = insecure_mode(path, rel, m.permissions().mode()) {
                problem(rel.to_string(), reason, Kind::Insecure);
                return None;
            }
        }
    }
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            problem(rel.to_string(), e.to_string(), Kind::Plain);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, sel: &[(&str, &str)]) -> (String, Group) {
        (
            format!("groups/{id}.json"),
            Group {
                id: id.into(),
                profile: "p".into(),
                selector: sel
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Group::default()
            },
        )
    }

    fn ids(index: &Index) -> Vec<&str> {
        index.groups().iter().map(|g| &*g.id).collect()
    }

    // matchbox storagepb/group_test.go TestGroupSort: ascending there, so descending here.
    #[test]
    fn precedence_order() {
        let index = Index::from_parts(
            vec![
                group("a", &[("region", "a")]),
                group("b", &[("uuid", "a1b2c3d4")]),
                group("c", &[("mac", "52:54:00:89:d8:10"), ("uuid", "a1b2c3d4")]),
                group("d", &[("region", "a"), ("zone", "z")]),
                group("e", &[("region", "b"), ("zone", "z")]),
            ],
            vec![],
            vec![],
        );
        assert_eq!(ids(&index), ["e", "d", "c", "b", "a"]);
    }

    /// matchbox's selection, literally: sort, scan, first match.
    fn reference_select<'a>(groups: &'a [(String, Group)], labels: &Labels) -> Option<&'a str> {
        let mut sorted: Vec<&(String, Group)> = groups.iter().collect();
        sorted.sort_by(|a, b| {
            b.1.selector
                .len()
                .cmp(&a.1.selector.len())
                .then_with(|| {
                    let s = |g: &Group| {
                        selector_string(g.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    };
                    s(&b.1).cmp(&s(&a.1))
                })
                .then(a.0.cmp(&b.0))
        });
        sorted
            .into_iter()
            .find(|(_, g)| {
                g.selector
                    .iter()
                    .all(|(k, v)| labels.get(k).unwrap_or("") == v)
            })
            .map(|(_, g)| g.id.as_str())
    }

    proptest::proptest! {
        // The indexed selection agrees with a linear scan on random fleets and requests.
        #[test]
        fn indexed_selection_is_matchbox_selection(
            specs in proptest::collection::vec(
                proptest::collection::btree_map(
                    proptest::sample::select(vec!["mac", "uuid", "os", "region", "MAC"]),
                    proptest::sample::select(vec!["", "a", "b", "52:54:00:00:00:01", "52:54:00:00:00:02"]),
                    0..4),
                0..12),
            query in proptest::collection::btree_map(
                proptest::sample::select(vec!["mac", "uuid", "os", "region", "MAC"]),
                proptest::sample::select(vec!["", "a", "b", "52:54:00:00:00:01", "52:54:00:00:00:02"]),
                0..5),
        ) {
            let groups: Vec<(String, Group)> = specs
                .iter()
                .enumerate()
                .map(|(i, sel)| {
                    let sel: Vec<(&str, &str)> = sel.iter().map(|(k, v)| (*k, *v)).collect();
                    group(&format!("g{i}"), &sel)
                })
                // Groups with an invalid MAC selector are not loaded, in either model.
                .filter(|(_, g)| normalise_group(g.clone()).is_ok())
                .collect();
            let labels = Labels::from_pairs(query.iter().map(|(k, v)| (*k, *v)));
            let index = Index::from_parts(groups.clone(), vec![], vec![]);
            let got = index.select_group(&labels).map(|g| &*g.id);
            proptest::prop_assert_eq!(got, reference_select(&groups, &labels));
        }
    }

    #[test]
    fn empty_selector_value_matches_missing_label() {
        let index = Index::from_parts(
            vec![
                group("x", &[("os", "")]),
                group("y", &[("os", "installed")]),
            ],
            vec![],
            vec![],
        );
        let sel = |q: &str| {
            index
                .select_group(&Labels::parse(q).unwrap())
                .map(|g| g.id.to_string())
        };
        assert_eq!(sel("").as_deref(), Some("x"));
        assert_eq!(sel("os=installed").as_deref(), Some("y"));
        assert_eq!(sel("os=other"), None);
    }

    #[test]
    fn mac_selectors_are_normalised_or_rejected() {
        let index = Index::from_parts(
            vec![
                group("ok", &[("mac", "52-54-00-89-D8-10")]),
                group("bad", &[("MAC", "nope")]),
            ],
            vec![],
            vec![],
        );
        assert_eq!(ids(&index), ["ok"]);
        assert_eq!(index.report().problems.len(), 1);
        assert_eq!(
            index.groups()[0].selector().collect::<Vec<_>>(),
            [("mac", "52:54:00:89:d8:10")]
        );
    }

    #[test]
    fn clean_join_confines_names() {
        assert_eq!(clean_join("ignition", "a.ign").unwrap(), "ignition/a.ign");
        assert_eq!(
            clean_join("ignition", "./x/../a.ign").unwrap(),
            "ignition/a.ign"
        );
        assert_eq!(
            clean_join("ignition", "../../../etc/passwd").unwrap(),
            "etc/passwd"
        );
        assert_eq!(clean_join("ignition", "../generic/t").unwrap(), "generic/t");
        assert_eq!(clean_join("ignition", "a\0b"), None);
    }
}
