cluster {
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http = "http://10.0.0.2:8080"
}

node "c1" {
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}

hook "copy-controller-secrets" {
  roles = ["controller"]
  upload {
    source      = "secrets/etcd-ca.crt"
    content     = "inline"
    destination = "/etc/ssl/etcd/ca.crt"
  }
  upload {
    content     = "token"
    destinaton  = "/etc/token"
    mode        = 0600
  }
  upload {
    content     = "x"
    destination = "etc/relative"
    mode        = "0999"
    owner       = "etcd:etcd:extra"
  }
  run = ["sudo systemctl restart etcd", ""]
}
