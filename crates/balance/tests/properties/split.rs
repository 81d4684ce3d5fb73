//! Tag splits: the canary's share, stickiness, and empty sides.

use crate::common::{config, pick};
use proptest::prelude::*;
use wayfinder_balance::{Balancer, Endpoint, EndpointSet, Nanos, Pick, StrategyKind, TagSplit};

const PICKS: usize = 50_000;

fn route_set(stable: usize, canary: usize) -> EndpointSet {
    EndpointSet::new(
        (0..stable)
            .map(|i| Endpoint::new(format!("stable-{i}")).with_tags(["v1"]))
            .chain(
                (0..canary)
                    .map(|i| Endpoint::new(format!("canary-{i}")).with_tags(["v2", "Canary"])),
            ),
    )
}

fn kind() -> impl Strategy<Value = StrategyKind> {
    prop::sample::select(StrategyKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(config(12))]

    /// Issue 4's "must show": over 50,000 picks with weight 0.01, the canary side gets within
    /// ±0.3 percentage points of 1 %, whatever the route's strategy. (The binomial standard
    /// deviation is 0.045 points, so the bound is 6.7 sigma.)
    #[test]
    fn canary_share_is_within_a_third_of_a_point(
        stable in 1usize..8,
        canary in 1usize..3,
        kind in kind(),
        seed in any::<u64>(),
    ) {
        let set = route_set(stable, canary);
        let b = Balancer::new(kind).with_split(TagSplit::new("canary", 0.01).expect("split"));
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut to_canary = 0;
        for _ in 0..PICKS {
            let i = pick(&b, &set, Nanos::ZERO, &mut rng).expect("both sides non-empty");
            if set.endpoints()[i].has_tag("canary") {
                to_canary += 1;
            }
        }
        let share = to_canary as f64 / PICKS as f64;
        prop_assert!((share - 0.01).abs() <= 0.003, "canary share {share}");
    }

    /// With a hash key the side follows the key: distinct keys still split 1 %, and one key
    /// always lands on the same side.
    #[test]
    fn keyed_split_is_sticky_and_proportional(
        stable in 1usize..5,
        kind in kind(),
        salt in any::<u64>(),
    ) {
        let set = route_set(stable, 1);
        let b = Balancer::new(kind).with_split(TagSplit::new("canary", 0.01).expect("split"));
        let mut rng = fastrand::Rng::with_seed(salt);
        let mut to_canary = 0;
        for i in 0..PICKS {
            let key = format!("user-{salt}-{i}");
            let side = |rng: &mut fastrand::Rng| {
                let pick = Pick::new(Nanos::ZERO, rng).key(key.as_bytes());
                let index = b.pick(&set, pick).expect("endpoints");
                set.endpoints()[index].has_tag("canary")
            };
            let first = side(&mut rng);
            if i % 100 == 0 {
                prop_assert_eq!(side(&mut rng), first);
            }
            to_canary += usize::from(first);
        }
        let share = to_canary as f64 / PICKS as f64;
        prop_assert!((share - 0.01).abs() <= 0.003, "keyed canary share {share}");
    }

    /// If one side is empty everything goes to the other, at any weight.
    #[test]
    fn an_empty_side_sends_everything_to_the_other(
        n in 1usize..6,
        weight in 0.0f64..=1.0,
        kind in kind(),
        seed in any::<u64>(),
    ) {
        let split = TagSplit::new("canary", weight).expect("split");
        let mut rng = fastrand::Rng::with_seed(seed);
        for (set, canary) in [(route_set(n, 0), false), (route_set(0, n), true)] {
            let b = Balancer::new(kind).with_split(split.clone());
            for _ in 0..200 {
                let i = pick(&b, &set, Nanos::ZERO, &mut rng).expect("one side non-empty");
                prop_assert_eq!(set.endpoints()[i].has_tag("canary"), canary);
            }
        }
    }
}
