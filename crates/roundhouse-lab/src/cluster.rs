//! The files `lab up` writes: the cluster file, its snippets, the hook's secret, stand-ins
//! for Flatcar's boot files, and the fleet spec.

use std::path::Path;

use crate::error::LabError;
use crate::layout::{LabDir, LabMachine};

/// The Flatcar version the lab's cluster file asks for (the simulator lays down a tree that
/// says so; nothing is downloaded).
pub const OS_VERSION: &str = "3975.2.0";

/// The hook the lab's cluster file defines for controllers.
pub const HOOK_NAME: &str = "copy-controller-secrets";

/// Where the hook puts the lab's "etcd CA" on controllers.
pub const HOOK_DESTINATION: &str = "/etc/ssl/etcd/ca.crt";

/// The file the hook's command writes on controllers: the SHA-256 line of the uploaded file.
pub const HOOK_MARKER: &str = "/etc/roundhouse-lab/secrets-installed";

/// The file the role snippets write on every node: which role snippet revision it runs.
pub const RELEASE_FILE: &str = "/etc/roundhouse-lab/release";

/// A public key for `ssh_pubkeys`, which must not be empty. Nobody holds its private half:
/// log in with the operator key roundhouse generates (`assets/keys/operator_ed25519`), or
/// put your own key here.
pub const PLACEHOLDER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml lab-placeholder";

/// Machine names and MACs for `controllers` controllers and `workers` workers.
pub fn machine_names(controllers: usize, workers: usize) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for i in 1..=controllers {
        out.push((
            format!("controller-{i}"),
            "controller",
            format!("52:54:00:c0:{:02x}:{:02x}", i >> 8, i & 0xff),
        ));
    }
    for i in 1..=workers {
        out.push((
            format!("worker-{i}"),
            "worker",
            format!("52:54:00:a0:{:02x}:{:02x}", i >> 8, i & 0xff),
        ));
    }
    out
}

/// The text of a role snippet at `revision`: it writes [`RELEASE_FILE`].
pub fn role_snippet(role: &str, revision: u32) -> String {
    format!(
        "# Written by `roundhouse lab`. Edit it and run `roundhouse plan` to see what changes.\n\
         variant: flatcar\n\
         version: 1.0.0\n\
         storage:\n\
         \x20 files:\n\
         \x20   - path: {RELEASE_FILE}\n\
         \x20     mode: 0644\n\
         \x20     overwrite: true\n\
         \x20     contents:\n\
         \x20       inline: |\n\
         \x20         {}\n",
        release_line(role, revision)
    )
}

/// The line [`role_snippet`] puts into [`RELEASE_FILE`].
pub fn release_line(role: &str, revision: u32) -> String {
    format!("role={role} revision={revision}")
}

/// The path of a role's snippet file.
pub fn snippet_path(lab: &LabDir, role: &str) -> std::path::PathBuf {
    lab.snippets().join(format!("{role}.bu"))
}

/// An HCL string literal for `s`: quotes and backslashes escaped, and template openers
/// (`${`, `%{`) doubled so they stay literal text.
fn quote_hcl(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes `s` for a POSIX shell as one word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How the lab's cluster file powers machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerMode {
    /// roundhouse's Redfish driver against each machine's simulated BMC.
    Redfish,
    /// A `command` driver running `roundhouse lab power NODE pxe`.
    Command,
}

impl std::str::FromStr for PowerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redfish" => Ok(PowerMode::Redfish),
            "command" => Ok(PowerMode::Command),
            _ => Err(format!("{s:?}: expected redfish or command")),
        }
    }
}

/// The cluster file for `machines`, served from `boot_url`, powered as `power` says (the
/// command driver runs `binary`).
pub fn cluster_file(
    lab: &LabDir,
    boot_url: &str,
    binary: &Path,
    machines: &[LabMachine],
    power: PowerMode,
    with_owner: bool,
) -> String {
    let power_block = match power {
        PowerMode::Redfish => "  # Power on and PXE-boot through each machine's simulated Redfish BMC (its endpoint is\n\
             \x20 # in the node block; the password is in bmc-password).\n\
             \x20 power {\n\
             \x20   driver        = \"redfish\"\n\
             \x20   username      = \"admin\"\n\
             \x20   password_file = \"bmc-password\"\n\
             \x20 }\n"
            .to_string(),
        PowerMode::Command => format!(
            "  # Power on and PXE-boot through the machine's simulated BMC, by a command.\n\
             \x20 power {{\n\
             \x20   driver       = \"command\"\n\
             \x20   command      = {}\n\
             \x20   timeout_secs = 60\n\
             \x20 }}\n",
            quote_hcl(&format!(
                "{} lab power --dir {} \"$name\" pxe",
                sh_quote(&binary.display().to_string()),
                sh_quote(&lab.root().display().to_string())
            ))
        ),
    };
    let owner = if with_owner {
        "    owner       = \"etcd:etcd\"\n"
    } else {
        "    # owner     = \"etcd:etcd\"   (not simulated without root)\n"
    };
    let mut s = format!(
        r#"# The lab's cluster, written by `roundhouse lab up` (docs/lab.md). The machines are
# simulated: each has a Redfish BMC, a disk, and an SSH server on its own loopback address.
#
#   roundhouse plan   {cluster}
#   roundhouse apply  {cluster} --yes
#   roundhouse status {cluster}
#   roundhouse lab status --dir {dir}

cluster {{
  name             = "lab"
  asset_dir        = "assets"
  # Nobody holds this key's private half: log in with assets/keys/operator_ed25519
  # (generated by the first plan) or put your own public key here.
  ssh_pubkeys      = [{key}]
  boot_server_http = {boot}

  os_channel     = "stable"
  os_version     = "{OS_VERSION}"
  cached_install = true   # stand-ins in boot-assets/ are served by the lab's boot server
  install_disk   = "/dev/sda"
  kernel_console = ["console=ttyS0,115200n8"]

  on_controller_change = "hold"
  on_worker_change     = "reprovision"

{power_block}}}
"#,
        cluster = lab.cluster_file().display(),
        dir = lab.root().display(),
        key = quote_hcl(PLACEHOLDER_KEY),
        boot = quote_hcl(boot_url),
    );
    s.push_str(&hook_block(owner));
    for m in machines {
        s.push_str(&node_block(
            m,
            &match power {
                PowerMode::Redfish => {
                    format!("  power {{ endpoint = {} }}\n", quote_hcl(&m.bmc_url))
                }
                PowerMode::Command => String::new(),
            },
        ));
    }
    s
}

/// The controllers' post-provision hook, as both labs write it; `owner` is the upload's owner
/// line (or nothing).
pub(crate) fn hook_block(owner: &str) -> String {
    format!(
        r#"
# Lokomotive's copy-controller-secrets, generalised: runs after every install of a controller.
hook "{HOOK_NAME}" {{
  roles = ["controller"]
  upload {{
    source      = "secrets/etcd-ca.crt"
    destination = "{HOOK_DESTINATION}"
    mode        = "0600"
{owner}  }}
  run     = ["sudo sh -c 'sha256sum {HOOK_DESTINATION} > {HOOK_MARKER}'"]
  timeout = 60
}}
"#
    )
}

/// A machine's node block, with `power` (its lines, or nothing) before the closing brace.
pub(crate) fn node_block(m: &LabMachine, power: &str) -> String {
    format!(
        r#"
node "{name}" {{
  role     = "{role}"
  mac      = "{mac}"
  domain   = "{address}"
  ssh_port = {port}
  snippets = [file("snippets/{role}.bu")]
{power}}}
"#,
        name = m.name,
        role = m.role,
        mac = m.mac,
        address = m.address,
        port = m.ssh_port,
    )
}

fn write_new(path: &Path, text: &[u8]) -> Result<(), LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    }
    if path.exists() {
        return Ok(());
    }
    std::fs::write(path, text).map_err(LabError::io(path))
}

/// Writes the snippets, the hook's secret and the boot stand-ins, keeping any that exist (a
/// restarted lab keeps the user's edits).
pub fn write_inputs(lab: &LabDir) -> Result<(), LabError> {
    for role in ["controller", "worker"] {
        write_new(&snippet_path(lab, role), role_snippet(role, 1).as_bytes())?;
    }
    write_new(
        &lab.secrets().join("etcd-ca.crt"),
        b"-----BEGIN CERTIFICATE-----\nbGFiIGV0Y2QgQ0EgKG5vdCBhIHJlYWwgY2VydGlmaWNhdGUp\n-----END CERTIFICATE-----\n",
    )?;
    let os = lab.boot_assets().join("flatcar").join(OS_VERSION);
    for (file, text) in [
        (
            "flatcar_production_pxe.vmlinuz",
            "lab stand-in for the Flatcar kernel\n",
        ),
        (
            "flatcar_production_pxe_image.cpio.gz",
            "lab stand-in for the Flatcar initrd\n",
        ),
        (
            "flatcar_production_image.bin.bz2",
            "lab stand-in for the Flatcar disk image\n",
        ),
    ] {
        write_new(&os.join(file), text.as_bytes())?;
    }
    for dir in [lab.data_dir(), lab.boot_state_dir(), lab.logs()] {
        std::fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    }
    Ok(())
}

/// The simulator's spec for the lab's machines.
pub fn fleet_spec(
    lab: &LabDir,
    boot_url: &str,
    time_scale: f64,
    port_base: Option<u16>,
    control_port: Option<u16>,
    names: &[(String, &'static str, String)],
    bmc_password: &str,
) -> serde_json::Value {
    let machines: Vec<serde_json::Value> = names
        .iter()
        .map(|(name, _, mac)| {
            serde_json::json!({
                "mac": mac,
                "name": name,
                "bmc": { "username": "admin", "password": bmc_password, "power_delay_secs": 1.0 },
            })
        })
        .collect();
    let mut spec = serde_json::json!({
        "boot_url": format!("{boot_url}/boot.ipxe"),
        "state_dir": lab.sim_dir(),
        "time_factor": time_scale,
        "machines": machines,
    });
    if let Some(p) = port_base {
        spec["port_base"] = p.into();
    }
    if let Some(p) = control_port {
        spec["control_port"] = p.into();
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs_are_unique_per_role() {
        let m = machine_names(3, 300);
        assert_eq!(m.len(), 303);
        let macs: std::collections::BTreeSet<_> = m.iter().map(|x| &x.2).collect();
        assert_eq!(macs.len(), 303);
        assert_eq!(m[0].0, "controller-1");
        assert_eq!(m[302].2, "52:54:00:a0:01:2c");
    }

    #[test]
    fn hcl_strings_escape_template_syntax() {
        assert_eq!(
            quote_hcl(r#"a "b" $x ${y} %{z} \"#),
            r#""a \"b\" $x $${y} %%{z} \\""#
        );
    }

    #[test]
    fn the_release_line_is_in_the_snippet() {
        let s = role_snippet("worker", 7);
        assert!(s.contains(&release_line("worker", 7)), "{s}");
    }
}
