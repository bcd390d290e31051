//! The validated cluster model. Everything downstream (rendering, planning, applying) reads
//! these types and nothing else of the cluster file: once a `Cluster` exists, every setting is
//! resolved, defaulted and checked.

use std::path::PathBuf;

use bootdata::Mac;

/// A whole cluster, as described by one cluster file.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The cluster file this model was read from.
    pub source: PathBuf,
    /// `name` (Lokomotive's `cluster_name`).
    pub name: String,
    /// `asset_dir`: where roundhouse keeps state and rendered output, absolute or relative to
    /// the cluster file's directory (already joined).
    pub asset_dir: PathBuf,
    /// Public keys for user `core`, in the installer and the installed OS.
    pub ssh_pubkeys: Vec<String>,
    /// `boot_server_http`: base URL of the boot server as machines reach it, no trailing slash.
    pub boot_server_http: String,
    /// OS channel, version and how the installer downloads it.
    pub os: Os,
    /// Disk selection and installer behaviour (cluster default; nodes may override the target).
    pub install: Install,
    /// Extra kernel arguments for PXE and the installed OS (cluster default).
    pub kernel_args: Vec<String>,
    /// Console arguments (`console=…`) for PXE and the installed OS.
    pub kernel_console: Vec<String>,
    /// Shell run on the operator's machine when a node needs a PXE install and it has no power
    /// driver; sees `$mac $name $domain $asset_dir`.
    pub pxe_command: String,
    /// Butane snippets merged into every node's final config, in order.
    pub snippets: Vec<Snippet>,
    /// Butane snippets merged into every node's installer config, in order.
    pub installer_snippets: Vec<Snippet>,
    /// What to do when a node's rendered config changes, per role.
    pub policy: Policy,
    /// Serve boot-from-disk to installed nodes instead of the installer (see the boot server).
    pub netboot_gating: bool,
    /// `allow_snippet_overrides`: the parts of roundhouse's base config that snippets may
    /// change (sorted, no duplicates). Empty by default: a snippet that touches one of them is
    /// an error. Nodes may replace the list.
    pub allow_snippet_overrides: Vec<SnippetOverride>,
    /// `state_url`, or the `ROUNDHOUSE_STATE_URL` environment variable (which wins): the
    /// PostgreSQL database holding the state store. `None`: the embedded store in
    /// `asset_dir` (the default). Never holds a password (one is refused at load).
    pub state_url: Option<String>,
    /// `state_password_file`: a file holding the database password (joined to the cluster
    /// file's directory when relative).
    pub state_password_file: Option<PathBuf>,
    /// The machines, in file order.
    pub nodes: Vec<Node>,
    /// Post-provision hooks (`hook` blocks), in file order: the order they run in.
    pub hooks: Vec<Hook>,
}

impl Cluster {
    /// The hooks that apply to nodes of `role`, in file order.
    pub fn hooks_for(&self, role: Role) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(move |h| h.roles.contains(&role))
    }
}

/// Flatcar release selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Os {
    /// `os_channel`: stable, beta, alpha or lts.
    pub channel: Channel,
    /// `os_version`: a version like `3815.2.0` or `current`.
    pub version: String,
    /// `download_protocol`: how kernel, initrd and image are fetched from Flatcar's servers.
    pub download_protocol: Protocol,
    /// `cached_install`: boot and install from `<boot_server_http>/assets/flatcar/`.
    pub cached_install: bool,
}

/// Flatcar release channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Stable,
    Beta,
    Alpha,
    Lts,
}

impl Channel {
    /// The channel's name as Flatcar's URLs and `flatcar-install -C` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
            Channel::Alpha => "alpha",
            Channel::Lts => "lts",
        }
    }
}

/// `download_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// How the installer picks and prepares disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// `install_disk` or `install_to_smallest_disk` (mutually exclusive).
    pub target: InstallTarget,
    /// `wipe_additional_disks`: `wipefs -f -a` every disk without mountpoints first.
    pub wipe_additional_disks: bool,
    /// `install_pre_reboot_cmds`: shell run in the installer before it reboots.
    pub pre_reboot_cmds: String,
}

/// The disk Flatcar is installed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallTarget {
    /// `flatcar-install -d <device>`.
    Disk(String),
    /// `flatcar-install -s`.
    SmallestDisk,
}

/// A node's role. Controllers run etcd and are protected from accidental wipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Controller,
    Worker,
}

impl Role {
    /// `controller` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Worker => "worker",
        }
    }
}

/// What happens to a node whose rendered config changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangePolicy {
    /// Re-provision in place over SSH (wipes the root filesystem).
    Reprovision,
    /// Keep the old config running; the change shows as drift.
    Hold,
}

/// Per-role change policy: `on_controller_change` and `on_worker_change`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Defaults to `Hold`: a controller wipe loses etcd state.
    pub controllers: ChangePolicy,
    /// Defaults to `Reprovision`.
    pub workers: ChangePolicy,
}

impl Policy {
    /// The policy for nodes of `role`.
    pub fn for_role(&self, role: Role) -> ChangePolicy {
        match role {
            Role::Controller => self.controllers,
            Role::Worker => self.workers,
        }
    }
}

/// One machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name; also its hostname and the boot server group id.
    pub name: String,
    /// The MAC it PXE-boots with, normalised.
    pub mac: Mac,
    /// Where SSH reaches it: a DNS name or IP address.
    pub domain: String,
    /// SSH port of the installed OS (22 unless a lab forwards ports).
    pub ssh_port: u16,
    pub role: Role,
    /// Butane snippets merged into this node's final config after the cluster-wide ones.
    pub snippets: Vec<Snippet>,
    /// Butane snippets merged into this node's installer config after the cluster-wide ones.
    pub installer_snippets: Vec<Snippet>,
    /// Install target override.
    pub install_target: Option<InstallTarget>,
    /// Kernel argument override; replaces the cluster's `kernel_args` when set.
    pub kernel_args: Option<Vec<String>>,
    /// How roundhouse powers and boots this machine; `None` means `pxe_command`.
    pub power: Option<Power>,
    /// `allow_snippet_overrides` of this node, replacing the cluster's when set.
    pub allow_snippet_overrides: Option<Vec<SnippetOverride>>,
}

impl Node {
    /// Kernel arguments in effect for this node.
    pub fn effective_kernel_args<'a>(&'a self, cluster: &'a Cluster) -> &'a [String] {
        self.kernel_args.as_deref().unwrap_or(&cluster.kernel_args)
    }

    /// The parts of the base config that this node's snippets (its own and the cluster's) may
    /// change: the node's `allow_snippet_overrides`, else the cluster's.
    pub fn effective_snippet_overrides<'a>(
        &'a self,
        cluster: &'a Cluster,
    ) -> &'a [SnippetOverride] {
        self.allow_snippet_overrides
            .as_deref()
            .unwrap_or(&cluster.allow_snippet_overrides)
    }

    /// Install target in effect for this node.
    pub fn effective_install_target<'a>(&'a self, cluster: &'a Cluster) -> &'a InstallTarget {
        self.install_target
            .as_ref()
            .unwrap_or(&cluster.install.target)
    }
}

/// A part of the base config roundhouse puts into every node's final config that Butane
/// snippets must not change unless the cluster file allows it (`allow_snippet_overrides`):
/// re-provisioning and the executor rely on each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnippetOverride {
    /// `"root-wipe"`: the ROOT filesystem is wiped on every provisioning (a snippet may not
    /// set `wipe_filesystem: false` on it, or add the root partition again without a wipe).
    RootWipe,
    /// `"ignition-ran"`: the `/ignition_ran` file the executor checks after a re-provision.
    IgnitionRan,
    /// `"host-keys"`: the managed SSH host key files (`/etc/ssh/ssh_host_ed25519_key` and
    /// `.pub`) that the executor pins.
    HostKeys,
    /// `"authorized-keys"`: user `core`'s authorized-keys files, which hold the operator key
    /// roundhouse logs in with (keys added with `ssh_authorized_keys` are fine).
    AuthorizedKeys,
}

impl SnippetOverride {
    /// Every item, in the order documentation lists them.
    pub const ALL: [SnippetOverride; 4] = [
        SnippetOverride::RootWipe,
        SnippetOverride::IgnitionRan,
        SnippetOverride::HostKeys,
        SnippetOverride::AuthorizedKeys,
    ];

    /// The name the cluster file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SnippetOverride::RootWipe => "root-wipe",
            SnippetOverride::IgnitionRan => "ignition-ran",
            SnippetOverride::HostKeys => "host-keys",
            SnippetOverride::AuthorizedKeys => "authorized-keys",
        }
    }
}

/// A post-provision hook: files uploaded and commands run over SSH after a node was installed,
/// re-created or re-provisioned in place, and again whenever its inputs change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The block's label, unique in the cluster.
    pub name: String,
    /// The roles it runs on (every role when the file does not say).
    pub roles: Vec<Role>,
    /// Files to put on the node, in order, before the commands run.
    pub uploads: Vec<Upload>,
    /// Shell commands run as `core`, in order; each must exit 0.
    pub run: Vec<String>,
    /// Seconds the whole hook may take.
    pub timeout_secs: u64,
}

impl Hook {
    /// The hook's input digest (`sha256:<hex>`): what its uploads contain and where they go
    /// (destination, mode, owner) and its commands, in order. Roles and timeout are left out:
    /// changing them changes where or how long it runs, not what it does on a node.
    pub fn input_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Every field is length-prefixed so that no two different hooks hash the same bytes.
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"roundhouse-hook-v1");
        field(&(self.uploads.len() as u64).to_le_bytes());
        for u in &self.uploads {
            field(&u.content);
            field(u.destination.as_bytes());
            field(format!("{:04o}", u.mode).as_bytes());
            field(u.user.as_bytes());
            field(u.group.as_bytes());
        }
        field(&(self.run.len() as u64).to_le_bytes());
        for c in &self.run {
            field(c.as_bytes());
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

/// One file a hook puts on a node.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file's bytes (read from `source` when the cluster file was loaded, or `content`).
    pub content: Vec<u8>,
    /// The `source` file it was read from; `None` for inline `content`.
    pub source: Option<PathBuf>,
    /// Absolute path on the node.
    pub destination: String,
    /// Permission bits (`mode`, default 0644).
    pub mode: u32,
    /// Owner user name or id (default `root`).
    pub user: String,
    /// Owner group name or id (default `root`).
    pub group: String,
}

impl std::fmt::Debug for Upload {
    // Uploads are often secrets (CA keys, tokens): show their size, never their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("user", &self.user)
            .field("group", &self.group)
            .finish()
    }
}

/// A Butane document and where it came from, so translation diagnostics point at the user's
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The Butane YAML.
    pub text: String,
    /// Where `text` is.
    pub origin: SnippetOrigin,
}

/// Location of a snippet's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnippetOrigin {
    /// A file of its own (a `file("path")` call, path resolved against the cluster file's
    /// directory); line 1 of `text` is line 1 of the file.
    File(PathBuf),
    /// Inline in the cluster file or a var file (a heredoc, quoted string or other expression):
    /// line 1 of `text` is `line` of `file`.
    Inline {
        /// The cluster file (or var file) holding the text.
        file: PathBuf,
        /// 1-based line in `file` where the snippet's first line is.
        line: usize,
    },
}

/// Where a secret comes from. Secrets never appear in the model's `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Read from this environment variable when needed.
    Env(String),
    /// Read from this file when needed (path already resolved).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env(name) => write!(f, "Secret::Env({name})"),
            Secret::File(path) => write!(f, "Secret::File({})", path.display()),
        }
    }
}

/// A node's power and boot-device driver (`power { driver = … }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Power {
    /// A shell command, like Lokomotive's `pxe_commands`.
    Command {
        /// Shell text; sees `$mac $name $domain $asset_dir`.
        command: String,
        /// Seconds before the command is killed.
        timeout_secs: u64,
    },
    /// IPMI over LAN (RMCP+).
    Ipmi {
        /// BMC host name or address.
        address: String,
        /// UDP port, 623 by default.
        port: u16,
        username: String,
        password: Secret,
        /// RMCP+ cipher suite, 3 by default.
        cipher_suite: u8,
        /// Boot in EFI mode when setting the next boot device.
        efi: bool,
        /// What the boot device is around an install.
        persistent_boot: PersistentBoot,
    },
    /// Redfish over HTTPS.
    Redfish {
        /// Base URL of the BMC, e.g. `https://10.0.0.5`.
        endpoint: String,
        /// ComputerSystem id; discovered when there is exactly one.
        system_id: Option<String>,
        username: String,
        password: Secret,
        /// PEM CA bundle to trust for the BMC's certificate.
        ca_file: Option<PathBuf>,
        /// Accept any certificate (explicit opt-in).
        insecure: bool,
        efi: bool,
        /// How to authenticate.
        auth: RedfishAuth,
        /// What the boot device is around an install.
        persistent_boot: PersistentBoot,
    },
}

/// The boot-device policy of a node with a BMC (`persistent_boot = ...`), so a machine never
/// loops into reinstalling itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersistentBoot {
    /// `"disk"` (default): PXE for the next boot only when installing; once the install has
    /// succeeded, disk becomes the persistent boot device.
    #[default]
    Disk,
    /// `"network"`: PXE on every boot (Racker's way); the boot server tells installed machines
    /// to boot from their disk. Nothing is changed after the install.
    Network,
}

/// How the Redfish driver authenticates (`auth = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedfishAuth {
    /// `"auto"` (default): a session when the service offers a SessionService, else basic.
    #[default]
    Auto,
    /// `"basic"`: HTTP basic authentication on every request.
    Basic,
    /// `"session"`: create a session (X-Auth-Token), delete it afterwards.
    Session,
}
