//! The SSH keys roundhouse manages for a cluster, under `<asset_dir>/keys/`:
//!
//! ```text
//! keys/operator_ed25519              operator private key (0600): apply logs in as core with it
//! keys/operator_ed25519.pub          its public half (0644): added to core's authorized keys
//! keys/hosts/<node>/ssh_host_ed25519_key       the node's host key (0600), in its final config
//! keys/hosts/<node>/ssh_host_ed25519_key.pub   its public half (0644): what apply pins
//! ```
//!
//! Keys are generated once and then reused, so a node's host key stays the same across
//! re-provisions (an in-place re-provision wipes root, and with it any key the OS generated).
//! Loading is split from persisting: [`KeyStore::load_or_generate`] creates missing keys in
//! memory only, and [`LoadedKeys::persist`] writes them — the CLI calls it only after the
//! cluster rendered, so invalid input writes nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roundhouse_render::{HostKey, ManagedKeys};
use roundhouse_ssh::{PrivateKey, PublicKey};
use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};

/// File name of the operator key inside the keys directory.
pub const OPERATOR_KEY: &str = "operator_ed25519";
/// File name of a node's host key inside `hosts/<node>/`.
pub const HOST_KEY: &str = "ssh_host_ed25519_key";

/// Why keys could not be loaded, generated or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists but is not an unencrypted OpenSSH ed25519 key.
    #[error("{}: not a usable OpenSSH ed25519 key ({reason}); fix or remove it (removing a host key changes the node's config and re-provisions it)", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A private key file others can read or write (OpenSSH refuses such keys too).
    #[error("{}: private key is accessible by {who} (mode {mode:04o}); run chmod 600 {} (and check who may have copied or replaced it)", path.display(), path.display())]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// "its group", "others" or "its group and others".
        who: &'static str,
    },
    /// The system's random source failed.
    #[error("generating a key: the system random source failed: {0}")]
    Random(String),
}

/// The keys directory of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStore {
    dir: PathBuf,
}

/// One key pair, held in memory.
#[derive(Clone)]
pub struct KeyPair {
    private: Arc<PrivateKey>,
    private_openssh: String,
    public_openssh: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// The private key, for authentication.
    pub fn private(&self) -> Arc<PrivateKey> {
        Arc::clone(&self.private)
    }

    /// The public key, for pinning.
    pub fn public(&self) -> PublicKey {
        self.private.public_key().clone()
    }

    /// The public key as an OpenSSH line.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    fn generate(comment: &str) -> Result<KeyPair, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let pair = Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::new(pair.into(), comment)
            .map_err(|e| KeyError::Random(format!("building the key: {e}")))?;
        Self::from_key(key, Path::new("(generated)"))
    }

    fn from_key(key: PrivateKey, path: &Path) -> Result<KeyPair, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if key.algorithm() != russh::keys::ssh_key::Algorithm::Ed25519 {
            return Err(invalid(format!("algorithm is {}", key.algorithm())));
        }
        if key.is_encrypted() {
            return Err(invalid("it is encrypted".into()));
        }
        let private_openssh = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| invalid(e.to_string()))?
            .to_string();
        let public_openssh = key
            .public_key()
            .to_openssh()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(KeyPair {
            private: Arc::new(key),
            private_openssh,
            public_openssh,
        })
    }

    fn load(path: &Path) -> Result<Option<KeyPair>, KeyError> {
        let Some(text) = read_key_file(path)? else {
            return Ok(None);
        };
        let key = decode_private(&text, path)?;
        Self::from_key(key, path).map(Some)
    }
}

/// The text of a private key file; `None` when it does not exist (yet). A file its group or
/// others can read or write is refused, as OpenSSH refuses it: its secret may be known, or the
/// key replaced.
fn read_key_file(path: &Path) -> Result<Option<String>, KeyError> {
    use std::io::Read;
    let io = |source| KeyError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(source)),
    };
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
            (true, true) => "its group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(KeyError::Insecure {
            path: path.to_path_buf(),
            mode,
            who,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    Ok(Some(text))
}

/// Mode of the keys directory and the directories under it.
const KEY_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing directories under `root`) 0700 whatever the umask; `root`'s own
/// parents are created as usual.
fn create_key_dirs(root: &Path, dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io {
            action: "creating",
            path,
            source,
        }
    };
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(KEY_DIR_MODE)
        .create(dir)
        .map_err(io(dir))
}

/// A node's host key as roundhouse uses it: the private key's OpenSSH text goes into the node's
/// final config, the public half is pinned. Nothing here signs, so the private key is never
/// decoded into a key object: decoding derives the public half with an Ed25519 scalar
/// multiplication, which was a third of rendering a 10,000-node cluster.
#[derive(Clone)]
pub struct HostKeyPair {
    private_openssh: String,
    public: PublicKey,
    public_openssh: String,
}

impl std::fmt::Debug for HostKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKeyPair")
            .field("public", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

impl HostKeyPair {
    /// The public key, for pinning.
    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// The public key as an OpenSSH line.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    fn from_pair(k: KeyPair) -> HostKeyPair {
        HostKeyPair {
            public: k.public(),
            private_openssh: k.private_openssh,
            public_openssh: k.public_openssh,
        }
    }

    /// Loads `path` and its `.pub`. When the private file is exactly what roundhouse writes
    /// (canonical OpenSSH armor, unencrypted ed25519) and the public key inside it equals the
    /// `.pub` file, the texts are taken as they are; anything else goes through a full decode,
    /// which also re-derives the public half.
    fn load(path: &Path) -> Result<Option<HostKeyPair>, KeyError> {
        let Some(text) = read_key_file(path)? else {
            return Ok(None);
        };
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let fast = std::fs::read_to_string(Path::new(&pub_path))
            .ok()
            .and_then(|line| PublicKey::from_openssh(line.trim()).ok())
            .filter(|public| public.algorithm() == russh::keys::ssh_key::Algorithm::Ed25519)
            .and_then(|public| {
                let blob = public.key_data().ed25519()?.0;
                canonical_ed25519_public(&text).filter(|p| *p == blob)?;
                let public_openssh = public.to_openssh().ok()?;
                Some(HostKeyPair {
                    private_openssh: text.clone(),
                    public,
                    public_openssh,
                })
            });
        match fast {
            Some(k) => Ok(Some(k)),
            None => {
                let key = decode_private(&text, path)?;
                KeyPair::from_key(key, path).map(|k| Some(HostKeyPair::from_pair(k)))
            }
        }
    }
}

/// The ed25519 public key inside an OpenSSH private key file, if the file is in the exact form
/// roundhouse (ssh-key) writes: armor lines, base64 wrapped at 70 columns, LF endings,
/// unencrypted, one key, the public key equal in the header and the private section, and the
/// two check integers equal. `None` means "decode it properly", never "invalid".
fn canonical_ed25519_public(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let body = text
        .strip_prefix("-----BEGIN OPENSSH PRIVATE KEY-----\n")?
        .strip_suffix("-----END OPENSSH PRIVATE KEY-----\n")?;
    let lines: Vec<&str> = body.lines().collect();
    let (last, full) = lines.split_last()?;
    if full.iter().any(|l| l.len() != 70) || last.is_empty() || last.len() > 70 {
        return None;
    }
    if !body.ends_with('\n') || body.contains('\r') {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(lines.concat())
        .ok()?;
    let mut r = Reader(&bytes);
    if r.take(15)? != b"openssh-key-v1\0" {
        return None;
    }
    if r.string()? != b"none" || r.string()? != b"none" || !r.string()?.is_empty() {
        return None;
    }
    if r.u32()? != 1 {
        return None;
    }
    let mut header = Reader(r.string()?);
    if header.string()? != b"ssh-ed25519" {
        return None;
    }
    let public: [u8; 32] = header.string()?.try_into().ok()?;
    let mut private = Reader(r.string()?);
    if private.u32()? != private.u32()? || private.string()? != b"ssh-ed25519" {
        return None;
    }
    let inner_public = private.string()?;
    let keypair = private.string()?;
    if inner_public != public || keypair.len() != 64 || keypair[32..] != public {
        return None;
    }
    Some(public)
}

/// Length-prefixed fields of the OpenSSH key format (RFC 4251 `string` and `uint32`).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

fn decode_private(text: &str, path: &Path) -> Result<PrivateKey, KeyError> {
    PrivateKey::from_openssh(text.as_bytes()).map_err(|e| KeyError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Every managed key of a cluster, and which of them are new (not yet on disk).
#[derive(Debug, Clone)]
pub struct LoadedKeys {
    store: KeyStore,
    /// The operator key.
    pub operator: KeyPair,
    /// Host keys by node name.
    pub hosts: BTreeMap<String, HostKeyPair>,
    new_operator: bool,
    new_hosts: Vec<String>,
}

/// The file beside a node's host key where the operator may put extra host keys to accept.
pub const PREVIOUS_HOST_KEY: &str = "previous_host_key.pub";

impl LoadedKeys {
    /// The host keys SSH accepts for `node`: its managed key, plus any in
    /// `keys/hosts/<node>/previous_host_key.pub` (written by the operator: an adopted node's
    /// own key until its first re-provision installs the managed one).
    pub fn pinned_host_keys(&self, node: &str) -> Result<Vec<PublicKey>, KeyError> {
        let mut keys = Vec::new();
        if let Some(k) = self.hosts.get(node) {
            keys.push(k.public());
        }
        let previous = self.store.host_path(node).with_file_name(PREVIOUS_HOST_KEY);
        let text = match std::fs::read_to_string(&previous) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
            Err(source) => {
                return Err(KeyError::Io {
                    action: "reading",
                    path: previous,
                    source,
                });
            }
        };
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            keys.push(
                roundhouse_ssh::parse_public_key(line).map_err(|e| KeyError::Invalid {
                    path: previous.clone(),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(keys)
    }
}

impl KeyStore {
    /// The keys directory `dir` (conventionally `<asset_dir>/keys`).
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `keys/operator_ed25519`.
    pub fn operator_path(&self) -> PathBuf {
        self.dir.join(OPERATOR_KEY)
    }

    /// `keys/hosts/<node>/ssh_host_ed25519_key`.
    pub fn host_path(&self, node: &str) -> PathBuf {
        self.dir.join("hosts").join(node).join(HOST_KEY)
    }

    /// Loads the operator key and the host keys of `nodes`, generating (in memory only) any
    /// that are missing. Nothing is written; see [`LoadedKeys::persist`].
    pub fn load_or_generate<'a>(
        &self,
        cluster_name: &str,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<LoadedKeys, KeyError> {
        let (operator, new_operator) = match KeyPair::load(&self.operator_path())? {
            Some(k) => (k, false),
            None => (
                KeyPair::generate(&format!("roundhouse-operator@{cluster_name}"))?,
                true,
            ),
        };
        // Reading thousands of key files (and decoding those not in canonical form, which
        // derives the public half) is spread over the cores.
        let nodes: Vec<&str> = nodes.into_iter().collect();
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(nodes.len().max(1));
        let chunk = nodes.len().div_ceil(workers).max(1);
        type Loaded = Result<Vec<(String, HostKeyPair, bool)>, KeyError>;
        let results: Vec<Loaded> = std::thread::scope(|scope| {
            let handles: Vec<_> = nodes
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|node| match HostKeyPair::load(&self.host_path(node))? {
                                Some(k) => Ok((node.to_string(), k, false)),
                                None => Ok((
                                    node.to_string(),
                                    HostKeyPair::from_pair(KeyPair::generate(&format!(
                                        "root@{node}"
                                    ))?),
                                    true,
                                )),
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("key loader panicked"))
                .collect()
        });
        let mut hosts = BTreeMap::new();
        let mut new_hosts = Vec::new();
        for result in results {
            for (node, key, new) in result? {
                if new {
                    new_hosts.push(node.clone());
                }
                hosts.insert(node, key);
            }
        }
        Ok(LoadedKeys {
            store: self.clone(),
            operator,
            hosts,
            new_operator,
            new_hosts,
        })
    }
}

impl LoadedKeys {
    /// The keys as rendering needs them.
    pub fn managed(&self) -> ManagedKeys {
        ManagedKeys {
            operator_public: Some(self.operator.public_openssh.clone()),
            host_keys: self
                .hosts
                .iter()
                .map(|(name, k)| {
                    (
                        name.clone(),
                        HostKey {
                            private_openssh: k.private_openssh.clone(),
                            public_openssh: k.public_openssh.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Whether some key exists only in memory.
    pub fn has_new(&self) -> bool {
        self.new_operator || !self.new_hosts.is_empty()
    }

    /// Writes the keys generated by [`KeyStore::load_or_generate`]: private halves 0600,
    /// public halves 0644, each written to a temporary file, synced and renamed into place so
    /// a crash never leaves half a key. Existing keys are never overwritten.
    pub fn persist(&mut self) -> Result<(), KeyError> {
        let root = self.store.dir.clone();
        if self.new_operator {
            let k = &self.operator;
            write_pair(
                &root,
                &self.store.operator_path(),
                &k.private_openssh,
                &k.public_openssh,
            )?;
            self.new_operator = false;
        }
        for node in std::mem::take(&mut self.new_hosts) {
            if let Some(k) = self.hosts.get(&node) {
                write_pair(
                    &root,
                    &self.store.host_path(&node),
                    &k.private_openssh,
                    &k.public_openssh,
                )?;
            }
        }
        Ok(())
    }
}

fn write_pair(
    root: &Path,
    path: &Path,
    private_openssh: &str,
    public_openssh: &str,
) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_key_dirs(root, dir)?;
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    // Public half first: a private key without its .pub is still complete, the reverse is not.
    write_atomic(
        Path::new(&public),
        format!("{}\n", public_openssh.trim_end()).as_bytes(),
        0o644,
    )?;
    write_atomic(path, private_openssh.as_bytes(), 0o600)
}

/// Writes `bytes` to `path` atomically with `mode`: temp file beside it, fsync, rename, fsync
/// of the directory. Refuses to replace an existing file (keys are never rotated silently).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |action, source| KeyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    // The umask may have narrowed the mode; set it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting permissions of", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    drop(f);
    // hard_link fails if the target exists: no silent replacement of a key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| io("writing", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_persisted_once_and_reloaded_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path().join("keys"));
        let mut first = store.load_or_generate("c", ["n1", "n2"]).unwrap();
        assert!(first.has_new());
        assert!(!store.operator_path().exists(), "load writes nothing");
        first.persist().unwrap();
        assert!(!first.has_new());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.operator_path()), 0o600);
        assert_eq!(mode(&store.host_path("n1")), 0o600);
        let mut pubp = store.host_path("n1").into_os_string();
        pubp.push(".pub");
        assert_eq!(mode(Path::new(&pubp)), 0o644);

        let again = store.load_or_generate("c", ["n1", "n2", "n3"]).unwrap();
        assert_eq!(again.new_hosts, vec!["n3".to_string()]);
        assert!(!again.new_operator);
        assert_eq!(
            again.managed().host_keys["n1"],
            first.managed().host_keys["n1"]
        );
        assert_eq!(again.operator.public_openssh, first.operator.public_openssh);
        assert_ne!(
            again.managed().host_keys["n1"].public_openssh,
            again.managed().host_keys["n2"].public_openssh
        );
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        write_atomic(&store.operator_path(), b"not a key", 0o600).unwrap();
        let err = store.load_or_generate("c", ["n1"]).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
    }

    /// The shortcut must give exactly what a full decode gives, or render digests would change.
    #[test]
    fn host_keys_read_without_decoding_equal_a_full_decode() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        store
            .load_or_generate("c", ["n1"])
            .unwrap()
            .persist()
            .unwrap();
        let path = store.host_path("n1");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            canonical_ed25519_public(&text).is_some(),
            "what we write is canonical"
        );

        let fast = HostKeyPair::load(&path).unwrap().unwrap();
        let full = HostKeyPair::from_pair(
            KeyPair::from_key(decode_private(&text, &path).unwrap(), &path).unwrap(),
        );
        assert_eq!(fast.private_openssh, full.private_openssh);
        assert_eq!(fast.public_openssh, full.public_openssh);
        assert_eq!(fast.public(), full.public());
    }

    /// A `.pub` that does not belong to the private key is not trusted: the public half is
    /// derived from the private key, as before the shortcut existed.
    #[test]
    fn a_mismatched_pub_file_falls_back_to_the_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        let mut keys = store.load_or_generate("c", ["n1", "n2"]).unwrap();
        keys.persist().unwrap();
        let pub_of = |node: &str| {
            let mut p = store.host_path(node).into_os_string();
            p.push(".pub");
            PathBuf::from(p)
        };
        std::fs::copy(pub_of("n2"), pub_of("n1")).unwrap();
        let loaded = HostKeyPair::load(&store.host_path("n1")).unwrap().unwrap();
        assert_eq!(loaded.public_openssh, keys.hosts["n1"].public_openssh);
        assert_ne!(loaded.public_openssh, keys.hosts["n2"].public_openssh);
    }

    /// Keys placed by hand in another layout (CRLF here) still load, through the full decode.
    #[test]
    fn a_non_canonical_host_key_file_is_decoded_fully() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        let mut keys = store.load_or_generate("c", ["n1"]).unwrap();
        keys.persist().unwrap();
        let path = store.host_path("n1");
        let crlf = std::fs::read_to_string(&path)
            .unwrap()
            .replace('\n', "\r\n");
        assert!(canonical_ed25519_public(&crlf).is_none());
        std::fs::remove_file(&path).unwrap();
        write_atomic(&path, crlf.as_bytes(), 0o600).unwrap();
        let loaded = HostKeyPair::load(&path).unwrap().unwrap();
        assert_eq!(loaded.public_openssh, keys.hosts["n1"].public_openssh);
        // A damaged host key is an error, not a new key.
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            HostKeyPair::load(&path),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn key_directories_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path().join("assets/keys"));
        store
            .load_or_generate("c", ["n1"])
            .unwrap()
            .persist()
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("hosts")), 0o700);
        assert_eq!(mode(&store.dir().join("hosts/n1")), 0o700);
        assert_ne!(mode(&tmp.path().join("assets")), 0o700, "only the keys");
    }

    /// OpenSSH's rule: a private key its group or others can read or write is refused, with
    /// the file and the fix named; nothing is generated in its place.
    #[test]
    fn private_keys_others_can_access_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        store
            .load_or_generate("c", ["n1"])
            .unwrap()
            .persist()
            .unwrap();
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        for (path, m, who) in [
            (store.operator_path(), 0o644, "its group and others"),
            (store.operator_path(), 0o640, "its group"),
            (store.host_path("n1"), 0o602, "others"),
        ] {
            chmod(&path, m);
            let err = store.load_or_generate("c", ["n1"]).unwrap_err();
            assert!(
                matches!(&err, KeyError::Insecure { path: p, .. } if *p == path),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains(who), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            chmod(&path, 0o600);
        }
        // The public halves may be world-readable.
        store.load_or_generate("c", ["n1"]).unwrap();
    }

    #[test]
    fn existing_files_are_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert!(write_atomic(&p, b"two", 0o600).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
    }
}
