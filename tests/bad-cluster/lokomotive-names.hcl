# Settings as Lokomotive spelled them: each error says where the setting went.
cluster {
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http = "http://10.0.0.2:8080"
  cluster_name     = "lab"
  controller_macs  = ["52:54:00:00:00:01"]
  pxe_commands     = "true"
  ignore_worker_changes = true
}

node "n1" {
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}
