# Nomad client configuration: the docker driver may mount named volumes of
# volume plugins only when volumes are enabled.
client {
  enabled = true
  meta {
    berth_host = "host-7f3a"
  }
}

plugin "docker" {
  config {
    volumes {
      enabled = true
    }
  }
}
