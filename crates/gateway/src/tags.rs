//! fabio's `urlprefix-` tag language: instances declare their own routes in their tags.
//!
//! Owns [`parse_tag`], which turns one tag such as
//! `urlprefix-api.example.com/v1 strip=/v1 proto=https` into a [`RouteSpec`], and [`TagError`],
//! which says what is wrong with a tag that is meant as a route but cannot be one. The language
//! and its meaning follow fabio (<https://fabiolb.net/cfg/>): `urlprefix-[host[:port]]/path`
//! followed by whitespace-separated `key=value` options (`strip`, `prepend`, `proto`, `host`,
//! `allow`, `deny`), plus our `strategy=` for the balancing strategy.
//!
//! Not here: de-duplicating the same route from several instances and settling claims on one
//! prefix by different services (`crate::routing`), matching requests (`crate::table`), and
//! routes from config files. Parts of fabio's language the gateway does not serve are refused
//! with a message rather than half-honoured: TCP routes (`urlprefix-:port`, `proto=tcp`), gRPC,
//! wildcard hosts, and the options `redirect`, `auth`, `register`, `tlsskipverify`, `pxyproto`
//! and `grpcservername`.
//!
//! Why unknown options are refused: fabio ignores them, so `urlprefix-/api stirp=/api` quietly
//! serves unstripped paths and the typo surfaces only as 404s from the instance. A refused tag
//! yields no route, and its error is logged and listed with the route table's problems, so the
//! typo shows where the route is looked for.

use crate::route::{HostHeader, RouteSource, RouteSpec, UpstreamProto};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use wayfinder_balance::StrategyKind;

/// The prefix marking a routing tag.
pub const URLPREFIX: &str = "urlprefix-";

/// The options, as error messages list them.
const OPTIONS_HELP: &str = "strip=, prepend=, proto=, host=, allow=, deny= and strategy=";

/// fabio options the gateway does not implement; named apart from typos in the error.
const FABIO_ONLY_OPTIONS: [&str; 6] = [
    "auth",
    "grpcservername",
    "pxyproto",
    "redirect",
    "register",
    "tlsskipverify",
];

/// A `urlprefix-` tag that cannot be made into a route. Every message starts with the tag and
/// says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Nothing after `urlprefix-`.
    #[error(
        "tag {tag:?}: no route after \"urlprefix-\"; write urlprefix-/path or urlprefix-host/path"
    )]
    MissingRoute {
        /// The tag, verbatim.
        tag: String,
    },
    /// The route has no path starting with `/`.
    #[error("tag {tag:?}: the path must start with '/', e.g. {example}")]
    Path {
        /// The tag, verbatim.
        tag: String,
        /// The route as it was probably meant.
        example: String,
    },
    /// `urlprefix-:port`, which fabio reads as a TCP route.
    #[error(
        "tag {tag:?}: urlprefix-:port declares a TCP route, which the gateway does not proxy; \
         write an HTTP route such as urlprefix-/path or urlprefix-host/path"
    )]
    TcpRoute {
        /// The tag, verbatim.
        tag: String,
    },
    /// The host before the path is not a host name (or `[IPv6]`), or its port is not a port.
    #[error("tag {tag:?}: host {host:?} {reason}")]
    Host {
        /// The tag, verbatim.
        tag: String,
        /// The host part as written (with its port, if any).
        host: String,
        /// What is wrong and what to write instead.
        reason: &'static str,
    },
    /// An option the language does not have (a typo, most likely).
    #[error("tag {tag:?}: unknown option {option:?}; the options are {OPTIONS_HELP}")]
    UnknownOption {
        /// The tag, verbatim.
        tag: String,
        /// The option's name (or the whole word, when it has no name).
        option: String,
    },
    /// A fabio option the gateway does not implement.
    #[error(
        "tag {tag:?}: fabio's option {option:?} is not supported by the gateway; remove it \
         (the options are {OPTIONS_HELP})"
    )]
    UnsupportedOption {
        /// The tag, verbatim.
        tag: String,
        /// The option's name.
        option: String,
    },
    /// `key` or `key=` without a value.
    #[error("tag {tag:?}: option {option}= needs a value, e.g. {example}")]
    MissingValue {
        /// The tag, verbatim.
        tag: String,
        /// The option's name.
        option: &'static str,
        /// The option with a typical value.
        example: &'static str,
    },
    /// The same option twice.
    #[error(
        "tag {tag:?}: option {option}= is given more than once; give it once (allow= and deny= \
         take several networks separated by commas)"
    )]
    DuplicateOption {
        /// The tag, verbatim.
        tag: String,
        /// The option's name.
        option: &'static str,
    },
    /// A `strip=` or `prepend=` value that is not a path.
    #[error(
        "tag {tag:?}: {option}={value:?} is not a path; it must start with '/', e.g. {option}=/{}",
        .value.escape_debug()
    )]
    RewritePath {
        /// The tag, verbatim.
        tag: String,
        /// `strip` or `prepend`.
        option: &'static str,
        /// The value as written.
        value: String,
    },
    /// A `proto=` other than `http` or `https`.
    #[error(
        "tag {tag:?}: proto={proto:?} is not proxied; the gateway speaks only http and https to \
         instances, so write proto=http or proto=https"
    )]
    Proto {
        /// The tag, verbatim.
        tag: String,
        /// The value as written.
        proto: String,
    },
    /// A `host=` value that cannot be a `Host` header.
    #[error(
        "tag {tag:?}: host={value:?} is not a host name; write host=dst for the instance's \
         address, or host=name or host=name:port for a fixed Host header"
    )]
    HostHeader {
        /// The tag, verbatim.
        tag: String,
        /// The value as written.
        value: String,
    },
    /// An `allow=` or `deny=` entry that is not an address or a CIDR network.
    #[error(
        "tag {tag:?}: {option}= entry {entry:?} is not an address or network; write a \
         comma-separated list such as {option}=ip:10.0.0.0/8,ip:192.0.2.1/32,ip:fd00::/8"
    )]
    Network {
        /// The tag, verbatim.
        tag: String,
        /// `allow` or `deny`.
        option: &'static str,
        /// The entry as written.
        entry: String,
    },
    /// Both `allow=` and `deny=` on one route (fabio refuses this too).
    #[error(
        "tag {tag:?}: a route takes allow= or deny=, not both; use allow= to serve only the \
         listed clients, or deny= to refuse the listed ones"
    )]
    AllowAndDeny {
        /// The tag, verbatim.
        tag: String,
    },
    /// A `strategy=` that is not one of [`StrategyKind`]'s names.
    #[error(
        "tag {tag:?}: unknown strategy {strategy:?}; write strategy= with one of {}",
        strategy_names()
    )]
    Strategy {
        /// The tag, verbatim.
        tag: String,
        /// The value as written.
        strategy: String,
    },
}

impl TagError {
    /// The tag the error is about, verbatim.
    pub fn tag(&self) -> &str {
        match self {
            TagError::MissingRoute { tag }
            | TagError::Path { tag, .. }
            | TagError::TcpRoute { tag }
            | TagError::Host { tag, .. }
            | TagError::UnknownOption { tag, .. }
            | TagError::UnsupportedOption { tag, .. }
            | TagError::MissingValue { tag, .. }
            | TagError::DuplicateOption { tag, .. }
            | TagError::RewritePath { tag, .. }
            | TagError::Proto { tag, .. }
            | TagError::HostHeader { tag, .. }
            | TagError::Network { tag, .. }
            | TagError::AllowAndDeny { tag }
            | TagError::Strategy { tag, .. } => tag,
        }
    }
}

fn strategy_names() -> String {
    StrategyKind::ALL.map(StrategyKind::as_str).join(", ")
}

/// Parses one instance tag. `None` when the tag is not a `urlprefix-` tag (ordinary tags like
/// `v1`); `Some(Err)` when it is one but malformed.
///
/// As in fabio, the prefix is matched case-sensitively after surrounding whitespace is trimmed.
/// The route's `source` is the instance and the tag verbatim; options not given keep
/// [`RouteSpec::new`]'s defaults.
pub fn parse_tag(tag: &str, service: &str, instance: &str) -> Option<Result<RouteSpec, TagError>> {
    let rest = tag.trim().strip_prefix(URLPREFIX)?;
    Some(parse_route(tag, rest, service, instance))
}

fn parse_route(
    tag: &str,
    rest: &str,
    service: &str,
    instance: &str,
) -> Result<RouteSpec, TagError> {
    let mut words = rest.split_whitespace();
    let route = words.next().ok_or_else(|| TagError::MissingRoute {
        tag: tag.to_owned(),
    })?;
    if route.starts_with(':') {
        return Err(TagError::TcpRoute {
            tag: tag.to_owned(),
        });
    }
    let Some(slash) = route.find('/') else {
        // A dot suggests a host that lacks its path; anything else, a path that lacks its slash.
        let example = if route.contains('.') {
            format!("{URLPREFIX}{}/", route.escape_debug())
        } else {
            format!("{URLPREFIX}/{}", route.escape_debug())
        };
        return Err(TagError::Path {
            tag: tag.to_owned(),
            example,
        });
    };
    // `find` returns the byte index of an ASCII '/', always a char boundary.
    let (authority, path) = route.split_at(slash);

    let source = RouteSource::Tag {
        instance: instance.to_owned(),
        tag: tag.to_owned(),
    };
    let mut spec = RouteSpec::new(path, service, source);
    if !authority.is_empty() {
        let host = parse_host(authority).map_err(|reason| TagError::Host {
            tag: tag.to_owned(),
            host: authority.to_owned(),
            reason,
        })?;
        spec.host = Some(host);
    }

    let mut seen: Vec<Opt> = Vec::new();
    for word in words {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let Some(opt) = Opt::from_key(key) else {
            return Err(if FABIO_ONLY_OPTIONS.contains(&key) {
                TagError::UnsupportedOption {
                    tag: tag.to_owned(),
                    option: key.to_owned(),
                }
            } else {
                TagError::UnknownOption {
                    tag: tag.to_owned(),
                    option: if key.is_empty() { word } else { key }.to_owned(),
                }
            });
        };
        if value.is_empty() {
            return Err(TagError::MissingValue {
                tag: tag.to_owned(),
                option: opt.name(),
                example: opt.example(),
            });
        }
        if seen.contains(&opt) {
            return Err(TagError::DuplicateOption {
                tag: tag.to_owned(),
                option: opt.name(),
            });
        }
        seen.push(opt);
        opt.apply(value, &mut spec, tag)?;
    }
    if seen.contains(&Opt::Allow) && seen.contains(&Opt::Deny) {
        return Err(TagError::AllowAndDeny {
            tag: tag.to_owned(),
        });
    }
    Ok(spec)
}

/// The host of `host[:port]` or `[v6][:port]`, lower-cased and without the port; or why not.
fn parse_host(authority: &str) -> Result<String, &'static str> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("lacks the closing ']' of its IPv6 address; write e.g. [fd00::1]/path")?;
        if address.parse::<Ipv6Addr>().is_err() {
            return Err("is not an IPv6 address in brackets; write e.g. [fd00::1]/path");
        }
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or(
                "has text after its IPv6 address; write [address]/path or [address]:port/path",
            )?),
        };
        // Keep the brackets: that is how a request's Host names an IPv6 address.
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if port.is_some_and(|port| port.contains(':')) {
            return Err("looks like an IPv6 address; put it in brackets, e.g. [fd00::1]/path");
        }
        if name.contains('*') {
            return Err("is a wildcard, which the gateway does not match; name each host exactly");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err("is not a host name; use letters, digits, '-', '.' and '_' \
                        (punycode for international names), e.g. api.example.com/path");
        }
        (name.to_ascii_lowercase(), port)
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(
            "has a port that is not a number up to 65535; write host:port/path or \
                    leave the port out (it is ignored)",
        );
    }
    Ok(host)
}

/// One option of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Strip,
    Prepend,
    Proto,
    Host,
    Allow,
    Deny,
    Strategy,
}

impl Opt {
    fn from_key(key: &str) -> Option<Opt> {
        Some(match key {
            "strip" => Opt::Strip,
            "prepend" => Opt::Prepend,
            "proto" => Opt::Proto,
            "host" => Opt::Host,
            "allow" => Opt::Allow,
            "deny" => Opt::Deny,
            "strategy" => Opt::Strategy,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Opt::Strip => "strip",
            Opt::Prepend => "prepend",
            Opt::Proto => "proto",
            Opt::Host => "host",
            Opt::Allow => "allow",
            Opt::Deny => "deny",
            Opt::Strategy => "strategy",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Opt::Strip => "strip=/api",
            Opt::Prepend => "prepend=/v2",
            Opt::Proto => "proto=https",
            Opt::Host => "host=dst",
            Opt::Allow => "allow=ip:10.0.0.0/8",
            Opt::Deny => "deny=ip:10.0.0.0/8",
            Opt::Strategy => "strategy=least_request",
        }
    }

    /// Sets the option's `value` (not empty) on `spec`.
    fn apply(self, value: &str, spec: &mut RouteSpec, tag: &str) -> Result<(), TagError> {
        match self {
            Opt::Strip | Opt::Prepend => {
                if !value.starts_with('/') {
                    return Err(TagError::RewritePath {
                        tag: tag.to_owned(),
                        option: self.name(),
                        value: value.to_owned(),
                    });
                }
                let field = if self == Opt::Strip {
                    &mut spec.rewrite.strip
                } else {
                    &mut spec.rewrite.prepend
                };
                *field = Some(value.to_owned());
            }
            Opt::Proto => {
                spec.proto = match value {
                    "http" => UpstreamProto::Http,
                    "https" => UpstreamProto::Https,
                    _ => {
                        return Err(TagError::Proto {
                            tag: tag.to_owned(),
                            proto: value.to_owned(),
                        });
                    }
                };
            }
            Opt::Host => {
                spec.host_header = if value == "dst" {
                    HostHeader::Destination
                } else if value.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
                }) {
                    HostHeader::Fixed(value.to_owned())
                } else {
                    return Err(TagError::HostHeader {
                        tag: tag.to_owned(),
                        value: value.to_owned(),
                    });
                };
            }
            Opt::Allow | Opt::Deny => {
                let nets = value
                    .split(',')
                    .map(|entry| {
                        parse_net(entry).ok_or_else(|| TagError::Network {
                            tag: tag.to_owned(),
                            option: self.name(),
                            entry: entry.to_owned(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if self == Opt::Allow {
                    spec.access.allow = nets;
                } else {
                    spec.access.deny = nets;
                }
            }
            Opt::Strategy => {
                spec.balance.strategy =
                    StrategyKind::from_str(value).map_err(|_| TagError::Strategy {
                        tag: tag.to_owned(),
                        strategy: value.to_owned(),
                    })?;
            }
        }
        Ok(())
    }
}

/// `ip:CIDR`, a bare CIDR, or a bare address (a network of one), with host bits cleared.
fn parse_net(entry: &str) -> Option<IpNet> {
    let entry = entry.strip_prefix("ip:").unwrap_or(entry);
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(entry.parse::<IpAddr>().ok()?),
    };
    Some(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Access, Rewrite};
    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(tag: &str) -> Result<RouteSpec, TagError> {
        parse_tag(tag, "svc", "svc-1").expect("a urlprefix- tag")
    }

    fn error(tag: &str) -> TagError {
        match parse(tag) {
            Ok(spec) => panic!("{tag:?} parsed as {spec:?}"),
            Err(e) => {
                assert_eq!(e.tag(), tag);
                assert!(e.to_string().starts_with(&format!("tag {tag:?}: ")), "{e}");
                e
            }
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn ordinary_tags_are_not_routes() {
        for tag in [
            "v1",
            "",
            "primary",
            "URLPREFIX-/x",
            "Urlprefix-/x",
            "urlprefix",
            "x urlprefix-/",
        ] {
            assert_eq!(parse_tag(tag, "svc", "svc-1"), None, "{tag:?}");
        }
    }

    #[test]
    fn a_path_route_has_defaults() {
        let spec = parse("urlprefix-/oops").expect("valid");
        let source = RouteSource::Tag {
            instance: "svc-1".into(),
            tag: "urlprefix-/oops".into(),
        };
        assert_eq!(spec, RouteSpec::new("/oops", "svc", source));
        assert_eq!(parse("urlprefix-/").expect("valid").prefix, "/");
    }

    #[test]
    fn a_host_route_with_strip() {
        let spec = parse("urlprefix-api.example.com/v1 strip=/v1").expect("valid");
        assert_eq!(spec.host.as_deref(), Some("api.example.com"));
        assert_eq!(spec.prefix, "/v1");
        assert_eq!(
            spec.rewrite,
            Rewrite {
                strip: Some("/v1".into()),
                prepend: None
            }
        );
    }

    #[test]
    fn every_option_at_once() {
        let tag = "urlprefix-/img prepend=/static proto=https host=dst \
                   allow=ip:10.0.0.0/8,ip:127.0.0.1/32";
        let spec = parse(tag).expect("valid");
        assert_eq!(spec.prefix, "/img");
        assert_eq!(spec.rewrite.prepend.as_deref(), Some("/static"));
        assert_eq!(spec.rewrite.strip, None);
        assert_eq!(spec.proto, UpstreamProto::Https);
        assert_eq!(spec.host_header, HostHeader::Destination);
        assert_eq!(
            spec.access,
            Access {
                allow: vec![net("10.0.0.0/8"), net("127.0.0.1/32")],
                deny: vec![],
            }
        );
        assert_eq!(
            spec.source,
            RouteSource::Tag {
                instance: "svc-1".into(),
                tag: tag.into()
            }
        );

        let spec = parse("urlprefix-/x  host=internal.example:8080\tstrategy=peak_ewma proto=http")
            .expect("valid");
        assert_eq!(
            spec.host_header,
            HostHeader::Fixed("internal.example:8080".into())
        );
        assert_eq!(spec.balance.strategy, StrategyKind::PeakEwma);
        assert_eq!(spec.proto, UpstreamProto::Http);
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        let host = |tag: &str| parse(tag).expect("valid").host;
        assert_eq!(
            host("urlprefix-API.Example.com:8443/v1").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            host("urlprefix-localhost:80/").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            host("urlprefix-[FD00::1]:8080/x").as_deref(),
            Some("[fd00::1]")
        );
        assert_eq!(host("urlprefix-[::1]/x").as_deref(), Some("[::1]"));
        assert_eq!(host("urlprefix-/x"), None);
        // fabio trims the tag, and the whitespace after the prefix.
        assert_eq!(parse("  urlprefix- /x ").expect("valid").prefix, "/x");
    }

    #[test]
    fn networks_in_every_spelling() {
        let spec =
            parse("urlprefix-/x deny=ip:fd00::/8,::1,192.0.2.1,10.1.2.3/8,ip:2001:db8::1/32")
                .expect("valid");
        assert_eq!(
            spec.access.deny,
            vec![
                net("fd00::/8"),
                net("::1/128"),
                net("192.0.2.1/32"),
                net("10.0.0.0/8"),
                net("2001:db8::/32"),
            ]
        );
        assert!(spec.access.allow.is_empty());
        assert!(!spec.access.permits("fd12::5".parse().expect("ip")));
        assert!(spec.access.permits("fe80::1".parse().expect("ip")));
    }

    #[test]
    fn malformed_routes() {
        assert!(matches!(error("urlprefix-"), TagError::MissingRoute { .. }));
        assert!(matches!(
            error("urlprefix-   "),
            TagError::MissingRoute { .. }
        ));
        let e = error("urlprefix-oops");
        assert_eq!(
            e.to_string(),
            "tag \"urlprefix-oops\": the path must start with '/', e.g. urlprefix-/oops"
        );
        let e = error("urlprefix-api.example.com strip=/v1");
        assert!(
            e.to_string().ends_with("e.g. urlprefix-api.example.com/"),
            "{e}"
        );
        assert!(matches!(
            error("urlprefix-:8080"),
            TagError::TcpRoute { .. }
        ));
        assert!(matches!(
            error("urlprefix-::1/x"),
            TagError::TcpRoute { .. }
        ));
        for tag in [
            "urlprefix-*.example.com/x",
            "urlprefix-exa mple.com/x x",
            "urlprefix-api@example.com/x",
            "urlprefix-café.example/x",
            "urlprefix-example.com:http/x",
            "urlprefix-example.com:/x",
            "urlprefix-example.com:+80/x",
            "urlprefix-example.com:65536/x",
            "urlprefix-fe80::1/x",
            "urlprefix-[fe80::1/x",
            "urlprefix-[nope]/x",
            "urlprefix-[::1]8080/x",
        ] {
            // "exa mple.com/x" splits into the route "exa" and an option.
            let e = error(tag);
            assert!(
                matches!(e, TagError::Host { .. } | TagError::Path { .. }),
                "{tag:?}: {e}"
            );
        }
    }

    #[test]
    fn malformed_options() {
        let e = error("urlprefix-/api stirp=/api");
        assert_eq!(
            e,
            TagError::UnknownOption {
                tag: "urlprefix-/api stirp=/api".into(),
                option: "stirp".into()
            }
        );
        assert!(e.to_string().contains("strip="), "lists the options: {e}");
        assert!(matches!(
            error("urlprefix-/x =/y"),
            TagError::UnknownOption { option, .. } if option == "=/y"
        ));
        assert!(matches!(
            error("urlprefix-/x STRIP=/x"),
            TagError::UnknownOption { .. }
        ));
        assert!(matches!(
            error("urlprefix-/x redirect=301,https://example.com$path"),
            TagError::UnsupportedOption { option, .. } if option == "redirect"
        ));
        assert!(matches!(
            error("urlprefix-/x tlsskipverify=true"),
            TagError::UnsupportedOption { .. }
        ));
        for tag in [
            "urlprefix-/x strip",
            "urlprefix-/x strip=",
            "urlprefix-/x allow=",
        ] {
            assert!(
                matches!(error(tag), TagError::MissingValue { .. }),
                "{tag:?}"
            );
        }
        assert!(matches!(
            error("urlprefix-/x strip=/a strip=/b"),
            TagError::DuplicateOption {
                option: "strip",
                ..
            }
        ));
        assert!(matches!(
            error("urlprefix-/x allow=10.0.0.0/8 allow=::1"),
            TagError::DuplicateOption {
                option: "allow",
                ..
            }
        ));
        let e = error("urlprefix-/v1 strip=v1");
        assert!(matches!(
            e,
            TagError::RewritePath {
                option: "strip",
                ..
            }
        ));
        assert!(e.to_string().ends_with("e.g. strip=/v1"), "{e}");
        assert!(matches!(
            error("urlprefix-/x prepend=static"),
            TagError::RewritePath {
                option: "prepend",
                ..
            }
        ));
        for proto in ["tcp", "grpc", "grpcs", "HTTPS", "tcp+sni"] {
            let e = error(&format!("urlprefix-/x proto={proto}"));
            assert!(matches!(e, TagError::Proto { .. }), "{proto}");
            assert!(e.to_string().contains("only http and https"), "{e}");
        }
        assert!(matches!(
            error("urlprefix-/x host=a/b"),
            TagError::HostHeader { .. }
        ));
        for list in [
            "10.0.0.0/33",
            "ip:",
            "10.0.0.0/8,",
            "cidr:10.0.0.0/8",
            "localhost",
            "ip:10.0.0.0/8,,::1",
        ] {
            let e = error(&format!("urlprefix-/x deny={list}"));
            assert!(
                matches!(e, TagError::Network { option: "deny", .. }),
                "{list}: {e}"
            );
        }
        let e = error("urlprefix-/x allow=10.0.0.0/8 deny=10.1.0.0/16");
        assert!(matches!(e, TagError::AllowAndDeny { .. }));
        let e = error("urlprefix-/x strategy=fastest");
        assert!(matches!(e, TagError::Strategy { .. }));
        assert!(e.to_string().contains("round_robin, random"), "{e}");
    }

    /// A route as a generator draws it, and the spec it must parse to.
    #[derive(Clone, Debug)]
    struct Case {
        host: Option<(String, Option<u16>)>,
        path: String,
        options: Vec<String>,
        expected: RouteSpec,
    }

    fn network() -> impl Strategy<Value = (String, IpNet)> {
        let v4 = (any::<u32>(), 0u8..=32).prop_map(|(addr, len)| {
            let net = Ipv4Net::new(Ipv4Addr::from(addr), len).expect("len <= 32");
            (net.to_string(), IpNet::V4(net.trunc()))
        });
        let v6 = (any::<u128>(), 0u8..=128).prop_map(|(addr, len)| {
            let net = Ipv6Net::new(Ipv6Addr::from(addr), len).expect("len <= 128");
            (net.to_string(), IpNet::V6(net.trunc()))
        });
        let cidr = prop_oneof![v4, v6];
        let address = any::<IpAddr>().prop_map(|addr| (addr.to_string(), IpNet::from(addr)));
        (prop_oneof![cidr, address], any::<bool>()).prop_map(|((text, net), tagged)| {
            (if tagged { format!("ip:{text}") } else { text }, net)
        })
    }

    fn case() -> impl Strategy<Value = Case> {
        let host = proptest::option::of((
            "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
            proptest::option::of(any::<u16>()),
        ));
        let path = "/\\S{0,20}";
        let rewrite = proptest::option::of("/\\S{0,10}");
        let proto = proptest::option::of(prop_oneof![
            Just(UpstreamProto::Http),
            Just(UpstreamProto::Https)
        ]);
        let host_header = proptest::option::of(prop_oneof![
            Just(HostHeader::Destination),
            "[a-zA-Z0-9._:-]{1,20}"
                .prop_filter("dst is Destination", |s| s != "dst")
                .prop_map(HostHeader::Fixed),
        ]);
        let access =
            proptest::option::of((any::<bool>(), proptest::collection::vec(network(), 1..4)));
        let strategy = proptest::option::of(proptest::sample::select(StrategyKind::ALL.to_vec()));
        (
            host,
            path,
            rewrite.clone(),
            rewrite,
            proto,
            host_header,
            access,
            strategy,
        )
            .prop_map(
                |(host, path, strip, prepend, proto, host_header, access, strategy)| {
                    let source = RouteSource::Tag {
                        instance: "svc-1".into(),
                        tag: String::new(),
                    };
                    let mut expected = RouteSpec::new(path.clone(), "svc", source);
                    let mut options = Vec::new();
                    expected.host = host.as_ref().map(|(name, _)| name.to_ascii_lowercase());
                    if let Some(strip) = strip {
                        options.push(format!("strip={strip}"));
                        expected.rewrite.strip = Some(strip);
                    }
                    if let Some(prepend) = prepend {
                        options.push(format!("prepend={prepend}"));
                        expected.rewrite.prepend = Some(prepend);
                    }
                    if let Some(proto) = proto {
                        options.push(format!("proto={}", proto.scheme()));
                        expected.proto = proto;
                    }
                    match host_header {
                        Some(HostHeader::Fixed(name)) => {
                            options.push(format!("host={name}"));
                            expected.host_header = HostHeader::Fixed(name);
                        }
                        Some(header) => {
                            options.push("host=dst".into());
                            expected.host_header = header;
                        }
                        None => {}
                    }
                    if let Some((allow, nets)) = access {
                        let key = if allow { "allow" } else { "deny" };
                        let list: Vec<String> = nets.iter().map(|(text, _)| text.clone()).collect();
                        options.push(format!("{key}={}", list.join(",")));
                        let nets = nets.into_iter().map(|(_, net)| net).collect();
                        if allow {
                            expected.access.allow = nets;
                        } else {
                            expected.access.deny = nets;
                        }
                    }
                    if let Some(strategy) = strategy {
                        options.push(format!("strategy={strategy}"));
                        expected.balance.strategy = strategy;
                    }
                    Case {
                        host,
                        path,
                        options,
                        expected,
                    }
                },
            )
            .prop_flat_map(|case| {
                let options = Just(case.options.clone()).prop_shuffle();
                (Just(case), options)
            })
            .prop_map(|(case, options)| Case { options, ..case })
    }

    fn render(case: &Case) -> String {
        let mut tag = URLPREFIX.to_owned();
        if let Some((name, port)) = &case.host {
            tag.push_str(name);
            if let Some(port) = port {
                tag.push_str(&format!(":{port}"));
            }
        }
        tag.push_str(&case.path);
        for option in &case.options {
            tag.push(' ');
            tag.push_str(option);
        }
        tag
    }

    proptest! {
        #[test]
        fn never_panics(tag in any::<String>()) {
            let parsed = parse_tag(&tag, "svc", "svc-1");
            prop_assert_eq!(parsed.is_some(), tag.trim().starts_with(URLPREFIX));
        }

        #[test]
        fn never_panics_on_routes(rest in "\\PC{0,40}|[ /:\\[\\]a-z0-9=,.*]{0,40}") {
            let tag = format!("{URLPREFIX}{rest}");
            match parse_tag(&tag, "svc", "svc-1") {
                Some(Ok(spec)) => {
                    prop_assert!(spec.prefix.starts_with('/'));
                    prop_assert!(spec.access.allow.is_empty() || spec.access.deny.is_empty());
                }
                Some(Err(e)) => prop_assert_eq!(e.tag(), tag.as_str()),
                None => prop_assert!(false, "a urlprefix- tag was not recognised"),
            }
        }

        #[test]
        fn rendered_routes_parse_back(case in case()) {
            let tag = render(&case);
            let spec = parse(&tag);
            let mut expected = case.expected;
            expected.source = RouteSource::Tag { instance: "svc-1".into(), tag: tag.clone() };
            prop_assert_eq!(spec, Ok(expected), "{}", tag);
        }
    }
}
