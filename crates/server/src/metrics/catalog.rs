//! The catalog's group, updated by the write path ([`crate::write_path`]): sizes and index of
//! the published snapshot, and every command's outcome.

use super::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use wayfinder_catalog::Catalog;

/// The `result` label of `wayfinder_catalog_writes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteResult {
    /// `ok` (durable and published), `rejected` (refused by the catalog) or `failed` (the
    /// store could not make it durable).
    pub result: &'static str,
}

/// The catalog's metrics. Handles are cheap clones of shared atomics; an unregistered
/// `CatalogMetrics::default()` counts into nothing (tests).
#[derive(Debug, Clone)]
pub struct CatalogMetrics {
    /// `wayfinder_catalog_instances`: instances in the published snapshot.
    pub instances: Gauge,
    /// `wayfinder_catalog_services`: services with at least one instance in the snapshot.
    pub services: Gauge,
    /// `wayfinder_catalog_index`: the published snapshot's Raft-style index.
    pub index: Gauge,
    /// `wayfinder_catalog_writes_total{result}`: write commands by outcome.
    pub writes: Family<WriteResult, Counter>,
    /// `wayfinder_catalog_propagation_seconds`: from a write's submission to its publication
    /// (durable, applied, every read interface notified, readers' snapshot swapped), per
    /// accepted command — how stale an answer can be because of the write path itself.
    pub propagation: Histogram,
    /// `wayfinder_store_stale`: 1 while a cluster agent has lost etcd and serves its last
    /// catalog read-only; always 0 with the embedded store.
    pub stale: Gauge,
}

impl Default for CatalogMetrics {
    fn default() -> Self {
        Self {
            instances: Gauge::default(),
            services: Gauge::default(),
            index: Gauge::default(),
            writes: Family::default(),
            propagation: Histogram::new(super::duration_buckets()),
            stale: Gauge::default(),
        }
    }
}

impl CatalogMetrics {
    /// Registers the group in `metrics` and returns its handles.
    pub fn register(metrics: &mut Metrics) -> Self {
        let group = Self::default();
        let registry = metrics.registry_mut();
        registry.register(
            "catalog_instances",
            "Service instances in the published catalog snapshot",
            group.instances.clone(),
        );
        registry.register(
            "catalog_services",
            "Services with at least one instance in the published catalog snapshot",
            group.services.clone(),
        );
        registry.register(
            "catalog_index",
            "Index of the published catalog snapshot",
            group.index.clone(),
        );
        registry.register(
            "catalog_writes",
            "Catalog write commands, by result (ok, rejected, failed)",
            group.writes.clone(),
        );
        registry.register(
            "catalog_propagation_seconds",
            "Time from a write's submission to its publication to every read interface",
            group.propagation.clone(),
        );
        registry.register(
            "store_stale",
            "1 while the agent has lost its shared store (etcd) and serves a stale catalog",
            group.stale.clone(),
        );
        // Every result shows from the first scrape, at 0.
        for result in ["ok", "rejected", "failed"] {
            let _ = group.writes.get_or_create(&WriteResult { result });
        }
        group
    }

    /// Sets the gauges from a published snapshot: two map sizes and the index.
    pub fn published(&self, catalog: &Catalog) {
        self.instances.set(saturating_i64(catalog.instance_count()));
        self.services.set(saturating_i64(catalog.service_count()));
        self.index
            .set(i64::try_from(catalog.index()).unwrap_or(i64::MAX));
    }

    /// Records how long a published write took from its submission.
    pub fn propagated(&self, took: std::time::Duration) {
        self.propagation.observe(took.as_secs_f64());
    }

    /// Counts `count` commands that ended with `result` (`ok`, `rejected`, `failed`).
    pub fn wrote(&self, result: &'static str, count: usize) {
        self.writes
            .get_or_create(&WriteResult { result })
            .inc_by(count as u64);
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
