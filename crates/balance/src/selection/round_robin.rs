//! Round robin, per request.
//!
//! Owns [`RoundRobin`]: one atomic cursor per route (per split side), advanced with a single
//! `fetch_add` per pick, so concurrent gateway threads never wait on each other and k·n picks
//! over n eligible endpoints land exactly k on each. Balancing each request rather than each
//! connection is what spreads a keep-alive client over every instance (the Docker Swarm pitfall
//! in our design notes); the cursor does not care which connection a request came on.
//!
//! A rejected or zero-weight endpoint passes its turn to the next eligible one (as nginx and
//! HAProxy do). A ramping endpoint (slow start) takes its turn with probability equal to its
//! factor, else passes it on; if every eligible endpoint passed, the first of them takes it.
//! Deliberately no weights: `weighted` exists for that, and keeping this one unweighted keeps
//! its exact evenness.

use super::{Candidates, Strategy};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Round robin over eligible members.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: AtomicUsize,
}

impl Strategy for RoundRobin {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        let len = c.len();
        if len == 0 {
            return None;
        }
        // Relaxed: the cursor orders nothing else; any interleaving gives each pick a distinct
        // value, which is all evenness needs. Wrapping at usize::MAX skews one turn per 2^64.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
        let mut passed = None;
        for offset in 0..len {
            let k = (start + offset) % len;
            if !c.is_eligible(k) {
                continue;
            }
            let ramp = c.ramp(k);
            if ramp >= 1.0 || c.rng().unit() < ramp {
                return Some(c.index(k));
            }
            passed.get_or_insert(k);
        }
        passed.map(|k| c.index(k))
    }

    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(RoundRobin::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::with_candidates;
    use crate::{Endpoint, EndpointSet, Health, Nanos};

    #[test]
    fn cycles_and_skips_ineligible() {
        let set = EndpointSet::new([
            Endpoint::new("a"),
            Endpoint::new("b")
                .with_weights(1, 0)
                .with_health(Health::Warning),
            Endpoint::new("c"),
            Endpoint::new("d"),
        ]);
        let rr = RoundRobin::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let not_d = |i: usize, _: &Endpoint| i != 3;
        let picks: Vec<_> = (0..8)
            .map(|_| with_candidates(&set, Nanos::ZERO, &mut rng, Some(&not_d), |c| rr.select(c)))
            .collect();
        // a, (b → c), c, (d → a), ...
        let expected = [0, 2, 2, 0, 0, 2, 2, 0].map(Some);
        assert_eq!(picks, expected);
    }

    #[test]
    fn empty_or_all_rejected_is_none() {
        let rr = RoundRobin::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let empty = EndpointSet::default();
        assert_eq!(
            with_candidates(&empty, Nanos::ZERO, &mut rng, None, |c| rr.select(c)),
            None
        );
        let set = EndpointSet::new(["a", "b"].map(Endpoint::new));
        let none = |_: usize, _: &Endpoint| false;
        assert_eq!(
            with_candidates(&set, Nanos::ZERO, &mut rng, Some(&none), |c| rr.select(c)),
            None
        );
        assert_eq!(rr.new_instance().name(), "round_robin");
    }
}
