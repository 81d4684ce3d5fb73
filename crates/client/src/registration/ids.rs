//! The IDs a registration goes by: the instance's default ID, made from the service name, the
//! host and the port, and its check's ID. Pure, apart from reading the host name.

/// Consul's default ID for a service's only check.
pub(super) fn check_id(service_id: &str) -> String {
    format!("service:{service_id}")
}

/// The default instance ID: `{name}-{host}-{port}`, or `{name}-{host}-pid{pid}` without a port
/// (two port-less workers on one host must not replace each other).
pub(super) fn default_id(name: &str, host: &str, port: u16, pid: u32) -> String {
    if port == 0 {
        format!("{name}-{host}-pid{pid}")
    } else {
        format!("{name}-{host}-{port}")
    }
}

/// This host's short name as an ID part, or `local` when it cannot be read.
pub(super) fn host_label() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    short_host(&raw)
}

/// The first label of a host name, with anything but letters, digits and dashes made a dash
/// (an ID travels in URL paths and logs), at most 63 bytes; `local` when nothing is left.
fn short_host(raw: &str) -> String {
    let label: String = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if label.is_empty() {
        "local".to_owned()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_id_is_unique_per_host_and_port() {
        assert_eq!(default_id("worker", "box", 8080, 42), "worker-box-8080");
        assert_eq!(default_id("worker", "box", 0, 42), "worker-box-pid42");
        assert_eq!(short_host("box-1.example.com\n"), "box-1");
        assert_eq!(short_host("we ird_host"), "we-ird-host");
        assert_eq!(short_host(""), "local");
        assert_eq!(short_host(&"a".repeat(80)).len(), 63);
        assert!(!host_label().is_empty());
        assert_eq!(check_id("worker-box-8080"), "service:worker-box-8080");
    }
}
