//! What a route is: which requests it takes, which service answers them, how the request is
//! rewritten on the way, and how an instance is chosen.
//!
//! Owns [`RouteSpec`] and its parts. Routes come from three places ([`RouteSource`]):
//! `urlprefix-` tags on instances (fabio's language, parsed in [`crate::tags`]), `route { … }`
//! blocks in config files, and — when `--gateway-service-routes` is on — `/{service}/…` for every
//! service. This module does not match requests (that is [`crate::table`]) nor pick instances
//! (that is `wayfinder-balance`); it is the plain data both read.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use wayfinder_balance::{SlowStart, StrategyKind, TagSplit};

/// One route: requests whose host and path match go to `service`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// The `Host` the request must name (lower-case, without a port), or `None` for any host.
    /// Host routes are tried before path-only routes.
    pub host: Option<String>,
    /// The path prefix, starting with `/`. The longest matching prefix wins. A prefix matches
    /// a path that starts with it (fabio's semantics: `/api` matches `/api`, `/api/x` and
    /// `/apix`; write `/api/` to require the slash).
    pub prefix: String,
    /// The service whose healthy instances answer.
    pub service: String,
    /// How the request is rewritten before it is forwarded.
    pub rewrite: Rewrite,
    /// Plain HTTP or TLS to the instance (`proto=https`).
    pub proto: UpstreamProto,
    /// What `Host` the instance sees (`host=dst`, `host=name`).
    pub host_header: HostHeader,
    /// Client addresses let through (`allow=`/`deny=`).
    pub access: Access,
    /// How an instance is chosen for each request.
    pub balance: BalanceSpec,
    /// Where the route was declared, for `GET /v1/routes` and for conflicts.
    pub source: RouteSource,
}

impl RouteSpec {
    /// A route for `prefix` on any host to `service`, with every option at its default.
    pub fn new(prefix: impl Into<String>, service: impl Into<String>, source: RouteSource) -> Self {
        RouteSpec {
            host: None,
            prefix: prefix.into(),
            service: service.into(),
            rewrite: Rewrite::default(),
            proto: UpstreamProto::default(),
            host_header: HostHeader::default(),
            access: Access::default(),
            balance: BalanceSpec::default(),
            source,
        }
    }
}

/// Path rewriting, applied in this order: `strip` then `prepend`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// A prefix removed from the path when the path starts with it (`strip=/api`: `/api/users`
    /// is forwarded as `/users`; a path left empty becomes `/`).
    pub strip: Option<String>,
    /// A prefix put in front of the path (`prepend=/v2`: `/users` becomes `/v2/users`).
    pub prepend: Option<String>,
}

impl Rewrite {
    /// The path the instance is sent, for the request's `path` (without the query).
    pub fn apply(&self, path: &str) -> String {
        let stripped = match &self.strip {
            Some(strip) => path.strip_prefix(strip.as_str()).unwrap_or(path),
            None => path,
        };
        let stripped = if stripped.is_empty() { "/" } else { stripped };
        match &self.prepend {
            Some(prepend) => {
                let prepend = prepend.trim_end_matches('/');
                if stripped.starts_with('/') {
                    format!("{prepend}{stripped}")
                } else {
                    format!("{prepend}/{stripped}")
                }
            }
            None if stripped.starts_with('/') => stripped.to_owned(),
            None => format!("/{stripped}"),
        }
    }
}

/// The protocol spoken to the instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProto {
    /// Plain HTTP/1.1 (the default).
    #[default]
    Http,
    /// HTTP over TLS (`proto=https`).
    Https,
}

impl UpstreamProto {
    /// The URI scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            UpstreamProto::Http => "http",
            UpstreamProto::Https => "https",
        }
    }
}

/// The `Host` header the instance receives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's own `Host` (the default, as fabio and nginx's `proxy_set_header Host $host`).
    #[default]
    Incoming,
    /// The instance's address and port (`host=dst`).
    Destination,
    /// A fixed name (`host=internal.example`).
    Fixed(String),
}

/// Which client addresses a route serves. With an allow list, only addresses in it are served;
/// otherwise every address not in the deny list is. A refused client gets 403.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Networks let through; empty means "everyone not denied".
    pub allow: Vec<IpNet>,
    /// Networks refused.
    pub deny: Vec<IpNet>,
}

impl Access {
    /// Whether a client at `ip` may use the route.
    pub fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4 client reached over an IPv6 socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !self.allow.is_empty() {
            return self.allow.iter().any(|net| net.contains(&ip));
        }
        !self.deny.iter().any(|net| net.contains(&ip))
    }

    /// Whether the route serves everyone (no list given).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// How a route chooses an instance for each request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalanceSpec {
    /// The strategy (`round_robin` by default).
    pub strategy: StrategyKind,
    /// A share of requests sent to instances with a tag (canary), if any.
    pub split: Option<TagSplit>,
    /// Ramp-up for instances that just became healthy, if any.
    pub slow_start: Option<SlowStart>,
    /// What `consistent_hash` (and a keyed split) hashes.
    pub hash_on: HashOn,
}

/// The key a sticky route hashes, so one client keeps reaching one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashOn {
    /// The client's IP address (the default).
    #[default]
    ClientIp,
    /// A request header's value (lower-case name); requests without it fall back to the IP.
    Header(String),
    /// A cookie's value; requests without it fall back to the IP.
    Cookie(String),
}

/// Where a route was declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteSource {
    /// A `urlprefix-` tag on an instance of the route's service.
    Tag {
        /// The instance that carries the tag.
        instance: String,
        /// The tag, verbatim.
        tag: String,
    },
    /// A `route { … }` block in a config file.
    Config {
        /// The file it was read from.
        file: String,
    },
    /// `/{service}/…`, from `--gateway-service-routes`.
    ServiceName,
}

impl fmt::Display for RouteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSource::Tag { instance, tag } => write!(f, "tag {tag:?} on {instance}"),
            RouteSource::Config { file } => write!(f, "config file {file}"),
            RouteSource::ServiceName => f.write_str("service name"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(strip: Option<&str>, prepend: Option<&str>) -> Rewrite {
        Rewrite {
            strip: strip.map(str::to_owned),
            prepend: prepend.map(str::to_owned),
        }
    }

    #[test]
    fn rewrites_strip_then_prepend() {
        assert_eq!(rewrite(None, None).apply("/a/b"), "/a/b");
        assert_eq!(rewrite(Some("/api"), None).apply("/api/users"), "/users");
        assert_eq!(rewrite(Some("/api"), None).apply("/api"), "/");
        assert_eq!(rewrite(Some("/api"), None).apply("/other"), "/other");
        assert_eq!(rewrite(None, Some("/v2")).apply("/users"), "/v2/users");
        assert_eq!(rewrite(None, Some("/v2/")).apply("/users"), "/v2/users");
        assert_eq!(
            rewrite(Some("/api"), Some("/v2")).apply("/api/users"),
            "/v2/users"
        );
        assert_eq!(rewrite(Some("/api/"), None).apply("/api/users"), "/users");
    }

    #[test]
    fn access_lists_allow_then_deny() {
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let open = Access::default();
        assert!(open.permits(ip("192.0.2.1")) && open.is_open());
        let allow = Access {
            allow: vec![net("127.0.0.0/8")],
            deny: vec![],
        };
        assert!(allow.permits(ip("127.0.0.1")));
        assert!(allow.permits(ip("::ffff:127.0.0.1")), "v4-mapped v6");
        assert!(!allow.permits(ip("192.0.2.1")));
        let deny = Access {
            allow: vec![],
            deny: vec![net("10.0.0.0/8"), net("::1/128")],
        };
        assert!(!deny.permits(ip("10.1.2.3")));
        assert!(!deny.permits(ip("::1")));
        assert!(deny.permits(ip("127.0.0.1")));
    }
}
