route {
  prefix   = "/api"
  service  = "api"
  host     = "shop.example"
  strip    = true
  strategy = "consistent_hash"
  hash_on { header = "x-user" }
  split { tag = "canary" weight = 0.01 }
  allow    = ["127.0.0.0/8", "::1/128"]
}
