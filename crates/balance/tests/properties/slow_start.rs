//! Slow start: a newly healthy endpoint's share grows over the window to its full share.

use crate::common::{config, pick, secs};
use proptest::prelude::*;
use std::time::Duration;
use wayfinder_balance::{
    Balancer, Endpoint, EndpointSet, InFlight, Nanos, SlowStart, StrategyKind,
};

proptest! {
    #![proptest_config(config(128))]

    /// The factor never decreases with time, stays in (0, 1], and is exactly 1 from the end
    /// of the window on.
    #[test]
    fn factor_is_monotonic_and_complete(
        window_ms in 1u64..3_600_000,
        aggression in 0.1f64..10.0,
        min_percent in 1.0f64..100.0,
        since in 0u64..1_000_000_000_000,
        mut times in proptest::collection::vec(0u64..8_000_000_000_000, 1..40),
    ) {
        let window = Duration::from_millis(window_ms);
        let ss = SlowStart::new(window).and_then(|s| s.with_aggression(aggression))
            .and_then(|s| s.with_min_weight_percent(min_percent)).expect("valid");
        times.sort_unstable();
        let mut last = 0.0;
        for t in times {
            let f = ss.factor(Some(Nanos(since)), Nanos(t));
            prop_assert!(f > 0.0 && f <= 1.0);
            prop_assert!(f >= last, "factor fell from {last} to {f}");
            last = f;
        }
        let end = Nanos(since) + window;
        prop_assert_eq!(ss.factor(Some(Nanos(since)), end), 1.0);
        prop_assert!(ss.factor(Some(Nanos(since)), Nanos(since)) >= min_percent / 100.0 - 1e-12);
    }
}

/// Three settled endpoints and one that became healthy at 0.
fn ramping_set() -> EndpointSet {
    EndpointSet::new([
        Endpoint::new("old-1"),
        Endpoint::new("old-2"),
        Endpoint::new("old-3"),
        Endpoint::new("new").with_healthy_since(Nanos::ZERO),
    ])
}

const WINDOW_SECS: f64 = 90.0;

/// The share of the ramping endpoint (index 3) at each checkpoint, measured on a fresh set.
/// P2C strategies hold every request open, so their share reflects the load they admit.
fn shares(kind: StrategyKind, checkpoints: &[f64], picks: usize) -> Vec<f64> {
    let slow_start = SlowStart::new(Duration::from_secs_f64(WINDOW_SECS)).expect("window");
    checkpoints
        .iter()
        .map(|&at| {
            let set = ramping_set();
            let b = Balancer::new(kind).with_slow_start(slow_start);
            let mut rng = fastrand::Rng::with_seed(at.to_bits());
            let mut held: Vec<InFlight> = Vec::new();
            let mut to_new = 0;
            for _ in 0..picks {
                let i = pick(&b, &set, secs(at), &mut rng).expect("endpoints");
                to_new += usize::from(i == 3);
                held.extend(set.start(i, secs(at)));
            }
            to_new as f64 / picks as f64
        })
        .collect()
}

#[test]
fn weighted_and_random_shares_follow_the_factor_exactly() {
    // Linear ramp from 10 %: factors 0.1, 1/3, 2/3, 1 at these points; share = f / (3 + f).
    let checkpoints = [0.0, 30.0, 60.0, 90.0, 120.0];
    let picks = 20_000;
    for kind in [StrategyKind::Weighted, StrategyKind::Random] {
        let got = shares(kind, &checkpoints, picks);
        for (&at, &share) in checkpoints.iter().zip(&got) {
            let f = (at / WINDOW_SECS).clamp(0.1, 1.0);
            let expected = f / (3.0 + f);
            let sigma = (expected * (1.0 - expected) / picks as f64).sqrt();
            assert!(
                (share - expected).abs() < 5.0 * sigma,
                "{kind} at {at}s: {share} vs {expected}"
            );
        }
        assert!(
            got.windows(2).take(3).all(|w| w[0] < w[1]),
            "{kind}: {got:?}"
        );
        assert!(
            (got[3] - 0.25).abs() < 0.015 && (got[4] - 0.25).abs() < 0.015,
            "{kind}: {got:?}"
        );
    }
}

#[test]
fn every_strategy_ramps_monotonically_to_the_full_share() {
    let checkpoints = [0.0, 30.0, 60.0, 90.0];
    for kind in [
        StrategyKind::RoundRobin,
        StrategyKind::LeastRequest,
        StrategyKind::PeakEwma,
    ] {
        let got = shares(kind, &checkpoints, 4_000);
        assert!(
            got.windows(2).all(|w| w[0] + 0.02 < w[1]),
            "{kind}: {got:?}"
        );
        assert!(got[0] < 0.06, "{kind} starts near its 10 % floor: {got:?}");
        assert!(
            (got[3] - 0.25).abs() < 0.02,
            "{kind} reaches its full share: {got:?}"
        );
    }
}

/// Consistent hashing ignores slow start (moving sticky keys away and back would cost more
/// than it saves): a ramping endpoint keeps its keys.
#[test]
fn consistent_hash_ignores_slow_start() {
    let set = ramping_set();
    let plain = Balancer::new(StrategyKind::ConsistentHash);
    let ramped = Balancer::new(StrategyKind::ConsistentHash)
        .with_slow_start(SlowStart::new(Duration::from_secs(90)).expect("window"));
    let mut rng = fastrand::Rng::with_seed(0);
    for i in 0..1_000u32 {
        let key = i.to_le_bytes();
        let a = plain.pick(
            &set,
            wayfinder_balance::Pick::new(Nanos::ZERO, &mut rng).key(&key),
        );
        let b = ramped.pick(
            &set,
            wayfinder_balance::Pick::new(Nanos::ZERO, &mut rng).key(&key),
        );
        assert_eq!(a, b);
    }
}
