//! Consistent hashing on a request key: the same key goes to the same endpoint while it stays.
//!
//! Owns [`ConsistentHash`] and the `HashRing` it walks. The caller extracts the key — a header,
//! a cookie, the client IP — as bytes and passes it with [`crate::Pick::key`]; a request without
//! a key is balanced uniformly at random (Envoy's ring hash does the same).
//!
//! Why a ring with virtual nodes (ketama, as pingora's `consistent` module): each endpoint puts
//! [`VIRTUAL_NODES`] points on a 64-bit ring, and a key belongs to the first point at or after
//! its hash. Removing an endpoint removes only its points, so exactly the keys it owned move (to
//! their next point's owner) and no other key does; adding one takes about 1/n of the keys, all
//! from others. The alternatives were weighed on that and on the hot path:
//! - Maglev gives O(1) lookup and the most even shares, but a table rebuild also moves a few
//!   percent of keys between endpoints that stayed, breaking "only keys that were on the
//!   removed one move", and it has no natural next choice when the accept filter rejects the
//!   owner.
//! - Rendezvous (highest random weight) moves keys minimally too and needs no table, but costs
//!   one hash per endpoint per request: O(n) on every pick of a large service.
//!
//! The ring costs O(log(n·v)) per pick, and its natural next choice is the next point clockwise,
//! which is how a rejected (ejected, already tried, zero-weight) owner is skipped: its keys
//! spread over the following points' owners and come back when it is accepted again. The ring is
//! built from endpoint IDs only, once per set snapshot on first use, so the mapping does not
//! depend on the order discovery lists endpoints in, and every gateway agent and client process
//! with the same endpoints maps a key the same way (the hash is frozen, see `hash`).
//!
//! Deliberately ignores weight magnitudes and slow start: either would move sticky keys
//! whenever health or time changed. Weight 0 still means never (the owner is skipped).

use super::{Candidates, Strategy};
use crate::endpoint::Endpoint;
use crate::hash::stable_hash;

/// Points each endpoint places on the ring: 160, ketama's choice, which keeps every endpoint's
/// share within roughly ±10 % of 1/n while a 1,000-endpoint ring stays a 2.5 MB table.
pub const VIRTUAL_NODES: u32 = 160;

/// The ring: `(point, set index)` sorted by point.
#[derive(Debug)]
pub(crate) struct HashRing {
    points: Box<[(u64, usize)]>,
}

impl HashRing {
    pub(crate) fn new(endpoints: &[Endpoint]) -> Self {
        let mut points = Vec::with_capacity(endpoints.len() * VIRTUAL_NODES as usize);
        for (index, endpoint) in endpoints.iter().enumerate() {
            let id = endpoint.id.as_str().as_bytes();
            for replica in 0..VIRTUAL_NODES {
                points.push((stable_hash(&[id, &replica.to_le_bytes()]), index));
            }
        }
        // Ties (astronomically rare) are broken by ID so the order never depends on the set's.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| endpoints[a.1].id.cmp(&endpoints[b.1].id))
        });
        HashRing {
            points: points.into(),
        }
    }

    /// Set indexes in ring order starting at the first point at or after `hash`, wrapping
    /// around once.
    fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let (before, after) = self.points.split_at(start);
        after.iter().chain(before).map(|&(_, index)| index)
    }
}

/// Sticky selection by key over a hash ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsistentHash;

impl Strategy for ConsistentHash {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        let Some(key) = c.key() else {
            let k = c.sample_uniform(None)?;
            return Some(c.index(k));
        };
        if c.is_empty() {
            return None;
        }
        let ring = c.set().ring();
        ring.walk(stable_hash(&[key]))
            .find(|&index| c.member_of(index).is_some_and(|k| c.is_eligible(k)))
    }

    fn name(&self) -> &'static str {
        "consistent_hash"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(ConsistentHash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::Members;
    use crate::{EndpointSet, Nanos, RandomSource};

    fn pick(
        set: &EndpointSet,
        key: &[u8],
        accept: Option<&super::super::Accept<'_>>,
    ) -> Option<usize> {
        let mut rng = fastrand::Rng::with_seed(0);
        let rng: &mut dyn RandomSource = &mut rng;
        let mut c = Candidates::new(
            set,
            Members::All(set.len()),
            Nanos::ZERO,
            Some(key),
            None,
            accept,
            rng,
        );
        ConsistentHash.select(&mut c)
    }

    #[test]
    fn mapping_ignores_set_order() {
        let ids = ["a", "b", "c", "d", "e"];
        let forward = EndpointSet::new(ids.map(Endpoint::new));
        let mut reversed_ids = ids;
        reversed_ids.reverse();
        let reversed = EndpointSet::new(reversed_ids.map(Endpoint::new));
        for i in 0..500u32 {
            let key = i.to_le_bytes();
            let a = pick(&forward, &key, None).map(|i| forward.endpoints()[i].id.clone());
            let b = pick(&reversed, &key, None).map(|i| reversed.endpoints()[i].id.clone());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn rejected_owner_falls_through_and_comes_back() {
        let set = EndpointSet::new(["a", "b", "c"].map(Endpoint::new));
        let key = b"session-1";
        let owner = pick(&set, key, None).expect("owner");
        let not_owner = move |i: usize, _: &Endpoint| i != owner;
        let fallback = pick(&set, key, Some(&not_owner)).expect("fallback");
        assert_ne!(fallback, owner);
        assert_eq!(pick(&set, key, None), Some(owner));
        let none = |_: usize, _: &Endpoint| false;
        assert_eq!(pick(&set, key, Some(&none)), None);
        assert_eq!(pick(&EndpointSet::default(), key, None), None);
    }

    #[test]
    fn ring_has_every_virtual_node_sorted() {
        let set = EndpointSet::new(["a", "b"].map(Endpoint::new));
        let ring = set.ring();
        assert_eq!(ring.points.len(), 2 * VIRTUAL_NODES as usize);
        assert!(ring.points.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(ring.walk(u64::MAX).count(), ring.points.len());
    }
}
