//! Everything roundhouse derives from a cluster for one node, in one call: the final Ignition
//! config, the installer Ignition config, the two boot profiles and groups, and the config digest
//! that decides whether a node must be re-provisioned.
//!
//! Rendering is pure (cluster model in, documents out) except for reading `local:` files that
//! Butane snippets reference; writing a matchbox data directory is a separate step
//! ([`write_matchbox_dir`]) so callers can render, check, and only then write.

mod contract;
mod dataurl;
mod digest;
mod installer;
mod output;
mod snippets;

use std::collections::BTreeMap;
use std::sync::Arc;

use bootdata::{Boot, Group, Mac, Profile};
use roundhouse_config::{Cluster, Diagnostic, Diagnostics, Node, Role};
use serde_json::{Value, json};

pub use digest::{Digest, canonical_json};
pub use installer::{linux_append, linux_console};
pub use output::{
    MANIFEST_FILE, Manifest, ManifestNode, STATE_DIR, WriteError, write_matchbox_dir,
};

/// Rendering settings.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Treat Butane warnings in snippets as errors (`--strict`).
    pub strict: bool,
    /// SSH keys roundhouse manages for the cluster. Loaded (or generated) by the caller, so
    /// rendering stays pure and `render` and `apply` produce the same bytes.
    pub keys: ManagedKeys,
}

/// The SSH keys roundhouse manages: the operator key it connects with, and one host key per
/// node that the node's final config installs and the executor pins.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ManagedKeys {
    /// The operator key's public half (`ssh-ed25519 AAAA… comment`), added to user `core`'s
    /// authorized keys after the cluster's `ssh_pubkeys`.
    pub operator_public: Option<String>,
    /// Host keys by node name. A node without an entry keeps whatever host keys its OS
    /// generates (and cannot be pinned).
    pub host_keys: BTreeMap<String, HostKey>,
}

/// One node's SSH host key (ed25519), in OpenSSH formats.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The private key file's text (`-----BEGIN OPENSSH PRIVATE KEY-----…`).
    pub private_openssh: String,
    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub public_openssh: String,
}

impl std::fmt::Debug for ManagedKeys {
    /// Lists which keys are present, never their private halves (logs and panics must not
    /// leak them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedKeys")
            .field("operator_public", &self.operator_public)
            .field("host_keys", &self.host_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

/// Everything rendered for a cluster.
#[derive(Debug, Clone)]
pub struct RenderedCluster {
    /// One entry per node, in cluster-file order.
    pub nodes: Vec<RenderedNode>,
    /// Butane warnings from snippets (each names its file, line and column).
    pub warnings: Vec<Diagnostic>,
}

/// Everything rendered for one node.
#[derive(Debug, Clone)]
pub struct RenderedNode {
    pub name: String,
    pub mac: Mac,
    pub role: Role,
    /// The config the installed OS fetches (`/ignition?mac=…&os=installed`).
    pub final_config: Value,
    /// The config the PXE installer fetches (`/ignition?mac=…`).
    pub installer_config: Value,
    /// Profile booted by PXE: Flatcar's PXE kernel and initrd with the installer config.
    pub install_profile: Profile,
    /// Profile of the installed OS: only its Ignition config.
    pub node_profile: Profile,
    /// `install-<name>`, selector `{mac}`.
    pub install_group: Group,
    /// `<name>`, selector `{mac, os: installed}`.
    pub node_group: Group,
    /// Digest over final config, kernel arguments and kernel console: what decides whether the
    /// node must be re-provisioned.
    pub digest: Digest,
}

/// One worker's share of a render: its nodes in order and their warnings, or all its errors.
type ChunkResult = Result<(Vec<RenderedNode>, Vec<Diagnostic>), Diagnostics>;

/// Renders every node of `cluster`. Fails with diagnostics (pointing into the cluster file or
/// snippet files) if any snippet does not translate or merge; renders nothing partially.
pub fn render_cluster(
    cluster: &Cluster,
    options: &RenderOptions,
) -> Result<RenderedCluster, Diagnostics> {
    let shared = snippets::SharedSnippets::translate(cluster, options)?;
    let shared = Arc::new(shared);

    // Nodes are independent; split them over the available cores. Results keep file order.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(cluster.nodes.len().max(1));
    let chunk = cluster.nodes.len().div_ceil(workers).max(1);
    let results: Vec<ChunkResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .nodes
            .chunks(chunk)
            .map(|nodes| {
                let shared = Arc::clone(&shared);
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(nodes.len());
                    let mut warnings = Vec::new();
                    let mut errors = Vec::new();
                    for node in nodes {
                        match render_with(cluster, node, &shared, options) {
                            Ok((rendered, w)) => {
                                out.push(rendered);
                                warnings.extend(w);
                            }
                            Err(d) => errors.extend(d.0),
                        }
                    }
                    if errors.is_empty() {
                        Ok((out, warnings))
                    } else {
                        Err(Diagnostics(errors))
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("render worker panicked"))
            .collect()
    });

    let mut nodes = Vec::with_capacity(cluster.nodes.len());
    let mut warnings = shared.warnings.clone();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((n, w)) => {
                nodes.extend(n);
                warnings.extend(w);
            }
            Err(d) => errors.extend(d.0),
        }
    }
    if !errors.is_empty() {
        // A cluster-wide snippet's problem is found once per node: report it once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|d| seen.insert(d.to_string()));
        return Err(Diagnostics(errors));
    }
    warnings.dedup();
    Ok(RenderedCluster { nodes, warnings })
}

/// Renders one node. Prefer [`render_cluster`] for many nodes: it translates the cluster-wide
/// snippets once.
pub fn render_node(
    cluster: &Cluster,
    node: &Node,
    options: &RenderOptions,
) -> Result<RenderedNode, Diagnostics> {
    let shared = snippets::SharedSnippets::translate(cluster, options)?;
    render_with(cluster, node, &shared, options).map(|(n, _)| n)
}

fn render_with(
    cluster: &Cluster,
    node: &Node,
    shared: &snippets::SharedSnippets,
    options: &RenderOptions,
) -> Result<(RenderedNode, Vec<Diagnostic>), Diagnostics> {
    let mut warnings = Vec::new();

    let mut violations = shared.final_violations.clone();
    let node_configs = snippets::translate_all(
        &node.snippets,
        cluster,
        options,
        &mut warnings,
        &mut violations,
    )?;
    // Snippets may not change what re-provisioning and the executor rely on, unless the
    // cluster file allows it for this node.
    snippets::check_contract(&violations, node.effective_snippet_overrides(cluster))?;

    let mut final_config = base_final_config(cluster, node, &options.keys);
    if let Some(config) = &shared.final_merged {
        final_config = snippets::merge(&final_config, config);
    }
    for config in node_configs {
        final_config = snippets::merge(&final_config, &config);
    }

    let mut installer_config = installer::base_config(cluster, node);
    if let Some(config) = &shared.installer_merged {
        installer_config = snippets::merge(&installer_config, config);
    }
    for config in snippets::translate_all(
        &node.installer_snippets,
        cluster,
        options,
        &mut warnings,
        &mut Vec::new(),
    )? {
        installer_config = snippets::merge(&installer_config, &config);
    }

    let kernel_args = node.effective_kernel_args(cluster);
    let digest = Digest::of_node(&final_config, kernel_args, &cluster.kernel_console);
    add_digest_file(&mut final_config, &digest);

    let install_id = format!("install-{}", node.name);
    let install_profile = Profile {
        id: install_id.clone(),
        name: format!("Flatcar installer for {}", node.name),
        boot: Some(install_boot(cluster, node)),
        ignition_id: format!("{install_id}.ign"),
        generic_id: String::new(),
    };
    let node_profile = Profile {
        id: node.name.clone(),
        name: format!("Flatcar {} {}", node.role.as_str(), node.name),
        boot: None,
        ignition_id: format!("{}.ign", node.name),
        generic_id: String::new(),
    };
    let mac = node.mac.to_string();
    let install_group = Group {
        id: install_id.clone(),
        name: format!("PXE install of {}", node.name),
        profile: install_id,
        selector: [("mac".to_string(), mac.clone())].into(),
        metadata: Default::default(),
    };
    let node_group = Group {
        id: node.name.clone(),
        name: format!("Installed {}", node.name),
        profile: node.name.clone(),
        selector: [
            ("mac".to_string(), mac),
            ("os".to_string(), "installed".to_string()),
        ]
        .into(),
        metadata: Default::default(),
    };

    Ok((
        RenderedNode {
            name: node.name.clone(),
            mac: node.mac,
            role: node.role,
            final_config,
            installer_config,
            install_profile,
            node_profile,
            install_group,
            node_group,
            digest,
        },
        warnings,
    ))
}

/// What roundhouse puts into every final config before the user's snippets: a root filesystem
/// that Ignition wipes (so an in-place re-provision starts from a clean root), the
/// `/ignition_ran` flag the executor polls for, the hostname, the operator's SSH keys and the
/// node's managed SSH host key (so the executor can pin it across re-provisions).
fn base_final_config(cluster: &Cluster, node: &Node, keys: &ManagedKeys) -> Value {
    let mut authorized = cluster.ssh_pubkeys.clone();
    if let Some(op) = &keys.operator_public
        && !authorized.contains(op)
    {
        authorized.push(op.clone());
    }
    let mut files = vec![
        json!({
            "path": contract::IGNITION_RAN,
            "mode": 0o644,
            "contents": { "source": "data:," }
        }),
        json!({
            "path": "/etc/hostname",
            "mode": 0o644,
            "overwrite": true,
            "contents": { "source": dataurl::encode(format!("{}\n", node.name).as_bytes()) }
        }),
    ];
    if let Some(host) = keys.host_keys.get(&node.name) {
        files.push(json!({
            "path": contract::HOST_KEY_FILES[0],
            "mode": 0o600,
            "overwrite": true,
            "contents": { "source": dataurl::encode(host.private_openssh.as_bytes()) }
        }));
        files.push(json!({
            "path": contract::HOST_KEY_FILES[1],
            "mode": 0o644,
            "overwrite": true,
            "contents": { "source": dataurl::encode(format!("{}\n", host.public_openssh.trim_end()).as_bytes()) }
        }));
    }
    json!({
        "ignition": { "version": "3.3.0" },
        "passwd": {
            "users": [{ "name": "core", "sshAuthorizedKeys": authorized }]
        },
        "storage": {
            "filesystems": [{
                "device": contract::ROOT_DEVICE,
                "format": "ext4",
                "label": "ROOT",
                "wipeFilesystem": true
            }],
            "files": files
        }
    })
}

/// Where every final config puts the node's own config digest, so that the node can tell what
/// it runs (`roundhouse state recover` reads it over SSH). Not covered by the digest itself.
pub const DIGEST_FILE: &str = "/etc/roundhouse/config-digest";

/// Adds [`DIGEST_FILE`] (the digest and a newline) to a final config whose digest was
/// computed, replacing any entry a snippet made for that path: the file must say the truth.
fn add_digest_file(config: &mut Value, digest: &Digest) {
    let Some(storage) = config
        .as_object_mut()
        .map(|c| c.entry("storage").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let files = storage.entry("files").or_insert_with(|| json!([]));
    if let Some(files) = files.as_array_mut() {
        files.retain(|f| f.get("path").and_then(Value::as_str) != Some(DIGEST_FILE));
        files.push(json!({
            "path": DIGEST_FILE,
            "mode": 0o644,
            "overwrite": true,
            "contents": { "source": dataurl::encode(format!("{}\n", digest.as_str()).as_bytes()) }
        }));
    }
}

const PXE_KERNEL: &str = "flatcar_production_pxe.vmlinuz";
const PXE_INITRD: &str = "flatcar_production_pxe_image.cpio.gz";

fn install_boot(cluster: &Cluster, node: &Node) -> Boot {
    let os = &cluster.os;
    let base = if os.cached_install {
        format!("/assets/flatcar/{}", os.version)
    } else {
        format!(
            "{}://{}.release.flatcar-linux.net/amd64-usr/{}",
            os.download_protocol.as_str(),
            os.channel.as_str(),
            os.version
        )
    };
    let mut args = vec![
        format!("initrd={PXE_INITRD}"),
        format!(
            "ignition.config.url={}/ignition?uuid=${{uuid}}&mac=${{mac:hexhyp}}",
            cluster.boot_server_http
        ),
        "flatcar.first_boot=yes".to_string(),
    ];
    args.extend(cluster.kernel_console.iter().cloned());
    args.extend(node.effective_kernel_args(cluster).iter().cloned());
    Boot {
        kernel: format!("{base}/{PXE_KERNEL}"),
        initrd: vec![format!("{base}/{PXE_INITRD}")],
        args,
    }
}

/// Which rendered document `roundhouse render --what` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Final,
    Installer,
    Profile,
}

impl RenderedNode {
    /// The document for `item`, as JSON.
    pub fn item(&self, item: Item) -> Value {
        match item {
            Item::Final => self.final_config.clone(),
            Item::Installer => self.installer_config.clone(),
            Item::Profile => json!({
                "install": self.install_profile,
                "installed": self.node_profile,
                "groups": [self.install_group, self.node_group],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merging the cluster-wide snippets into each node one at a time, as Ignition defines it.
    fn sequential(cluster: &Cluster, node: &Node, options: &RenderOptions) -> (Value, Value) {
        let mut warnings = Vec::new();
        let mut translate = |s: &[roundhouse_config::Snippet]| {
            snippets::translate_all(s, cluster, options, &mut warnings, &mut Vec::new()).unwrap()
        };
        let mut fin = base_final_config(cluster, node, &options.keys);
        for c in [translate(&cluster.snippets), translate(&node.snippets)].concat() {
            fin = snippets::merge(&fin, &c);
        }
        let digest = Digest::of_node(
            &fin,
            node.effective_kernel_args(cluster),
            &cluster.kernel_console,
        );
        add_digest_file(&mut fin, &digest);
        let mut inst = installer::base_config(cluster, node);
        for c in [
            translate(&cluster.installer_snippets),
            translate(&node.installer_snippets),
        ]
        .concat()
        {
            inst = snippets::merge(&inst, &c);
        }
        (fin, inst)
    }

    // The example cluster: two cluster-wide final snippets, an installer snippet, node
    // snippets that touch the same files and units as the cluster-wide ones.
    #[test]
    fn premerged_cluster_snippets_give_the_same_configs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/mercury/cluster.hcl");
        let cluster = roundhouse_config::load(
            &path,
            &roundhouse_config::LoadOptions {
                env: Some(Vec::new()),
                ..Default::default()
            },
        )
        .unwrap();
        let options = RenderOptions::default();
        let rendered = render_cluster(&cluster, &options).unwrap();
        assert!(!rendered.nodes.is_empty());
        for (node, got) in cluster.nodes.iter().zip(&rendered.nodes) {
            let (fin, inst) = sequential(&cluster, node, &options);
            assert_eq!(got.final_config, fin, "{}", node.name);
            assert_eq!(got.installer_config, inst, "{}", node.name);
        }
    }

    /// The final config names its own digest in DIGEST_FILE; the digest covers the config
    /// without that file (so it is not self-referential), and a snippet's entry for the path
    /// is replaced rather than duplicated.
    #[test]
    fn final_config_carries_its_digest_outside_the_digest() {
        let digest = Digest::of_bytes(b"x");
        let mut config = json!({
            "ignition": { "version": "3.3.0" },
            "storage": { "files": [
                { "path": DIGEST_FILE, "contents": { "source": "data:,lies" } },
                { "path": "/etc/other", "contents": { "source": "data:," } }
            ]}
        });
        let before = Digest::of_node(&config, &[], &[]);
        add_digest_file(&mut config, &digest);
        let files = config["storage"]["files"].as_array().unwrap();
        let ours: Vec<&Value> = files.iter().filter(|f| f["path"] == DIGEST_FILE).collect();
        assert_eq!(ours.len(), 1, "{config}");
        assert_eq!(
            ours[0]["contents"]["source"],
            format!("data:,{}%0A", digest.as_str())
        );
        assert!(files.iter().any(|f| f["path"] == "/etc/other"));
        assert_ne!(before, Digest::of_node(&config, &[], &[]));

        // A config without storage gets one.
        let mut bare = json!({ "ignition": { "version": "3.3.0" } });
        add_digest_file(&mut bare, &digest);
        assert_eq!(bare["storage"]["files"][0]["path"], DIGEST_FILE);
    }
}
