//! Peak EWMA: latency-aware power of two choices, as linkerd2-proxy balances.
//!
//! Owns [`PeakEwma`]: cost is `rtt_estimate × (in_flight + 1) / slow_start_factor`, where the
//! estimate is the endpoint's peak-sensitive, decaying EWMA of RTT (see the `ewma` module for
//! the arithmetic and why it is ours, not tower's) and an endpoint with no sample yet costs the
//! set's default RTT. Multiplying by the in-flight count is what keeps a fast endpoint from
//! being buried: its cost rises with every request it is already serving. Because an idle
//! endpoint's estimate decays toward zero, a slow endpoint that is no longer picked looks cheap
//! again after a few decay periods, gets a request, and — if it has recovered — its fresh,
//! faster samples keep it in rotation.
//!
//! Deliberately ignores weight magnitudes (`weighted` uses them); the set's [`crate::EwmaConfig`]
//! holds the default RTT and decay so that every route on a service reads one estimate.

use super::{Candidates, Strategy, p2c};

/// P2C over RTT estimate × load.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeakEwma;

impl PeakEwma {
    fn cost(c: &Candidates<'_>, k: usize) -> f64 {
        let load = c.load(k);
        load.rtt_ns(c.now()) * (load.in_flight() as f64 + 1.0) / c.ramp(k)
    }
}

impl Strategy for PeakEwma {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        p2c::select(c, PeakEwma::cost)
    }

    fn name(&self) -> &'static str {
        "peak_ewma"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(PeakEwma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::with_candidates;
    use crate::{Endpoint, EndpointSet, Nanos};
    use std::time::Duration;

    #[test]
    fn cost_weighs_latency_and_load() {
        let set = EndpointSet::new(["fast", "slow"].map(Endpoint::new));
        let now = Nanos::ZERO;
        set.load(0)
            .expect("fast")
            .record_rtt(Duration::from_millis(10), now);
        set.load(1)
            .expect("slow")
            .record_rtt(Duration::from_millis(50), now);
        let mut rng = fastrand::Rng::with_seed(2);
        let pick =
            |rng: &mut fastrand::Rng| with_candidates(&set, now, rng, None, |c| PeakEwma.select(c));
        assert_eq!(pick(&mut rng), Some(0));
        // Five requests in flight make "fast" cost 60 ms against "slow"'s 50 ms.
        let _busy: Vec<_> = (0..5).filter_map(|_| set.start(0, now)).collect();
        assert_eq!(pick(&mut rng), Some(1));
    }

    #[test]
    fn new_endpoints_cost_the_default_rtt() {
        let set = EndpointSet::new(["seen", "new"].map(Endpoint::new));
        set.load(0)
            .expect("seen")
            .record_rtt(Duration::from_millis(100), Nanos::ZERO);
        let mut rng = fastrand::Rng::with_seed(2);
        let got = with_candidates(&set, Nanos::ZERO, &mut rng, None, |c| PeakEwma.select(c));
        assert_eq!(got, Some(1), "30 ms default beats a 100 ms estimate");
    }
}
