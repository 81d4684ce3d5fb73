services {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1", "urlprefix-/web strip=/web"]
  meta { team = "blue" }
  weights { passing = 3 warning = 1 }
  checks = [
    { http = "http://127.0.0.1:8080/health", interval = "10s", timeout = "2s" },
    { ttl = "30s", status = "warning" }
  ]
}
check {
  name       = "disk"
  tcp        = "127.0.0.1:22"
  interval   = "5s"
}
