//! The fan-out: one rendering per event, one broadcast per watched service, one for everyone.

use super::history::History;
use super::position::Position;
use super::render::{RESYNC, RenderedEvent, render_event, render_resync};
use crate::write_path::{Published, Subscriber};
use axum::response::sse::Event as SseEvent;
use futures::Stream;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::{Catalog, ServiceName};

/// Events kept for resuming watchers (`Last-Event-ID`). At a few hundred bytes each this is a
/// few MiB, and covers a reconnect after anything short of a burst of 16,384 changes.
pub const HISTORY_CAPACITY: usize = 16_384;
/// Events a watcher of one service may fall behind before it is resynced instead. Allocated
/// per watched service (not per watcher) while anyone watches it: about 40 KiB.
pub const SERVICE_CHANNEL_CAPACITY: usize = 1024;
/// Events a watcher of every service may fall behind before it is resynced instead. Larger,
/// because every change in the catalog lands in it.
pub const ALL_CHANNEL_CAPACITY: usize = 4096;

/// How big the hub's buffers are. [`EventHub::new`] uses the constants above; tests shrink
/// them to reach the edges (forgotten history, lagging watchers) with a handful of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubCapacity {
    /// Events kept for resume.
    pub history: usize,
    /// Per-service broadcast depth.
    pub service_channel: usize,
    /// All-services broadcast depth.
    pub all_channel: usize,
}

impl Default for HubCapacity {
    fn default() -> Self {
        Self {
            history: HISTORY_CAPACITY,
            service_channel: SERVICE_CHANNEL_CAPACITY,
            all_channel: ALL_CHANNEL_CAPACITY,
        }
    }
}

/// What a watcher follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchScope {
    /// One service, known or not yet registered.
    Service(ServiceName),
    /// Every service.
    All,
}

impl WatchScope {
    fn service(&self) -> Option<&str> {
        match self {
            WatchScope::Service(name) => Some(name.as_str()),
            WatchScope::All => None,
        }
    }

    fn includes(&self, event: &RenderedEvent) -> bool {
        match self {
            WatchScope::Service(name) => event.service == *name,
            WatchScope::All => true,
        }
    }
}

/// The hub has been closed (the agent is shutting down) and starts no new watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the agent is shutting down; reconnect to a running agent")]
pub struct HubClosed;

/// Watch streams for the whole agent: renders each catalog event once on the writer task and
/// fans it out to every watcher, keeps recent history for resume, and ends every stream on
/// [`EventHub::close`].
///
/// It is a [`Subscriber`] of the write path, so it hears each batch before the snapshot swap;
/// it keeps its own copy of the published catalog, updated under the same lock as its history
/// and broadcasts, so a resync snapshot and the live events after it always line up exactly.
pub struct EventHub {
    state: Mutex<HubState>,
    closed: CancellationToken,
    node_address: String,
    capacity: HubCapacity,
}

struct HubState {
    /// The catalog as of the last event sent: the state a resync shows.
    catalog: Arc<Catalog>,
    history: History,
    /// Created when a service gets its first watcher, removed when its last leaves.
    services: HashMap<ServiceName, Channel>,
    all: Channel,
}

impl HubState {
    /// Everything up to here has been sent; a watcher subscribed now receives what follows.
    fn head(&self) -> Position {
        Position::end_of(self.catalog.index())
    }

    fn channel_mut(&mut self, scope: &WatchScope) -> Option<&mut Channel> {
        match scope {
            WatchScope::Service(name) => self.services.get_mut(name.as_str()),
            WatchScope::All => Some(&mut self.all),
        }
    }
}

struct Channel {
    sender: broadcast::Sender<Arc<RenderedEvent>>,
    /// The last resync rendered for this scope and the catalog index it shows: watchers that
    /// connect or lag together share it.
    resync: Option<(u64, Arc<SseEvent>)>,
}

impl Channel {
    fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
            resync: None,
        }
    }
}

impl EventHub {
    /// A hub whose history starts at `catalog` (the restored catalog, before the writer runs).
    /// Instances registered without an address are shown with `node_address`, as
    /// `/v1/endpoints` shows them.
    pub fn new(catalog: &Catalog, node_address: String) -> Self {
        Self::with_capacity(catalog, node_address, HubCapacity::default())
    }

    /// [`EventHub::new`] with explicit buffer sizes.
    pub fn with_capacity(catalog: &Catalog, node_address: String, capacity: HubCapacity) -> Self {
        let start = Position::end_of(catalog.index());
        Self {
            state: Mutex::new(HubState {
                catalog: Arc::new(catalog.clone()),
                history: History::new(start, capacity.history),
                services: HashMap::new(),
                all: Channel::new(capacity.all_channel),
            }),
            closed: CancellationToken::new(),
            node_address,
            capacity,
        }
    }

    /// Starts a watch of `scope`. With `resume` (a client's `Last-Event-ID`) inside the
    /// retained history, the watch first replays every event of the scope after it; otherwise
    /// (a fresh client, or one too far behind) it first sends a `resync` with the scope's full
    /// state. Then it follows live events.
    pub fn watch(
        self: &Arc<Self>,
        scope: WatchScope,
        resume: Option<Position>,
    ) -> Result<Watch, HubClosed> {
        if self.closed.is_cancelled() {
            return Err(HubClosed);
        }
        // Subscribe, read the history and take the catalog under one lock, the one the writer
        // publishes under: every event is then either in what we read or in the receiver,
        // never in neither, and never (after dedupe by position) in both.
        let mut state = self.lock();
        let receiver = match &scope {
            WatchScope::Service(name) => state
                .services
                .entry(name.clone())
                .or_insert_with(|| Channel::new(self.capacity.service_channel))
                .sender
                .subscribe(),
            WatchScope::All => state.all.sender.subscribe(),
        };
        let head = state.head();
        let backlog: Option<VecDeque<Arc<RenderedEvent>>> = resume
            .filter(|position| *position <= head)
            .and_then(|position| state.history.after(position))
            .map(|events| {
                events
                    .filter(|event| scope.includes(event))
                    .cloned()
                    .collect()
            });
        drop(state);
        let lease = Lease {
            hub: Arc::clone(self),
            service: match &scope {
                WatchScope::Service(name) => Some(name.clone()),
                WatchScope::All => None,
            },
        };
        let (first, delivered) = match backlog {
            Some(_) => (None, head),
            None => {
                let (frame, position) = self.resync(&scope);
                (Some(frame), position)
            }
        };
        Ok(Watch {
            first,
            backlog: backlog.unwrap_or_default(),
            delivered,
            scope,
            closed: self.closed.clone(),
            receiver,
            lease,
        })
    }

    /// Ends every watch stream and refuses new ones. Called at shutdown: an SSE response never
    /// finishes by itself, so without this the HTTP server's graceful drain would wait forever.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Whether [`EventHub::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Number of services with at least one watcher (each has its own broadcast).
    pub fn watched_services(&self) -> usize {
        self.lock().services.len()
    }

    /// The full state of `scope` now, and the position it is at. Shared with every watcher
    /// resynced at the same catalog index; rendered outside the lock.
    fn resync(&self, scope: &WatchScope) -> (SseEvent, Position) {
        let (catalog, cached) = {
            let mut state = self.lock();
            let catalog = Arc::clone(&state.catalog);
            let cached = state
                .channel_mut(scope)
                .and_then(|channel| channel.resync.as_ref())
                .filter(|(index, _)| *index == catalog.index())
                .map(|(_, frame)| Arc::clone(frame));
            (catalog, cached)
        };
        let index = catalog.index();
        let frame = match cached {
            Some(frame) => frame,
            None => {
                let frame = Arc::new(render_resync(&catalog, scope.service(), &self.node_address));
                if let Some(channel) = self.lock().channel_mut(scope)
                    && channel
                        .resync
                        .as_ref()
                        .is_none_or(|(cached, _)| *cached < index)
                {
                    channel.resync = Some((index, Arc::clone(&frame)));
                }
                frame
            }
        };
        (SseEvent::clone(&frame), Position::end_of(index))
    }

    /// Forgets `service`'s broadcast once nobody receives from it.
    fn release(&self, service: &ServiceName) {
        let mut state = self.lock();
        if state
            .services
            .get(service.as_str())
            .is_some_and(|channel| channel.sender.receiver_count() == 0)
        {
            state.services.remove(service.as_str());
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing under this lock can panic half-way through an update that matters: a
        // poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscriber for EventHub {
    /// Renders the batch's events (outside the lock), then records and sends them with the
    /// catalog they lead to. Sending never waits: a watcher that cannot keep up lags and is
    /// resynced, the writer never slows down for it.
    fn published(&self, change: &Published<'_>) {
        // Only the writer task calls this, so the last position cannot move under us.
        let mut previous = self.lock().history.last();
        let rendered: Vec<Arc<RenderedEvent>> = change
            .events
            .iter()
            .map(|event| {
                let seq = match previous {
                    Some(last) if last.index == event.index => {
                        last.seq.saturating_add(1).min(u32::MAX - 1)
                    }
                    _ => 0,
                };
                let rendered = render_event(change.catalog, event, seq, &self.node_address);
                previous = Some(rendered.position);
                Arc::new(rendered)
            })
            .collect();
        let mut state = self.lock();
        state.catalog = Arc::clone(change.catalog);
        for event in rendered {
            if let Some(channel) = state.services.get(event.service.as_str()) {
                // An error only means nobody is receiving right now.
                let _ = channel.sender.send(Arc::clone(&event));
            }
            let _ = state.all.sender.send(Arc::clone(&event));
            state.history.push(event);
        }
    }
}

/// One frame of a watch stream.
#[derive(Debug, Clone)]
pub struct WatchFrame {
    /// The SSE event name: `registered`, `deregistered`, `health` or `resync`.
    pub name: &'static str,
    /// Its SSE id.
    pub position: Position,
    /// The finished SSE event.
    pub sse: SseEvent,
}

/// One watcher's stream: an optional resync or a replayed backlog, then live events.
///
/// Dropping it (the client went away) releases its service's broadcast when it was the last.
pub struct Watch {
    first: Option<SseEvent>,
    backlog: VecDeque<Arc<RenderedEvent>>,
    /// Live events at or before this were already covered by the backlog or a resync.
    delivered: Position,
    scope: WatchScope,
    closed: CancellationToken,
    // Field order matters: the receiver must be dropped before the lease checks whether any
    // receiver is left (fields drop in declaration order).
    receiver: broadcast::Receiver<Arc<RenderedEvent>>,
    lease: Lease,
}

impl Watch {
    /// The next frame, waiting for one; `None` once the hub is closed.
    pub async fn next(&mut self) -> Option<WatchFrame> {
        if self.closed.is_cancelled() {
            return None;
        }
        if let Some(sse) = self.first.take() {
            return Some(WatchFrame {
                name: RESYNC,
                position: self.delivered,
                sse,
            });
        }
        if let Some(event) = self.backlog.pop_front() {
            return Some(frame_of(&event));
        }
        loop {
            let received = tokio::select! {
                biased;
                () = self.closed.cancelled() => return None,
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(event) if event.position <= self.delivered => {}
                Ok(event) => {
                    self.delivered = event.position;
                    return Some(frame_of(&event));
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        scope = ?self.scope,
                        missed,
                        "watcher fell behind; sending a resync"
                    );
                    let (sse, position) = self.lease.hub.resync(&self.scope);
                    self.delivered = position;
                    return Some(WatchFrame {
                        name: RESYNC,
                        position,
                        sse,
                    });
                }
                // The sender outlives every receiver (see `EventHub::release`); end quietly
                // should that ever change.
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The watch as a stream of SSE events, for [`axum::response::sse::Sse`].
    pub fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut watch| async move {
            let frame = watch.next().await?;
            Some((Ok(frame.sse), watch))
        })
    }
}

fn frame_of(event: &RenderedEvent) -> WatchFrame {
    WatchFrame {
        name: event.name,
        position: event.position,
        sse: event.frame.clone(),
    }
}

/// Gives a service's broadcast back when its watcher goes.
struct Lease {
    hub: Arc<EventHub>,
    service: Option<ServiceName>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(service) = &self.service {
            self.hub.release(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use axum::response::sse::Sse;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::time::Duration;
    use wayfinder_catalog::{
        CheckDefinition, CheckId, CheckKind, CheckPolicy, Command, Instance, InstanceId,
        Registration, Status,
    };

    /// A catalog driven by commands, publishing each group of them to a hub as one batch.
    struct Fixture {
        catalog: Catalog,
        hub: Arc<EventHub>,
    }

    impl Fixture {
        fn new(capacity: HubCapacity) -> Self {
            let catalog = Catalog::new(100);
            let hub = Arc::new(EventHub::with_capacity(
                &catalog,
                "192.0.2.1".into(),
                capacity,
            ));
            Self { catalog, hub }
        }

        fn batch(&mut self, commands: Vec<Command>) {
            let mut events = Vec::new();
            let mut touched = BTreeSet::new();
            for command in &commands {
                let outcome = self
                    .catalog
                    .apply(self.catalog.index() + 1, command)
                    .expect("command applies");
                events.extend(outcome.events);
                touched.extend(outcome.touched);
            }
            let catalog = Arc::new(self.catalog.clone());
            self.hub.published(&Published {
                catalog: &catalog,
                touched: &touched,
                events: &events,
            });
        }

        fn watch(&self, scope: WatchScope, resume: Option<Position>) -> Watch {
            self.hub.watch(scope, resume).expect("hub open")
        }
    }

    fn service(name: &str) -> WatchScope {
        WatchScope::Service(ServiceName::new(name, "Name").expect("name"))
    }

    fn register(service: &str, id: &str) -> Command {
        let instance = Instance {
            port: 8080,
            tags: vec!["v1".into()],
            ..Instance::new(
                InstanceId::new(id, "ID").expect("id"),
                ServiceName::new(service, "Name").expect("name"),
            )
        };
        let check = CheckDefinition {
            id: Some(CheckId::new(&format!("ttl:{id}"), "CheckID").expect("check id")),
            name: String::new(),
            notes: String::new(),
            service_id: None,
            initial_status: Some(Status::Passing),
            kind: CheckKind::Ttl {
                ttl: Duration::from_secs(30),
            },
            policy: CheckPolicy::new(Duration::ZERO, Duration::from_secs(1)),
        };
        Command::Register(Box::new(Registration {
            instance,
            checks: vec![check],
            replace_existing_checks: false,
        }))
    }

    fn set_status(id: &str, status: Status) -> Command {
        Command::SetCheckStatus {
            id: CheckId::new(&format!("ttl:{id}"), "CheckID").expect("check id"),
            status,
            output: String::new(),
        }
    }

    fn deregister(id: &str) -> Command {
        Command::Deregister(InstanceId::new(id, "ID").expect("id"))
    }

    /// The next frame, which must come promptly.
    async fn next(watch: &mut Watch) -> WatchFrame {
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("a frame within 5 s")
            .expect("the watch is open")
    }

    /// Frames that are ready now, without waiting for more.
    async fn ready(watch: &mut Watch) -> Vec<(&'static str, String)> {
        let mut frames = Vec::new();
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(20), watch.next()).await
        {
            frames.push((frame.name, frame.position.to_string()));
        }
        frames
    }

    /// The bytes axum writes for `frame`, split into its fields.
    async fn wire(frame: WatchFrame) -> (String, String, Value) {
        let response =
            Sse::new(futures::stream::iter([Ok::<_, Infallible>(frame.sse)])).into_response();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .unwrap_or_default()
                .to_owned()
        };
        let data = serde_json::from_str(&field("data")).expect("JSON data");
        (field("event"), field("id"), data)
    }

    #[tokio::test]
    async fn a_fresh_watch_starts_with_a_resync_then_follows_live_events_in_order() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        let mut watch = fixture.watch(service("web"), None);
        let resync = next(&mut watch).await;
        assert_eq!(
            (resync.name, resync.position),
            ("resync", Position::end_of(101))
        );
        let (name, id, data) = wire(resync).await;
        assert_eq!((name.as_str(), id.as_str()), ("resync", "101"));
        assert_eq!(data["index"], 101);
        assert_eq!(data["service"], "web");
        assert_eq!(data["instances"][0]["id"], "web-1");
        assert_eq!(
            data["instances"][0]["host"], "192.0.2.1",
            "node address stands in"
        );
        assert_eq!(data["instances"][0]["status"], "passing");

        fixture.batch(vec![
            set_status("web-1", Status::Critical),
            register("web", "web-2"),
        ]);
        fixture.batch(vec![deregister("web-1")]);
        let health = next(&mut watch).await;
        assert_eq!(health.position, Position::event(102, 0));
        let (name, id, data) = wire(health).await;
        assert_eq!((name.as_str(), id.as_str()), ("health", "102.0"));
        assert_eq!(data["kind"], "health");
        assert_eq!(
            (&data["from"], &data["to"]),
            (&"passing".into(), &"critical".into())
        );
        assert_eq!(data["instance"]["status"], "critical");
        assert_eq!(data["instance"]["port"], 8080);
        assert_eq!(
            ready(&mut watch).await,
            [
                ("registered", "103.0".to_owned()),
                ("deregistered", "104.0".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_deregistered_instance_has_no_instance_object() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        let mut watch = fixture.watch(service("web"), Some(Position::end_of(101)));
        fixture.batch(vec![deregister("web-1")]);
        let (name, _, data) = wire(next(&mut watch).await).await;
        assert_eq!(name, "deregistered");
        assert_eq!(data["id"], "web-1");
        assert!(data.get("instance").is_none(), "{data}");
    }

    #[tokio::test]
    async fn events_of_one_index_get_consecutive_places() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        let mut watch = fixture.watch(WatchScope::All, Some(Position::end_of(101)));
        // Moving an instance to another service: one write, two events.
        fixture.batch(vec![register("api", "web-1")]);
        assert_eq!(
            ready(&mut watch).await,
            [
                ("deregistered", "102.0".to_owned()),
                ("registered", "102.1".to_owned()),
            ]
        );
        let mut web = fixture.watch(service("web"), Some(Position::end_of(101)));
        let (_, id, data) = wire(next(&mut web).await).await;
        assert_eq!(id, "102.0");
        assert!(
            data.get("instance").is_none(),
            "the instance now belongs to api, not web: {data}"
        );
    }

    #[tokio::test]
    async fn resuming_replays_exactly_what_was_missed_for_the_scope() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        fixture.batch(vec![register("db", "db-1"), register("web", "web-2")]);
        fixture.batch(vec![set_status("web-2", Status::Warning)]);
        // Seen 101.0 (web-1); missed db-1 (102.0), web-2 (103.0), web-2's warning (104.0).
        let mut watch = fixture.watch(service("web"), Some(Position::event(101, 0)));
        assert_eq!(
            ready(&mut watch).await,
            [
                ("registered", "103.0".to_owned()),
                ("health", "104.0".to_owned()),
            ]
        );
        fixture.batch(vec![deregister("web-1"), deregister("db-1")]);
        assert_eq!(
            ready(&mut watch).await,
            [("deregistered", "105.0".to_owned())]
        );

        let mut all = fixture.watch(WatchScope::All, Some(Position::event(103, 0)));
        assert_eq!(
            ready(&mut all).await,
            [
                ("health", "104.0".to_owned()),
                ("deregistered", "105.0".to_owned()),
                ("deregistered", "106.0".to_owned()),
            ]
        );

        let mut current = fixture.watch(service("web"), Some(Position::event(106, 0)));
        assert_eq!(
            ready(&mut current).await,
            [],
            "nothing missed, nothing replayed"
        );
    }

    #[tokio::test]
    async fn too_far_behind_unparseable_or_from_the_future_resyncs() {
        let capacity = HubCapacity {
            history: 2,
            ..HubCapacity::default()
        };
        let mut fixture = Fixture::new(capacity);
        for i in 1..=4 {
            fixture.batch(vec![register("web", &format!("web-{i}"))]);
        }
        // History holds 103.0 and 104.0: a client at 102.0 can be caught up, at 101.0 not.
        let mut caught_up = fixture.watch(service("web"), Some(Position::event(102, 0)));
        assert_eq!(
            ready(&mut caught_up).await,
            [
                ("registered", "103.0".to_owned()),
                ("registered", "104.0".to_owned()),
            ]
        );
        for resume in [
            Some(Position::event(101, 0)),
            Some(Position::event(1, 0)),
            Some(Position::event(999, 0)),
            None,
        ] {
            let mut watch = fixture.watch(service("web"), resume);
            let frame = next(&mut watch).await;
            assert_eq!(
                (frame.name, frame.position),
                ("resync", Position::end_of(fixture.catalog.index())),
                "resume from {resume:?}"
            );
            let (_, _, data) = wire(frame).await;
            assert_eq!(data["instances"].as_array().map(Vec::len), Some(4));
            fixture.batch(vec![set_status("web-1", Status::Critical)]);
            let live = next(&mut watch).await;
            assert_eq!(live.name, "health", "live events follow the resync");
            fixture.batch(vec![set_status("web-1", Status::Passing)]);
            let _ = next(&mut watch).await;
        }
    }

    #[tokio::test]
    async fn a_lagging_watcher_is_resynced_and_continues_while_others_are_unaffected() {
        let capacity = HubCapacity {
            service_channel: 2,
            ..HubCapacity::default()
        };
        let mut fixture = Fixture::new(capacity);
        let mut slow = fixture.watch(service("web"), None);
        let mut prompt = fixture.watch(service("web"), None);
        assert_eq!(next(&mut slow).await.name, "resync");
        assert_eq!(next(&mut prompt).await.name, "resync");
        for i in 1..=3 {
            fixture.batch(vec![register("web", &format!("web-{i}"))]);
            assert_eq!(next(&mut prompt).await.name, "registered");
        }
        let frame = next(&mut slow).await;
        assert_eq!(
            (frame.name, frame.position),
            ("resync", Position::end_of(103))
        );
        let (_, _, data) = wire(frame).await;
        assert_eq!(data["instances"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            ready(&mut slow).await,
            [],
            "events covered by the resync are skipped"
        );
        fixture.batch(vec![deregister("web-2")]);
        assert_eq!(
            ready(&mut slow).await,
            [("deregistered", "104.0".to_owned())]
        );
    }

    #[tokio::test]
    async fn an_unknown_service_resyncs_empty_and_sees_its_first_registration() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        let mut watch = fixture.watch(service("later"), None);
        let (_, _, data) = wire(next(&mut watch).await).await;
        assert_eq!(data["instances"], Value::Array(Vec::new()));
        fixture.batch(vec![register("web", "web-2")]);
        fixture.batch(vec![register("later", "later-1")]);
        assert_eq!(
            ready(&mut watch).await,
            [("registered", "103.0".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_service_broadcast_lives_exactly_as_long_as_its_watchers() {
        let fixture = Fixture::new(HubCapacity::default());
        let first = fixture.watch(service("web"), None);
        let second = fixture.watch(service("web"), None);
        let all = fixture.watch(WatchScope::All, None);
        assert_eq!(fixture.hub.watched_services(), 1);
        drop(first);
        assert_eq!(fixture.hub.watched_services(), 1);
        drop(second);
        assert_eq!(fixture.hub.watched_services(), 0);
        drop(all);
    }

    #[tokio::test]
    async fn close_ends_every_watch_and_refuses_new_ones() {
        let mut fixture = Fixture::new(HubCapacity::default());
        let mut waiting = fixture.watch(service("web"), None);
        let _ = next(&mut waiting).await;
        let pending = tokio::spawn(async move { waiting.next().await.map(|f| f.name) });
        fixture.hub.close();
        let ended = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("the waiting watch ends promptly")
            .expect("task");
        assert_eq!(ended, None);
        assert!(fixture.hub.watch(WatchScope::All, None).is_err());
        // Publishing after close (the writer drains its queue at shutdown) is harmless.
        fixture.batch(vec![register("web", "web-1")]);
    }

    #[tokio::test]
    async fn watchers_resynced_at_the_same_index_share_one_rendering() {
        let mut fixture = Fixture::new(HubCapacity::default());
        fixture.batch(vec![register("web", "web-1")]);
        let _first = fixture.watch(service("web"), None);
        let cached = |hub: &EventHub| {
            hub.lock()
                .services
                .get("web")
                .and_then(|channel| channel.resync.clone())
        };
        let (index, shared) = cached(&fixture.hub).expect("the resync was cached");
        assert_eq!(index, 101);
        let _second = fixture.watch(service("web"), None);
        let (_, again) = cached(&fixture.hub).expect("still cached");
        assert!(
            Arc::ptr_eq(&shared, &again),
            "the second watcher reused the rendering"
        );
    }
}
