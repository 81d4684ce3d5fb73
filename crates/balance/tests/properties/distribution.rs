//! Shares: round robin exact, random and weighted within statistical bounds.

use crate::common::{chi_square, chi_square_critical, config, counts, pick, uniform_set};
use proptest::prelude::*;
use wayfinder_balance::{
    Balancer, Endpoint, EndpointSet, Health, Nanos, Pick, StrategyKind, TagSplit,
};

const PICKS: usize = 20_000;

proptest! {
    #![proptest_config(config(64))]

    /// k·n picks over n endpoints land exactly k on each, whatever the cursor's start.
    #[test]
    fn round_robin_is_exactly_even(n in 1usize..16, k in 1usize..20, warmup in 0usize..40) {
        let set = uniform_set(n);
        let b = Balancer::new(StrategyKind::RoundRobin);
        let mut rng = fastrand::Rng::with_seed(0);
        for _ in 0..warmup {
            pick(&b, &set, Nanos::ZERO, &mut rng);
        }
        let counts = counts(&b, &set, Nanos::ZERO, &mut rng, k * n);
        prop_assert!(counts.iter().all(|&c| c == k), "{counts:?}");
    }

    /// Within a split side, round robin counts only that side: the stable side of a route with
    /// a canary is still exactly even.
    #[test]
    fn round_robin_is_exactly_even_within_a_split_side(
        stable in 1usize..10,
        canary_at in proptest::collection::btree_set(0usize..14, 1..4),
        k in 1usize..10,
    ) {
        let n = stable + canary_at.len();
        let set = EndpointSet::new((0..n).map(|i| {
            let e = Endpoint::new(format!("e{i}"));
            if canary_at.contains(&i) { e.with_tags(["canary"]) } else { e }
        }));
        let canaries = set.endpoints().iter().filter(|e| e.has_tag("canary")).count();
        let b = Balancer::new(StrategyKind::RoundRobin)
            .with_split(TagSplit::new("canary", 0.0).expect("split"));
        let mut rng = fastrand::Rng::with_seed(1);
        let counts = counts(&b, &set, Nanos::ZERO, &mut rng, k * (n - canaries));
        for (i, e) in set.endpoints().iter().enumerate() {
            let expected = if e.has_tag("canary") { 0 } else { k };
            prop_assert_eq!(counts[i], expected, "{:?}", counts);
        }
    }

    /// Random is uniform over the accepted endpoints.
    #[test]
    fn random_is_uniform_over_accepted(
        n in 2usize..12,
        rejected in proptest::collection::vec(any::<bool>(), 12),
        seed in any::<u64>(),
    ) {
        prop_assume!((0..n).any(|i| !rejected[i]));
        let set = uniform_set(n);
        let b = Balancer::new(StrategyKind::Random);
        let accept = |i: usize, _: &Endpoint| !rejected[i];
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut observed = vec![0; n];
        for _ in 0..PICKS {
            let pick = Pick::new(Nanos::ZERO, &mut rng).accept(&accept);
            let i = b.pick(&set, pick).expect("one accepted");
            observed[i] += 1;
        }
        let accepted = (0..n).filter(|&i| !rejected[i]).count() as f64;
        let p: Vec<f64> = (0..n).map(|i| if rejected[i] { 0.0 } else { 1.0 / accepted }).collect();
        for i in 0..n {
            if rejected[i] { prop_assert_eq!(observed[i], 0); }
        }
        let (stat, df) = chi_square(&observed, &p);
        prop_assert!(stat <= chi_square_critical(df), "chi2 {stat} df {df}: {observed:?}");
    }

    /// Weighted picks in proportion to the weight that applies (passing or warning), and never
    /// an endpoint whose weight is 0.
    #[test]
    fn weighted_follows_weights(
        weights in proptest::collection::vec((1u32..10, 0u32..4, any::<bool>()), 2..12),
        seed in any::<u64>(),
    ) {
        let set = EndpointSet::new(weights.iter().enumerate().map(|(i, &(passing, warning, warn))| {
            let health = if warn { Health::Warning } else { Health::Passing };
            Endpoint::new(format!("e{i}")).with_weights(passing, warning).with_health(health)
        }));
        let total: u32 = set.endpoints().iter().map(Endpoint::weight).sum();
        prop_assume!(total > 0);
        let b = Balancer::new(StrategyKind::Weighted);
        let mut rng = fastrand::Rng::with_seed(seed);
        let observed = counts(&b, &set, Nanos::ZERO, &mut rng, PICKS);
        let p: Vec<f64> = set
            .endpoints()
            .iter()
            .map(|e| f64::from(e.weight()) / f64::from(total))
            .collect();
        for (i, e) in set.endpoints().iter().enumerate() {
            if e.weight() == 0 { prop_assert_eq!(observed[i], 0); }
        }
        let (stat, df) = chi_square(&observed, &p);
        prop_assert!(stat <= chi_square_critical(df), "chi2 {stat} df {df}: {observed:?} {p:?}");
    }
}

/// The cursor is one atomic: picks from two threads at once are still exactly even.
#[test]
fn round_robin_is_exactly_even_across_threads() {
    let n = 7;
    let per_thread = 7 * 1_000;
    let set = uniform_set(n);
    let b = Balancer::new(StrategyKind::RoundRobin);
    let counts: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let (b, set) = (&b, &set);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    counts(b, set, Nanos::ZERO, &mut rng, per_thread)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("picker thread"))
            .collect()
    });
    let total: Vec<usize> = (0..n).map(|i| counts[0][i] + counts[1][i]).collect();
    assert!(total.iter().all(|&c| c == 2 * per_thread / n), "{total:?}");
}
