cluster {
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http = "http://10.0.0.2:8080"
  state_url        = "postgres://roundhouse@db1/roundhouse?sslmode=verify-full"
}

node "n1" {
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}
