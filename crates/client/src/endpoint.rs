//! One healthy instance of a service as the client hands it out, and how it is read from a
//! `GET /v1/health/service/{name}` entry.
//!
//! Why the Consul health endpoint and not `/v1/endpoints`: it carries both weights (the
//! balancer needs the warning weight as well as the passing one), it answers `[]` with an index
//! for a service that has no instance yet (so a client can block on a service before it is
//! deployed), and every Consul server speaks it, so this client works in front of Consul too.

use crate::model::{CheckEntry, HealthEntry};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use wayfinder_balance::{Health, Weights};

/// One instance of a service that the balancer may pick: passing, or warning with a warning
/// weight above 0 (critical instances never reach the client's set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The instance ID: unique per agent (per node), not across a Consul datacenter.
    pub id: String,
    /// The node the instance runs on, as the agent reports it (empty when it reports none).
    pub node: String,
    /// Where it listens: the instance's address, or its node's when it registered none.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its tags, in registration order.
    pub tags: Vec<String>,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
    /// Its weights by health.
    pub weights: Weights,
    /// Passing, or warning (its worst check).
    pub health: Health,
}

impl Endpoint {
    /// The endpoint's identity across updates: `node/id`, because Consul only makes instance
    /// IDs unique per node (three nodes may each run an instance `web`). Load history, retries'
    /// "already tried" and tower's discovery keys all use it.
    pub fn key(&self) -> String {
        if self.node.is_empty() {
            self.id.clone()
        } else {
            format!("{}/{}", self.node, self.id)
        }
    }

    /// `address:port`, with an IPv6 address in brackets: what goes into a URL or a connect call.
    pub fn authority(&self) -> String {
        match self.address.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.address, self.port),
        }
    }

    /// The socket address, when the address is an IP literal (not a host name).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip = self.address.parse::<IpAddr>().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// `http://address:port` followed by `path` (which should start with `/`).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority())
    }

    /// Whether it carries `tag` (case-insensitively, as Consul's tag filter compares).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The endpoint as the balancer sees it.
    pub(crate) fn to_balance(&self) -> wayfinder_balance::Endpoint {
        wayfinder_balance::Endpoint::new(self.key())
            .with_weights(self.weights.passing, self.weights.warning)
            .with_health(self.health)
            .with_tags(self.tags.iter().cloned())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.authority())
    }
}

/// Whether instances with a warning check are handed out (with their warning weight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WarningPolicy {
    /// Warning instances take traffic at their warning weight, as Consul DNS and the gateway
    /// do. The default.
    #[default]
    Include,
    /// Only instances whose checks all pass (Consul's `?passing`).
    Exclude,
}

/// The endpoint of one health entry, or `None` when it must not take traffic: critical (or a
/// status the client does not know, which Consul treats as critical), warning when warnings
/// are excluded or its warning weight is 0, or without an ID or port.
pub(crate) fn from_health_entry(entry: HealthEntry, warnings: WarningPolicy) -> Option<Endpoint> {
    let health = aggregate(&entry.checks)?;
    let service = entry.service?;
    if service.id.is_empty() || service.port == 0 {
        return None;
    }
    let weights = service.weights.map_or_else(Weights::default, |w| Weights {
        passing: w.passing,
        warning: w.warning,
    });
    match health {
        Health::Warning if warnings == WarningPolicy::Exclude || weights.warning == 0 => {
            return None;
        }
        Health::Passing if weights.passing == 0 => return None,
        _ => {}
    }
    let (node, node_address) = entry.node.map(|n| (n.node, n.address)).unwrap_or_default();
    let address = if service.address.is_empty() {
        node_address
    } else {
        service.address
    };
    if address.is_empty() {
        return None;
    }
    Some(Endpoint {
        id: service.id,
        node,
        address,
        port: service.port,
        tags: service.tags,
        meta: service.meta,
        weights,
        health,
    })
}

/// The worst status of `checks` (node-level ones included, as Consul's health endpoint
/// counts them): `None` for critical or unknown, else passing or warning. No checks at all is
/// passing, as in Consul.
fn aggregate(checks: &[CheckEntry]) -> Option<Health> {
    let mut worst = Health::Passing;
    for check in checks {
        match check.status.as_str() {
            "passing" => {}
            "warning" => worst = Health::Warning,
            _ => return None,
        }
    }
    Some(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_health;

    fn entries(body: &str) -> Vec<HealthEntry> {
        decode_health(body.as_bytes())
            .expect("array")
            .into_iter()
            .map(|e| e.expect("entry"))
            .collect()
    }

    fn entry(checks: &str, service: &str) -> HealthEntry {
        entries(&format!(
            r#"[{{"Node":{{"Node":"n1","Address":"10.0.0.2"}},"Service":{service},"Checks":{checks}}}]"#
        ))
        .remove(0)
    }

    const WEB_1: &str = r#"{"ID":"web-1","Service":"web","Port":8080,"Tags":["v2"],
        "Weights":{"Passing":3,"Warning":1}}"#;

    #[test]
    fn the_worst_check_decides_and_the_node_address_fills_in() {
        let passing = from_health_entry(
            entry(r#"[{"Status":"passing"},{"Status":"passing"}]"#, WEB_1),
            WarningPolicy::Include,
        )
        .expect("passing");
        assert_eq!(passing.health, Health::Passing);
        assert_eq!(passing.authority(), "10.0.0.2:8080");
        assert_eq!(passing.key(), "n1/web-1", "IDs are unique per node only");
        assert_eq!(
            passing.weights,
            Weights {
                passing: 3,
                warning: 1
            }
        );
        let warning = from_health_entry(
            entry(r#"[{"Status":"passing"},{"Status":"warning"}]"#, WEB_1),
            WarningPolicy::Include,
        )
        .expect("warning is included");
        assert_eq!(warning.health, Health::Warning);
        for checks in [
            r#"[{"Status":"warning"},{"Status":"critical"}]"#,
            r#"[{"Status":"maintenance"}]"#,
        ] {
            assert_eq!(
                from_health_entry(entry(checks, WEB_1), WarningPolicy::Include),
                None,
                "{checks}"
            );
        }
        assert_eq!(
            from_health_entry(
                entry(r#"[{"Status":"warning"}]"#, WEB_1),
                WarningPolicy::Exclude
            ),
            None
        );
    }

    #[test]
    fn weights_of_zero_and_unusable_entries_take_no_traffic() {
        let no_warning_weight = r#"{"ID":"a","Port":1,"Weights":{"Passing":1,"Warning":0}}"#;
        assert_eq!(
            from_health_entry(
                entry(r#"[{"Status":"warning"}]"#, no_warning_weight),
                WarningPolicy::Include
            ),
            None
        );
        for service in [r#"{"ID":"","Port":1}"#, r#"{"ID":"a","Port":0}"#] {
            assert_eq!(
                from_health_entry(entry("[]", service), WarningPolicy::Include),
                None
            );
        }
        let no_address = entries(r#"[{"Service":{"ID":"a","Port":1},"Checks":[]}]"#).remove(0);
        assert_eq!(from_health_entry(no_address, WarningPolicy::Include), None);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let e = from_health_entry(
            entry("[]", r#"{"ID":"a","Address":"::1","Port":80}"#),
            WarningPolicy::Include,
        )
        .expect("endpoint");
        assert_eq!(e.authority(), "[::1]:80");
        assert_eq!(e.http_url("/x"), "http://[::1]:80/x");
        assert_eq!(e.socket_addr(), Some("[::1]:80".parse().expect("addr")));
        let named = Endpoint {
            address: "worker.internal".to_owned(),
            ..e
        };
        assert_eq!(named.socket_addr(), None);
        assert_eq!(named.authority(), "worker.internal:80");
    }
}
