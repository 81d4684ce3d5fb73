//! `route { … }` blocks: gateway routes declared in config files, for what `urlprefix-` tags
//! cannot say (a strategy per route with its hash key, a canary split, slow start).
//!
//! ```hcl
//! route {
//!   prefix   = "/api"
//!   service  = "api"
//!   strip    = true              # forward /api/users as /users
//!   strategy = "peak_ewma"
//!   split { tag = "canary" weight = 0.01 }
//! }
//! ```
//!
//! Keys match as everywhere in config files (case and underscores ignored); unknown keys are
//! refused so that a typo is an error, not a silently different route.

use crate::consul::duration;
use serde::Deserialize;
use wayfinder_balance::{SlowStart, StrategyKind, TagSplit};
use wayfinder_catalog::ServiceName;
use wayfinder_gateway::route::{Access, HashOn, HostHeader, RouteSource, RouteSpec};

/// One `route` block as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteBody {
    #[serde(rename = "Prefix")]
    prefix: String,
    #[serde(rename = "Host")]
    host: Option<String>,
    #[serde(rename = "Service")]
    service: String,
    #[serde(rename = "Strip", default)]
    strip: bool,
    #[serde(rename = "Prepend")]
    prepend: Option<String>,
    #[serde(rename = "Strategy")]
    strategy: Option<String>,
    #[serde(rename = "HashOn")]
    hash_on: Option<String>,
    #[serde(rename = "Split")]
    split: Option<SplitBody>,
    #[serde(rename = "SlowStart")]
    slow_start: Option<String>,
    #[serde(rename = "HostHeader")]
    host_header: Option<String>,
    #[serde(rename = "Allow", default)]
    allow: Vec<String>,
    #[serde(rename = "Deny", default)]
    deny: Vec<String>,
}

/// `split { tag = "canary" weight = 0.01 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    #[serde(rename = "Tag")]
    tag: String,
    #[serde(rename = "Weight")]
    weight: f64,
}

/// A field of a route block that is wrong, and why.
#[derive(Debug)]
pub(super) struct RouteFault {
    /// The field, as the decoder names it.
    pub field: &'static str,
    /// What is wrong and what to write.
    pub reason: String,
}

fn fault(field: &'static str, reason: impl Into<String>) -> RouteFault {
    RouteFault {
        field,
        reason: reason.into(),
    }
}

impl RouteBody {
    /// The route, validated; `file` is where it was read.
    pub(super) fn into_spec(self, file: &str) -> Result<RouteSpec, RouteFault> {
        if !self.prefix.starts_with('/') {
            return Err(fault(
                "Prefix",
                format!("{:?} must start with '/', e.g. \"/api\"", self.prefix),
            ));
        }
        ServiceName::new(&self.service, "Service").map_err(|e| fault("Service", e.reason))?;
        let mut spec = RouteSpec::new(
            self.prefix.clone(),
            self.service,
            RouteSource::Config {
                file: file.to_owned(),
            },
        );
        spec.host = match self.host {
            Some(host) if host.is_empty() || host.contains(['/', ' ']) => {
                return Err(fault(
                    "Host",
                    format!("{host:?} is not a host name; write e.g. \"shop.example.com\""),
                ));
            }
            host => host.map(|h| h.to_ascii_lowercase()),
        };
        if self.strip {
            spec.rewrite.strip =
                Some(self.prefix.trim_end_matches('/').to_owned()).filter(|p| !p.is_empty());
        }
        if let Some(prepend) = self.prepend {
            if !prepend.starts_with('/') {
                return Err(fault("Prepend", format!("{prepend:?} must start with '/'")));
            }
            spec.rewrite.prepend = Some(prepend);
        }
        if let Some(strategy) = self.strategy {
            spec.balance.strategy = strategy
                .parse::<StrategyKind>()
                .map_err(|e| fault("Strategy", e.to_string()))?;
        }
        if let Some(hash_on) = self.hash_on {
            spec.balance.hash_on = hash_key(&hash_on)?;
        }
        if let Some(split) = self.split {
            spec.balance.split = Some(
                TagSplit::new(&split.tag, split.weight)
                    .map_err(|e| fault("Split", e.to_string()))?,
            );
        }
        if let Some(window) = self.slow_start {
            let window = duration::parse(&window)
                .map_err(|e| fault("SlowStart", format!("{window:?}: {e}")))?;
            spec.balance.slow_start =
                Some(SlowStart::new(window).map_err(|e| fault("SlowStart", e.to_string()))?);
        }
        spec.host_header = match self.host_header.as_deref() {
            None | Some("") => HostHeader::Incoming,
            Some("dst") => HostHeader::Destination,
            Some(name) => HostHeader::Fixed(name.to_owned()),
        };
        spec.access = Access {
            allow: networks("Allow", &self.allow)?,
            deny: networks("Deny", &self.deny)?,
        };
        if !spec.access.allow.is_empty() && !spec.access.deny.is_empty() {
            return Err(fault(
                "Allow",
                "give allow or deny, not both: with allow, everyone else is denied already",
            ));
        }
        Ok(spec)
    }
}

/// `client_ip`, `header:NAME` or `cookie:NAME`.
fn hash_key(text: &str) -> Result<HashOn, RouteFault> {
    match text.split_once(':') {
        None if text == "client_ip" => Ok(HashOn::ClientIp),
        Some(("header", name)) if !name.is_empty() => Ok(HashOn::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if !name.is_empty() => Ok(HashOn::Cookie(name.to_owned())),
        _ => Err(fault(
            "HashOn",
            format!("{text:?}: use client_ip, header:NAME or cookie:NAME"),
        )),
    }
}

/// CIDRs or single addresses.
fn networks(field: &'static str, items: &[String]) -> Result<Vec<ipnet::IpNet>, RouteFault> {
    items
        .iter()
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| fault(field, format!("{item:?} is not an address or CIDR network")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> Result<RouteSpec, String> {
        let body: RouteBody = crate::consul::relaxed::decode(value)
            .map_err(|e| format!("{}: {}", e.field, e.reason))?;
        body.into_spec("routes.hcl")
            .map_err(|e| format!("{}: {}", e.field, e.reason))
    }

    #[test]
    fn a_full_route_block() {
        let route = spec(json!({
            "prefix": "/api/", "service": "api", "strip": true, "strategy": "consistent_hash",
            "hash_on": "header:X-User", "split": {"tag": "canary", "weight": 0.01},
            "slow_start": "30s", "host": "Shop.Example", "allow": ["127.0.0.1", "10.0.0.0/8"]
        }))
        .expect("valid");
        assert_eq!(route.prefix, "/api/");
        assert_eq!(route.rewrite.strip.as_deref(), Some("/api"));
        assert_eq!(route.balance.strategy, StrategyKind::ConsistentHash);
        assert_eq!(route.balance.hash_on, HashOn::Header("x-user".into()));
        assert_eq!(
            route.balance.split.as_ref().map(TagSplit::weight),
            Some(0.01)
        );
        assert!(route.balance.slow_start.is_some());
        assert_eq!(route.host.as_deref(), Some("shop.example"));
        assert_eq!(route.access.allow.len(), 2);
        assert_eq!(
            route.source,
            RouteSource::Config {
                file: "routes.hcl".into()
            }
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        for (body, field) in [
            (json!({"prefix": "api", "service": "api"}), "Prefix"),
            (json!({"prefix": "/a", "service": "bad_name"}), "Service"),
            (
                json!({"prefix": "/a", "service": "a", "strategy": "fastest"}),
                "Strategy",
            ),
            (
                json!({"prefix": "/a", "service": "a", "split": {"tag": "c", "weight": 2.0}}),
                "Split",
            ),
            (
                json!({"prefix": "/a", "service": "a", "hash_on": "body"}),
                "HashOn",
            ),
            (
                json!({"prefix": "/a", "service": "a", "slow_start": "soon"}),
                "SlowStart",
            ),
            (
                json!({"prefix": "/a", "service": "a", "allow": ["x"]}),
                "Allow",
            ),
            (
                json!({"prefix": "/a", "service": "a", "allow": ["::1"], "deny": ["::1"]}),
                "Allow",
            ),
        ] {
            let error = spec(body.clone()).expect_err("refused");
            assert!(error.starts_with(field), "{body}: {error}");
        }
        let unknown =
            spec(json!({"prefix": "/a", "service": "a", "stirp": true})).expect_err("unknown key");
        assert!(unknown.contains("stirp"), "{unknown}");
    }
}
