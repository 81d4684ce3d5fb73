//! Least request: power of two choices over requests in flight.
//!
//! Owns [`LeastRequest`]: cost is `(in_flight + 1) / slow_start_factor`, the in-flight count
//! kept by [`crate::InFlight`] guards. The `+ 1` makes the factor bite on an idle endpoint too
//! (Envoy's weighted least request divides the same way). It is what fabio lacks (#202) and the
//! right default when request durations vary widely. Deliberately ignores weight magnitudes and
//! latency (`weighted` and `peak_ewma` use them).

use super::{Candidates, Strategy, p2c};

/// P2C over requests in flight.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastRequest;

impl LeastRequest {
    fn cost(c: &Candidates<'_>, k: usize) -> f64 {
        (c.load(k).in_flight() as f64 + 1.0) / c.ramp(k)
    }
}

impl Strategy for LeastRequest {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        p2c::select(c, LeastRequest::cost)
    }

    fn name(&self) -> &'static str {
        "least_request"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(LeastRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::with_candidates;
    use crate::{Endpoint, EndpointSet, Nanos};

    #[test]
    fn never_picks_the_busiest_of_many() {
        let set = EndpointSet::new(["a", "b", "c", "d"].map(Endpoint::new));
        let _busy: Vec<_> = (0..5).filter_map(|_| set.start(2, Nanos::ZERO)).collect();
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..500 {
            let got = with_candidates(&set, Nanos::ZERO, &mut rng, None, |c| {
                LeastRequest.select(c)
            });
            assert_ne!(got, Some(2));
            assert!(got.is_some());
        }
    }

    #[test]
    fn single_eligible_member_is_picked() {
        let set = EndpointSet::new(["a", "b"].map(Endpoint::new));
        let _busy = set.start(1, Nanos::ZERO);
        let only_b = |i: usize, _: &Endpoint| i == 1;
        let mut rng = fastrand::Rng::with_seed(5);
        let got = with_candidates(&set, Nanos::ZERO, &mut rng, Some(&only_b), |c| {
            LeastRequest.select(c)
        });
        assert_eq!(got, Some(1));
    }
}
