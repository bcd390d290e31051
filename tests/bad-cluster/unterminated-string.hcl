cluster {
  name             = "lab
  asset_dir        = "assets"
}
