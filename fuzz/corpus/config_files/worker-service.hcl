service {
  name = "worker-service"
  id = "worker-1"
  port = 8080
  address = "10.0.1.10"
  tags = ["realtime", "v1.2"]
  check {
    id = "worker-load-check"
    name = "Worker Process Load Check"
    // In a real system, this script would check CPU, memory, or job queue length.
    // Exit code 0 = passing, 1 = warning, >1 = critical/failing.
    args = ["/bin/sh", "-c", "exit 2"]
    interval = "10s"
    timeout = "2s"
  }
}
