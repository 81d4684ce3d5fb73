//! The writer side: push every change of a service's endpoint list into Memcached.
//!
//! ```text
//! writer task ─► CachePusher::published (enqueue names + newest catalog; never waits)
//!                      │ Notify
//!                      ▼
//!              "cache-pusher" task: take every queued name ─► render from the newest catalog
//!                      ─► SET endpoints:{service} (or DELETE) on the server that holds it
//! ```
//!
//! The subscriber runs on the writer task before the snapshot swap, so it only records the
//! service names and the newest catalog under a short lock and wakes the task. Names are a
//! set: a service that changes 100 times while a write is in flight is written once more, with
//! its latest rendering (latest wins). The queue is bounded by the number of services, however
//! slow Memcached is.
//!
//! The same task probes every server each [`PROBE_INTERVAL`] and pushes every service to a
//! server (a resync) when it has no record of a complete push there: at start-up, after an
//! outage, after the server lost its data (the [`SYNCED_KEY`] marker is gone), and every
//! [`ANTI_ENTROPY_INTERVAL`] to restore keys memcached evicted. One task does all writing,
//! so a resync and a change never race on a key, and the catalog it renders from only moves
//! forward.

use super::memcached::{SYNCED_KEY, Shards, is_outage, key_for};
use super::outage::{Availability, Reachability, Role};
use super::{CacheError, CacheTask, CacheUrl};
use crate::endpoints::EndpointCache;
use crate::metrics::CacheMetrics;
use crate::write_path::{Published, Subscriber};
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use memcache::exp::Ttl;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::{Catalog, Touched};

/// How often every server is probed (for outages and lost data). Also the longest a provider
/// may serve BYPASS answers after memcached came back, before the push restores its keys.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often every service is pushed again although nothing changed, to restore keys memcached
/// evicted under memory pressure (keys carry no expiry; see the module docs of `cache`).
pub const ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Bound on one dial or one exchange with a server (memcached answers in well under 1 ms on a
/// healthy network; a server that takes longer is treated as down).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Writes in flight at once (to all servers together).
pub const WRITE_CONCURRENCY: usize = 32;
/// How long shutdown waits for queued writes to reach memcached.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Services changed since the task last looked, and the newest catalog.
struct Queue {
    catalog: Arc<Catalog>,
    services: HashSet<Arc<str>>,
}

/// The write-path subscriber: records which services changed and wakes the pusher task.
pub struct CachePusher {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl CachePusher {
    fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            queue: Mutex::new(Queue {
                catalog,
                services: HashSet::new(),
            }),
            wake: Notify::new(),
        }
    }

    /// Takes the queued names (leaving the queue empty) and the newest catalog.
    fn take(&self) -> (Arc<Catalog>, HashSet<Arc<str>>) {
        let mut queue = self.lock();
        (
            Arc::clone(&queue.catalog),
            std::mem::take(&mut queue.services),
        )
    }

    /// The newest catalog, leaving the queued names in place.
    fn newest(&self) -> Arc<Catalog> {
        Arc::clone(&self.lock().catalog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (one insert or
        // one swap), so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Subscriber for CachePusher {
    fn published(&self, change: &Published<'_>) {
        let mut any = false;
        {
            let mut queue = self.lock();
            for touched in change.touched {
                if let Touched::Service(name) = touched {
                    queue.services.insert(Arc::from(name.as_str()));
                    any = true;
                }
            }
            if any {
                queue.catalog = Arc::clone(change.catalog);
            }
        }
        if any {
            self.wake.notify_one();
        }
    }
}

/// Resolves the servers and starts the `cache-pusher` task; returns the subscriber to hand the
/// writer and the task to close at shutdown.
pub async fn start(
    url: &CacheUrl,
    catalog: Arc<Catalog>,
    endpoints: Arc<EndpointCache>,
    metrics: CacheMetrics,
) -> Result<(Arc<CachePusher>, CacheTask), CacheError> {
    let shards = Shards::connect(url, WRITE_TIMEOUT, WRITE_CONCURRENCY).await?;
    let servers = shards.names().len();
    let availability = Availability::new(Role::Pusher, shards.names(), metrics.clone());
    let pusher = Arc::new(CachePusher::new(Arc::clone(&catalog)));
    tracing::info!(cache = %url, "pushing endpoint lists to memcached");
    let task = PusherTask {
        pusher: Arc::clone(&pusher),
        shards,
        availability,
        endpoints,
        metrics,
        catalog,
        needs_resync: vec![true; servers],
        dirty: vec![HashSet::new(); servers],
    };
    let task = CacheTask::spawn("cache-pusher", |stop| task.run(stop).boxed());
    Ok((pusher, task))
}

/// What one write did.
enum Pushed {
    /// Written or deleted.
    Done,
    /// Not attempted: the server is out; it will be resynced when back.
    Skipped,
    /// The server did not answer: an outage.
    Unreachable(String),
    /// The server refused this one command (e.g. a value over memcached's item size limit).
    Refused,
}

struct PusherTask {
    pusher: Arc<CachePusher>,
    shards: Shards,
    availability: Availability,
    endpoints: Arc<EndpointCache>,
    metrics: CacheMetrics,
    /// The catalog every write renders from; only ever replaced by a newer one.
    catalog: Arc<Catalog>,
    /// Per server: whether every service must be pushed to it before it is trusted.
    needs_resync: Vec<bool>,
    /// Per server: services whose key there may be wrong (a write failed or was skipped) and
    /// which a resync must visit even if they left the catalog (to delete their key).
    dirty: Vec<HashSet<Arc<str>>>,
}

impl PusherTask {
    async fn run(mut self, stop: CancellationToken) {
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut anti_entropy = tokio::time::interval_at(
            tokio::time::Instant::now() + ANTI_ENTROPY_INTERVAL,
            ANTI_ENTROPY_INTERVAL,
        );
        anti_entropy.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = probe.tick() => self.probe_and_resync().await,
                _ = anti_entropy.tick() => {
                    self.needs_resync.iter_mut().for_each(|r| *r = true);
                    self.probe_and_resync().await;
                }
                () = self.pusher.wake.notified() => self.push_queued().await,
            }
        }
        if tokio::time::timeout(SHUTDOWN_FLUSH, self.push_queued())
            .await
            .is_err()
        {
            tracing::warn!(
                "memcached did not take the last endpoint changes within {SHUTDOWN_FLUSH:?}; \
                 they will be pushed by the next start-up resync"
            );
        }
        tracing::debug!("cache pusher stopped");
    }

    fn advance(&mut self, catalog: Arc<Catalog>) {
        if catalog.index() >= self.catalog.index() {
            self.catalog = catalog;
        }
    }

    /// Writes every queued service.
    async fn push_queued(&mut self) {
        let (catalog, services) = self.pusher.take();
        self.advance(catalog);
        if services.is_empty() {
            return;
        }
        let results = self.push(services.into_iter().collect()).await;
        self.settle(results);
    }

    /// Pushes `services` concurrently (each service once, so no key has two writes in flight)
    /// and returns each outcome with the server it went to.
    async fn push(&self, services: Vec<Arc<str>>) -> Vec<(Arc<str>, usize, Pushed)> {
        stream::iter(services)
            .map(|service| async move {
                let key = key_for(&service);
                let server = self.shards.route(&key);
                let pushed = self.push_one(&service, &key, server).await;
                (service, server, pushed)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await
    }

    /// The bytes `GET /v1/endpoints/{service}` answers now, or `None` when it answers an error
    /// (unknown service, nothing healthy): then the key must not exist.
    fn desired(&self, service: &str) -> Option<Bytes> {
        let catalog = &self.catalog;
        if !catalog.has_service(service) {
            return None;
        }
        // The same rendering `/v1/endpoints` serves, stored for its next reader (a HIT).
        let (rendered, _) = self.endpoints.get_or_render(catalog, service);
        (rendered.count > 0).then(|| rendered.body.clone())
    }

    async fn push_one(&self, service: &str, key: &str, server: usize) -> Pushed {
        if !self.availability.is_up(server) {
            return Pushed::Skipped;
        }
        let client = &self.shards.get(server).client;
        let result = match self.desired(service) {
            Some(body) => client.set(key, body.as_ref(), Ttl::NEVER).await,
            None => client.delete(key).await,
        };
        match result {
            Ok(()) => {
                self.metrics.writes.inc();
                Pushed::Done
            }
            Err(error) if is_outage(&error) => {
                self.metrics.write_errors.inc();
                Pushed::Unreachable(error.to_string())
            }
            Err(error) => {
                self.metrics.write_errors.inc();
                // Better no key (providers answer 404) than a stale list naming dead nodes.
                let removed = client.delete(key).await.is_ok();
                tracing::warn!(
                    %service,
                    server = %self.shards.get(server).name,
                    %error,
                    stale_key_removed = removed,
                    "memcached refused the endpoint list; if it is larger than the item size \
                     limit, start memcached with a larger -I"
                );
                Pushed::Refused
            }
        }
    }

    /// Applies write outcomes to the per-server state: an unreachable server is out and
    /// needs a resync; anything not written is dirty.
    fn settle(&mut self, results: Vec<(Arc<str>, usize, Pushed)>) {
        for (service, server, pushed) in results {
            match pushed {
                Pushed::Done => {
                    self.dirty[server].remove(&service);
                }
                Pushed::Refused => {}
                Pushed::Skipped => {
                    self.dirty[server].insert(service);
                }
                Pushed::Unreachable(cause) => {
                    self.availability.report(server, Reachability::Down, &cause);
                    self.needs_resync[server] = true;
                    self.dirty[server].insert(service);
                }
            }
        }
    }

    /// Probes every server (one GET of the sync marker each, concurrently) and resyncs those
    /// that answer but have no complete push.
    async fn probe_and_resync(&mut self) {
        let answers = self.shards.sync_markers().await;
        for (server, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(marker) => {
                    if marker.is_none() {
                        // Restarted, flushed or evicted: whatever it holds is incomplete.
                        self.needs_resync[server] = true;
                    }
                    self.availability
                        .report(server, Reachability::Up, &"probe answered");
                }
                Err(error) => {
                    self.needs_resync[server] = true;
                    self.availability.report(server, Reachability::Down, &error);
                }
            }
        }
        for server in 0..self.needs_resync.len() {
            if self.needs_resync[server] && self.availability.is_up(server) {
                self.resync(server).await;
            }
        }
    }

    /// Pushes every service whose key lives on `server` (and every dirty one), then marks the
    /// server synced. Stops at the first sign of an outage; the next probe retries.
    async fn resync(&mut self, server: usize) {
        // Render from the newest catalog; the queued names stay queued and are written after.
        let newest = self.pusher.newest();
        self.advance(newest);
        let mut services: HashSet<Arc<str>> = self
            .catalog
            .services()
            .map(|summary| Arc::from(summary.name.as_str()))
            .filter(|name: &Arc<str>| self.shards.route(&key_for(name)) == server)
            .collect();
        services.extend(self.dirty[server].iter().cloned());
        let count = services.len();
        let results = self.push(services.into_iter().collect()).await;
        let complete = results
            .iter()
            .all(|(_, _, pushed)| matches!(pushed, Pushed::Done | Pushed::Refused));
        self.settle(results);
        if !complete {
            return;
        }
        let shard = self.shards.get(server);
        let marker = self.catalog.index().max(1).to_string();
        match shard
            .client
            .set(SYNCED_KEY, marker.as_str(), Ttl::NEVER)
            .await
        {
            Ok(()) => {
                self.needs_resync[server] = false;
                self.metrics.resyncs.inc();
                tracing::info!(
                    server = %shard.name,
                    services = count,
                    index = self.catalog.index(),
                    "pushed every endpoint list to memcached (full resync)"
                );
            }
            Err(error) => {
                self.metrics.write_errors.inc();
                if is_outage(&error) {
                    self.availability.report(server, Reachability::Down, &error);
                } else {
                    tracing::warn!(server = %shard.name, %error, "memcached refused the sync marker");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use wayfinder_catalog::{Command, Instance, InstanceId, Registration, ServiceName};

    fn register(catalog: &mut Catalog, service: &str, id: &str) -> BTreeSet<Touched> {
        let instance = Instance {
            address: "10.0.0.1".into(),
            port: 80,
            ..Instance::new(
                InstanceId::new(id, "ID").expect("id"),
                ServiceName::new(service, "Name").expect("name"),
            )
        };
        let command = Command::Register(Box::new(Registration {
            instance,
            checks: Vec::new(),
            replace_existing_checks: false,
        }));
        let outcome = catalog
            .apply(catalog.index() + 1, &command)
            .expect("register");
        outcome.touched.into_iter().collect()
    }

    fn publish(pusher: &CachePusher, catalog: &Catalog, touched: &BTreeSet<Touched>) {
        let catalog = Arc::new(catalog.clone());
        pusher.published(&Published {
            catalog: &catalog,
            touched,
            events: &[],
        });
    }

    #[test]
    fn changes_coalesce_per_service_and_the_newest_catalog_wins() {
        let mut catalog = Catalog::new(0);
        let pusher = CachePusher::new(Arc::new(catalog.clone()));
        for i in 0..50 {
            let touched = register(&mut catalog, "web", &format!("web-{i}"));
            publish(&pusher, &catalog, &touched);
        }
        let touched = register(&mut catalog, "db", "db-1");
        publish(&pusher, &catalog, &touched);
        let (newest, services) = pusher.take();
        let mut names: Vec<&str> = services.iter().map(|s| &**s).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["db", "web"], "50 changes to web are one write");
        assert_eq!(newest.index(), catalog.index());
        assert_eq!(newest.instance_count(), 51);
        let (_, again) = pusher.take();
        assert!(again.is_empty(), "taking empties the queue");
    }

    #[test]
    fn a_batch_without_service_changes_wakes_nobody() {
        let catalog = Catalog::new(0);
        let pusher = CachePusher::new(Arc::new(catalog.clone()));
        publish(&pusher, &catalog, &BTreeSet::new());
        let (_, services) = pusher.take();
        assert!(services.is_empty());
        // No permit was stored: a notified() future would not be ready.
        let notified = pusher.wake.notified();
        futures::pin_mut!(notified);
        assert!(notified.as_mut().now_or_never().is_none());
    }
}
