# A realistic small cluster: three controllers (etcd), three workers, one rack.
#
#   roundhouse render examples/mercury/cluster.hcl --out out/mercury
#
# writes a matchbox data directory for it. Every setting is described in docs/cluster-file.md.

variable "operator_key" {
  description = "SSH public key of the operator, for user core on every node"
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml operator@example"
}

variable "flatcar_version" {
  default = "3815.2.0"
}

cluster {
  name             = "mercury"
  asset_dir        = "assets"
  ssh_pubkeys      = [var.operator_key]
  boot_server_http = "http://10.10.0.2:8080"

  os_channel        = "stable"
  os_version        = var.flatcar_version
  download_protocol = "https"
  cached_install    = true

  install_disk            = "/dev/sda"
  wipe_additional_disks   = true
  install_pre_reboot_cmds = "ipmitool chassis bootdev disk options=persistent,efiboot"

  kernel_args    = ["flatcar.autologin"]
  kernel_console = ["console=tty0", "console=ttyS0,115200n8"]

  # Cluster-wide Butane snippets, merged into every node's final config in order.
  snippets = [
    file("snippets/node-exporter.bu"),
    file("snippets/sysctl.bu"),
  ]

  on_controller_change = "hold"
  on_worker_change     = "reprovision"
}

node "controller-1" {
  role               = "controller"
  mac                = "52:54:00:a1:00:01"
  domain             = "10.10.0.11"
  installer_snippets = [file("snippets/installer-static-net-11.bu")]
}

node "controller-2" {
  role   = "controller"
  mac    = "52:54:00:a1:00:02"
  domain = "10.10.0.12"
}

node "controller-3" {
  role   = "controller"
  mac    = "52:54:00:a1:00:03"
  domain = "10.10.0.13"
}

node "worker-1" {
  role   = "worker"
  mac    = "52:54:00:b1:00:01"
  domain = "10.10.0.21"
  snippets = [
    <<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      files:
        - path: /etc/roundhouse/role
          mode: 0644
          contents:
            inline: |
              worker with local NVMe scratch
    EOT
  ]
}

node "worker-2" {
  role   = "worker"
  mac    = "52:54:00:b1:00:02"
  domain = "10.10.0.22"
}

node "worker-3" {
  role         = "worker"
  mac          = "52-54-00-B1-00-03"
  domain       = "10.10.0.23"
  install_disk = "/dev/nvme0n1"
  kernel_args  = ["flatcar.autologin", "intel_iommu=on"]
}
