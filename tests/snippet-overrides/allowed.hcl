# Snippets that change protected parts of the base config render when the cluster file allows
# it (tests/render_cli.rs): the cluster allows "ignition-ran" for every node, node w2 replaces
# the list with "root-wipe" and "ignition-ran".
cluster {
  name                    = "overrides"
  asset_dir               = "assets"
  ssh_pubkeys             = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http        = "http://10.0.0.2:8080"
  allow_snippet_overrides = ["ignition-ran"]
  snippets = [<<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      files:
        - path: /ignition_ran
          contents:
            inline: custom
    EOT
  ]
}

node "w1" {
  role   = "worker"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}

node "w2" {
  role   = "worker"
  mac    = "52:54:00:00:00:02"
  domain = "10.0.0.12"
  allow_snippet_overrides = ["root-wipe", "ignition-ran"]
  snippets = [<<-EOT
    variant: flatcar
    version: 1.0.0
    storage:
      filesystems:
        - device: /dev/disk/by-label/ROOT
          wipe_filesystem: false
    EOT
  ]
}
