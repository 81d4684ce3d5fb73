//! The Memcached endpoint cache's group (issue 3, "Memcached").

use super::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A `server` label: one Memcached server as configured (`host:port`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// The server, `host:port`.
    pub server: String,
}

/// A `result` label of a provider's Memcached read.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabel {
    /// `hit`, `miss` or `error`.
    pub result: &'static str,
}

/// The Memcached endpoint cache's metrics (issue 3, "Memcached"), registered only on agents
/// started with `--cache`. Handles are cheap clones of shared atomics.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// `wayfinder_cache_up`: 1 while every configured Memcached server is reachable (and, on a
    /// provider, holds a synced set of endpoint lists), else 0.
    pub up: Gauge,
    /// `wayfinder_cache_server_up{server}`: the same, per server.
    pub server_up: Family<ServerLabel, Gauge>,
    /// `wayfinder_cache_outages_total`: outages begun (one per server per outage).
    pub outages: Counter,
    /// `wayfinder_cache_bypass_total`: provider answers given without Memcached (from its
    /// own view, or 503 when it had none).
    pub bypass: Counter,
    /// `wayfinder_cache_reads_total{result}`: provider reads of Memcached by outcome.
    pub reads: Family<ReadLabel, Counter>,
    /// `wayfinder_cache_writes_total`: keys written or deleted by the pushing agent.
    pub writes: Counter,
    /// `wayfinder_cache_write_errors_total`: writes or deletes that failed.
    pub write_errors: Counter,
    /// `wayfinder_cache_resyncs_total`: full pushes of every service to one server (start-up,
    /// recovery, anti-entropy).
    pub resyncs: Counter,
}

impl CacheMetrics {
    /// Registers the group in `metrics` and returns its handles.
    pub fn register(metrics: &mut Metrics) -> Self {
        let group = Self::default();
        let registry = metrics.registry_mut();
        registry.register(
            "cache_up",
            "Whether every configured Memcached server is reachable and synced (1) or not (0)",
            group.up.clone(),
        );
        registry.register(
            "cache_server_up",
            "Whether one Memcached server is reachable and synced (1) or not (0)",
            group.server_up.clone(),
        );
        registry.register(
            "cache_outages",
            "Memcached outages begun, one per server per outage",
            group.outages.clone(),
        );
        registry.register(
            "cache_bypass",
            "Endpoint answers a provider gave without Memcached, from its own view or as 503",
            group.bypass.clone(),
        );
        registry.register(
            "cache_reads",
            "Provider reads of Memcached, by result",
            group.reads.clone(),
        );
        registry.register(
            "cache_writes",
            "Endpoint lists written to or deleted from Memcached",
            group.writes.clone(),
        );
        registry.register(
            "cache_write_errors",
            "Memcached writes or deletes of endpoint lists that failed",
            group.write_errors.clone(),
        );
        registry.register(
            "cache_resyncs",
            "Full pushes of every service's endpoint list to one Memcached server",
            group.resyncs.clone(),
        );
        group
    }
}
