//! The DNS interface (`--dns-addr`): `<service>.service.<domain>` A/AAAA and SRV answers with
//! healthy instances only, on UDP and TCP, as Consul's DNS and Docker Swarm's service names
//! (our design notes) answer them.
//!
//! - [`name`] reads a query name (Consul's and RFC 2782's forms, nodes, `addr` targets);
//! - [`answer`] builds the records from a catalog snapshot (filtering, weighted shuffle, SOA);
//! - [`handler`] is hickory's request handler: question checks, EDNS, response codes;
//! - this module binds the sockets and runs hickory's server until the agent stops.
//!
//! Every answer reads the snapshot the write path last swapped in, so an instance that fails
//! its check is out of the next answer; with the default TTL of 0 resolvers do not cache it.

pub mod answer;
pub mod handler;
pub mod name;

use crate::consul::response::NodeInfo;
use crate::snapshots::Snapshots;
use answer::Zone;
use handler::Handler;
use hickory_proto::rr::Name;
use hickory_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;
/// Tries to find a port free for both UDP and TCP when the configured port is 0.
const EPHEMERAL_PORT_TRIES: usize = 20;

/// What the DNS interface answers and where.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP address (`--dns-addr`); `None` turns DNS off.
    pub addr: Option<SocketAddr>,
    /// The domain answered for (`--dns-domain`, default `consul`).
    pub domain: String,
    /// TTL of answers in seconds (`--dns-ttl`, default 0 as in Consul).
    pub ttl: u32,
    /// TTL of negative answers in seconds (`--dns-negative-ttl`, default 0).
    pub negative_ttl: u32,
    /// Leave warning instances out of answers (`--dns-only-passing`).
    pub only_passing: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            addr: None,
            domain: "consul".to_owned(),
            ttl: 0,
            negative_ttl: 0,
            only_passing: false,
        }
    }
}

/// Why the DNS interface cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `--dns-domain` is not a DNS name.
    #[error("--dns-domain {domain:?} is not a DNS name ({reason}); use e.g. consul or sd.internal")]
    Domain {
        /// What was given.
        domain: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The sockets could not be bound.
    #[error("cannot listen for DNS on {addr} (UDP and TCP): {source}; is the port in use?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound DNS interface, not yet serving.
pub struct Dns {
    server: Server<Handler>,
    addr: SocketAddr,
}

impl Dns {
    /// Binds UDP and TCP on `addr` (when its port is 0, one port free for both) and prepares the
    /// handler for `config`'s zone.
    pub async fn bind(
        addr: SocketAddr,
        config: &DnsConfig,
        node: NodeInfo,
        snapshots: Arc<Snapshots>,
        metrics: crate::metrics::DnsMetrics,
    ) -> Result<Dns, DnsError> {
        let zone = Zone {
            domain: domain(&config.domain)?,
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
            only_passing: config.only_passing,
            node,
        };
        let (udp, tcp) = bind_both(addr).await?;
        let bound = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        let mut server = Server::new(Handler::new(zone, snapshots, metrics));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(Dns {
            server,
            addr: bound,
        })
    }

    /// The bound address (UDP and TCP share it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is cancelled.
    pub fn spawn(mut self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            tokio::select! {
                result = self.server.block_until_done() => {
                    if let Err(error) = result {
                        tracing::error!(%error, "the DNS server stopped");
                    }
                }
                () = stop.cancelled() => {
                    if let Err(error) = self.server.shutdown_gracefully().await {
                        tracing::debug!(%error, "DNS server shutdown");
                    }
                }
            }
        })
    }
}

/// `domain` as a lower-case fully qualified name.
fn domain(domain: &str) -> Result<Name, DnsError> {
    let bad = |reason: String| DnsError::Domain {
        domain: domain.to_owned(),
        reason,
    };
    let trimmed = domain.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(bad("it is empty".to_owned()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| bad(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// UDP and TCP sockets on one address; with port 0, the TCP socket takes the UDP socket's port
/// (retried on a new port when that one is taken for TCP).
async fn bind_both(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let tries = if addr.port() == 0 {
        EPHEMERAL_PORT_TRIES
    } else {
        1
    };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind { addr, source })?;
        let port = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?
            .port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => last = Some(source),
        }
    }
    Err(DnsError::Bind {
        addr,
        source: last.unwrap_or_else(|| std::io::Error::other("no port was free for UDP and TCP")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_fully_qualified_and_lower_case() {
        assert_eq!(domain("Consul").expect("name").to_string(), "consul.");
        assert_eq!(
            domain("sd.internal.").expect("name").to_string(),
            "sd.internal."
        );
        assert!(domain("").is_err());
        assert!(domain(".").is_err());
    }
}
