//! [`Endpoints`]: one immutable snapshot of a service's endpoint set, as the agent last
//! answered it.

use crate::endpoint::Endpoint;
use std::sync::Arc;
use wayfinder_balance::EndpointSet;

/// A service's endpoints at one index. Immutable: an update builds a new snapshot (keeping the
/// in-flight counts and RTT estimates of endpoints that stayed), and readers holding the old one
/// keep a consistent view.
#[derive(Debug, Default)]
pub struct Endpoints {
    list: Box<[Arc<Endpoint>]>,
    set: EndpointSet,
    index: u64,
    loaded: bool,
}

impl Endpoints {
    /// The snapshot after `self` with `list` at `index`. Endpoints whose ID was already in
    /// `self` keep their load state; a repeated ID keeps its first occurrence, so positions in
    /// the list and in the balancer's set agree. Endpoints are keyed by [`Endpoint::key`].
    pub(crate) fn next(
        &self,
        list: Vec<Endpoint>,
        index: u64,
        healthy_since: impl Fn(&Endpoint) -> Option<wayfinder_balance::Nanos>,
    ) -> Endpoints {
        let mut seen = std::collections::HashSet::new();
        let list: Box<[Arc<Endpoint>]> = list
            .into_iter()
            .filter(|e| seen.insert(e.key()))
            .map(Arc::new)
            .collect();
        let set = self.set.update(list.iter().map(|e| {
            let endpoint = e.to_balance();
            match healthy_since(e) {
                Some(since) => endpoint.with_healthy_since(since),
                None => endpoint,
            }
        }));
        Endpoints {
            list,
            set,
            index,
            loaded: true,
        }
    }

    /// The endpoints, in the agent's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Arc<Endpoint>> {
        self.list.iter()
    }

    /// The endpoint at `position`.
    pub fn get(&self, position: usize) -> Option<&Arc<Endpoint>> {
        self.list.get(position)
    }

    /// The first endpoint with instance ID `id` (IDs repeat across Consul nodes; see
    /// [`Endpoints::by_key`]).
    pub fn by_id(&self, id: &str) -> Option<&Arc<Endpoint>> {
        self.list.iter().find(|e| e.id == id)
    }

    /// The endpoint with [`Endpoint::key`] `key`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<Endpoint>> {
        self.set.position(key).and_then(|i| self.list.get(i))
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (not loaded yet, or nothing healthy).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The agent's `X-Consul-Index` of the answer that produced this set; 0 before the first
    /// answer. A later answer that leaves the set unchanged does not make a new snapshot.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Whether the agent has answered at least once (an empty set before that means "not known
    /// yet", after it "nothing healthy").
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The balancer's view: the same endpoints with their load state.
    pub fn set(&self) -> &EndpointSet {
        &self.set
    }
}
