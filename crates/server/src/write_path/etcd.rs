//! The write path on a shared etcd store (`--store etcd://…`): many agents, one catalog.
//!
//! ```text
//! Writer::submit ─► etcd writer: Catalog::apply on the local view (validate) ─► rows
//!                   ─► one etcd txn, guarded: "no touched key changed after my view"
//!                   ─► wait until the follower has applied that revision ─► reply
//! etcd watch ─► follower: Catalog::apply_rows at each revision ─► subscribers ─► publish
//! ```
//!
//! The follower is the only task that publishes: every write, this agent's included, reaches
//! the catalog through etcd's ordered change stream, at the revision etcd gave it (the
//! revision is the catalog index). A write is acknowledged only once it is committed *and*
//! visible in this agent's catalog, so a client reads its own writes through the same agent.
//!
//! Concurrency between agents: a batch is validated on this agent's view at index `base`, and
//! its transaction compares every key it writes (instances, checks, service rows) against
//! `base`: if another agent changed one of them since, nothing is written, the writer waits
//! for the change to arrive and validates again. Because a deregistration deletes the
//! instance's check rows and a check write touches its service row, a check write racing the
//! deregistration of its instance conflicts instead of resurrecting a check. Not guarded: keys
//! the batch only *read* and did not write (e.g. registering a node-level check reads the
//! instance list to touch every service row, and a service row created concurrently for a new
//! service is not among the compared keys); such a write is still applied consistently
//! everywhere, only its touched-service list may miss the new service.

use super::{
    MAX_BATCH, Pending, Published, QUEUE_DEPTH, Subscriber, WriteError, Writer, WriterTaskHandle,
    publish,
};
use crate::metrics::CatalogMetrics;
use crate::snapshots::Snapshots;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::{Catalog, Event, Touched};
use wayfinder_store::{Change, Commit, EtcdStore};

/// Most keys one transaction writes: etcd refuses transactions of more than `--max-txn-ops`
/// (default 128) operations, and each key costs one compare and one operation.
const MAX_TXN_KEYS: usize = 128;
/// Attempts at one batch, over conflicts with other agents and failed requests (a dead etcd
/// member fails a request fast; the client tries another on the next one).
const MAX_ATTEMPTS: usize = 8;
/// Pause before retrying a failed request or re-creating a broken watch.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long a committed write may take to come back through the watch before the writer
/// gives up waiting and says so (the write stays committed).
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for a conflicting change to reach the local catalog before it
/// validates again anyway.
const CATCH_UP: Duration = Duration::from_secs(1);

impl Writer {
    /// Starts the writer and the follower over the shared `store`, from the catalog in
    /// `snapshots` (loaded from `store` at revision `snapshots.load().index()`).
    pub fn spawn_etcd(
        store: EtcdStore,
        snapshots: Arc<Snapshots>,
        subscribers: Vec<Arc<dyn Subscriber>>,
        metrics: CatalogMetrics,
    ) -> (Writer, WriterTaskHandle) {
        metrics.published(&snapshots.load());
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let healthy = Arc::new(AtomicBool::new(true));
        let stale = Arc::new(AtomicBool::new(false));
        let follower = tokio::spawn(
            Follower {
                store: store.clone(),
                snapshots: Arc::clone(&snapshots),
                subscribers,
                metrics: metrics.clone(),
                stale: Arc::clone(&stale),
            }
            .run(),
        );
        let writer = EtcdWriter {
            store,
            snapshots,
            receiver,
            healthy: Arc::clone(&healthy),
            stale: Arc::clone(&stale),
            metrics,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(writer.run(stop.clone(), follower));
        let writer = Writer {
            queue,
            healthy,
            stale,
        };
        (writer, WriterTaskHandle { task, stop })
    }
}

struct EtcdWriter {
    store: EtcdStore,
    snapshots: Arc<Snapshots>,
    receiver: mpsc::Receiver<Pending>,
    healthy: Arc<AtomicBool>,
    /// Set by the follower while it has no watch on etcd: writes are then refused at once.
    stale: Arc<AtomicBool>,
    metrics: CatalogMetrics,
}

/// Commands applied to the local view, ready to become one transaction.
struct Batch {
    catalog: Catalog,
    touched: BTreeSet<Touched>,
    accepted: Vec<Pending>,
}

impl EtcdWriter {
    /// Writes batch after batch until the queue closes, then stops the follower.
    async fn run(mut self, stop: CancellationToken, follower: JoinHandle<()>) {
        let mut waiting: VecDeque<Pending> = VecDeque::new();
        let mut received = Vec::with_capacity(256);
        loop {
            if waiting.is_empty() {
                tokio::select! {
                    count = self.receiver.recv_many(&mut received, MAX_BATCH) => {
                        if count == 0 {
                            break;
                        }
                        waiting.extend(received.drain(..));
                    }
                    () = stop.cancelled(), if !self.receiver.is_closed() => {
                        self.receiver.close();
                        continue;
                    }
                }
            }
            self.write_next(&mut waiting).await;
        }
        follower.abort();
        tracing::debug!("etcd writer stopped");
    }

    /// Writes the next batch from `waiting` (as many commands as fit one transaction),
    /// retrying on conflicts and failed requests, and answers its commands.
    async fn write_next(&mut self, waiting: &mut VecDeque<Pending>) {
        for attempt in 1..=MAX_ATTEMPTS {
            if self.stale.load(Ordering::Acquire) {
                let refused: Vec<Pending> = waiting.drain(..).collect();
                let error = "this agent has lost etcd and serves its last catalog read-only";
                self.answer(refused, Err(WriteError::Unavailable(error.to_owned())));
                return;
            }
            let base = self.snapshots.load();
            let Some(batch) = self.prepare(&base, waiting) else {
                return;
            };
            if batch.touched.is_empty() {
                self.answer(batch.accepted, Ok(base.index()));
                return;
            }
            let rows = batch
                .catalog
                .rows_for(&batch.touched)
                .mark_new(base.index());
            let last = attempt == MAX_ATTEMPTS;
            match self.store.commit(base.index(), &rows).await {
                Ok(Commit::Written(revision)) => {
                    self.healthy.store(true, Ordering::Release);
                    let reply = self.applied(revision).await.map(|()| revision);
                    self.answer(batch.accepted, reply);
                    return;
                }
                Ok(Commit::Conflict(_)) if !last => {
                    tracing::debug!(attempt, "keys changed by another agent; validating again");
                    self.catch_up(base.index()).await;
                }
                Ok(Commit::Conflict(_)) => {
                    let error = "other agents kept changing the same keys".to_owned();
                    self.answer(batch.accepted, Err(WriteError::Unavailable(error)));
                    return;
                }
                Err(error) if !last => {
                    // Safe to retry: if the failed attempt was in fact committed, the retry
                    // conflicts, and validating again finds the write already applied.
                    tracing::debug!(%error, attempt, "etcd commit failed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(error) => {
                    self.healthy.store(false, Ordering::Release);
                    tracing::warn!(%error, "etcd commit failed; write refused");
                    let error = WriteError::Unavailable(error.to_string());
                    self.answer(batch.accepted, Err(error));
                    return;
                }
            }
            // Back in line, in order, to be validated again on the newer view.
            for pending in batch.accepted.into_iter().rev() {
                waiting.push_front(pending);
            }
        }
    }

    /// Applies commands from the front of `waiting` to a copy of `base` until the next one
    /// would make the transaction too big. Refused commands are answered at once.
    fn prepare(&self, base: &Catalog, waiting: &mut VecDeque<Pending>) -> Option<Batch> {
        let mut catalog = base.clone();
        let mut touched = BTreeSet::new();
        let mut accepted = Vec::new();
        while let Some(pending) = waiting.pop_front() {
            let before = catalog.clone();
            match catalog.apply(catalog.index() + 1, &pending.command) {
                Ok(outcome) => {
                    let mut grown = touched.clone();
                    grown.extend(outcome.touched);
                    if grown.len() > MAX_TXN_KEYS && !accepted.is_empty() {
                        catalog = before;
                        waiting.push_front(pending);
                        break;
                    }
                    touched = grown;
                    accepted.push(pending);
                }
                Err(error) => {
                    self.metrics.wrote("rejected", 1);
                    let _ = pending.reply.send(Err(WriteError::Rejected(error)));
                }
            }
        }
        (!accepted.is_empty()).then_some(Batch {
            catalog,
            touched,
            accepted,
        })
    }

    /// Waits until the follower has applied `revision` (this agent's own write).
    async fn applied(&self, revision: u64) -> Result<(), WriteError> {
        let mut index = self.snapshots.subscribe();
        match tokio::time::timeout(APPLY_TIMEOUT, index.wait_for(|i| *i >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WriteError::Unavailable(format!(
                "the write was committed at index {revision} but has not reached this agent's \
                 catalog within {APPLY_TIMEOUT:?}"
            ))),
        }
    }

    /// Waits (briefly) until the catalog moves past `base`: the change that made a
    /// transaction conflict is on its way through the watch.
    async fn catch_up(&self, base: u64) {
        let mut index = self.snapshots.subscribe();
        let _ = tokio::time::timeout(CATCH_UP, index.wait_for(|i| *i > base)).await;
    }

    fn answer(&self, accepted: Vec<Pending>, reply: Result<u64, WriteError>) {
        let outcome = match &reply {
            Ok(_) => "ok",
            Err(_) => "failed",
        };
        self.metrics.wrote(outcome, accepted.len());
        for pending in accepted {
            let _ = pending.reply.send(reply.clone());
        }
    }
}

/// Applies etcd's ordered change stream to the local catalog: the only publisher in etcd mode.
struct Follower {
    store: EtcdStore,
    snapshots: Arc<Snapshots>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    metrics: CatalogMetrics,
    /// Shared with the writer and the API: set while there is no watch on etcd.
    stale: Arc<AtomicBool>,
}

impl Follower {
    /// Watches from the catalog's index on, re-creating the watch whenever its stream dies
    /// (its etcd member died: the client then connects to another).
    async fn run(self) {
        loop {
            let from = self.snapshots.load().index() + 1;
            match self.store.watch(from).await {
                Ok(mut changes) => {
                    self.set_stale(false);
                    self.follow(&mut changes, from).await;
                }
                Err(error) => {
                    if !self.stale.load(Ordering::Acquire) {
                        tracing::warn!(%error, "lost etcd: serving the last catalog read-only");
                    }
                    self.set_stale(true);
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    /// Applies one watch stream until it ends or breaks.
    async fn follow(&self, changes: &mut wayfinder_store::Changes, from: u64) {
        loop {
            match changes.next().await {
                Ok(Some(batch)) => {
                    for change in batch {
                        match change {
                            Change::Rows(revision, rows) => self.apply(revision, &rows),
                            Change::Compacted(revision) => {
                                tracing::warn!(
                                    revision,
                                    from,
                                    "etcd compacted past this agent's catalog; reading it all again"
                                );
                                if let Err(error) = self.resync().await {
                                    tracing::warn!(%error, "full resync failed; retrying");
                                }
                                return;
                            }
                        }
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "etcd watch broke; re-creating it");
                    return;
                }
            }
        }
    }

    /// Reads the whole catalog again and applies the difference as one write at the read's
    /// revision, which is above everything applied so far: no index goes backwards, and
    /// every consumer hears of what changed through the usual events.
    async fn resync(&self) -> Result<(), wayfinder_store::StoreError> {
        let stored = self.store.load().await?;
        let current = self.snapshots.load();
        let mut rows = wayfinder_catalog::Rows::default();
        // Everything held now is deleted unless the store still has it.
        for view in current.all_instances() {
            rows.instances.insert(view.instance.id.clone(), None);
        }
        for check in current.checks() {
            rows.checks.insert(check.id.clone(), None);
        }
        for instance in stored.instances {
            rows.instances
                .insert(instance.id.clone(), Some(Arc::new(instance)));
        }
        for check in stored.checks {
            rows.checks.insert(check.id.clone(), Some(Arc::new(check)));
        }
        for (name, _) in current.service_indexes() {
            rows.services.insert(name.clone(), stored.index);
        }
        for (name, _) in stored.service_indexes {
            rows.services.insert(name, stored.index);
        }
        self.apply(stored.index, &rows);
        Ok(())
    }

    fn set_stale(&self, stale: bool) {
        let was = self.stale.swap(stale, Ordering::AcqRel);
        self.metrics.stale.set(i64::from(stale));
        if was && !stale {
            tracing::info!("etcd is back: catching up and accepting writes again");
        }
    }

    /// Applies the rows etcd wrote at `revision` and publishes the result.
    fn apply(&self, revision: u64, rows: &wayfinder_catalog::Rows) {
        let current = self.snapshots.load();
        if revision <= current.index() {
            return;
        }
        let mut next = Catalog::clone(&current);
        match next.apply_rows(revision, rows) {
            Ok(outcome) => {
                let touched: BTreeSet<Touched> = outcome.touched.into_iter().collect();
                let events: Vec<Event> = outcome.events;
                publish(
                    &self.subscribers,
                    &self.snapshots,
                    &self.metrics,
                    &Published {
                        catalog: &Arc::new(next),
                        touched: &touched,
                        events: &events,
                    },
                );
            }
            Err(error) => tracing::error!(%error, revision, "etcd rows not applied"),
        }
    }
}
