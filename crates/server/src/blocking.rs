//! Blocking queries (`?index=N&wait=D`), Consul's long-poll: answer as soon as the relevant
//! index passes `N`, else at the deadline with the current index.
//!
//! "Relevant" is per service: a watcher of `web` sleeps on `web`'s own signal and is never
//! woken by a change to `db` (Consul wakes every watcher of a table, its issue #1244). Catalog-
//! wide reads (`/v1/catalog/services`, `/v1/health/state`) sleep on the catalog index instead.
//!
//! Race freedom comes from ordering: the writer swaps the snapshot *before* it signals, and a
//! waiter subscribes *before* it reads the snapshot. So a waiter either sees the new snapshot
//! on its first read or is subscribed in time to be woken by the signal.

use crate::snapshots::Snapshots;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wayfinder_catalog::Catalog;

/// Default wait when `?wait` is absent (Consul's).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Longest wait honoured; longer requests are clamped (Consul's).
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// What a blocking read waits on.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One service's modify index.
    Service(&'a str),
    /// The catalog-wide index.
    Catalog,
}

impl Scope<'_> {
    /// The index a response for this scope carries.
    pub fn index(self, catalog: &Catalog) -> u64 {
        match self {
            Scope::Service(name) => catalog.service_index(name),
            Scope::Catalog => catalog.index().max(1),
        }
    }
}

/// A parsed `?index=&wait=` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingParams {
    /// The index the client already has; 0 means "answer now".
    pub index: u64,
    /// How long to wait at most, jitter included.
    pub wait: Duration,
}

impl BlockingParams {
    /// Applies Consul's rules: no index (or 0) answers at once; the wait defaults to 5 min,
    /// is clamped to 10 min, and gets random jitter of up to 1/16 of itself added so that
    /// thousands of watchers started together do not all return together.
    pub fn new(index: Option<u64>, wait: Option<Duration>) -> Self {
        let wait = wait
            .filter(|w| !w.is_zero())
            .unwrap_or(DEFAULT_WAIT)
            .min(MAX_WAIT);
        let jitter_nanos = (wait.as_nanos() / 16) as u64;
        let jitter = Duration::from_nanos(fastrand::u64(0..jitter_nanos.max(1)));
        Self {
            index: index.unwrap_or(0),
            wait: wait + jitter,
        }
    }
}

/// Per-service wake-up signals, created when a watcher first waits on a service and dropped
/// when the last one leaves.
#[derive(Default)]
pub struct ServiceSignals {
    signals: DashMap<Arc<str>, watch::Sender<u64>>,
}

impl ServiceSignals {
    /// A receiver woken at every change to `service`.
    pub fn subscribe(&self, service: &str) -> watch::Receiver<u64> {
        if let Some(sender) = self.signals.get(service) {
            return sender.subscribe();
        }
        self.signals
            .entry(Arc::from(service))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the watchers of `service` (called by the writer after publishing), and forgets
    /// signals nobody listens to any more.
    pub(crate) fn notify(&self, service: &str, index: u64) {
        if let Some(sender) = self.signals.get(service) {
            sender.send_replace(index);
        }
        self.signals
            .remove_if(service, |_, sender| sender.receiver_count() == 0);
    }

    /// Number of services with at least one signal allocated (for tests and metrics).
    pub fn len(&self) -> usize {
        self.signals.len()
    }

    /// Whether no service has a signal.
    pub fn is_empty(&self) -> bool {
        self.signals.is_empty()
    }
}

/// Waits until `scope`'s index exceeds `params.index` or the wait runs out, and returns the
/// snapshot to answer from. Never returns a snapshot older than the one current at the call.
pub async fn wait(snapshots: &Snapshots, scope: Scope<'_>, params: BlockingParams) -> Arc<Catalog> {
    if params.index == 0 {
        return snapshots.load();
    }
    let mut signal = match scope {
        Scope::Service(name) => snapshots.services().subscribe(name),
        Scope::Catalog => snapshots.subscribe(),
    };
    let deadline = tokio::time::Instant::now() + params.wait;
    loop {
        let catalog = snapshots.load();
        if scope.index(&catalog) > params.index {
            return catalog;
        }
        match tokio::time::timeout_at(deadline, signal.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out, or the signal went away (shutdown): answer with what we have.
            Ok(Err(_)) | Err(_) => return snapshots.load(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_defaulted_clamped_and_jittered() {
        let default = BlockingParams::new(Some(5), None);
        assert!(default.wait >= DEFAULT_WAIT && default.wait < DEFAULT_WAIT + DEFAULT_WAIT / 16);
        let long = BlockingParams::new(Some(5), Some(Duration::from_secs(3600)));
        assert!(long.wait >= MAX_WAIT && long.wait < MAX_WAIT + MAX_WAIT / 16);
        assert_eq!(BlockingParams::new(None, None).index, 0);
    }

    #[tokio::test]
    async fn signals_are_dropped_when_nobody_listens() {
        let signals = ServiceSignals::default();
        let receiver = signals.subscribe("web");
        signals.notify("web", 7);
        assert_eq!(*receiver.borrow(), 7);
        assert_eq!(signals.len(), 1);
        drop(receiver);
        signals.notify("web", 8);
        assert!(signals.is_empty());
    }
}
