//! Everything a user can set on the agent, with defaults that work on one machine with nothing
//! installed (DESIGN.md invariant).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Default HTTP API address: Consul's port, on loopback so a fresh agent exposes nothing.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./wayfinder-data";
/// Default datacenter name, as Consul's.
pub const DEFAULT_DATACENTER: &str = "dc1";
/// Largest request body accepted, in bytes (1 MiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the catalog is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// A durable directory that survives restarts.
    Path(PathBuf),
    /// A temporary directory removed at exit (`--dev`).
    Temporary,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the catalog is stored.
    pub data_dir: DataDir,
    /// A shared store (`etcd://h1:2379,h2:2379[?prefix=/wayfinder]`) holding the catalog for
    /// several agents (cluster mode); `None` keeps it in the embedded store under `data_dir`.
    pub store: Option<String>,
    /// In cluster mode, how long this agent's membership lease lives without renewal: how
    /// long its checks go unrun after it dies, before the other agents take them over
    /// (`--cluster-lease-ttl`, whole seconds, at least 3).
    pub cluster_lease_ttl: std::time::Duration,
    /// Directory of service definition files (`*.hcl`, `*.json`), if any.
    pub config_dir: Option<PathBuf>,
    /// Allow script checks registered through the HTTP API (remote code execution: off by
    /// default, as in Consul).
    pub enable_script_checks: bool,
    /// Allow script checks from config files only.
    pub enable_local_script_checks: bool,
    /// This agent's node name, shown in every catalog answer.
    pub node_name: String,
    /// This agent's datacenter.
    pub datacenter: String,
    /// Memcached servers (`memcached://host:port[,host:port]`) that hold rendered endpoint
    /// lists, pushed on every change; read by `--provider-only` agents.
    pub cache: Option<String>,
    /// Serve `/v1/endpoints` from the cache only: no registrations, no checks, no durable state
    /// (a fleet of stateless providers behind the primary agent).
    pub provider_only: bool,
    /// An existing Consul (or Wayfinder) agent to mirror read-only, e.g. `http://10.0.0.2:8500`.
    pub upstream_consul: Option<String>,
    /// The gateway (`--gateway-addr`): off unless it has an address.
    pub gateway: crate::gateway::GatewayConfig,
    /// The DNS interface (`--dns-addr`): off unless it has an address.
    pub dns: crate::dns::DnsConfig,
    /// Connection, header-time and write-rate limits of the HTTP API.
    pub http_limits: crate::api::HttpLimits,
    /// TLS on the HTTP API (`--tls-cert`, `--tls-key`, `--tls-client-ca`); plain HTTP when
    /// `None`.
    pub http_tls: Option<crate::tls::TlsFiles>,
    /// Access control (`acl { }` in `--config-file`); off by default, as in Consul.
    pub acl: crate::acl::AclConfig,
}

impl AgentConfig {
    /// Settings for a throw-away agent: temporary data dir, loopback, ephemeral port allowed.
    pub fn dev(http_addr: SocketAddr) -> Self {
        Self {
            http_addr,
            data_dir: DataDir::Temporary,
            store: None,
            cluster_lease_ttl: crate::cluster::DEFAULT_LEASE_TTL,
            config_dir: None,
            enable_script_checks: false,
            enable_local_script_checks: false,
            node_name: default_node_name(),
            datacenter: DEFAULT_DATACENTER.to_owned(),
            cache: None,
            provider_only: false,
            upstream_consul: None,
            gateway: crate::gateway::GatewayConfig::default(),
            dns: crate::dns::DnsConfig::default(),
            http_limits: crate::api::HttpLimits::default(),
            http_tls: None,
            acl: crate::acl::AclConfig::default(),
        }
    }
}

/// The machine's host name, or `wayfinder` when it cannot be read.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "wayfinder".to_owned())
}
