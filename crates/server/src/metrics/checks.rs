//! The health checks' group: status changes, counted where the agent applies check reports
//! (the report task in [`crate::agent`]), and every run, read from the scheduler's own counters
//! ([`wayfinder_health::RunCounts`]) at scrape time.

use super::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;
use std::sync::Arc;
use wayfinder_catalog::{CheckKind, Status};
use wayfinder_health::{RunCounts, Scheduler};

/// Labels of `wayfinder_check_status_changes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckChangeLabels {
    /// `http`, `tcp`, `exec`, `ttl` or `grpc`.
    pub kind: &'static str,
    /// `passing`, `warning` or `critical`.
    pub result: &'static str,
}

impl CheckChangeLabels {
    /// The labels of a `kind` check reporting `status`.
    pub fn new(kind: &CheckKind, status: Status) -> Self {
        Self {
            kind: kind_name(kind),
            result: status.as_str(),
        }
    }
}

/// The health checks' metrics.
#[derive(Debug, Clone, Default)]
pub struct CheckMetrics {
    /// `wayfinder_check_status_changes_total{kind,result}`: status changes the check runners
    /// reported to the catalog, by the status entered. A runner reports only when the status it
    /// derives differs from the catalog's (writing every run would cost a durable write per
    /// run), so a steady check adds nothing here; a flapping one shows as a fast-rising count.
    pub changes: Family<CheckChangeLabels, Counter>,
}

impl CheckMetrics {
    /// Registers the group in `metrics` and returns its handles.
    pub fn register(metrics: &mut Metrics) -> Self {
        let group = Self::default();
        metrics.registry_mut().register(
            "check_status_changes",
            "Health check status changes applied to the catalog, by check kind and the status entered",
            group.changes.clone(),
        );
        group
    }

    /// Counts one status change.
    pub fn changed(&self, kind: &CheckKind, status: Status) {
        self.changes
            .get_or_create(&CheckChangeLabels::new(kind, status))
            .inc();
    }
}

/// `wayfinder_check_runs_total{kind,result}`: every probe run and TTL expiry, and
/// `wayfinder_checks_running`: the checks this agent runs (in cluster mode, the share the
/// agent owns among the live members), both read from the scheduler when scraped.
pub struct CheckRunsCollector {
    runs: Arc<RunCounts>,
    scheduler: Scheduler,
}

impl fmt::Debug for CheckRunsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckRunsCollector").finish_non_exhaustive()
    }
}

impl CheckRunsCollector {
    /// Registers the run counts and the runner count of `scheduler`.
    pub fn register(metrics: &mut Metrics, scheduler: Scheduler) {
        metrics
            .registry_mut()
            .register_collector(Box::new(CheckRunsCollector {
                runs: scheduler.runs(),
                scheduler,
            }));
    }
}

impl Collector for CheckRunsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "check_runs",
            "Health check runs (probes and TTL expiries), by check kind and result, whether or \
             not they changed a status",
            None,
            MetricType::Counter,
        )?;
        for (kind, result, runs) in self.runs.snapshot() {
            let labels = [("kind", kind), ("result", result.as_str())];
            ConstCounter::new(runs).encode(family.encode_family(&labels)?)?;
        }
        let running = encoder.encode_descriptor(
            "checks_running",
            "Health checks this agent runs (in cluster mode, the ones it owns among the live \
             members)",
            None,
            MetricType::Gauge,
        )?;
        let count = i64::try_from(self.scheduler.runner_count()).unwrap_or(i64::MAX);
        ConstGauge::new(count).encode(running)?;
        Ok(())
    }
}

fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Http { .. } => "http",
        CheckKind::Tcp { .. } => "tcp",
        CheckKind::Exec { .. } => "exec",
        CheckKind::Ttl { .. } => "ttl",
        CheckKind::Grpc { .. } => "grpc",
        // Copied from an upstream, never run here; named anyway so a report cannot panic.
        CheckKind::Mirrored { .. } => "mirrored",
    }
}
