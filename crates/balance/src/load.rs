//! Per-endpoint load: requests in flight and the RTT estimate.
//!
//! Owns [`EndpointLoad`] and the [`InFlight`] guard that keeps its count honest. One
//! `EndpointLoad` exists per endpoint ID and is shared (behind an `Arc`) by every set snapshot
//! that contains the endpoint and by every guard still open on it, so a request started on an
//! old snapshot is still counted — and uncounted — on the new one.
//!
//! It deliberately does not decide anything: strategies read it, guards write it. The in-flight
//! count is a relaxed atomic (it is a hint that may lag by a request, never a lock the hot path
//! waits on). The RTT estimate is two numbers that must change together, so it sits behind a
//! per-endpoint mutex held only for a few float operations, never across IO; a lock-free
//! packing would have to give up precision in either the estimate or its timestamp.

use crate::ewma::{EwmaConfig, RttEstimate};
use crate::time::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Load state of one endpoint, shared across set snapshots and threads.
#[derive(Debug)]
pub struct EndpointLoad {
    in_flight: AtomicU64,
    rtt: Mutex<Option<RttEstimate>>,
    ewma: EwmaConfig,
}

impl EndpointLoad {
    pub(crate) fn new(ewma: EwmaConfig) -> Self {
        EndpointLoad {
            in_flight: AtomicU64::new(0),
            rtt: Mutex::new(None),
            ewma,
        }
    }

    /// Requests started and not yet finished or dropped.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The RTT estimate at `now` (decayed since the last sample), or the configured default RTT
    /// if there has been no sample.
    pub fn rtt(&self, now: Nanos) -> Duration {
        Duration::from_nanos(self.rtt_ns(now) as u64)
    }

    /// [`EndpointLoad::rtt`] in nanoseconds, unrounded, for cost arithmetic.
    pub(crate) fn rtt_ns(&self, now: Nanos) -> f64 {
        match *self.rtt.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(estimate) => estimate.at(now, &self.ewma),
            None => self.ewma.default_rtt.as_nanos() as f64,
        }
    }

    /// Folds one measured round trip, observed at `now`, into the estimate.
    ///
    /// Public so a caller that measures differently (e.g. time to first byte from its own
    /// timers) can feed samples without a guard; [`InFlight::finish`] calls it for the usual case.
    pub fn record_rtt(&self, rtt: Duration, now: Nanos) {
        // The critical section is float arithmetic that cannot panic; recovering from poison
        // keeps one panicking thread elsewhere from disabling balancing.
        let mut slot = self.rtt.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            Some(estimate) => estimate.update(rtt, now, &self.ewma),
            None => *slot = Some(RttEstimate::first(rtt, now)),
        }
    }

    /// Counts a request in flight until the returned guard is finished or dropped.
    pub fn start(self: &Arc<Self>, now: Nanos) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: Arc::clone(self),
            started: now,
        }
    }
}

/// One request in flight on an endpoint (RAII, like tower's load handles).
///
/// Dropping it uncounts the request and records nothing — right for a request that failed or
/// was cancelled, whose duration says nothing about the endpoint's speed (recording a fast
/// connection refusal would make a dead endpoint look attractive). [`InFlight::finish`] also
/// records the round trip.
#[derive(Debug)]
#[must_use = "dropping the guard at once uncounts the request immediately"]
pub struct InFlight {
    load: Arc<EndpointLoad>,
    started: Nanos,
}

impl InFlight {
    /// When the request started.
    pub fn started_at(&self) -> Nanos {
        self.started
    }

    /// The endpoint's load state.
    pub fn load(&self) -> &EndpointLoad {
        &self.load
    }

    /// Finishes the request at `now`, recording `now - started` as an RTT sample.
    pub fn finish(self, now: Nanos) {
        self.load
            .record_rtt(now.saturating_since(self.started), now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_and_records() {
        let load = Arc::new(EndpointLoad::new(EwmaConfig::default()));
        assert_eq!(load.rtt(Nanos::ZERO), crate::DEFAULT_RTT);
        let a = load.start(Nanos::ZERO);
        let b = load.start(Nanos::ZERO);
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert_eq!(load.in_flight(), 1);
        assert_eq!(
            load.rtt(Nanos::ZERO),
            crate::DEFAULT_RTT,
            "a drop records nothing"
        );
        let end = Nanos::ZERO + Duration::from_millis(7);
        b.finish(end);
        assert_eq!(load.in_flight(), 0);
        assert_eq!(load.rtt(end), Duration::from_millis(7));
    }

    #[test]
    fn counts_across_threads() {
        let load = Arc::new(EndpointLoad::new(EwmaConfig::default()));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000 {
                        let g = load.start(Nanos(i));
                        g.finish(Nanos(i + 10));
                    }
                });
            }
        });
        assert_eq!(load.in_flight(), 0);
    }
}
