//! What a query name asks for, read the way Consul reads it (reference §10): a service (with an
//! optional tag, in Consul's or RFC 2782's form), a node, or an `addr` target that an SRV answer
//! pointed at. Pure: labels in, [`Lookup`] out, so every form is unit-tested without a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a name under the agent's domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `[<tag>.]<service>.service[.<dc>]` or `_<service>._<tag|tcp>.service[.<dc>]`.
    Service {
        /// The service name (lower case: DNS names are case-insensitive, and so are service
        /// names in the catalog's DNS-safe form).
        service: String,
        /// The tag filter, if any (`_tcp` in the RFC 2782 form means none).
        tag: Option<String>,
    },
    /// `<node>.node[.<dc>]`: the agent's own node, for SRV targets.
    Node {
        /// The node name.
        node: String,
    },
    /// `<hex>.addr[.<dc>]`: an IP spelled in hex (8 digits for IPv4, 32 for IPv6), the SRV
    /// target of an instance registered with its own IP address.
    Addr(IpAddr),
}

/// Why a name under the domain is not something the agent can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not a form the agent knows, or a datacenter other than its own: NXDOMAIN.
    Unknown,
}

/// Reads `labels` (the query name without the domain, left to right, lower case). `datacenter`
/// is the agent's own: a name for another one is unknown here (Consul would forward it).
pub fn parse(labels: &[String], datacenter: &str) -> Result<Lookup, NameError> {
    let (kind_at, rest) = find_kind(labels, datacenter)?;
    let before = &labels[..kind_at];
    match (rest, before) {
        // `_web.service` (RFC 2782 without its protocol label) is not a form Consul answers.
        ("service", [service]) if !service.starts_with('_') => Ok(Lookup::Service {
            service: service.clone(),
            tag: None,
        }),
        ("service", [first, second]) => match (first.strip_prefix('_'), second.strip_prefix('_')) {
            (Some(service), Some(protocol)) if !service.is_empty() && !protocol.is_empty() => {
                Ok(Lookup::Service {
                    service: service.to_owned(),
                    tag: (protocol != "tcp").then(|| protocol.to_owned()),
                })
            }
            (None, None) => Ok(Lookup::Service {
                service: second.clone(),
                tag: Some(first.clone()),
            }),
            _ => Err(NameError::Unknown),
        },
        ("node", [node]) => Ok(Lookup::Node { node: node.clone() }),
        ("addr", [hex]) => parse_hex_ip(hex)
            .map(Lookup::Addr)
            .ok_or(NameError::Unknown),
        _ => Err(NameError::Unknown),
    }
}

/// Where the kind label (`service`, `node`, `addr`) is: the last label, or the one before a
/// datacenter label that must be the agent's own.
fn find_kind<'a>(labels: &'a [String], datacenter: &str) -> Result<(usize, &'a str), NameError> {
    const KINDS: [&str; 3] = ["service", "node", "addr"];
    let last = labels.len().checked_sub(1).ok_or(NameError::Unknown)?;
    if KINDS.contains(&labels[last].as_str()) && last > 0 {
        return Ok((last, labels[last].as_str()));
    }
    let kind_at = last.checked_sub(1).ok_or(NameError::Unknown)?;
    if KINDS.contains(&labels[kind_at].as_str()) && kind_at > 0 {
        if labels[last].eq_ignore_ascii_case(datacenter) {
            return Ok((kind_at, labels[kind_at].as_str()));
        }
        return Err(NameError::Unknown);
    }
    Err(NameError::Unknown)
}

/// The `addr` label of `ip`: 8 hex digits for IPv4, 32 for IPv6 (Consul's spelling).
pub fn hex_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02x}")).collect(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|bits| IpAddr::V4(Ipv4Addr::from(bits))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|bits| IpAddr::V6(Ipv6Addr::from(bits))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<String> {
        name.split('.').map(str::to_owned).collect()
    }

    fn lookup(name: &str) -> Result<Lookup, NameError> {
        parse(&labels(name), "dc1")
    }

    fn service(service: &str, tag: Option<&str>) -> Result<Lookup, NameError> {
        Ok(Lookup::Service {
            service: service.to_owned(),
            tag: tag.map(str::to_owned),
        })
    }

    #[test]
    fn consul_service_forms() {
        assert_eq!(lookup("web.service"), service("web", None));
        assert_eq!(lookup("web.service.dc1"), service("web", None));
        assert_eq!(lookup("v2.web.service"), service("web", Some("v2")));
        assert_eq!(lookup("v2.web.service.dc1"), service("web", Some("v2")));
    }

    #[test]
    fn rfc_2782_forms() {
        assert_eq!(lookup("_web._tcp.service"), service("web", None));
        assert_eq!(lookup("_web._v2.service.dc1"), service("web", Some("v2")));
        assert_eq!(lookup("_web._udp.service"), service("web", Some("udp")));
        for bad in [
            "_web.service",
            "_web.v2.service",
            "web._v2.service",
            "_._tcp.service",
        ] {
            assert_eq!(lookup(bad), Err(NameError::Unknown), "{bad}");
        }
    }

    #[test]
    fn other_datacenters_and_unknown_forms_are_unknown() {
        for bad in [
            "web.service.dc2",
            "service",
            "a.b.web.service",
            "web.query",
            "web",
            "",
            "node",
            "x.node.dc9",
        ] {
            assert_eq!(lookup(bad), Err(NameError::Unknown), "{bad:?}");
        }
    }

    #[test]
    fn nodes_and_addresses() {
        assert_eq!(
            lookup("vm.node.dc1"),
            Ok(Lookup::Node {
                node: "vm".to_owned()
            })
        );
        let v4: IpAddr = "192.0.2.10".parse().expect("ip");
        assert_eq!(hex_ip(v4), "c000020a");
        assert_eq!(lookup("c000020a.addr.dc1"), Ok(Lookup::Addr(v4)));
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        let label = hex_ip(v6);
        assert_eq!(label.len(), 32);
        assert_eq!(lookup(&format!("{label}.addr")), Ok(Lookup::Addr(v6)));
        for bad in ["c00002.addr", "zz00020a.addr", "+000020a.addr"] {
            assert_eq!(lookup(bad), Err(NameError::Unknown), "{bad}");
        }
    }
}
