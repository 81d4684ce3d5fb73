//! `tower::discover::Discover` over a service's endpoint set (cargo feature `tower`), so the
//! set plugs into tower's balancers (`tower::balance::p2c::Balance`) or anything else that
//! consumes discovery changes.

use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use crate::service::Service;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::discover::Change;

impl Service {
    /// The endpoint set as a stream of tower discovery changes, keyed by [`Endpoint::key`]: an
    /// `Insert` for every endpoint at first and for each one that joins or changes (its
    /// address, weights, health or tags), a `Remove` for each one that leaves. `make` builds
    /// the tower service for an endpoint (a client bound to its address, usually wrapped in a
    /// `tower::load` measure).
    ///
    /// The stream keeps the background query alive while it exists, and never fails: when the
    /// agent cannot be reached the set simply stops changing (see [`Service::freshness`]).
    /// tower's p2c balancer weighs endpoints by load only: instance weights and warning status
    /// do not change its share (use [`Service::pick`] with the `weighted` strategy for that).
    pub fn discover<S, F>(&self, make: F) -> EndpointChanges<S, F>
    where
        F: FnMut(&Arc<Endpoint>) -> S,
    {
        let receiver = self.inner.endpoints.clone();
        let first = Arc::clone(&receiver.borrow());
        // Every set after the one above, in order; ends when the query loop stops.
        let later = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            let next = Arc::clone(&receiver.borrow_and_update());
            Some((next, receiver))
        });
        EndpointChanges {
            // Fused: tower's balancer polls discovery again after it ended, and an ended
            // `unfold` must not be polled.
            sets: futures::stream::once(async move { first })
                .chain(later)
                .fuse()
                .boxed(),
            _service: self.clone(),
            known: HashMap::new(),
            pending: VecDeque::new(),
            make,
        }
    }
}

/// The stream [`Service::discover`] returns: `tower::discover::Discover` with the instance ID
/// as key and `S` as service.
pub struct EndpointChanges<S, F> {
    sets: BoxStream<'static, Arc<Endpoints>>,
    /// Keeps the set alive (and a [`Service::fixed`] one from ending) while the stream is.
    _service: Service,
    known: HashMap<String, Arc<Endpoint>>,
    pending: VecDeque<Change<String, S>>,
    make: F,
}

impl<S, F> std::fmt::Debug for EndpointChanges<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointChanges")
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<S, F> EndpointChanges<S, F>
where
    F: FnMut(&Arc<Endpoint>) -> S,
{
    /// Queues the changes from the known endpoints to `set`.
    fn diff(&mut self, set: &Endpoints) {
        let mut gone: Vec<String> = self.known.keys().cloned().collect();
        gone.retain(|key| set.by_key(key).is_none());
        for id in gone {
            self.known.remove(&id);
            self.pending.push_back(Change::Remove(id));
        }
        for endpoint in set.iter() {
            let key = endpoint.key();
            if self.known.get(&key) == Some(endpoint) {
                continue;
            }
            self.known.insert(key.clone(), Arc::clone(endpoint));
            let service = (self.make)(endpoint);
            self.pending.push_back(Change::Insert(key, service));
        }
    }
}

impl<S, F> Stream for EndpointChanges<S, F>
where
    F: FnMut(&Arc<Endpoint>) -> S + Unpin,
    S: Unpin,
{
    type Item = Result<Change<String, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match self.sets.as_mut().poll_next(cx) {
                Poll::Ready(Some(set)) => self.diff(&set),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::endpoint::Endpoint;
    use crate::options::ServiceOptions;
    use crate::service::Service;
    use futures::{FutureExt, StreamExt};
    use std::collections::BTreeMap;
    use tower::discover::Change;
    use wayfinder_balance::{Health, Weights};

    fn endpoint(node: &str, id: &str) -> Endpoint {
        Endpoint {
            id: id.to_owned(),
            node: node.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 80,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: Weights::default(),
            health: Health::Passing,
        }
    }

    #[tokio::test]
    async fn a_fixed_set_inserts_each_endpoint_once_and_never_ends() {
        // Same instance ID on two nodes, as Consul allows: two endpoints.
        let endpoints = [
            endpoint("n1", "web"),
            endpoint("n2", "web"),
            endpoint("n1", "api"),
        ];
        let mut changes = Service::fixed("web", endpoints, ServiceOptions::new())
            .expect("service")
            .discover(|e| e.port);
        let mut keys = Vec::new();
        for _ in 0..3 {
            match changes.next().await {
                Some(Ok(Change::Insert(key, 80))) => keys.push(key),
                other => panic!("{other:?}"),
            }
        }
        keys.sort();
        assert_eq!(keys, ["n1/api", "n1/web", "n2/web"]);
        // The handle that made it is gone, but the stream keeps the set: pending, not ended
        // (tower polls discovery again after an end, which must not panic either way).
        for _ in 0..3 {
            assert!(changes.next().now_or_never().is_none());
        }
    }
}
