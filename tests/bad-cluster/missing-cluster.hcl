node "n1" {
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
}
