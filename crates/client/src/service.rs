//! [`Service`]: a live, balanced endpoint set for one service name, and [`Picked`], one
//! endpoint lent out for one request.

use crate::endpoint::Endpoint;
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::freshness::{Clock, Freshness};
use crate::options::{CallPolicy, ServiceOptions};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use wayfinder_balance::{Accept, Balancer, InFlight, Pick, RetryBudget};

/// One service's healthy endpoints, kept current in the background, and the balancer that picks
/// among them.
///
/// Cheap to clone; clones share the set, the balancer's state (a round-robin cursor, in-flight
/// counts, RTT estimates) and the retry budget. The background query stops when the last clone,
/// [`Service::subscribe`] receiver and [`Service::discover`] stream are dropped. Made by [`crate::Discovery::service`], or [`Service::fixed`] for a set that
/// never changes.
#[derive(Clone, Debug)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub name: String,
    pub balancer: Balancer,
    pub budget: RetryBudget,
    pub call: CallPolicy,
    pub clock: Clock,
    pub endpoints: watch::Receiver<Arc<Endpoints>>,
    pub freshness: Arc<Mutex<Freshness>>,
    /// Keeps the channel open for a [`Service::fixed`] set (no background task owns it).
    _fixed: Option<watch::Sender<Arc<Endpoints>>>,
}

impl Service {
    /// The handle over a channel a watch loop fills.
    pub(crate) fn new(
        name: String,
        options: &ServiceOptions,
        clock: Clock,
        endpoints: watch::Receiver<Arc<Endpoints>>,
        freshness: Arc<Mutex<Freshness>>,
    ) -> Result<Service, ClientError> {
        Ok(Service {
            inner: Arc::new(Inner {
                name,
                balancer: balancer(options),
                budget: RetryBudget::new(options.call.retry_budget).map_err(|e| {
                    ClientError::Invalid {
                        what: "the call policy's retry budget".to_owned(),
                        reason: e.to_string(),
                    }
                })?,
                call: options.call,
                clock,
                endpoints,
                freshness,
                _fixed: None,
            }),
        })
    }

    /// A service whose endpoints never change and need no agent: for tests, local development,
    /// and callers that get endpoints from elsewhere but want the same balancing and retries.
    pub fn fixed(
        name: impl Into<String>,
        endpoints: impl IntoIterator<Item = Endpoint>,
        options: ServiceOptions,
    ) -> Result<Service, ClientError> {
        let snapshot = Endpoints::default().next(endpoints.into_iter().collect(), 1, |_| None);
        let (sender, receiver) = watch::channel(Arc::new(snapshot));
        let freshness = Arc::new(Mutex::new(Freshness::Fresh));
        let mut service = Service::new(name.into(), &options, Clock::start(), receiver, freshness)?;
        if let Some(inner) = Arc::get_mut(&mut service.inner) {
            inner._fixed = Some(sender);
        }
        Ok(service)
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current endpoint set (a snapshot: later changes do not alter it).
    pub fn endpoints(&self) -> Arc<Endpoints> {
        Arc::clone(&self.inner.endpoints.borrow())
    }

    /// Whether the set is current, or how long it has been kept without the agent.
    pub fn freshness(&self) -> Freshness {
        self.inner
            .freshness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A receiver that wakes on every new set, for callers that react to changes (rebuilding a
    /// connection pool, logging membership).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Endpoints>> {
        let mut receiver = self.inner.endpoints.clone();
        receiver.mark_unchanged();
        receiver
    }

    /// Waits until the agent has answered once (the set may still be empty: nothing healthy),
    /// at most `timeout`. On timeout, the error is the last failure talking to the agent.
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<Endpoints>, ClientError> {
        let mut receiver = self.inner.endpoints.clone();
        let waited = tokio::time::timeout(timeout, receiver.wait_for(|e| e.is_loaded())).await;
        match waited {
            Ok(Ok(endpoints)) => Ok(Arc::clone(&endpoints)),
            _ => Err(self
                .freshness()
                .error()
                .cloned()
                .unwrap_or_else(|| ClientError::NoAnswer {
                    what: format!("the endpoints of {:?}", self.inner.name),
                    waited: timeout,
                })),
        }
    }

    /// Picks an endpoint for one request with the service's strategy; `None` when the set has
    /// no eligible endpoint. Hold the [`Picked`] while the request runs and
    /// [`Picked::finish`] it when it succeeds, so least-request and peak-EWMA see the load.
    pub fn pick(&self) -> Option<Picked> {
        self.pick_from(&self.endpoints(), None, None)
    }

    /// [`Service::pick`] with a hash key (a user ID, a session cookie): with the
    /// `consistent_hash` strategy the same key keeps reaching the same endpoint, and only the
    /// keys of an endpoint that leaves move.
    pub fn pick_by_key(&self, key: &[u8]) -> Option<Picked> {
        self.pick_from(&self.endpoints(), Some(key), None)
    }

    pub(crate) fn pick_from(
        &self,
        snapshot: &Endpoints,
        key: Option<&[u8]>,
        accept: Option<&Accept<'_>>,
    ) -> Option<Picked> {
        let clock = self.inner.clock;
        let now = clock.now();
        let mut rng = fastrand::Rng::new();
        let mut pick = Pick::new(now, &mut rng);
        if let Some(key) = key {
            pick = pick.key(key);
        }
        if let Some(accept) = accept {
            pick = pick.accept(accept);
        }
        let index = self.inner.balancer.pick(snapshot.set(), pick)?;
        let endpoint = Arc::clone(snapshot.get(index)?);
        let guard = snapshot.set().start(index, now)?;
        Some(Picked {
            endpoint,
            guard,
            clock,
        })
    }
}

/// An endpoint lent out for one request, counted in flight until it is finished or dropped.
#[derive(Debug)]
#[must_use = "dropping it at once uncounts the request immediately"]
pub struct Picked {
    endpoint: Arc<Endpoint>,
    guard: InFlight,
    clock: Clock,
}

impl Picked {
    /// The endpoint to send the request to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The request succeeded: records its round trip for latency-aware balancing. (Dropping
    /// instead, for a failure, records nothing, so a endpoint that fails fast does not look
    /// fast.)
    pub fn finish(self) {
        self.guard.finish(self.clock.now());
    }
}

fn balancer(options: &ServiceOptions) -> Balancer {
    let mut balancer = Balancer::new(options.strategy);
    if let Some(split) = &options.split {
        balancer = balancer.with_split(split.clone());
    }
    if let Some(slow_start) = options.slow_start {
        balancer = balancer.with_slow_start(slow_start);
    }
    balancer
}
