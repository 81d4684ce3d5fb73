//! How many times checks ran, by kind and result: every probe and every TTL expiry, whether or
//! not it changed a status (those are the only ones that become writes).
//!
//! Plain atomics bumped by the runners and read when the agent's metrics are scraped, so this
//! crate needs no metrics library and a probe pays one relaxed increment.

use std::sync::atomic::{AtomicU64, Ordering};
use wayfinder_catalog::{CheckKind, Status};

/// The kinds counted, in slot order (mirrored checks are never run here).
const KINDS: [&str; 5] = ["http", "tcp", "exec", "ttl", "grpc"];
/// The results counted, in slot order.
const RESULTS: [Status; 3] = [Status::Passing, Status::Warning, Status::Critical];

/// Run counts shared by every runner of one scheduler ([`crate::Scheduler::runs`]).
#[derive(Debug, Default)]
pub struct RunCounts {
    counts: [[AtomicU64; RESULTS.len()]; KINDS.len()],
}

impl RunCounts {
    /// Counts one run of a `kind` check that gave `result`.
    pub(crate) fn record(&self, kind: &CheckKind, result: Status) {
        let kind = match kind {
            CheckKind::Http { .. } => 0,
            CheckKind::Tcp { .. } => 1,
            CheckKind::Exec { .. } => 2,
            CheckKind::Ttl { .. } => 3,
            CheckKind::Grpc { .. } => 4,
            CheckKind::Mirrored { .. } => return,
        };
        let result = match result {
            Status::Passing => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        };
        self.counts[kind][result].fetch_add(1, Ordering::Relaxed);
    }

    /// Every (kind, result, runs) triple, kinds `http`, `tcp`, `exec`, `ttl`, `grpc`.
    pub fn snapshot(&self) -> Vec<(&'static str, Status, u64)> {
        let mut all = Vec::with_capacity(KINDS.len() * RESULTS.len());
        for (kind, counts) in KINDS.iter().zip(&self.counts) {
            for (result, count) in RESULTS.iter().zip(counts) {
                all.push((*kind, *result, count.load(Ordering::Relaxed)));
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_per_kind_and_result() {
        let runs = RunCounts::default();
        let tcp = CheckKind::Tcp {
            address: "127.0.0.1:1".to_owned(),
        };
        runs.record(&tcp, Status::Critical);
        runs.record(&tcp, Status::Critical);
        runs.record(&tcp, Status::Passing);
        let snapshot = runs.snapshot();
        assert_eq!(snapshot.len(), 15);
        assert!(snapshot.contains(&("tcp", Status::Critical, 2)));
        assert!(snapshot.contains(&("tcp", Status::Passing, 1)));
        assert!(snapshot.contains(&("http", Status::Passing, 0)));
    }
}
