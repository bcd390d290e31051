//! The PXE installer's Ignition config: user `core` with the operator's keys, sshd moved to
//! port 2222 (so nothing polling port 22 can mistake the installer for the installed OS), and
//! `installer.service` running the install script below. The script is Lokomotive's, with its
//! behaviour kept: wipe additional disks when asked, `flatcar-install`, write the OEM `grub.cfg`
//! with the kernel arguments and the `ignition.config.url` of the installed OS, run the
//! operator's pre-reboot commands, reboot.

use roundhouse_config::{Cluster, InstallTarget, Node};
use serde_json::{Value, json};

use crate::dataurl;

const INSTALLER_UNIT: &str = "\
[Unit]
Requires=network-online.target
After=network-online.target
[Service]
Type=oneshot
RemainAfterExit=true
Restart=on-failure
RestartSec=10s
ExecStart=/opt/installer
[Install]
WantedBy=multi-user.target
";

const SSHD_PORT_DROPIN: &str = "\
[Socket]
ListenStream=
ListenStream=2222
";

/// The installer config before installer snippets are merged in.
pub fn base_config(cluster: &Cluster, node: &Node) -> Value {
    json!({
        "ignition": { "version": "3.3.0" },
        "passwd": {
            "users": [{ "name": "core", "sshAuthorizedKeys": cluster.ssh_pubkeys }]
        },
        "storage": {
            "files": [{
                "path": "/opt/installer",
                "mode": 0o500,
                "contents": { "source": dataurl::encode(script(cluster, node).as_bytes()) }
            }]
        },
        "systemd": {
            "units": [
                { "name": "installer.service", "enabled": true, "contents": INSTALLER_UNIT },
                {
                    "name": "sshd.socket",
                    "dropins": [{ "name": "10-sshd-port.conf", "contents": SSHD_PORT_DROPIN }]
                }
            ]
        }
    })
}

/// `linux_append` of the installed OS: the node's kernel arguments, then the URL Ignition
/// fetches its config from on every (re-)provisioning boot.
pub fn linux_append(cluster: &Cluster, node: &Node) -> String {
    let mut parts: Vec<String> = node.effective_kernel_args(cluster).to_vec();
    parts.push(format!(
        "ignition.config.url={}/ignition?mac={}&os=installed",
        cluster.boot_server_http, node.mac
    ));
    parts.join(" ")
}

/// `linux_console` of the installed OS.
pub fn linux_console(cluster: &Cluster) -> String {
    cluster.kernel_console.join(" ")
}

/// Quotes `s` for a POSIX shell as one word.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The install script, `/opt/installer`.
pub fn script(cluster: &Cluster, node: &Node) -> String {
    let mut s = String::from(
        "#!/bin/bash -ex\n\
         # Unmount leftovers before modifying the disk they live on.\n\
         umount /tmp/oemfs || true\n\
         lvchange -an /dev/mapper/* || true\n",
    );
    if cluster.install.wipe_additional_disks {
        s.push_str(
            "# Wipe every disk that has nothing mounted (the install disk is rewritten anyway).\n\
             disks=\"$(lsblk -lnpdb -x SIZE -o NAME | while IFS= read -r drive; do\n\
             \x20 if [ -z \"$(lsblk -ln -o MOUNTPOINT \"$drive\")\" ]; then echo \"$drive\"; fi\n\
             done)\"\n\
             for disk in $disks; do\n\
             \x20 wipefs -f -a \"$disk\" || echo \"error: failed to wipe $disk\"\n\
             done\n",
        );
    }
    s.push_str("flatcar-install \\\n");
    match node.effective_install_target(cluster) {
        InstallTarget::Disk(disk) => s.push_str(&format!("  -d {} \\\n", sh_quote(disk))),
        InstallTarget::SmallestDisk => s.push_str("  -s \\\n"),
    }
    s.push_str(&format!("  -C {} \\\n", cluster.os.channel.as_str()));
    s.push_str(&format!("  -V {}", sh_quote(&cluster.os.version)));
    if cluster.os.cached_install {
        s.push_str(&format!(
            " \\\n  -b {}",
            sh_quote(&format!("{}/assets/flatcar", cluster.boot_server_http))
        ));
    }
    s.push('\n');
    // The values are single-quoted for the shell and double-quoted for GRUB, as GRUB reads them.
    let append = format!("set linux_append=\"{}\"", linux_append(cluster, node));
    let console = format!("set linux_console=\"{}\"", linux_console(cluster));
    s.push_str(&format!(
        "udevadm settle\n\
         OEM_DEV=\"$(blkid -t LABEL=OEM -o device)\"\n\
         mkdir -p /tmp/oemfs\n\
         mount \"$OEM_DEV\" /tmp/oemfs\n\
         # Append to the file on the new OEM partition; keep its defaults.\n\
         echo {} >> /tmp/oemfs/grub.cfg\n\
         echo {} >> /tmp/oemfs/grub.cfg\n\
         umount /tmp/oemfs\n",
        sh_quote(&append),
        sh_quote(&console)
    ));
    s.push_str("# install_pre_reboot_cmds\n");
    s.push_str(cluster.install.pre_reboot_cmds.trim_end());
    s.push_str("\nsystemctl reboot\n");
    s
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/dev/sda"), "/dev/sda");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(x)"), "'$(x)'");
    }
}
