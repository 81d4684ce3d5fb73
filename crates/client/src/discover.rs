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
    /// The endpoint set as a stream of tower discovery changes, keyed by instance ID: an
    /// `Insert` for every endpoint at first and for each one that joins or changes (its
    /// address, weights, health or tags), a `Remove` for each one that leaves. `make` builds
    /// the tower service for an endpoint (a client bound to its address, usually wrapped in a
    /// `tower::load` measure).
    ///
    /// The stream keeps the background query alive while it exists, and never fails: when the
    /// agent cannot be reached the set simply stops changing (see [`Service::freshness`]).
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
            sets: futures::stream::once(async move { first })
                .chain(later)
                .boxed(),
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
        gone.retain(|id| set.by_id(id).is_none());
        for id in gone {
            self.known.remove(&id);
            self.pending.push_back(Change::Remove(id));
        }
        for endpoint in set.iter() {
            if self.known.get(&endpoint.id) == Some(endpoint) {
                continue;
            }
            self.known.insert(endpoint.id.clone(), Arc::clone(endpoint));
            let service = (self.make)(endpoint);
            self.pending
                .push_back(Change::Insert(endpoint.id.clone(), service));
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
