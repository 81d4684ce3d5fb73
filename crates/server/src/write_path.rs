//! The one path every write takes (DESIGN.md, "One path for every write"):
//!
//! ```text
//! Writer::submit(Command) ─► writer task: Catalog::apply (validate, index, events)
//!                             ─► Store::commit (fsync, once per batch: group commit)
//!                             ─► subscribers ─► Snapshots::publish (one pointer swap)
//!                             ─► reply to every submitter in the batch
//! ```
//!
//! The writer task owns the only mutable catalog. It drains every command waiting in its queue
//! into one batch, applies them in order to a copy of the latest catalog (an O(1) clone), and
//! makes the whole batch durable with one store commit. Only then does it run the subscribers,
//! swap the new catalog in and acknowledge the writers, so no reader ever sees a write that
//! could still be lost, and 64 concurrent registrations cost one fsync, not 64. While one batch
//! is being committed, the next is applied on top of it (pipelined one deep; commits stay in
//! order, and a batch built on one that fails is applied again on what is durable). A refused
//! command is answered at once and never reaches the store.

use crate::metrics::CatalogMetrics;
use crate::snapshots::Snapshots;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::{Catalog, CatalogError, Command, Event, Touched};
use wayfinder_store::Store;

mod etcd;

/// Most commands folded into one store commit. Bounds the latency a batch adds to its first
/// command and the size of one transaction.
pub const MAX_BATCH: usize = 4096;
/// Commands that may wait for the writer before `submit` waits for room (back-pressure).
const QUEUE_DEPTH: usize = 16 * 1024;

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The catalog refused the command; nothing changed.
    #[error(transparent)]
    Rejected(#[from] CatalogError),
    /// The store could not make the batch durable; nothing changed.
    #[error("the store could not save the change: {0}; check the data dir's disk and permissions")]
    Store(String),
    /// The shared store (etcd) cannot be reached, or the write could not be confirmed in
    /// time; the write may or may not have happened, and the catalog is served read-only.
    #[error("the shared store is unavailable: {0}; retry once etcd is reachable again")]
    Unavailable(String),
    /// The agent is shutting down and accepts no more writes.
    #[error("the agent is shutting down; retry against a running agent")]
    ShuttingDown,
}

/// What a subscriber hears after a batch is durable and published.
#[derive(Debug)]
pub struct Published<'a> {
    /// The catalog now visible to readers.
    pub catalog: &'a Arc<Catalog>,
    /// Keys whose rows changed in this batch.
    pub touched: &'a BTreeSet<Touched>,
    /// Events of this batch, in index order.
    pub events: &'a [Event],
}

/// Something that reacts to every published batch (the health scheduler now; watches, the
/// gateway table and caches later). Called on the writer task: keep it quick and non-blocking.
pub trait Subscriber: Send + Sync + 'static {
    /// A batch has been made durable and published.
    fn published(&self, change: &Published<'_>);
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<u64, WriteError>>,
    /// When it was submitted, for the propagation metric.
    submitted: Instant,
}

/// A handle for submitting writes. Cheap to clone; the writer task stops when every handle is
/// dropped, after finishing what was queued.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
    healthy: Arc<AtomicBool>,
    /// Whether the catalog may be behind the shared store's (a cluster agent that lost
    /// etcd); never set with the embedded store, which is the catalog's only source.
    stale: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer task over `store`, publishing into `snapshots` and counting into
    /// `metrics` (whose gauges start at the current snapshot's values).
    pub fn spawn(
        store: Arc<dyn Store>,
        snapshots: Arc<Snapshots>,
        subscribers: Vec<Arc<dyn Subscriber>>,
        metrics: CatalogMetrics,
    ) -> (Writer, WriterTaskHandle) {
        metrics.published(&snapshots.load());
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let healthy = Arc::new(AtomicBool::new(true));
        let task = WriterTask {
            store,
            snapshots,
            subscribers,
            receiver,
            floor: 0,
            healthy: Arc::clone(&healthy),
            metrics,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(task.run(stop.clone()));
        let writer = Writer {
            queue,
            healthy,
            stale: Arc::new(AtomicBool::new(false)),
        };
        (writer, WriterTaskHandle { task, stop })
    }

    /// Whether this agent has lost its shared store (etcd): it then serves its last catalog
    /// read-only, says so on every answer, and refuses writes until it has caught up.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Whether writes are being accepted and the last store commit succeeded (for `/ready`).
    pub fn is_healthy(&self) -> bool {
        !self.queue.is_closed() && self.healthy.load(Ordering::Acquire)
    }

    /// Applies `command` and returns the catalog index once it is durable and visible.
    /// A command that changes nothing returns the current index without writing.
    pub async fn submit(&self, command: Command) -> Result<u64, WriteError> {
        self.enqueue(command).await?.await
    }

    /// Queues `command` behind everything queued before it and returns a future for its
    /// result, without waiting for it. Callers that must keep their own writes in order
    /// (health reports) enqueue one after another and await the results elsewhere.
    pub async fn enqueue(
        &self,
        command: Command,
    ) -> Result<impl Future<Output = Result<u64, WriteError>> + Send + 'static, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                command,
                reply,
                submitted: Instant::now(),
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        Ok(async move { answer.await.map_err(|_| WriteError::ShuttingDown)? })
    }
}

/// Owns the writer task: closing it refuses new writes, makes every queued write durable, and
/// drops the store (closing its file) before returning.
pub struct WriterTaskHandle {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl WriterTaskHandle {
    /// Stops the writer after draining its queue; later `submit`s get
    /// [`WriteError::ShuttingDown`].
    pub async fn close(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "writer task ended abnormally");
        }
    }
}

struct WriterTask {
    store: Arc<dyn Store>,
    snapshots: Arc<Snapshots>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    receiver: mpsc::Receiver<Pending>,
    /// Lowest index the next write may reuse minus one. A failed commit may still have reached
    /// the disk (an fsync error is ambiguous), so its indexes are never handed out again.
    floor: u64,
    /// Whether the last commit succeeded, shared with every [`Writer`] for `/ready`.
    healthy: Arc<AtomicBool>,
    /// Write outcomes and the published snapshot's sizes.
    metrics: CatalogMetrics,
}

/// A batch applied to a catalog copy, waiting for (or undergoing) its store commit.
struct Prepared {
    /// The catalog after the batch.
    catalog: Arc<Catalog>,
    touched: BTreeSet<Touched>,
    events: Vec<Event>,
    /// The accepted commands with their replies, kept so the batch can be applied again if
    /// the batch before it fails (it was built on that batch's catalog).
    accepted: Vec<Pending>,
}

/// A batch whose store commit runs on a blocking thread.
struct InFlight {
    commit: JoinHandle<Result<(), String>>,
    batch: Prepared,
}

impl WriterTask {
    /// The writer loop, pipelined one batch deep: while batch N is being made durable, the
    /// next commands are applied on top of N's catalog as batch N+1, which is committed the
    /// moment N is. Commits stay strictly ordered; only the CPU work of applying overlaps the
    /// fsync (the serial section, not the disk, bounded registrations per second: see
    /// docs/BENCHMARKS.md).
    async fn run(mut self, stop: CancellationToken) {
        let mut received = Vec::with_capacity(256);
        let mut in_flight: Option<InFlight> = None;
        let mut prepared: Option<Prepared> = None;
        let mut queue_open = true;
        loop {
            if in_flight.is_none()
                && let Some(batch) = prepared.take()
            {
                in_flight = self.start_commit(batch);
            }
            let can_receive = queue_open && prepared.is_none();
            if in_flight.is_none() && !can_receive {
                break;
            }
            tokio::select! {
                result = async {
                    match in_flight.as_mut() {
                        Some(flight) => (&mut flight.commit).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(flight) = in_flight.take() else { continue };
                    let result = result.unwrap_or_else(|join| Err(format!("store commit task failed: {join}")));
                    let failed = result.is_err();
                    self.finish(flight.batch, result);
                    if failed && let Some(next) = prepared.take() {
                        // It was built on the batch that just failed: apply it again on what
                        // is actually durable.
                        prepared = self.prepare(next.accepted, None);
                    }
                }
                count = self.receiver.recv_many(&mut received, MAX_BATCH), if can_receive => {
                    if count == 0 {
                        queue_open = false;
                        continue;
                    }
                    let base = in_flight.as_ref().map(|flight| Arc::clone(&flight.batch.catalog));
                    prepared = self.prepare(std::mem::take(&mut received), base);
                }
                () = stop.cancelled(), if queue_open && !self.receiver.is_closed() => {
                    // Refuse new writes, then finish every write already queued.
                    self.receiver.close();
                }
            }
        }
        tracing::debug!("writer stopped; the store is closed");
    }

    /// Applies `batch` on `base` (the in-flight batch's catalog) or on the published catalog.
    /// Refused commands are answered at once; `None` when nothing was accepted.
    fn prepare(&self, batch: Vec<Pending>, base: Option<Arc<Catalog>>) -> Option<Prepared> {
        let base = base.unwrap_or_else(|| self.snapshots.load());
        let mut next = Catalog::clone(&base);
        let mut touched = BTreeSet::new();
        let mut events = Vec::new();
        let mut accepted = Vec::with_capacity(batch.len());
        for pending in batch {
            match next.apply(next.index().max(self.floor) + 1, &pending.command) {
                Ok(outcome) => {
                    touched.extend(outcome.touched);
                    events.extend(outcome.events);
                    accepted.push(pending);
                }
                Err(error) => {
                    self.metrics.wrote("rejected", 1);
                    let _ = pending.reply.send(Err(WriteError::Rejected(error)));
                }
            }
        }
        (!accepted.is_empty()).then(|| Prepared {
            catalog: Arc::new(next),
            touched,
            events,
            accepted,
        })
    }

    /// Starts making `batch` durable. A batch that changed nothing needs no commit: it is
    /// answered now (everything before it is durable, or it would still be in flight).
    fn start_commit(&mut self, batch: Prepared) -> Option<InFlight> {
        if batch.touched.is_empty() {
            let index = batch.catalog.index();
            self.metrics.wrote("ok", batch.accepted.len());
            for pending in batch.accepted {
                let _ = pending.reply.send(Ok(index));
            }
            return None;
        }
        let rows = batch.catalog.rows_for(&batch.touched);
        let index = batch.catalog.index();
        let store = Arc::clone(&self.store);
        let commit = tokio::task::spawn_blocking(move || {
            store
                .commit(index, &rows)
                .map_err(|error| error.to_string())
        });
        Some(InFlight { commit, batch })
    }

    /// Publishes a durable batch, or fails it, and answers its writers.
    fn finish(&mut self, batch: Prepared, result: Result<(), String>) {
        let index = batch.catalog.index();
        self.healthy.store(result.is_ok(), Ordering::Release);
        let reply = match result {
            Ok(()) => {
                // Subscribers first (renderings, check runners), then the swap that wakes
                // blocking readers: whoever is woken finds every derived view already current.
                publish(
                    &self.subscribers,
                    &self.snapshots,
                    &self.metrics,
                    &Published {
                        catalog: &batch.catalog,
                        touched: &batch.touched,
                        events: &batch.events,
                    },
                );
                self.metrics.wrote("ok", batch.accepted.len());
                for pending in &batch.accepted {
                    self.metrics.propagated(pending.submitted.elapsed());
                }
                Ok(index)
            }
            Err(error) => {
                self.floor = self.floor.max(index);
                tracing::error!(%error, commands = batch.accepted.len(), "batch not written; catalog unchanged");
                self.metrics.wrote("failed", batch.accepted.len());
                Err(WriteError::Store(error))
            }
        };
        for pending in batch.accepted {
            let _ = pending.reply.send(reply.clone());
        }
    }
}

/// Hands a durable batch to every subscriber, then swaps it in for readers: whoever is woken
/// finds every derived view already current.
fn publish(
    subscribers: &[Arc<dyn Subscriber>],
    snapshots: &Snapshots,
    metrics: &CatalogMetrics,
    change: &Published<'_>,
) {
    for subscriber in subscribers {
        subscriber.published(change);
    }
    snapshots.publish(Arc::clone(change.catalog), change.touched);
    metrics.published(change.catalog);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use wayfinder_catalog::{Instance, InstanceId, Registration, Rows, ServiceName};
    use wayfinder_store::{EmbeddedStore, StoreError, Stored};

    /// The real embedded store, counting commits and failing them on demand (fault injection:
    /// an fsync error is the one failure a disk can hand the writer).
    struct CountingStore {
        inner: EmbeddedStore,
        commits: AtomicUsize,
        fail: AtomicBool,
        /// Makes each commit take this long, so a test can line batches up behind it.
        delay_ms: std::sync::atomic::AtomicU64,
    }

    impl Store for CountingStore {
        fn load(&self) -> Result<Stored, StoreError> {
            self.inner.load()
        }

        fn commit(&self, index: u64, rows: &Rows) -> Result<(), StoreError> {
            // Decided when the commit starts, like a disk that is already failing.
            let fail = self.fail.load(Ordering::SeqCst);
            let delay = self.delay_ms.load(Ordering::SeqCst);
            self.commits.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(delay));
            if fail {
                // Simulate the ambiguous case: the data reached the disk, then fsync failed.
                self.inner.commit(index, rows)?;
                return Err(StoreError::Storage {
                    path: self.inner.path().to_path_buf(),
                    action: "commit",
                    source: "injected fsync failure".into(),
                });
            }
            self.inner.commit(index, rows)
        }
    }

    fn register(id: &str) -> Command {
        let instance = Instance {
            address: "127.0.0.1".into(),
            port: 80,
            ..Instance::new(
                InstanceId::new(id, "ID").expect("valid id"),
                ServiceName::new("web", "Name").expect("valid name"),
            )
        };
        Command::Register(Box::new(Registration {
            instance,
            checks: Vec::new(),
            replace_existing_checks: false,
        }))
    }

    fn start() -> (
        tempfile::TempDir,
        Arc<CountingStore>,
        Arc<Snapshots>,
        Writer,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = EmbeddedStore::open(dir.path()).expect("open store");
        let catalog = inner.load().expect("load").into_catalog();
        let store = Arc::new(CountingStore {
            inner,
            commits: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
        });
        let snapshots = Arc::new(Snapshots::new(catalog));
        let dyn_store: Arc<dyn Store> = store.clone();
        let (writer, _task) = Writer::spawn(
            dyn_store,
            Arc::clone(&snapshots),
            Vec::new(),
            CatalogMetrics::default(),
        );
        (dir, store, snapshots, writer)
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_are_all_visible() {
        let (_dir, store, snapshots, writer) = start();
        let writes = (0..200).map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.submit(register(&format!("web-{i}"))).await })
        });
        for write in futures::future::join_all(writes).await {
            write.expect("task").expect("write");
        }
        assert_eq!(snapshots.load().instance_count(), 200);
        let commits = store.commits.load(Ordering::SeqCst);
        assert!(
            commits < 200,
            "group commit should batch writes, got {commits} commits"
        );
    }

    #[tokio::test]
    async fn a_refused_command_does_not_spoil_its_batch() {
        let (_dir, _store, snapshots, writer) = start();
        let bad = writer.submit(Command::Deregister(
            InstanceId::new("nobody", "ID").expect("id"),
        ));
        let good = writer.submit(register("web-1"));
        let (bad, good) = tokio::join!(bad, good);
        assert!(matches!(
            bad,
            Err(WriteError::Rejected(CatalogError::UnknownInstance(_)))
        ));
        assert!(good.is_ok());
        assert_eq!(snapshots.load().instance_count(), 1);
    }

    #[tokio::test]
    async fn a_failed_commit_publishes_nothing_and_its_indexes_are_not_reused() {
        let (_dir, store, snapshots, writer) = start();
        let first = writer.submit(register("web-1")).await.expect("first write");
        store.fail.store(true, Ordering::SeqCst);
        let failed = writer.submit(register("web-2")).await;
        assert!(matches!(failed, Err(WriteError::Store(_))));
        assert_eq!(
            snapshots.load().instance_count(),
            1,
            "a failed batch must not be visible"
        );
        store.fail.store(false, Ordering::SeqCst);
        let third = writer
            .submit(register("web-3"))
            .await
            .expect("writes resume after a failure");
        assert!(
            third > first + 1,
            "index {third} reuses the failed batch's index"
        );
        assert!(snapshots.load().instance("web-3").is_some());
    }

    #[tokio::test]
    async fn an_unchanged_registration_writes_nothing() {
        let (_dir, store, _snapshots, writer) = start();
        let first = writer.submit(register("web-1")).await.expect("write");
        let commits = store.commits.load(Ordering::SeqCst);
        let again = writer.submit(register("web-1")).await.expect("no-op write");
        assert_eq!(again, first);
        assert_eq!(store.commits.load(Ordering::SeqCst), commits);
    }

    #[tokio::test]
    async fn a_batch_prepared_on_a_failed_commit_is_applied_again_on_what_is_durable() {
        let (_dir, store, snapshots, writer) = start();
        let base = writer.submit(register("web-0")).await.expect("first write");
        store.fail.store(true, Ordering::SeqCst);
        store.delay_ms.store(200, Ordering::SeqCst);
        let failing = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.submit(register("web-1")).await })
        };
        // Wait until web-1's commit is under way, then queue web-2 behind it: it is applied on
        // top of web-1's (doomed) catalog while web-1 is being written.
        while store.commits.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        store.fail.store(false, Ordering::SeqCst);
        store.delay_ms.store(0, Ordering::SeqCst);
        let next = writer
            .submit(register("web-2"))
            .await
            .expect("web-2 is written");
        let failed = failing.await.expect("task");
        assert!(matches!(failed, Err(WriteError::Store(_))), "{failed:?}");
        let catalog = snapshots.load();
        assert!(
            catalog.instance("web-1").is_none(),
            "the failed batch must not be visible"
        );
        assert!(catalog.instance("web-2").is_some());
        assert!(
            next > base + 1,
            "web-2 must not reuse the failed batch's index"
        );
    }

    #[tokio::test]
    async fn writes_queued_during_a_commit_are_pipelined_in_order() {
        let (_dir, store, snapshots, writer) = start();
        store.delay_ms.store(50, Ordering::SeqCst);
        let first = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.submit(register("web-1")).await })
        };
        while store.commits.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Deregistering web-1 is only valid on top of the in-flight registration.
        let second = writer
            .submit(Command::Deregister(
                InstanceId::new("web-1", "ID").expect("id"),
            ))
            .await
            .expect("applied on the in-flight catalog");
        let first = first.await.expect("task").expect("first write");
        assert!(second > first);
        assert!(snapshots.load().instance("web-1").is_none());
    }
}
