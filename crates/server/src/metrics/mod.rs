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
//! One file per group: [`cache`] (Memcached), [`catalog`] (the write path), [`checks`] (health
//! reports), [`api`] (HTTP requests), [`dns`] (DNS queries) and [`gateway`] (read from the
//! route table when scraped).
//!
//! What it deliberately does not own: any lock on the hot read path. Counters and gauges are
//! single atomics; the two request-duration histograms take one uncontended `parking_lot`
//! mutex per observation (prometheus-client's histogram), and their handles are resolved once,
//! before serving, where a path is hot (the endpoints fast path). The gateway keeps its own
//! atomics and is read only at scrape time.

mod api;
mod cache;
mod catalog;
mod checks;
mod dns;
mod gateway;

pub use api::{ApiMetrics, RouteLabels, RouteTimer};
pub use cache::{CacheMetrics, ReadLabel, ServerLabel};
pub use catalog::{CatalogMetrics, WriteResult};
pub use checks::{CheckChangeLabels, CheckMetrics, CheckRunsCollector};
pub use dns::{DnsMetrics, RcodeLabel};
pub use gateway::GatewayCollector;

use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

/// The content type of the OpenMetrics text exposition (reference §1, prometheus-client row).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
pub const PREFIX: &str = "wayfinder";

/// Buckets of the request-duration histograms, in seconds: 100 µs to ~1.6 s by factors of 4
/// (an answer from the snapshot takes tens of µs; a slow one is a queue or a lock).
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 4.0, 8)
}

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

    /// Every gauge, counter and histogram as JSON in the shape of Consul's `/v1/agent/metrics`:
    /// `{"Gauges": [{"Name", "Value", "Labels"}], "Counters": [{"Name", "Count", "Labels"}],
    /// "Samples": [{"Name", "Count", "Sum", "Mean", "Labels"}]}` (histograms, summed in
    /// seconds). Built from the text exposition, so a group registered later shows up
    /// here without code of its own.
    pub fn to_json(&self) -> Result<Value, std::fmt::Error> {
        Ok(openmetrics_to_json(&self.encode()?))
    }
}

/// Converts OpenMetrics text into Consul's metrics JSON shape. Gauges, counters and the count
/// and sum of histograms are kept; other types and unparsable lines are skipped, so a malformed
/// line can never fail the endpoint.
pub fn openmetrics_to_json(text: &str) -> Value {
    let mut types: Vec<(&str, &str)> = Vec::new();
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    // Histograms: (family, labels) → (count, sum), in first-seen order.
    let mut histograms: Vec<(String, Map<String, Value>, Value, Value)> = Vec::new();
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
        // A counter family `x` exposes the sample `x_total` (and maybe `x_created`); a
        // histogram `x` exposes `x_bucket`, `x_count` and `x_sum`.
        let kind = types.iter().rev().find_map(|(family, kind)| {
            let suffix = sample.name.strip_prefix(family)?;
            matches!(suffix, "" | "_total" | "_count" | "_sum").then_some((*family, *kind, suffix))
        });
        match kind.map(|(_, kind, _)| kind) {
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
            Some("histogram") => {
                let Some((family, _, suffix)) = kind else {
                    continue;
                };
                let position = histograms
                    .iter()
                    .position(|(name, labels, _, _)| name == family && *labels == sample.labels);
                let index = match position {
                    Some(index) => index,
                    None => {
                        histograms.push((
                            family.to_owned(),
                            sample.labels,
                            Value::Null,
                            Value::Null,
                        ));
                        histograms.len() - 1
                    }
                };
                let entry = &mut histograms[index];
                if suffix == "_count" {
                    entry.2 = sample.value;
                } else {
                    entry.3 = sample.value;
                }
            }
            _ => {}
        }
    }
    let samples: Vec<Value> = histograms
        .into_iter()
        .map(|(name, labels, count, sum)| {
            let mean = match (count.as_f64(), sum.as_f64()) {
                (Some(count), Some(sum)) if count > 0.0 => json!(sum / count),
                _ => json!(0),
            };
            json!({"Name": name, "Count": count, "Sum": sum, "Mean": mean, "Labels": labels})
        })
        .collect();
    json!({"Gauges": gauges, "Counters": counters, "Samples": samples})
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
    fn new_groups_encode_with_the_documented_names() {
        let mut metrics = Metrics::new();
        let catalog = CatalogMetrics::register(&mut metrics);
        let checks = CheckMetrics::register(&mut metrics);
        let api = ApiMetrics::register(&mut metrics);
        let dns = DnsMetrics::register(&mut metrics);
        catalog.instances.set(3);
        catalog.services.set(2);
        catalog.index.set(42);
        catalog.wrote("rejected", 1);
        checks.changed(
            &wayfinder_catalog::CheckKind::Tcp {
                address: "127.0.0.1:1".into(),
            },
            wayfinder_catalog::Status::Critical,
        );
        api.answered("/v1/catalog/services", 200, None);
        api.fast_answered(tokio::time::Instant::now());
        dns.answered(hickory_proto::op::ResponseCode::NXDomain, 0.001);
        let text = metrics.encode().expect("encode");
        for line in [
            "wayfinder_catalog_instances 3",
            "wayfinder_catalog_services 2",
            "wayfinder_catalog_index 42",
            "wayfinder_catalog_writes_total{result=\"rejected\"} 1",
            "wayfinder_catalog_writes_total{result=\"ok\"} 0",
            "wayfinder_check_status_changes_total{kind=\"tcp\",result=\"critical\"} 1",
            "wayfinder_api_requests_total{route=\"/v1/catalog/services\",code=\"200\"} 1",
            "wayfinder_api_requests_total{route=\"/v1/endpoints/{service}\",code=\"200\"} 1",
            "wayfinder_api_request_duration_seconds_count{route=\"/v1/endpoints/{service}\"} 1",
            "wayfinder_dns_queries_total{rcode=\"NXDOMAIN\"} 1",
            "wayfinder_dns_query_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        // A blocking query (no timer) is counted but not timed.
        assert!(
            !text.contains(
                "wayfinder_api_request_duration_seconds_count{route=\"/v1/catalog/services\"}"
            ),
            "{text}"
        );
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
    fn histograms_become_samples_with_count_sum_and_mean() {
        let text = "# TYPE d histogram\n\
                    d_sum{r=\"a\"} 0.5\n\
                    d_count{r=\"a\"} 4\n\
                    d_bucket{le=\"0.1\",r=\"a\"} 3\n\
                    d_bucket{le=\"+Inf\",r=\"a\"} 4\n\
                    d_sum{r=\"b\"} 0.0\n\
                    d_count{r=\"b\"} 0\n# EOF\n";
        let json = openmetrics_to_json(text);
        let samples = json["Samples"].as_array().expect("samples");
        assert_eq!(samples.len(), 2, "{json}");
        assert_eq!(samples[0]["Name"], "d");
        assert_eq!(samples[0]["Labels"]["r"], "a");
        assert_eq!(samples[0]["Count"], 4);
        assert_eq!(samples[0]["Sum"], 0.5);
        assert_eq!(samples[0]["Mean"], 0.125);
        assert_eq!(
            samples[1]["Mean"], 0,
            "no observation: a mean of 0, not NaN"
        );
        assert!(json["Counters"].as_array().expect("counters").is_empty());
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
