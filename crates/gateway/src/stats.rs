//! What each route's traffic did: requests sent to each instance by status class, their
//! latency, retries, ejections, and requests no instance could take.
//!
//! Counted with plain atomics on the request path (a few relaxed increments per attempt, one
//! short uncontended lock to find the instance's counters) and read only when someone asks —
//! the agent's Prometheus collector walks the route table at scrape time. Keeping the numbers
//! here rather than in a metrics library keeps this crate free of one, and lets an instance's
//! series disappear with the instance instead of growing a label set forever.
//!
//! Counters live in the route ([`crate::routing::ActiveRoute`]), which outlives table rebuilds,
//! so they only grow while the route exists. An instance that leaves the service's healthy set
//! is forgotten at the next [`RouteStats::snapshot`]; if it comes back its counts start from
//! zero (a counter reset, which Prometheus' `rate()` handles).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds, in seconds, of the request-latency histogram buckets: 250 µs to 5 s, the
/// range between a loopback answer and a request about to time out.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// An attempt's outcome, as a status class. An attempt that got no response (refused, broken,
/// timed out) is [`Class::ServerError`]: to the client it is a failure of the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 1xx (a `101` upgrade).
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx, or no response at all.
    ServerError,
}

impl Class {
    /// Every class, in label order.
    pub const ALL: [Class; 5] = [
        Class::Informational,
        Class::Success,
        Class::Redirection,
        Class::ClientError,
        Class::ServerError,
    ];

    /// The class of a response status.
    pub fn of(status: http::StatusCode) -> Class {
        match status.as_u16() {
            100..=199 => Class::Informational,
            200..=299 => Class::Success,
            300..=399 => Class::Redirection,
            400..=499 => Class::ClientError,
            _ => Class::ServerError,
        }
    }

    /// The label value: `1xx` … `5xx`.
    pub fn label(self) -> &'static str {
        match self {
            Class::Informational => "1xx",
            Class::Success => "2xx",
            Class::Redirection => "3xx",
            Class::ClientError => "4xx",
            Class::ServerError => "5xx",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// One instance's counters within one route.
#[derive(Debug, Default)]
pub struct InstanceStats {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_nanos: AtomicU64,
    ejections: AtomicU64,
}

impl InstanceStats {
    /// Counts one attempt sent to the instance: its outcome and how long it took to get
    /// response headers (or to fail).
    pub fn record(&self, class: Class, latency: Duration) {
        self.by_class[class.slot()].fetch_add(1, Ordering::Relaxed);
        let seconds = latency.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts one ejection of the instance after a failure on this route.
    pub fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> InstanceSnapshot {
        let by_class =
            Class::ALL.map(|class| (class, self.by_class[class.slot()].load(Ordering::Relaxed)));
        let count: u64 = by_class.iter().map(|(_, n)| n).sum();
        let mut cumulative = 0;
        let buckets = std::array::from_fn(|i| {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            (LATENCY_BUCKETS[i], cumulative)
        });
        InstanceSnapshot {
            by_class,
            count,
            latency_sum: Duration::from_nanos(self.latency_sum_nanos.load(Ordering::Relaxed))
                .as_secs_f64(),
            buckets,
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }
}

/// One instance's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSnapshot {
    /// Attempts by outcome class.
    pub by_class: [(Class, u64); 5],
    /// Attempts in all (the histogram's count: every attempt is timed).
    pub count: u64,
    /// Seconds the attempts took, summed.
    pub latency_sum: f64,
    /// Cumulative histogram buckets: (upper bound in seconds, attempts at or under it).
    /// Attempts slower than the last bound are only in `count`.
    pub buckets: [(f64, u64); LATENCY_BUCKETS.len()],
    /// Times the instance was ejected after failing on this route.
    pub ejections: u64,
}

/// A route's counters (see the module docs).
#[derive(Debug, Default)]
pub struct RouteStats {
    instances: Mutex<HashMap<Arc<str>, Arc<InstanceStats>>>,
    retries: AtomicU64,
    unavailable: AtomicU64,
}

impl RouteStats {
    /// The counters of instance `id` on this route, created at its first attempt.
    pub fn instance(&self, id: &Arc<str>) -> Arc<InstanceStats> {
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match instances.get(id) {
            Some(stats) => Arc::clone(stats),
            None => Arc::clone(instances.entry(Arc::clone(id)).or_default()),
        }
    }

    /// Counts the retries of one request that took `attempts` attempts.
    pub fn finished(&self, attempts: u32) {
        let retries = u64::from(attempts.saturating_sub(1));
        if retries > 0 {
            self.retries.fetch_add(retries, Ordering::Relaxed);
        }
    }

    /// Counts a request answered 503 because no instance could take it.
    pub fn unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, instances by ID. Instances for which `is_member` is false (no longer
    /// in the service's healthy set) are forgotten first.
    pub fn snapshot(&self, is_member: impl Fn(&str) -> bool) -> RouteSnapshot {
        let mut instances: Vec<(Arc<str>, InstanceSnapshot)> = {
            let mut map = self
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.retain(|id, _| is_member(id));
            map.iter()
                .map(|(id, stats)| (Arc::clone(id), stats.snapshot()))
                .collect()
        };
        instances.sort_by(|a, b| a.0.cmp(&b.0));
        RouteSnapshot {
            retries: self.retries.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            instances,
        }
    }
}

/// A route's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSnapshot {
    /// Attempts beyond the first, over every request.
    pub retries: u64,
    /// Requests answered 503 because no instance could take them.
    pub unavailable: u64,
    /// Each instance's counters, in ID order.
    pub instances: Vec<(Arc<str>, InstanceSnapshot)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn attempts_are_counted_by_class_and_latency_bucket() {
        let stats = RouteStats::default();
        let a = stats.instance(&id("a"));
        a.record(Class::of(http::StatusCode::OK), Duration::from_micros(200));
        a.record(Class::of(http::StatusCode::OK), Duration::from_millis(3));
        a.record(Class::ServerError, Duration::from_secs(9));
        a.ejected();
        let snapshot = stats.snapshot(|_| true);
        let (name, a) = &snapshot.instances[0];
        assert_eq!(&**name, "a");
        assert_eq!(a.count, 3);
        assert_eq!(a.by_class[1], (Class::Success, 2));
        assert_eq!(a.by_class[4], (Class::ServerError, 1));
        assert_eq!(a.buckets[0], (0.00025, 1), "200 µs is in the first bucket");
        assert_eq!(a.buckets[4], (0.005, 2), "3 ms is under 5 ms, cumulatively");
        assert_eq!(
            a.buckets[13].1, 2,
            "9 s is beyond every bound: in count only"
        );
        assert!((a.latency_sum - 9.0032).abs() < 1e-9, "{}", a.latency_sum);
        assert_eq!(a.ejections, 1);
    }

    #[test]
    fn the_same_instance_shares_its_counters() {
        let stats = RouteStats::default();
        stats
            .instance(&id("a"))
            .record(Class::Success, Duration::ZERO);
        stats
            .instance(&id("a"))
            .record(Class::Success, Duration::ZERO);
        assert_eq!(stats.snapshot(|_| true).instances[0].1.count, 2);
    }

    #[test]
    fn retries_are_attempts_beyond_the_first() {
        let stats = RouteStats::default();
        stats.finished(1);
        stats.finished(3);
        stats.finished(0);
        stats.unavailable();
        let snapshot = stats.snapshot(|_| true);
        assert_eq!(snapshot.retries, 2);
        assert_eq!(snapshot.unavailable, 1);
    }

    #[test]
    fn instances_that_left_are_forgotten() {
        let stats = RouteStats::default();
        stats
            .instance(&id("a"))
            .record(Class::Success, Duration::ZERO);
        stats
            .instance(&id("b"))
            .record(Class::Success, Duration::ZERO);
        let snapshot = stats.snapshot(|id| id == "b");
        assert_eq!(snapshot.instances.len(), 1);
        assert_eq!(&*snapshot.instances[0].0, "b");
        assert_eq!(stats.snapshot(|_| true).instances.len(), 1);
    }

    #[test]
    fn every_status_has_a_class() {
        for code in 100..=999u16 {
            if let Ok(status) = http::StatusCode::from_u16(code) {
                let label = Class::of(status).label();
                assert!(label.starts_with(char::from(b'0' + (code / 100).min(5) as u8)));
            }
        }
    }
}
