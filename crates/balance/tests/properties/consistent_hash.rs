//! Consistent hashing: stable per key, and minimal movement when endpoints come and go.

use crate::common::config;
use proptest::prelude::*;
use wayfinder_balance::{Accept, Balancer, Endpoint, EndpointSet, Nanos, Pick, StrategyKind};

fn set_of(ids: &[String]) -> EndpointSet {
    EndpointSet::new(ids.iter().map(|id| Endpoint::new(id.as_str())))
}

/// The ID of the endpoint `key` maps to.
fn owner(
    b: &Balancer,
    set: &EndpointSet,
    key: &[u8],
    accept: Option<&Accept<'_>>,
) -> Option<String> {
    let mut rng = fastrand::Rng::with_seed(0);
    let mut pick = Pick::new(Nanos::ZERO, &mut rng).key(key);
    if let Some(accept) = accept {
        pick = pick.accept(accept);
    }
    b.pick(set, pick).map(|i| set.endpoints()[i].id.to_string())
}

fn keys(salt: u64, count: usize) -> Vec<Vec<u8>> {
    (0..count as u64)
        .map(|i| format!("client-{salt}-{i}").into_bytes())
        .collect()
}

fn ids(n: usize, salt: u64) -> Vec<String> {
    (0..n).map(|i| format!("instance-{salt}-{i}")).collect()
}

proptest! {
    #![proptest_config(config(32))]

    /// A key maps to the same endpoint on every pick, and on a rebuilt set with the same
    /// endpoints in any order (another agent, another process, the next snapshot).
    #[test]
    fn same_key_same_endpoint(n in 1usize..30, salt in any::<u64>(), seed in any::<u64>()) {
        let ids = ids(n, salt);
        let mut shuffled = ids.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let (a, b) = (set_of(&ids), set_of(&shuffled));
        let balancer = Balancer::new(StrategyKind::ConsistentHash);
        for key in keys(salt, 300) {
            let first = owner(&balancer, &a, &key, None);
            prop_assert!(first.is_some());
            prop_assert_eq!(&owner(&balancer, &a, &key, None), &first);
            prop_assert_eq!(&owner(&balancer, &b, &key, None), &first);
        }
    }

    /// Removing one of n endpoints moves only the keys that were on it, and those are about
    /// 1/n of all keys.
    #[test]
    fn removing_one_moves_only_its_keys(
        n in 2usize..40,
        removed in any::<prop::sample::Index>(),
        salt in any::<u64>(),
    ) {
        let ids = ids(n, salt);
        let gone = removed.index(n);
        let mut remaining = ids.clone();
        remaining.remove(gone);
        let (before, after) = (set_of(&ids), set_of(&remaining));
        let balancer = Balancer::new(StrategyKind::ConsistentHash);
        let keys = keys(salt, 1_000 * n);
        let mut moved = 0;
        for key in &keys {
            let was = owner(&balancer, &before, key, None).expect("non-empty");
            let now = owner(&balancer, &after, key, None).expect("non-empty");
            if was == ids[gone] {
                moved += 1;
            } else {
                prop_assert_eq!(was, now, "a key not on the removed endpoint moved");
            }
        }
        let share = moved as f64 / keys.len() as f64;
        let fair = 1.0 / n as f64;
        prop_assert!(share > 0.5 * fair && share < 1.6 * fair, "moved {share}, 1/n = {fair}");
    }

    /// Adding an endpoint takes about 1/(n+1) of the keys, all of them onto the new one.
    #[test]
    fn adding_one_moves_keys_only_to_it(n in 1usize..30, salt in any::<u64>()) {
        let ids = ids(n + 1, salt);
        let (before, after) = (set_of(&ids[..n]), set_of(&ids));
        let balancer = Balancer::new(StrategyKind::ConsistentHash);
        let keys = keys(salt, 1_000 * (n + 1));
        let mut moved = 0;
        for key in &keys {
            let was = owner(&balancer, &before, key, None).expect("non-empty");
            let now = owner(&balancer, &after, key, None).expect("non-empty");
            if was != now {
                prop_assert_eq!(&now, &ids[n], "a key moved between endpoints that stayed");
                moved += 1;
            }
        }
        let share = moved as f64 / keys.len() as f64;
        let fair = 1.0 / (n + 1) as f64;
        prop_assert!(share > 0.5 * fair && share < 1.6 * fair, "moved {share}, fair {fair}");
    }

    /// Ejecting an endpoint through the accept filter (no set rebuild) moves only its keys, and
    /// they come back when it is accepted again.
    #[test]
    fn rejected_endpoint_moves_only_its_keys(
        n in 2usize..20,
        ejected in any::<prop::sample::Index>(),
        salt in any::<u64>(),
    ) {
        let ids = ids(n, salt);
        let set = set_of(&ids);
        let ejected = ejected.index(n);
        let balancer = Balancer::new(StrategyKind::ConsistentHash);
        let accept = |i: usize, _: &Endpoint| i != ejected;
        for key in keys(salt, 500) {
            let was = owner(&balancer, &set, &key, None).expect("non-empty");
            let during = owner(&balancer, &set, &key, Some(&accept)).expect("others accepted");
            prop_assert_ne!(&during, &ids[ejected]);
            if was != ids[ejected] {
                prop_assert_eq!(&was, &during);
            }
            prop_assert_eq!(owner(&balancer, &set, &key, None).expect("non-empty"), was);
        }
    }
}
