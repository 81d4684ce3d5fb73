//! The endpoint set: an immutable snapshot of one service's balanceable endpoints.
//!
//! Owns [`EndpointSet`]: the endpoints in the caller's order (a pick is an index into it), their
//! shared [`EndpointLoad`]s, an index of tags (so a split finds its side without scanning), and
//! the consistent-hash ring, built on first use and then shared by every route on the snapshot.
//!
//! It deliberately never changes after construction: discovery builds a new set with
//! [`EndpointSet::update`] and the caller swaps it in atomically (an `ArcSwap` in the gateway), so
//! a pick never waits on a writer. What must outlive a snapshot — in-flight counts and RTT
//! estimates — lives in `Arc<EndpointLoad>`s carried over by endpoint ID.

use crate::endpoint::{Endpoint, EndpointId};
use crate::ewma::EwmaConfig;
use crate::load::{EndpointLoad, InFlight};
use crate::selection::consistent_hash::HashRing;
use crate::time::Nanos;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

/// An immutable snapshot of a service's endpoints plus their shared load state.
#[derive(Debug)]
pub struct EndpointSet {
    endpoints: Box<[Endpoint]>,
    loads: Box<[Arc<EndpointLoad>]>,
    positions: HashMap<EndpointId, usize>,
    /// Lower-cased tag → sorted positions of the endpoints carrying it.
    tags: HashMap<Box<str>, Box<[usize]>>,
    max_weight: u32,
    ewma: EwmaConfig,
    ring: OnceLock<HashRing>,
}

impl Default for EndpointSet {
    fn default() -> Self {
        EndpointSet::new([])
    }
}

impl EndpointSet {
    /// A set with fresh load state and the default [`EwmaConfig`].
    ///
    /// Endpoints keep their order; a repeated ID keeps its first occurrence (the catalog never
    /// produces one, and two load states under one ID would undercount both).
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        EndpointSet::with_ewma(endpoints, EwmaConfig::default())
    }

    /// A set with fresh load state and the given EWMA configuration.
    pub fn with_ewma(endpoints: impl IntoIterator<Item = Endpoint>, ewma: EwmaConfig) -> Self {
        EndpointSet::build(endpoints, ewma, None)
    }

    /// The next snapshot after a discovery change: endpoints whose ID is also in `self` keep
    /// their load state (in-flight count, RTT estimate), new ones start fresh, and the EWMA
    /// configuration carries over.
    pub fn update(&self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        EndpointSet::build(endpoints, self.ewma, Some(self))
    }

    fn build(
        endpoints: impl IntoIterator<Item = Endpoint>,
        ewma: EwmaConfig,
        previous: Option<&EndpointSet>,
    ) -> Self {
        let mut kept = Vec::new();
        let mut positions = HashMap::new();
        for endpoint in endpoints {
            if let Entry::Vacant(slot) = positions.entry(endpoint.id.clone()) {
                slot.insert(kept.len());
                kept.push(endpoint);
            }
        }
        let loads = kept
            .iter()
            .map(|e| {
                previous
                    .and_then(|p| p.position(e.id.as_str()).map(|i| Arc::clone(&p.loads[i])))
                    .unwrap_or_else(|| Arc::new(EndpointLoad::new(ewma)))
            })
            .collect();
        let mut tags: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        for (i, endpoint) in kept.iter().enumerate() {
            for tag in &endpoint.tags {
                let members = tags.entry(tag.to_ascii_lowercase().into()).or_default();
                // Positions arrive in order; a tag repeated on one endpoint is stored once.
                if members.last() != Some(&i) {
                    members.push(i);
                }
            }
        }
        EndpointSet {
            max_weight: kept.iter().map(Endpoint::weight).max().unwrap_or(0),
            endpoints: kept.into(),
            loads,
            positions,
            tags: tags.into_iter().map(|(t, m)| (t, m.into())).collect(),
            ewma,
            ring: OnceLock::new(),
        }
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are none (every pick then returns `None`).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoint at `index`.
    pub fn get(&self, index: usize) -> Option<&Endpoint> {
        self.endpoints.get(index)
    }

    /// All endpoints, in index order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The index of the endpoint with this ID.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.positions.get(id).copied()
    }

    /// The load state of the endpoint at `index`.
    pub fn load(&self, index: usize) -> Option<&EndpointLoad> {
        self.loads.get(index).map(|l| &**l)
    }

    /// Counts a request in flight on the endpoint at `index` until the guard is finished or
    /// dropped; `None` if the index is outside the set.
    pub fn start(&self, index: usize, now: Nanos) -> Option<InFlight> {
        self.loads.get(index).map(|load| load.start(now))
    }

    /// The EWMA configuration new endpoints' load state gets.
    pub fn ewma(&self) -> EwmaConfig {
        self.ewma
    }

    /// Positions (sorted) of endpoints carrying `tag`, matched case-insensitively.
    pub(crate) fn tagged(&self, tag: &str) -> &[usize] {
        let found = if tag.bytes().any(|b| b.is_ascii_uppercase()) {
            self.tags.get(tag.to_ascii_lowercase().as_str())
        } else {
            self.tags.get(tag)
        };
        found.map_or(&[], |m| m)
    }

    /// The largest current weight of any endpoint (0 for an empty set).
    pub(crate) fn max_weight(&self) -> u32 {
        self.max_weight
    }

    pub(crate) fn load_at(&self, index: usize) -> &EndpointLoad {
        &self.loads[index]
    }

    /// Builds the consistent-hash ring now instead of on the first keyed pick.
    ///
    /// Why: building it costs O(n · 160 · log) — milliseconds for a thousand endpoints — and the
    /// first pick that needs it (and any pick racing with it) would wait for that. The task that
    /// swaps in a new set for a `consistent_hash` route calls this before the swap.
    pub fn prepare_hash_ring(&self) {
        self.ring();
    }

    /// The hash ring, built on first use. Concurrent first uses wait for one build.
    pub(crate) fn ring(&self) -> &HashRing {
        self.ring.get_or_init(|| HashRing::new(&self.endpoints))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Health;
    use std::time::Duration;

    #[test]
    fn load_survives_update_by_id() {
        let set = EndpointSet::new(["a", "b"].map(Endpoint::new));
        let guard = set.start(1, Nanos::ZERO).expect("b");
        set.load(0)
            .expect("a")
            .record_rtt(Duration::from_millis(3), Nanos::ZERO);

        // b moves to the front, a stays, c is new.
        let next = set.update(["b", "c", "a"].map(Endpoint::new));
        assert_eq!(next.position("b"), Some(0));
        assert_eq!(next.load(0).expect("b").in_flight(), 1);
        assert_eq!(
            next.load(2).expect("a").rtt(Nanos::ZERO),
            Duration::from_millis(3)
        );
        assert_eq!(next.load(1).expect("c").in_flight(), 0);
        drop(guard);
        assert_eq!(
            next.load(0).expect("b").in_flight(),
            0,
            "old guard uncounts on new set"
        );
    }

    #[test]
    fn duplicates_keep_first_and_tags_are_indexed() {
        let set = EndpointSet::new([
            Endpoint::new("a").with_tags(["Canary", "canary"]),
            Endpoint::new("b"),
            Endpoint::new("a").with_tags(["other"]),
            Endpoint::new("c").with_tags(["canary"]),
        ]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.tagged("canary"), &[0, 2]);
        assert_eq!(set.tagged("CANARY"), &[0, 2]);
        assert!(set.tagged("other").is_empty());
        assert!(set.start(3, Nanos::ZERO).is_none());
        assert!(set.get(3).is_none());
    }

    #[test]
    fn max_weight_uses_current_health() {
        let set = EndpointSet::new([
            Endpoint::new("a")
                .with_weights(3, 0)
                .with_health(Health::Warning),
            Endpoint::new("b").with_weights(2, 1),
        ]);
        assert_eq!(set.max_weight(), 2);
        assert_eq!(EndpointSet::default().max_weight(), 0);
        assert!(EndpointSet::default().is_empty());
    }
}
