//! The one path every write takes (DESIGN.md, "One path for every write"):
//!
//! ```text
//! Writer::submit(Command) ─► writer task: Catalog::apply (validate, index, events)
//!                             ─► Store::commit (fsync, once per batch: group commit)
//!                             ─► Snapshots::publish (one pointer swap) ─► subscribers
//!                             ─► reply to every submitter in the batch
//! ```
//!
//! The writer task owns the only mutable catalog. It drains every command waiting in its queue
//! into one batch, applies them in order to a copy of the published catalog (an O(1) clone),
//! and makes the whole batch durable with one store commit. Only then does it swap the new
//! catalog in and acknowledge the writers, so no reader ever sees a write that could still be
//! lost, and 64 concurrent registrations cost one fsync, not 64. A refused command is answered
//! at once and never reaches the store.

use crate::snapshots::Snapshots;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wayfinder_catalog::{Catalog, CatalogError, Command, Event, Touched};
use wayfinder_store::Store;

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
}

/// A handle for submitting writes. Cheap to clone; the writer task stops when every handle is
/// dropped, after finishing what was queued.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer task over `store`, publishing into `snapshots`.
    pub fn spawn(
        store: Arc<dyn Store>,
        snapshots: Arc<Snapshots>,
        subscribers: Vec<Arc<dyn Subscriber>>,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let task = WriterTask {
            store,
            snapshots,
            subscribers,
            receiver,
        };
        let handle = tokio::spawn(task.run());
        (Writer { queue }, handle)
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
            .send(Pending { command, reply })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        Ok(async move { answer.await.map_err(|_| WriteError::ShuttingDown)? })
    }
}

struct WriterTask {
    store: Arc<dyn Store>,
    snapshots: Arc<Snapshots>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    receiver: mpsc::Receiver<Pending>,
}

impl WriterTask {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(256);
        while self.receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.write_batch(std::mem::take(&mut batch)).await;
        }
        tracing::debug!("writer stopped: every handle is gone");
    }

    async fn write_batch(&self, batch: Vec<Pending>) {
        let mut next = Catalog::clone(&self.snapshots.load());
        let mut touched = BTreeSet::new();
        let mut events = Vec::new();
        let mut accepted = Vec::with_capacity(batch.len());
        for Pending { command, reply } in batch {
            match next.apply(next.index() + 1, &command) {
                Ok(outcome) => {
                    touched.extend(outcome.touched);
                    events.extend(outcome.events);
                    accepted.push(reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(WriteError::Rejected(error)));
                }
            }
        }
        let index = next.index();
        if touched.is_empty() {
            for reply in accepted {
                let _ = reply.send(Ok(index));
            }
            return;
        }
        let rows = next.rows_for(&touched);
        let store = Arc::clone(&self.store);
        let committed = tokio::task::spawn_blocking(move || store.commit(index, &rows)).await;
        let result = match committed {
            Ok(Ok(())) => Ok(index),
            Ok(Err(error)) => Err(WriteError::Store(error.to_string())),
            Err(join) => Err(WriteError::Store(format!(
                "store commit task failed: {join}"
            ))),
        };
        if let Err(error) = &result {
            tracing::error!(%error, commands = accepted.len(), "batch not written; catalog unchanged");
        } else {
            let catalog = Arc::new(next);
            self.snapshots.publish(Arc::clone(&catalog));
            let change = Published {
                catalog: &catalog,
                touched: &touched,
                events: &events,
            };
            for subscriber in &self.subscribers {
                subscriber.published(&change);
            }
        }
        for reply in accepted {
            let _ = reply.send(result.clone());
        }
    }
}
