//! Whatever the set, filter, strategy, split, slow start and key: a pick is an eligible index
//! of the set, and `None` exactly when nothing is eligible. No panics.

use crate::common::config;
use proptest::prelude::*;
use std::time::Duration;
use wayfinder_balance::{
    Balancer, Endpoint, EndpointSet, Health, InFlight, Nanos, Pick, SlowStart, StrategyKind,
    TagSplit,
};

#[derive(Debug, Clone)]
struct Spec {
    passing: u32,
    warning: u32,
    warn: bool,
    canary: bool,
    healthy_since: Option<u64>,
    load: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1u32..5,
        0u32..3,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0u64..200),
        0usize..4,
    )
        .prop_map(
            |(passing, warning, warn, canary, healthy_since, load)| Spec {
                passing,
                warning,
                warn,
                canary,
                healthy_since,
                load,
            },
        )
}

fn build(specs: &[Spec]) -> EndpointSet {
    EndpointSet::new(specs.iter().enumerate().map(|(i, s)| {
        let mut e = Endpoint::new(format!("e{i}"))
            .with_weights(s.passing, s.warning)
            .with_health(if s.warn {
                Health::Warning
            } else {
                Health::Passing
            });
        if s.canary {
            e = e.with_tags(["canary"]);
        }
        if let Some(since) = s.healthy_since {
            e = e.with_healthy_since(Nanos::ZERO + Duration::from_secs(since));
        }
        e
    }))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn picks_are_eligible_indexes_or_none(
        specs in proptest::collection::vec(spec(), 0..24),
        rejected in proptest::collection::vec(any::<bool>(), 24),
        kind in prop::sample::select(StrategyKind::ALL.to_vec()),
        split in proptest::option::of(0.0f64..=1.0),
        window in proptest::option::of(1u64..300),
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        now in 0u64..400,
        seed in any::<u64>(),
    ) {
        let set = build(&specs);
        let _held: Vec<InFlight> = specs.iter().enumerate()
            .flat_map(|(i, s)| (0..s.load).map(move |_| i))
            .filter_map(|i| set.start(i, Nanos::ZERO))
            .collect();
        let mut b = Balancer::new(kind);
        if let Some(weight) = split {
            b = b.with_split(TagSplit::new("canary", weight).expect("valid weight"));
        }
        if let Some(w) = window {
            b = b.with_slow_start(SlowStart::new(Duration::from_secs(w)).expect("valid window"));
        }
        let accept = |i: usize, _: &Endpoint| !rejected[i];
        let eligible = |i: usize| !rejected[i] && set.endpoints()[i].weight() > 0;
        let any_eligible = (0..set.len()).any(eligible);
        let now = Nanos::ZERO + Duration::from_secs(now);
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..20 {
            let mut pick = Pick::new(now, &mut rng).accept(&accept);
            if let Some(key) = &key {
                pick = pick.key(key);
            }
            match b.pick(&set, pick) {
                Some(i) => {
                    prop_assert!(i < set.len(), "index {} outside a set of {}", i, set.len());
                    prop_assert!(eligible(i), "picked ineligible {i}");
                }
                None => prop_assert!(!any_eligible, "None although an endpoint is eligible"),
            }
        }
    }
}

#[test]
fn every_strategy_returns_none_on_an_empty_set() {
    let empty = EndpointSet::default();
    let mut rng = fastrand::Rng::with_seed(0);
    for kind in StrategyKind::ALL {
        let plain = Balancer::new(kind);
        let split = Balancer::new(kind).with_split(TagSplit::new("canary", 0.5).expect("split"));
        for b in [plain, split] {
            assert_eq!(b.pick(&empty, Pick::new(Nanos::ZERO, &mut rng)), None);
            assert_eq!(
                b.pick(&empty, Pick::new(Nanos::ZERO, &mut rng).key(b"k")),
                None
            );
        }
    }
}
