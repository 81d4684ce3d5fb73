acl {
  enabled        = true
  default_policy = "deny"
  tokens { initial_management = "f3b2c1d0-8e7a-4c55-9d1e-2a6b3c4d5e6f" }
  token "deployer" {
    secret = "0c9d8e7f-6a5b-4c3d-2e1f-a0b1c2d3e4f5"
    service_prefix "web-" { policy = "write" }
    service_prefix ""     { policy = "read" }
    agent "node1" { policy = "read" }
  }
  anonymous {
    service_prefix "" { policy = "read" }
  }
}
