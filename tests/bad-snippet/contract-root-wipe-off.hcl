cluster {
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http = "http://10.0.0.2:8080"
}

node "n1" {
  role   = "worker"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
  snippets = [<<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      filesystems:
        - device: /dev/disk/by-label/ROOT
          format: ext4
          label: ROOT
          wipe_filesystem: false
    EOT
  ]
}
