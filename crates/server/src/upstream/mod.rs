//! `--upstream-consul`: mirror an existing Consul's catalog, read-only, and serve it through
//! every interface (Consul API, `/v1/endpoints`, watches) as if it were registered here.
//!
//! ```text
//!  catalog loop (one)        GET /v1/catalog/services?index=&wait=       ──┐
//!  service loops (one each)  GET /v1/health/service/{name}?index=&wait=  ──┤ changed answers
//!                                                                          ▼
//!        mirror task: UpstreamView ─► reconcile::plan (pure) ─► Writer (the one write path)
//! ```
//!
//! Every loop is a chain of blocking queries (no polling: each request waits upstream until
//! something changes); a loop hands each changed answer to the one mirror task, which keeps the
//! upstream view, plans the commands against the published catalog and submits them through
//! the one write path, like any other write (DESIGN.md). Mirrored instances carry
//! `Source::Upstream` and their checks `CheckKind::Mirrored`, so the health scheduler leaves
//! them alone and nothing else can be confused with them.
//!
//! What this module deliberately does not do: accept writes (the API refuses them with the
//! reason from [`read_only_reason`]), mirror other datacenters, node metadata, KV or ACL tokens.
//!
//! Failure handling: an unreachable upstream keeps the last mirrored view serving (nothing is
//! removed for lack of an answer), is logged once per outage (warn when it starts, info when it
//! ends), and every loop retries with jittered back-off up to 30 s. A malformed answer is logged
//! and retried the same way; an entry that cannot be mirrored is logged once and left out.

pub mod client;
pub mod reconcile;

pub use client::{UpstreamClient, UpstreamError};
pub use wayfinder_client::blocking::DEFAULT_WAIT;

use crate::snapshots::Snapshots;
use crate::write_path::{WriteError, Writer};
use client::{Answer, BACKOFF_BASE, BACKOFF_MAX, FetchError};
use reconcile::{UpstreamView, plan};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wayfinder_catalog::{CatalogError, Command, ServiceName};
use wayfinder_client::blocking::{Backoff, IndexCursor, Progress, unchanged_pause};
use wayfinder_client::model::HealthEntry;

/// Answers from the loops that may wait for the mirror task.
const UPDATE_QUEUE: usize = 1024;
/// How soon a plan whose writes failed (the store, not the plan) is tried again.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Why this agent refuses writes while it mirrors `upstream`, as the API's 403 says it.
pub fn read_only_reason(upstream: &str) -> String {
    format!(
        "this agent mirrors the upstream Consul at {upstream} and is read-only; register \
         services there"
    )
}

/// The running mirror: its task and the loops it owns. Stop it with [`Mirror::shutdown`]
/// before the writer closes.
pub struct Mirror {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Starts mirroring through `client` into the catalog behind `writer`. `on_first_sync`
    /// runs once, after the service list and every listed service's instances have been
    /// fetched and written: from then on the local catalog answers for the upstream.
    pub fn spawn(
        client: UpstreamClient,
        writer: Writer,
        snapshots: Arc<Snapshots>,
        on_first_sync: impl FnOnce() + Send + 'static,
    ) -> Mirror {
        let stop = CancellationToken::new();
        let (updates_tx, updates) = mpsc::channel(UPDATE_QUEUE);
        let span = tracing::info_span!("upstream_mirror", upstream = %client.base_url());
        let outage = Arc::new(Outage::default());
        let task = MirrorTask {
            client,
            writer,
            snapshots,
            outage,
            updates_tx,
            updates,
            view: UpstreamView::default(),
            loops: BTreeMap::new(),
            synced: BTreeSet::new(),
            on_first_sync: Some(Box::new(on_first_sync)),
            warned: BTreeSet::new(),
            retry: None,
            stop: stop.clone(),
        };
        let task = tokio::spawn(task.run().instrument(span));
        Mirror { stop, task }
    }

    /// Stops every loop and the mirror task; the mirrored instances stay in the catalog (and
    /// are reconciled by the next start's first sync).
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "upstream mirror task ended abnormally");
        }
    }
}

/// What a loop hands the mirror task.
enum Update {
    /// The upstream's service names (a changed answer of the catalog loop).
    Listed(BTreeSet<String>),
    /// One service's instances (a changed answer of its loop).
    Health {
        service: String,
        entries: Vec<Result<HealthEntry, String>>,
    },
}

/// Whether the upstream is in an outage, shared by every loop so that an outage is logged
/// once, not once per loop and retry.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
}

impl Outage {
    fn failed(&self, error: &FetchError) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                %error,
                "upstream Consul unreachable; serving the last mirrored view and retrying"
            );
        }
    }

    fn answered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("upstream Consul reachable again; mirroring resumes");
        }
    }
}

struct ServiceLoop {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct MirrorTask {
    client: UpstreamClient,
    writer: Writer,
    snapshots: Arc<Snapshots>,
    outage: Arc<Outage>,
    updates_tx: mpsc::Sender<Update>,
    updates: mpsc::Receiver<Update>,
    view: UpstreamView,
    loops: BTreeMap<String, ServiceLoop>,
    /// Services whose first answer has been written.
    synced: BTreeSet<String>,
    on_first_sync: Option<Box<dyn FnOnce() + Send>>,
    /// Problems already logged (entries that cannot be mirrored, names that are not labels),
    /// so they are logged once, not on every answer.
    warned: BTreeSet<String>,
    /// A round whose plan could not be written, to be planned again.
    retry: Option<Round>,
    stop: CancellationToken,
}

/// What one round of updates changed in the view.
#[derive(Debug, Default)]
struct Round {
    /// Services whose instances changed, or that are gone.
    touched: BTreeSet<String>,
    /// Services that answered (changed or not).
    fetched: BTreeSet<String>,
    /// Whether the service list changed (the first listing also removes what the upstream
    /// lost while this agent was down).
    relisted: bool,
}

impl Round {
    fn merge(&mut self, other: Round) {
        self.touched.extend(other.touched);
        self.fetched.extend(other.fetched);
        self.relisted |= other.relisted;
    }
}

impl MirrorTask {
    async fn run(mut self) {
        tracing::info!("mirroring the upstream Consul (read-only)");
        let catalog_loop = {
            let client = self.client.clone();
            let updates = self.updates_tx.clone();
            tokio::spawn(
                follow(
                    self.stop.child_token(),
                    Arc::clone(&self.outage),
                    updates,
                    move |index| {
                        let client = client.clone();
                        async move { client.service_names(index).await }
                    },
                    Update::Listed,
                )
                .instrument(tracing::info_span!("catalog_watch")),
            )
        };
        loop {
            let retry_pending = self.retry.is_some();
            let first = tokio::select! {
                () = self.stop.cancelled() => break,
                update = self.updates.recv() => match update {
                    Some(update) => Some(update),
                    None => break,
                },
                () = tokio::time::sleep(WRITE_RETRY), if retry_pending => None,
            };
            let mut round = self.retry.take().unwrap_or_default();
            // Fold in everything already waiting: a burst of changes costs one plan and one
            // group commit.
            let mut next = first;
            loop {
                if let Some(update) = next {
                    self.take(update, &mut round);
                }
                match self.updates.try_recv() {
                    Ok(update) => next = Some(update),
                    Err(_) => break,
                }
            }
            if !self.sync(round).await {
                break;
            }
        }
        self.updates.close();
        self.stop.cancel();
        let mut tasks = vec![catalog_loop];
        tasks.extend(
            std::mem::take(&mut self.loops)
                .into_values()
                .map(|l| l.task),
        );
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("upstream mirror stopped");
    }

    /// Applies one update to the view, starting and stopping service loops as the list
    /// changes.
    fn take(&mut self, update: Update, round: &mut Round) {
        match update {
            Update::Listed(names) => {
                let mut mirrored = BTreeSet::new();
                for name in names {
                    match ServiceName::new(&name, "Service") {
                        Ok(_) => {
                            mirrored.insert(name);
                        }
                        Err(error) => self.warn_once(
                            format!("name:{name}"),
                            &format!("upstream service {name:?} is not mirrored: {error}"),
                        ),
                    }
                }
                let gone: Vec<String> = self
                    .loops
                    .keys()
                    .filter(|name| !mirrored.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    if let Some(service_loop) = self.loops.remove(&name) {
                        service_loop.stop.cancel();
                    }
                    self.synced.remove(&name);
                    tracing::info!(service = %name, "upstream service gone; removing its instances");
                }
                let new: Vec<String> = mirrored
                    .iter()
                    .filter(|name| !self.loops.contains_key(*name))
                    .cloned()
                    .collect();
                for name in new {
                    self.start_loop(name);
                }
                round.relisted |= self.view.listed() != Some(&mirrored);
                round.touched.extend(self.view.set_listed(mirrored));
            }
            Update::Health { service, entries } => {
                if !self.loops.contains_key(&service) {
                    return; // stopped since; its instances are being removed
                }
                let mut good = Vec::with_capacity(entries.len());
                for entry in entries {
                    match entry {
                        Ok(entry) => good.push(entry),
                        Err(reason) => self.warn_once(
                            format!("decode:{service}:{reason}"),
                            &format!(
                                "an upstream instance of {service:?} is not mirrored: it does \
                                 not decode ({reason})"
                            ),
                        ),
                    }
                }
                if self.view.set_health(&service, good) {
                    round.touched.insert(service.clone());
                }
                round.fetched.insert(service);
            }
        }
    }

    fn start_loop(&mut self, service: String) {
        let stop = self.stop.child_token();
        let client = self.client.clone();
        let name = service.clone();
        let span = tracing::info_span!("service_watch", service = %service);
        let task = tokio::spawn(
            follow(
                stop.clone(),
                Arc::clone(&self.outage),
                self.updates_tx.clone(),
                move |index| {
                    let client = client.clone();
                    let name = name.clone();
                    async move { client.health(&name, index).await }
                },
                {
                    let service = service.clone();
                    move |entries| Update::Health {
                        service: service.clone(),
                        entries,
                    }
                },
            )
            .instrument(span),
        );
        self.loops.insert(service, ServiceLoop { stop, task });
    }

    /// Plans against the published catalog and writes the plan. Returns false when the agent
    /// is shutting down.
    async fn sync(&mut self, round: Round) -> bool {
        if round.touched.is_empty() && !round.relisted {
            // Answers that changed nothing (an index bumped by something we do not mirror).
            self.synced.extend(round.fetched);
            self.check_first_sync();
            return true;
        }
        let catalog = self.snapshots.load();
        let plan = plan(&self.view, &catalog, &round.touched);
        drop(catalog);
        for skipped in &plan.skipped {
            self.warn_once(
                format!("skip:{skipped:?}"),
                &format!(
                    "upstream instance {:?} of {:?} on node {:?} is not mirrored: {}",
                    skipped.upstream_id, skipped.service, skipped.node, skipped.reason
                ),
            );
        }
        let count = plan.commands.len();
        let mut written = true;
        let mut pending = Vec::with_capacity(count);
        for command in plan.commands {
            let what = describe(&command);
            match self.writer.enqueue(command).await {
                Ok(result) => pending.push((what, result)),
                Err(_) => return false,
            }
        }
        for (what, result) in pending {
            match result.await {
                Ok(_)
                | Err(WriteError::Rejected(
                    CatalogError::UnknownInstance(_) | CatalogError::UnknownCheck(_),
                )) => {}
                Err(WriteError::Rejected(error)) => {
                    tracing::warn!(%error, command = %what, "mirrored change refused by the catalog");
                }
                Err(WriteError::ShuttingDown) => return false,
                Err(error @ (WriteError::Store(_) | WriteError::Unavailable(_))) => {
                    tracing::warn!(%error, command = %what, "mirrored change not written; retrying");
                    written = false;
                }
            }
        }
        if !written {
            self.retry.get_or_insert_with(Round::default).merge(round);
            return true;
        }
        if count > 0 {
            tracing::debug!(commands = count, "mirrored upstream changes written");
        }
        self.synced.extend(round.fetched);
        self.check_first_sync();
        true
    }

    fn check_first_sync(&mut self) {
        let Some(listed) = self.view.listed() else {
            return;
        };
        if self.on_first_sync.is_none() || !listed.iter().all(|s| self.synced.contains(s)) {
            return;
        }
        if let Some(ready) = self.on_first_sync.take() {
            let catalog = self.snapshots.load();
            tracing::info!(
                services = listed.len(),
                instances = catalog.instance_count(),
                "first sync with the upstream complete; ready"
            );
            ready();
        }
    }

    fn warn_once(&mut self, key: String, message: &str) {
        if self.warned.insert(key) {
            tracing::warn!("{message}");
        }
    }
}

/// A short description of a command for log lines.
fn describe(command: &Command) -> String {
    match command {
        Command::Register(r) => format!("register {}", r.instance.id),
        Command::Deregister(id) => format!("deregister {id}"),
        Command::RegisterCheck(c) => format!("register check {:?}", c.id),
        Command::DeregisterCheck(id) => format!("deregister check {id}"),
        Command::SetCheckStatus { id, status, .. } => format!("set {id} {status}"),
    }
}

/// One loop of blocking queries: asks `fetch` with the cursor's index, hands every answer whose
/// index moved to the mirror task as `wrap(body)`, pauses after unchanged answers and backs off
/// after failures. Ends when `stop` fires or the mirror task is gone.
async fn follow<T, F, Fut>(
    stop: CancellationToken,
    outage: Arc<Outage>,
    updates: mpsc::Sender<Update>,
    mut fetch: F,
    wrap: impl Fn(T) -> Update,
) where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Answer<T>, FetchError>>,
{
    let mut cursor = IndexCursor::default();
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = fetch(cursor.request_index()) => result,
        };
        let pause = match result {
            Ok(answer) => {
                outage.answered();
                backoff.reset();
                match cursor.advance(answer.index) {
                    Progress::Unchanged => unchanged_pause(started.elapsed()),
                    progress => {
                        if progress == Progress::WentBackwards {
                            tracing::info!(
                                index = answer.index,
                                "upstream index went backwards; starting over from 0"
                            );
                        }
                        let sent = tokio::select! {
                            () = stop.cancelled() => return,
                            sent = updates.send(wrap(answer.body)) => sent,
                        };
                        if sent.is_err() {
                            return;
                        }
                        Duration::ZERO
                    }
                }
            }
            Err(error) => {
                if error.is_outage() {
                    outage.failed(&error);
                } else {
                    tracing::warn!(%error, "upstream query failed; retrying");
                }
                backoff.next_delay()
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
