cluster {
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"]
  boot_server_http = "http://10.0.0.2:8080"
}

node "n1" {
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}
