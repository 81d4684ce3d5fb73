//! Talking to Memcached: the `--cache` URL, one client per server, and which server holds a
//! key.
//!
//! One [`AsyncMemcache`] per server rather than one client over all of them: the pusher and the
//! provider track each server's reachability on its own ([`super::outage`]), skip a server that
//! is down without waiting on it, and resync exactly the server that came back. The clients
//! pool and reuse connections and redial after a server restart by themselves (reference §2b).

use bytes::Bytes;
use memcache::exp::AsyncMemcache;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

/// The URL scheme `--cache` takes.
pub const SCHEME: &str = "memcached://";
/// Port used when a server is given without one (memcached's default).
pub const DEFAULT_PORT: u16 = 11211;
/// Prefix of every endpoint-list key: `endpoints:{service}`, as the original design named it.
pub const KEY_PREFIX: &str = "endpoints:";
/// A key the pusher writes to each server after pushing every service to it. Its absence tells
/// both sides the server holds no complete set: the pusher resyncs, providers bypass it (an
/// emptied server would otherwise answer "unknown service" for everything).
pub const SYNCED_KEY: &str = "wayfinder:endpoints-synced";

/// The key holding `service`'s rendered endpoint list.
pub fn key_for(service: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + service.len());
    key.push_str(KEY_PREFIX);
    key.push_str(service);
    key
}

/// Why a `--cache` URL was refused. Each message names the part that is wrong and shows the
/// expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheUrlError {
    /// The URL does not start with `memcached://`.
    #[error("{url:?} must start with memcached://, e.g. memcached://127.0.0.1:11211")]
    Scheme {
        /// The whole URL.
        url: String,
    },
    /// Nothing after the scheme.
    #[error("{url:?} names no server; write memcached://host:port[,host:port]")]
    NoServers {
        /// The whole URL.
        url: String,
    },
    /// `a,,b` or a trailing comma.
    #[error(
        "server #{position} in {url:?} is empty (two commas in a row or a trailing comma); \
         write memcached://host:port[,host:port]"
    )]
    EmptyServer {
        /// The whole URL.
        url: String,
        /// 1-based position in the list.
        position: usize,
    },
    /// A path, query, fragment or credentials.
    #[error(
        "{part:?} in {url:?} is not understood: --cache takes only \
         memcached://host:port[,host:port] (no path, query, user or password)"
    )]
    Unsupported {
        /// The whole URL.
        url: String,
        /// The offending part.
        part: String,
    },
    /// A host that is neither an IP address nor a host name.
    #[error(
        "host {host:?} of server {server:?} is not an IP address or host name \
         (letters, digits, '-', '.'; IPv6 in brackets: [::1]:11211)"
    )]
    Host {
        /// The server as written.
        server: String,
        /// The host part.
        host: String,
    },
    /// A port that is not 1–65535.
    #[error("port {port:?} of server {server:?} is not a number from 1 to 65535")]
    Port {
        /// The server as written.
        server: String,
        /// The port part.
        port: String,
    },
    /// The same server twice.
    #[error("server {server} is listed twice in {url:?}; list each memcached server once")]
    Duplicate {
        /// The whole URL.
        url: String,
        /// The repeated server, normalised.
        server: String,
    },
}

/// One Memcached server as configured: a host (name or IP literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    host: String,
    port: u16,
}

impl ServerAddr {
    /// The host, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for ServerAddr {
    /// `host:port`, with IPv6 hosts in brackets. This text is the server's identity for
    /// sharding, so two agents must spell the servers the same way.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `--cache memcached://host:port[,host:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheUrl {
    servers: Vec<ServerAddr>,
}

impl CacheUrl {
    /// The servers, in the order given.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }
}

impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{server}")?;
        }
        Ok(())
    }
}

impl FromStr for CacheUrl {
    type Err = CacheUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let owned = || url.to_owned();
        let rest = url
            .get(..SCHEME.len())
            .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
            .map(|_| &url[SCHEME.len()..])
            .ok_or_else(|| CacheUrlError::Scheme { url: owned() })?;
        if let Some(at) = rest.find(['/', '?', '#', '@']) {
            let part = if rest.as_bytes()[at] == b'@' {
                rest[..=at].to_owned()
            } else {
                rest[at..].to_owned()
            };
            return Err(CacheUrlError::Unsupported { url: owned(), part });
        }
        if rest.trim().is_empty() {
            return Err(CacheUrlError::NoServers { url: owned() });
        }
        let mut servers: Vec<ServerAddr> = Vec::new();
        for (i, part) in rest.split(',').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                return Err(CacheUrlError::EmptyServer {
                    url: owned(),
                    position: i + 1,
                });
            }
            let server = parse_server(part)?;
            if servers.contains(&server) {
                return Err(CacheUrlError::Duplicate {
                    url: owned(),
                    server: server.to_string(),
                });
            }
            servers.push(server);
        }
        Ok(Self { servers })
    }
}

fn parse_server(text: &str) -> Result<ServerAddr, CacheUrlError> {
    let host_error = |host: &str| CacheUrlError::Host {
        server: text.to_owned(),
        host: host.to_owned(),
    };
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| host_error(text))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(host_error(host));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').unwrap_or(after)),
        };
        (host, port)
    } else {
        match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                // An unbracketed IPv6 literal: the port cannot be told apart.
                return Err(host_error(text));
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let valid_host = host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() || {
        // A host name, optionally fully qualified with a trailing dot.
        let name = host.strip_suffix('.').unwrap_or(host);
        !name.is_empty() && name.len() <= 253 && name.split('.').all(is_host_label)
    };
    if !valid_host {
        return Err(host_error(host));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| CacheUrlError::Port {
                server: text.to_owned(),
                port: port.to_owned(),
            })?,
    };
    Ok(ServerAddr {
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn is_host_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// FNV-1a, 64 bit: a hash whose output is fixed by its definition, so every agent — whatever
/// compiler built it — shards keys and computes ETags identically.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// SplitMix64's finaliser: spreads the combined key/server hash so rendezvous scores are
/// independent per server.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Which of `servers` holds `key`: rendezvous (highest random weight) hashing. The list order
/// does not matter, and adding or removing a server moves only the keys that belong to it.
/// Ties (practically impossible) go to the lower server identity, so they are order-free too.
pub fn rendezvous<S: AsRef<str>>(key: &[u8], servers: &[S]) -> usize {
    let key_hash = stable_hash(key);
    let mut best: Option<(u64, &str, usize)> = None;
    for (index, server) in servers.iter().enumerate() {
        let server = server.as_ref();
        let score = mix(key_hash ^ stable_hash(server.as_bytes()));
        let better = match best {
            None => true,
            Some((top, name, _)) => score > top || (score == top && server < name),
        };
        if better {
            best = Some((score, server, index));
        }
    }
    best.map_or(0, |(_, _, index)| index)
}

/// The strong ETag a provider sends for `body`: quoted, `h-` and the body's stable hash in hex
/// (the primary's ETags are bare indexes, so the two never collide).
pub fn body_etag(body: &[u8]) -> String {
    format!("\"h-{:016x}\"", stable_hash(body))
}

/// Whether an error means the server is unreachable (so: an outage), as opposed to one
/// command being refused.
pub fn is_outage(error: &memcache::exp::Error) -> bool {
    use memcache::exp::Error;
    match error {
        Error::Io(_) | Error::Timeout { .. } => true,
        Error::Ambiguous { source, .. } => is_outage(source),
        _ => false,
    }
}

/// One server and its client.
pub struct Shard {
    /// The server's identity, `host:port` (log lines, metrics, sharding).
    pub name: String,
    /// The pooled client for this server only.
    pub client: AsyncMemcache,
}

/// Every configured server, and which one holds a key.
pub struct Shards {
    shards: Vec<Shard>,
    names: Vec<String>,
}

impl Shards {
    /// Resolves every server and builds its client; connections are dialed on first use, so
    /// servers that are down now are not an error. `timeout` bounds each dial and exchange;
    /// `max_idle` is how many connections per server are kept open for reuse (requests beyond
    /// it dial and close their own, so it should cover the usual concurrency).
    pub async fn connect(
        url: &CacheUrl,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, super::CacheError> {
        let mut shards = Vec::with_capacity(url.servers().len());
        for server in url.servers() {
            let name = server.to_string();
            let client = AsyncMemcache::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .max_idle(max_idle)
                .connect_async([name.as_str()])
                .await
                .map_err(|error| super::CacheError::Resolve {
                    server: name.clone(),
                    reason: error.to_string(),
                })?;
            shards.push(Shard { name, client });
        }
        let names = shards.iter().map(|s| s.name.clone()).collect();
        Ok(Self { shards, names })
    }

    /// Every server, in configuration order.
    pub fn all(&self) -> &[Shard] {
        &self.shards
    }

    /// Server identities, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the server holding `key`.
    pub fn route(&self, key: &str) -> usize {
        rendezvous(key.as_bytes(), &self.names)
    }

    /// Reads the sync marker ([`SYNCED_KEY`]) on every server at once, answers in
    /// configuration order: `Ok(Some(_))` present, `Ok(None)` absent (restarted, flushed or
    /// evicted since the last complete push), `Err` unreachable or refused.
    pub async fn sync_markers(&self) -> Vec<memcache::exp::Result<Option<Bytes>>> {
        let reads = self.shards.iter().map(|shard| get_bytes(shard, SYNCED_KEY));
        futures::future::join_all(reads).await
    }

    /// The server at `index` (clamped: there is always at least one, since a [`CacheUrl`]
    /// cannot be empty).
    pub fn get(&self, index: usize) -> &Shard {
        &self.shards[index.min(self.shards.len() - 1)]
    }
}

/// Reads `key` from `shard` as raw bytes: `Ok(None)` is a miss.
pub async fn get_bytes(shard: &Shard, key: &str) -> memcache::exp::Result<Option<Bytes>> {
    Ok(shard.client.get::<Vec<u8>>(key).await?.map(Bytes::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<CacheUrl, CacheUrlError> {
        url.parse()
    }

    #[test]
    fn parses_one_or_several_servers_with_default_port() {
        let url = parse("memcached://127.0.0.1:11311,cache-2.internal,[::1]:11411").expect("ok");
        let servers: Vec<String> = url.servers().iter().map(ToString::to_string).collect();
        assert_eq!(
            servers,
            vec!["127.0.0.1:11311", "cache-2.internal:11211", "[::1]:11411"]
        );
        assert_eq!(
            url.to_string(),
            "memcached://127.0.0.1:11311,cache-2.internal:11211,[::1]:11411"
        );
        assert!(parse("MEMCACHED://Cache:1").is_ok());
    }

    #[test]
    fn errors_name_the_bad_part() {
        let cases = [
            ("http://127.0.0.1:11211", "must start with memcached://"),
            ("memcache://127.0.0.1:11211", "must start with memcached://"),
            ("127.0.0.1:11211", "must start with memcached://"),
            ("memcached://", "names no server"),
            ("memcached://a:1,,b:2", "server #2"),
            ("memcached://a:1,", "server #2"),
            ("memcached://a:1/path", "\"/path\""),
            ("memcached://a:1?timeout=2", "\"?timeout=2\""),
            ("memcached://user:pw@a:1", "\"user:pw@\""),
            ("memcached://a:port", "port \"port\""),
            ("memcached://a:0", "port \"0\""),
            ("memcached://a:70000", "port \"70000\""),
            ("memcached://a:+1", "port \"+1\""),
            ("memcached://bad host:1", "host \"bad host\""),
            ("memcached://::1:11211", "host \"::1:11211\""),
            ("memcached://[zz]:1", "host \"zz\""),
            ("memcached://:11211", "host \"\""),
            ("memcached://a..b:1", "host \"a..b\""),
            ("memcached://a:1,A:1", "listed twice"),
            ("memcached://a,a:11211", "listed twice"),
        ];
        for (url, expected) in cases {
            let error = parse(url).expect_err(url).to_string();
            assert!(
                error.contains(expected),
                "{url}: expected {expected:?} in {error:?}"
            );
        }
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors: the hash must never change between builds.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn sharding_is_stable_across_builds_and_list_order() {
        let servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
        // Pinned (computed independently from the FNV-1a and SplitMix64 definitions): if this
        // changes, primaries and providers of different versions look for keys on different
        // servers. Change the hash only with a migration plan.
        let names = [
            "worker-service",
            "web",
            "db",
            "api",
            "cache",
            "payments",
            "search",
            "auth",
        ];
        let shards: Vec<usize> = names
            .iter()
            .map(|s| rendezvous(key_for(s).as_bytes(), &servers))
            .collect();
        assert_eq!(shards, vec![1, 1, 0, 1, 1, 0, 2, 0]);
        let reversed = ["10.0.0.3:11211", "10.0.0.2:11211", "10.0.0.1:11211"];
        for i in 0..500 {
            let key = key_for(&format!("svc-{i}"));
            let a = servers[rendezvous(key.as_bytes(), &servers)];
            let b = reversed[rendezvous(key.as_bytes(), &reversed)];
            assert_eq!(a, b, "list order changed the server of {key}");
        }
    }

    #[test]
    fn sharding_spreads_keys_and_moves_only_a_removed_servers_keys() {
        let four = ["a:1", "b:1", "c:1", "d:1"];
        let three = ["a:1", "c:1", "d:1"];
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let key = key_for(&format!("svc-{i}"));
            let before = four[rendezvous(key.as_bytes(), &four)];
            counts[rendezvous(key.as_bytes(), &four)] += 1;
            let after = three[rendezvous(key.as_bytes(), &three)];
            if before != "b:1" {
                assert_eq!(before, after, "{key} moved although its server stayed");
            }
        }
        assert!(counts.iter().all(|c| *c > 800), "unbalanced: {counts:?}");
        assert_eq!(rendezvous(b"k", &["only:1"]), 0);
    }

    #[test]
    fn etag_depends_on_the_body_only() {
        assert_eq!(body_etag(b"[]"), body_etag(b"[]"));
        assert_ne!(body_etag(b"[]"), body_etag(b"[{}]"));
        assert!(body_etag(b"[]").starts_with("\"h-"));
    }
}
