//! The gateway's group: read from the route table's own counters
//! ([`wayfinder_gateway::stats`]) at scrape time, so the proxy's request path touches no
//! metrics library and an instance's series leave with the instance.
//!
//! - `wayfinder_gateway_requests_total{route,instance,class}`: attempts sent to each instance,
//!   by status class (`1xx`…`5xx`; no response at all counts as `5xx`). A retried request is
//!   one attempt on each instance it tried.
//! - `wayfinder_gateway_request_duration_seconds{route,instance}`: each attempt's time to
//!   response headers (or to failure).
//! - `wayfinder_gateway_retries_total{route}`: attempts beyond a request's first.
//! - `wayfinder_gateway_ejections_total{route,instance}`: ejections after a failure there.
//! - `wayfinder_gateway_unavailable_total{route}`: requests answered 503 with no instance to
//!   try.
//!
//! - `wayfinder_gateway_table_update_seconds`: the time to bring the gateway up to date with one
//!   published batch: the changed services' instance lists, and the route table when their
//!   routes changed (fabio takes minutes for 50k routes; this says how long ours takes).
//!
//! `route` is the route's host (empty when it has none) followed by its prefix, as the gateway
//! names it in errors: `/api/`, `api.example.com/`.

use super::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::fmt;
use std::sync::Arc;
use wayfinder_gateway::Routing;
use wayfinder_gateway::stats::RouteSnapshot;

/// Walks the gateway's routes on every scrape.
pub struct GatewayCollector {
    routing: Arc<Routing>,
}

impl fmt::Debug for GatewayCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayCollector").finish_non_exhaustive()
    }
}

impl GatewayCollector {
    /// Registers the gateway's metrics, read from `routing` when scraped, and returns the
    /// histogram the gateway's update task records each update's duration in.
    pub fn register(metrics: &mut Metrics, routing: Arc<Routing>) -> Histogram {
        let registry = metrics.registry_mut();
        registry.register_collector(Box::new(GatewayCollector { routing }));
        // 10 µs to 80 ms: an update is expected well under a millisecond.
        let updates = Histogram::new(exponential_buckets(0.000_01, 2.0, 14));
        registry.register(
            "gateway_table_update_seconds",
            "Time to apply one published batch to the gateway: changed services' instance \
             lists, and the route table when their routes changed",
            updates.clone(),
        );
        updates
    }

    /// Every route's name and counters, in the table's order.
    fn snapshots(&self) -> Vec<(String, RouteSnapshot)> {
        let table = self.routing.table();
        table
            .entries()
            .into_iter()
            .map(|(host, prefix, route)| {
                let backends = route.service.backends();
                let snapshot = route
                    .stats
                    .snapshot(|id| backends.targets.iter().any(|target| &*target.id == id));
                (format!("{}{prefix}", host.unwrap_or("")), snapshot)
            })
            .collect()
    }
}

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let routes = self.snapshots();

        let mut family = encoder.encode_descriptor(
            "gateway_requests",
            "Attempts the gateway sent to each instance, by status class (no response: 5xx)",
            None,
            MetricType::Counter,
        )?;
        for (route, snapshot) in &routes {
            for (instance, stats) in &snapshot.instances {
                for (class, count) in stats.by_class {
                    let labels = [
                        ("route", route.as_str()),
                        ("instance", &**instance),
                        ("class", class.label()),
                    ];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "gateway_request_duration_seconds",
            "Time from sending an attempt to an instance to its response headers or failure",
            None,
            MetricType::Histogram,
        )?;
        for (route, snapshot) in &routes {
            for (instance, stats) in &snapshot.instances {
                let labels = [("route", route.as_str()), ("instance", &**instance)];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        stats.latency_sum,
                        stats.count,
                        &stats.buckets,
                        None,
                    )?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "gateway_ejections",
            "Times an instance was ejected after failing on a route",
            None,
            MetricType::Counter,
        )?;
        for (route, snapshot) in &routes {
            for (instance, stats) in &snapshot.instances {
                let labels = [("route", route.as_str()), ("instance", &**instance)];
                ConstCounter::new(stats.ejections).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "gateway_retries",
            "Attempts beyond a request's first, per route",
            None,
            MetricType::Counter,
        )?;
        for (route, snapshot) in &routes {
            let labels = [("route", route.as_str())];
            ConstCounter::new(snapshot.retries).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "gateway_unavailable",
            "Requests answered 503 because the route's service had no instance to try",
            None,
            MetricType::Counter,
        )?;
        for (route, snapshot) in &routes {
            let labels = [("route", route.as_str())];
            ConstCounter::new(snapshot.unavailable).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
