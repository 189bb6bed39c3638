# A Nomad job whose task mounts a berth volume through the docker driver.
job "pg-7f3a" {
  datacenters = ["dc1"]
  type        = "service"

  group "db" {
    count = 1

    constraint {
      attribute = "${meta.berth_host}"
      value     = "host-7f3a"
    }

    task "db" {
      driver = "docker"

      config {
        image = "example/db:1"

        mount {
          type     = "volume"
          target   = "/var/lib/db"
          source   = "pg-7f3a-data"
          readonly = false
          volume_options {
            no_copy = true
            driver_config {
              name = "berth"
              options {
                size = "100GiB"
                fs   = "xfs"
              }
            }
          }
        }
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
