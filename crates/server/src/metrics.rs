//! The agent's metrics registry, served as OpenMetrics text on `GET /metrics` and
//! `GET /v1/agent/metrics?format=prometheus`, and as a small JSON object on
//! `GET /v1/agent/metrics` (Consul's path).
//!
//! What it owns: one [`prometheus_client`] registry with the `wayfinder_` prefix, built during
//! start-up and frozen behind an `Arc` once the agent serves. Each subsystem registers its own
//! group of metrics (a `*Metrics` struct of cheap, cloneable handles, like [`CacheMetrics`])
//! while the agent starts, keeps the handles, and updates them lock-free; nothing here knows
//! what the numbers mean. A later subsystem adds its group the same way: a struct with a
//! `register(&mut Metrics)` constructor, created in `Agent::start` before the `Arc`.
//!
//! What it deliberately does not own: timing histograms of the request path. The hot read path
//! (DESIGN.md invariant) must not pay for a lock or an allocation per request, so groups expose
//! counters and gauges, which are single atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

/// The content type of the OpenMetrics text exposition (reference §1, prometheus-client row).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
pub const PREFIX: &str = "wayfinder";

/// The agent's metrics, registered at start-up and read by the metrics endpoints.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry; subsystems add their groups before the agent serves.
    pub fn new() -> Self {
        Self {
            registry: Registry::with_prefix(PREFIX),
        }
    }

    /// The registry, for a metric group's `register` (start-up only: once shared, the
    /// registry is read-only).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Every metric as OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Every gauge and counter as JSON in the shape of Consul's `/v1/agent/metrics`:
    /// `{"Gauges": [{"Name", "Value", "Labels"}], "Counters": [{"Name", "Count", "Labels"}],
    /// "Samples": []}`. Built from the text exposition, so a group registered later shows up
    /// here without code of its own.
    pub fn to_json(&self) -> Result<Value, std::fmt::Error> {
        Ok(openmetrics_to_json(&self.encode()?))
    }
}

/// Converts OpenMetrics text into Consul's metrics JSON shape. Gauges and counters are kept;
/// other types (none are registered today) and unparsable lines are skipped, so a malformed
/// line can never fail the endpoint.
pub fn openmetrics_to_json(text: &str) -> Value {
    let mut types: Vec<(&str, &str)> = Vec::new();
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((family, kind)) = rest.split_once(' ') {
                types.push((family, kind.trim()));
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        // A counter family `x` exposes the sample `x_total` (and maybe `x_created`).
        let kind = types.iter().rev().find_map(|(family, kind)| {
            let suffix = sample.name.strip_prefix(family)?;
            matches!(suffix, "" | "_total").then_some(*kind)
        });
        match kind {
            Some("gauge") => gauges.push(json!({
                "Name": sample.name,
                "Value": sample.value,
                "Labels": sample.labels,
            })),
            Some("counter") => counters.push(json!({
                "Name": sample.name,
                "Count": sample.value,
                "Labels": sample.labels,
            })),
            _ => {}
        }
    }
    json!({"Gauges": gauges, "Counters": counters, "Samples": []})
}

struct Sample<'a> {
    name: &'a str,
    labels: Map<String, Value>,
    value: Value,
}

/// Parses `name{label="value",...} number` (labels optional).
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Map::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remainder) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remainder;
    }
    let number = rest.trim().split(' ').next()?;
    let value: f64 = number.parse().ok()?;
    let value = if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` and returns the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(Map<String, Value>, &str)> {
    let mut labels = Map::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), Value::String(value));
        text = &rest[end + 1..];
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_metrics_encode_with_the_documented_names() {
        let mut metrics = Metrics::new();
        let cache = CacheMetrics::register(&mut metrics);
        cache.up.set(1);
        cache.bypass.inc();
        cache
            .server_up
            .get_or_create(&ServerLabel {
                server: "127.0.0.1:11211".into(),
            })
            .set(1);
        let text = metrics.encode().expect("encode");
        for line in [
            "wayfinder_cache_up 1",
            "wayfinder_cache_bypass_total 1",
            "wayfinder_cache_writes_total 0",
            "wayfinder_cache_write_errors_total 0",
            "wayfinder_cache_server_up{server=\"127.0.0.1:11211\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn json_keeps_gauges_counters_and_labels() {
        let mut metrics = Metrics::new();
        let cache = CacheMetrics::register(&mut metrics);
        cache.bypass.inc_by(3);
        cache
            .reads
            .get_or_create(&ReadLabel { result: "hit" })
            .inc();
        let json = metrics.to_json().expect("json");
        let counter = |name: &str| {
            json["Counters"]
                .as_array()
                .expect("counters")
                .iter()
                .find(|c| c["Name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no counter {name} in {json}"))
        };
        assert_eq!(counter("wayfinder_cache_bypass_total")["Count"], 3);
        let reads = counter("wayfinder_cache_reads_total");
        assert_eq!(reads["Labels"]["result"], "hit");
        let up = json["Gauges"]
            .as_array()
            .expect("gauges")
            .iter()
            .find(|g| g["Name"] == "wayfinder_cache_up")
            .cloned()
            .expect("cache_up gauge");
        assert_eq!(up["Value"], 0);
    }

    #[test]
    fn label_values_are_unescaped() {
        let text = "# TYPE x gauge\nx{a=\"q\\\"uote\",b=\"back\\\\slash\"} 2.5\n# EOF\n";
        let json = openmetrics_to_json(text);
        let gauge = &json["Gauges"][0];
        assert_eq!(gauge["Labels"]["a"], "q\"uote");
        assert_eq!(gauge["Labels"]["b"], "back\\slash");
        assert_eq!(gauge["Value"], 2.5);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let json = openmetrics_to_json("# TYPE x gauge\nx{a=\"unterminated 1\nx nan-ish\n");
        assert_eq!(json["Gauges"], json!([]));
    }
}
