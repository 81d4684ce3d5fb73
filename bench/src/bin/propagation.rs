//! `propagation`: how soon readers learn that an instance went bad, with 1,000 watchers
//! connected.
//!
//! Registers the `worker-service` fleet (10 instances, each with a passing TTL check) and
//! connects the watchers: `--sse-watchers` streams on `GET /v1/watch/worker-service` and
//! `--blocking-watchers` long polls on `GET /v1/health/service/worker-service?index=N&wait=…`,
//! each re-issued at once with the new index when it returns, as Consul clients do. Then, for
//! each variant, `--iterations` times (or until `--duration`):
//!
//! 1. takes `t0` and sends the change: `PUT /v1/agent/check/fail/<check>` (variant *critical*)
//!    or `PUT /v1/agent/service/deregister/<id>` (variant *deregister*), on instance
//!    `iteration % instances`; `t_ack` is when its 200 arrives. An acknowledged write is durable
//!    and published (the agent fsyncs, then publishes, then answers).
//! 2. meanwhile measures (a) a poller sending `GET /v1/endpoints/worker-service` back to back
//!    until an answer no longer lists the instance; (b) when the change's event reaches one
//!    designated SSE watcher, and the last of all of them; (c) when one designated blocking
//!    query returns, and the last of all of them. Every watcher must see the change: the counts
//!    are reported, and a step ends when all have or `--step-timeout` passes.
//! 3. undoes the change (`check/pass`, or registering the instance again), waits until every
//!    watcher has seen that too, and pauses `--settle` so every long poll is parked again.
//!
//! Latencies are reported from `t0` (what a client of the write sees: the fsync included) and
//! from `t_ack` ("after the status change is written", the target's clock). The agent sends
//! events and swaps its snapshot before it answers the write, so a reader can learn of the
//! change before the writer does: those arrivals count as 0 from `t_ack` and are counted.
//!
//! Where the clocks run: the designated watchers, the poller and the writer run on this
//! process's main thread (a current-thread runtime); the other watchers on `--crowd-threads`
//! threads of their own (one by default, so the generator takes at most about one core from the
//! agent beside the main thread). So the designated times are not queued behind 999 other
//! watchers' parsing in the generator; the "all watchers" times are, and include that cost.

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use hyper::Method;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use wayfinder_bench::args::{AgentArgs, duration};
use wayfinder_bench::client::{Answer, Connection};
use wayfinder_bench::fleet::{self, SERVICE, check_id, instance_id};
use wayfinder_bench::latency::{Latencies, Millis};
use wayfinder_bench::procfs::CpuMark;
use wayfinder_bench::report::{Count, Grid, Rate, Table, verdict};
use wayfinder_bench::sse::EventStream;

/// The target: every reader knows within this long after the change is acknowledged (issue 3).
const TARGET_P99: Duration = Duration::from_millis(10);
/// The design notes' Endpoint Provider cached answers in Memcached with this TTL…
const REFERENCE_TTL: Duration = Duration::from_secs(10);
/// …so a dead node could stay in answers this long (the TTL, plus the provider's own read of
/// Consul that filled the entry).
const REFERENCE_WORST: Duration = Duration::from_secs(20);
/// The SSE event a new watcher gets first, and a lagging one instead of the events it missed.
const RESYNC: &str = "resync";
/// How far past its `--duration` (plus one `--step-timeout`) a variant may run before it is
/// abandoned: only a request the agent never answers gets there.
const STEP_GUARD: Duration = Duration::from_secs(30);
/// Requests one blocking watcher may send in a run: far more than the changes it can see, so
/// only a bug (an agent answering at once without a change) reaches it.
const MAX_BLOCKING_REQUESTS: u64 = 1_000_000;

#[derive(Parser, Debug)]
#[command(about = "Time from a health change or deregistration to every kind of reader")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// Instances of worker-service (each has a TTL check).
    #[arg(long, default_value_t = fleet::DEFAULT_INSTANCES, value_parser = clap::value_parser!(u32).range(2..=1000))]
    instances: u32,
    /// Watch streams on /v1/watch/worker-service (one of them designated).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sse_watchers: u32,
    /// Blocking queries (one of them designated).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    blocking_watchers: u32,
    /// What the blocking queries read. The benchmark reads Consul's health endpoint, what
    /// Consul clients long-poll; `/v1/endpoints/worker-service` (pre-rendered, shared by every
    /// reader) is a diagnostic.
    #[arg(long, default_value = "/v1/health/service/worker-service")]
    blocking_path: String,
    /// Measured changes per variant (the variant also stops at --duration).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    iterations: u32,
    /// Longest time per variant (the variant also stops at --iterations).
    #[arg(long, default_value = "90s", value_parser = duration)]
    duration: Duration,
    /// Longest a change may take to reach every watcher before the step gives up on the rest.
    #[arg(long, default_value = "5s", value_parser = duration)]
    step_timeout: Duration,
    /// Pause after a change is undone and every watcher has seen it, before the next change.
    #[arg(long, default_value = "50ms", value_parser = duration)]
    settle: Duration,
    /// Most /v1/endpoints polls per change (the poller also stops at --step-timeout).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_polls: u64,
    /// The blocking queries' `?wait=` (longer than any step, so they return on changes only).
    #[arg(long, default_value = "60s", value_parser = duration)]
    wait: Duration,
    /// Longest wait for every watcher to connect and receive its first answer.
    #[arg(long, default_value = "60s", value_parser = duration)]
    connect_timeout: Duration,
    /// Threads for the non-designated watchers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    crowd_threads: u16,
}

/// What is changed, and how it is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The instance's TTL check fails; then passes again.
    Critical,
    /// The instance is deregistered; then registered again (passing).
    Deregister,
}

impl Variant {
    fn title(self) -> &'static str {
        match self {
            Variant::Critical => "check turns critical (`PUT /v1/agent/check/fail/<id>`)",
            Variant::Deregister => "deregistration (`PUT /v1/agent/service/deregister/<id>`)",
        }
    }

    /// The write on instance `n` (`PUT path` with a body) and the SSE event it causes: the
    /// measured change, or (`undo`) the write that reverts it.
    fn write(self, n: u32, undo: bool) -> (String, Bytes, &'static str) {
        let (check, id) = (check_id(n), instance_id(n));
        let (path, event) = match (self, undo) {
            (Variant::Critical, false) => (format!("/v1/agent/check/fail/{check}"), "health"),
            (Variant::Critical, true) => (format!("/v1/agent/check/pass/{check}"), "health"),
            (Variant::Deregister, false) => {
                (format!("/v1/agent/service/deregister/{id}"), "deregistered")
            }
            (Variant::Deregister, true) => ("/v1/agent/service/register".to_owned(), "registered"),
        };
        let body = match (self, undo) {
            (Variant::Deregister, true) => Bytes::from(fleet::registration(n)),
            _ => Bytes::new(),
        };
        (path, body, event)
    }
}

/// The two kinds of watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sse,
    Blocking,
}

/// What a watcher tells the coordinator, with the time it learned it.
#[derive(Debug)]
struct Receipt {
    kind: Kind,
    at: Instant,
    seen: Seen,
}

#[derive(Debug)]
enum Seen {
    /// Connected and has its baseline (an SSE resync, or a blocking query's first answer).
    Ready,
    /// An SSE event about an instance.
    Event { name: String, instance: String },
    /// An SSE resync after the first: the watcher fell behind and missed events.
    Resync,
    /// A blocking query returned with a newer index.
    Returned { index: u64 },
    /// The watcher stopped.
    Failed(String),
}

/// What a watcher follows.
#[derive(Debug, Clone)]
enum Watcher {
    /// The watch stream `/v1/watch/worker-service`.
    Sse,
    /// Blocking queries on `path` with `?wait=`.
    Blocking { path: String, wait: Duration },
}

impl Watcher {
    fn kind(&self) -> Kind {
        match self {
            Watcher::Sse => Kind::Sse,
            Watcher::Blocking { .. } => Kind::Blocking,
        }
    }

    /// Follows until the run is over (its receipts are no longer read); a failure is reported
    /// as a receipt.
    async fn run(self, addr: SocketAddr, receipts: UnboundedSender<Receipt>) {
        let kind = self.kind();
        let followed = match self {
            Watcher::Sse => follow_stream(addr, &receipts).await,
            Watcher::Blocking { path, wait } => long_poll(addr, &path, wait, &receipts).await,
        };
        if let Err(error) = followed {
            report(
                &receipts,
                kind,
                Instant::now(),
                Seen::Failed(format!("{error:#}")),
            );
        }
    }
}

/// Sends a receipt; false once the coordinator has stopped reading (the run is over).
fn report(receipts: &UnboundedSender<Receipt>, kind: Kind, at: Instant, seen: Seen) -> bool {
    receipts.send(Receipt { kind, at, seen }).is_ok()
}

/// Follows `/v1/watch/worker-service` and reports every event.
async fn follow_stream(
    addr: SocketAddr,
    receipts: &UnboundedSender<Receipt>,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr).await?;
    let path = format!("/v1/watch/{SERVICE}");
    let response = connection.start(Method::GET, &path, Bytes::new()).await?;
    let mut stream = EventStream::new(response).with_context(|| format!("GET {path}"))?;
    let mut ready = false;
    while let Some((event, at)) = stream.next().await? {
        let seen = if event.name == RESYNC {
            if std::mem::replace(&mut ready, true) {
                Seen::Resync
            } else {
                Seen::Ready
            }
        } else {
            let data: serde_json::Value = serde_json::from_str(&event.data)
                .with_context(|| format!("event data is not JSON: {}", event.data))?;
            Seen::Event {
                name: event.name,
                instance: data["id"].as_str().unwrap_or_default().to_owned(),
            }
        };
        if !report(receipts, Kind::Sse, at, seen) {
            return Ok(());
        }
    }
    anyhow::bail!("the agent ended the watch stream")
}

/// Long-polls `path` (`?index=N&wait=…`) and reports every return with a new index.
async fn long_poll(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
    receipts: &UnboundedSender<Receipt>,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr).await?;
    let first = connection
        .get(path)
        .await?
        .expect_ok(&format!("GET {path}"))?;
    let mut index = consul_index(&first)?;
    if !report(receipts, Kind::Blocking, Instant::now(), Seen::Ready) {
        return Ok(());
    }
    let wait = format!("{}ms", wait.as_millis());
    for _ in 0..MAX_BLOCKING_REQUESTS {
        let blocking = format!("{path}?index={index}&wait={wait}");
        let answer = connection.get(&blocking).await?;
        let at = Instant::now();
        let answer = answer.expect_ok(&format!("GET {blocking}"))?;
        let returned = consul_index(&answer)?;
        let seen = Seen::Returned { index: returned };
        if returned > index && !report(receipts, Kind::Blocking, at, seen) {
            return Ok(());
        }
        index = returned;
    }
    anyhow::bail!(
        "sent {MAX_BLOCKING_REQUESTS} blocking queries; the agent keeps answering at once"
    )
}

fn consul_index(answer: &Answer) -> anyhow::Result<u64> {
    answer
        .headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the answer has no numeric X-Consul-Index")
}

/// What one step waits for: the change's event, and blocking queries returning past `floor`.
struct Expected {
    event: &'static str,
    instance: String,
    /// Lowest index a blocking query returns with for this change (earlier ones are late
    /// answers about the step before).
    floor: u64,
}

/// How many watchers of each kind a collection waits for.
#[derive(Debug, Clone, Copy)]
struct Want {
    sse: u64,
    blocking: u64,
}

/// What a group of watchers reported for one step.
#[derive(Debug, Default)]
struct Collected {
    sse: u64,
    last_sse: Option<Instant>,
    blocking: u64,
    last_blocking: Option<Instant>,
    highest_index: u64,
    resyncs: u64,
    /// Receipts that belong to no step: events about something else, late returns.
    unrelated: u64,
}

impl Collected {
    fn complete(&self, want: Want) -> bool {
        self.sse >= want.sse && self.blocking >= want.blocking
    }

    /// The time the last SSE watcher saw the change, if all `want` did.
    fn all_sse(&self, want: Want) -> Option<Instant> {
        self.last_sse.filter(|_| self.sse >= want.sse)
    }

    /// The time the last blocking query returned, if all `want` did.
    fn all_blocking(&self, want: Want) -> Option<Instant> {
        self.last_blocking
            .filter(|_| self.blocking >= want.blocking)
    }
}

/// Reads receipts until `want` watchers of each kind saw `expected`, or `deadline`.
async fn collect(
    receipts: &mut UnboundedReceiver<Receipt>,
    expected: &Expected,
    want: Want,
    deadline: Instant,
) -> anyhow::Result<Collected> {
    let mut got = Collected::default();
    while !got.complete(want) {
        let Ok(receipt) = timeout_at(deadline, receipts.recv()).await else {
            break;
        };
        let receipt = receipt.context("every watcher has stopped")?;
        match receipt.seen {
            Seen::Event { name, instance }
                if name == expected.event && instance == expected.instance =>
            {
                got.sse += 1;
                got.last_sse = got.last_sse.max(Some(receipt.at));
            }
            Seen::Returned { index } if index >= expected.floor => {
                got.blocking += 1;
                got.last_blocking = got.last_blocking.max(Some(receipt.at));
                got.highest_index = got.highest_index.max(index);
            }
            Seen::Resync => got.resyncs += 1,
            Seen::Failed(error) => {
                anyhow::bail!("a {:?} watcher stopped: {error}", receipt.kind)
            }
            Seen::Ready | Seen::Event { .. } | Seen::Returned { .. } => got.unrelated += 1,
        }
    }
    Ok(got)
}

/// Latencies of one kind of reader, from `t0` and from `t_ack`.
#[derive(Default)]
struct Probe {
    from_t0: Latencies,
    from_ack: Latencies,
    before_ack: u64,
    missed: u64,
}

impl Probe {
    fn record(&mut self, t0: Instant, ack: Instant, at: Option<Instant>) {
        let Some(at) = at else {
            self.missed += 1;
            return;
        };
        self.from_t0.record(at - t0);
        if at < ack {
            self.before_ack += 1;
        }
        self.from_ack.record(at.saturating_duration_since(ack));
    }

    /// Met when nothing was missed and p99 from the acknowledgement is within the target.
    fn met(&self) -> bool {
        self.missed == 0 && self.from_ack.count() > 0 && self.from_ack.at(0.99) <= TARGET_P99
    }
}

/// Everything one variant measured.
struct Measured {
    variant: Variant,
    changes: u64,
    elapsed: Duration,
    write: Latencies,
    endpoints: Probe,
    sse: Probe,
    sse_all: Probe,
    blocking: Probe,
    blocking_all: Probe,
    sse_delivered: u64,
    blocking_returned: u64,
    resyncs: u64,
    unrelated: u64,
    polls: u64,
    polling: Duration,
}

/// Where a variant's writes, polls and receipts go.
struct Rig {
    addr: SocketAddr,
    writer: Connection,
    poller: Connection,
    designated: UnboundedReceiver<Receipt>,
    crowd: UnboundedReceiver<Receipt>,
    crowd_want: Want,
    /// The highest index any blocking query has returned with so far.
    index: u64,
}

const DESIGNATED: Want = Want {
    sse: 1,
    blocking: 1,
};

/// `PUT path` with `body`; when its 200 arrived.
async fn put(writer: &mut Connection, path: &str, body: Bytes) -> anyhow::Result<Instant> {
    writer
        .send(Method::PUT, path, body)
        .await?
        .expect_ok(&format!("PUT {path}"))?;
    Ok(Instant::now())
}

impl Rig {
    fn expect(&self, event: &'static str, n: u32) -> Expected {
        Expected {
            event,
            instance: instance_id(n),
            floor: self.index + 1,
        }
    }

    /// One measured change on instance `n`, recorded into `measured`.
    async fn change(&mut self, measured: &mut Measured, n: u32, args: &Args) -> anyhow::Result<()> {
        let (path, body, event) = measured.variant.write(n, false);
        let expected = self.expect(event, n);
        let deadline = Instant::now() + args.step_timeout;
        let id = instance_id(n);
        let t0 = Instant::now();
        let (ack, gone, designated) = {
            let Rig {
                writer,
                poller,
                designated,
                ..
            } = self;
            tokio::join!(
                put(writer, &path, body),
                poll_until_gone(poller, &id, deadline, args.max_polls),
                collect(designated, &expected, DESIGNATED, deadline),
            )
        };
        let (ack, (gone, polls), designated) = (ack?, gone?, designated?);
        let crowd = collect(&mut self.crowd, &expected, self.crowd_want, deadline).await?;
        self.index = self
            .index
            .max(designated.highest_index)
            .max(crowd.highest_index);

        measured.changes += 1;
        measured.write.record(ack - t0);
        measured.endpoints.record(t0, ack, gone);
        measured.sse.record(t0, ack, designated.last_sse);
        measured.blocking.record(t0, ack, designated.last_blocking);
        let everyone = Want {
            sse: DESIGNATED.sse + self.crowd_want.sse,
            blocking: DESIGNATED.blocking + self.crowd_want.blocking,
        };
        let all = Collected {
            sse: designated.sse + crowd.sse,
            last_sse: designated.last_sse.max(crowd.last_sse),
            blocking: designated.blocking + crowd.blocking,
            last_blocking: designated.last_blocking.max(crowd.last_blocking),
            ..Collected::default()
        };
        measured.sse_all.record(t0, ack, all.all_sse(everyone));
        measured
            .blocking_all
            .record(t0, ack, all.all_blocking(everyone));
        measured.sse_delivered += all.sse;
        measured.blocking_returned += all.blocking;
        measured.resyncs += designated.resyncs + crowd.resyncs;
        measured.unrelated += designated.unrelated + crowd.unrelated;
        measured.polls += polls;
        measured.polling += gone.unwrap_or(deadline).saturating_duration_since(t0);
        Ok(())
    }

    /// Undoes the change on instance `n` and waits (bounded) until every watcher has seen it.
    async fn undo(&mut self, variant: Variant, n: u32, args: &Args) -> anyhow::Result<()> {
        let (path, body, event) = variant.write(n, true);
        let expected = self.expect(event, n);
        let deadline = Instant::now() + args.step_timeout;
        put(&mut self.writer, &path, body).await?;
        let designated = collect(&mut self.designated, &expected, DESIGNATED, deadline).await?;
        let crowd = collect(&mut self.crowd, &expected, self.crowd_want, deadline).await?;
        self.index = self
            .index
            .max(designated.highest_index)
            .max(crowd.highest_index);
        sleep(args.settle).await;
        Ok(())
    }
}

/// Polls `/v1/endpoints/worker-service` back to back until an answer does not list `id`;
/// when that answer arrived (None if it never did), and how many polls were sent.
async fn poll_until_gone(
    poller: &mut Connection,
    id: &str,
    deadline: Instant,
    max_polls: u64,
) -> anyhow::Result<(Option<Instant>, u64)> {
    let path = format!("/v1/endpoints/{SERVICE}");
    let mut polls = 0;
    while polls < max_polls && Instant::now() < deadline {
        let answer = poller.get(&path).await?;
        let at = Instant::now();
        polls += 1;
        let answer = answer.expect_ok(&format!("GET {path}"))?;
        if !fleet::listed_ids(&answer.body)?
            .iter()
            .any(|listed| listed == id)
        {
            return Ok((Some(at), polls));
        }
    }
    Ok((None, polls))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let crowd = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.crowd_threads))
        .thread_name("crowd")
        .enable_all()
        .build()
        .context("cannot start the watchers' runtime")?;
    let probes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the probes' runtime")?;
    let result = probes.block_on(run(&args, crowd.handle()));
    crowd.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn run(args: &Args, crowd: &Handle) -> anyhow::Result<()> {
    let mut writer = Connection::open(args.agent.addr).await?;
    fleet::register(&mut writer, args.instances).await?;
    // The agent's memory before any watcher, for the memory each one costs (issue 10).
    let rss_before = args
        .agent
        .process()
        .map(|p| p.memory_kib())
        .transpose()?
        .map(|m| m.rss_kib);

    eprintln!(
        "propagation: connecting {} SSE watchers and {} blocking queries to {}",
        args.sse_watchers, args.blocking_watchers, args.agent.addr
    );
    let (designated_tx, designated) = unbounded_channel();
    let (crowd_tx, crowd_rx) = unbounded_channel();
    let blocking = Watcher::Blocking {
        path: args.blocking_path.clone(),
        wait: args.wait,
    };
    let addr = args.agent.addr;
    // The first of each kind is designated and runs here; the rest on the crowd's threads.
    for (watcher, count) in [
        (Watcher::Sse, args.sse_watchers),
        (blocking, args.blocking_watchers),
    ] {
        tokio::spawn(watcher.clone().run(addr, designated_tx.clone()));
        for _ in 1..count {
            crowd.spawn(watcher.clone().run(addr, crowd_tx.clone()));
        }
    }
    drop((designated_tx, crowd_tx));
    let mut rig = Rig {
        addr: args.agent.addr,
        writer,
        poller: Connection::open(args.agent.addr).await?,
        designated,
        crowd: crowd_rx,
        crowd_want: Want {
            sse: u64::from(args.sse_watchers - 1),
            blocking: u64::from(args.blocking_watchers - 1),
        },
        index: 0,
    };
    let connected_in = timeout(args.connect_timeout, rig.connect())
        .await
        .context("the watchers did not all connect within --connect-timeout")??;
    eprintln!(
        "propagation: all {} watchers connected in {:.1}s",
        args.sse_watchers + args.blocking_watchers,
        connected_in.as_secs_f64()
    );
    // Let the first long polls reach the agent and park.
    sleep(args.settle.max(Duration::from_millis(500))).await;
    let rss_watching = args
        .agent
        .process()
        .map(|p| p.memory_kib())
        .transpose()?
        .map(|m| m.rss_kib);
    let watchers = u64::from(args.sse_watchers + args.blocking_watchers);
    let per_watcher = match (rss_before, rss_watching) {
        (Some(before), Some(after)) => format!(
            "{} KiB → {} KiB: **{:.1} KiB per watcher**",
            Count(before),
            Count(after),
            after.saturating_sub(before) as f64 / watchers as f64
        ),
        _ => "n/a (no --agent-pid)".to_owned(),
    };

    let mark = CpuMark::now(args.agent.process())?;
    let started = Instant::now();
    let mut results = Vec::new();
    // Every step is bounded by --step-timeout and the variant by --duration; this only guards
    // against a request the agent never answers.
    let guard = args.duration + args.step_timeout + STEP_GUARD;
    for variant in [Variant::Critical, Variant::Deregister] {
        let measured = timeout(guard, rig.measure(variant, args))
            .await
            .with_context(|| format!("{variant:?} overran its --duration by {STEP_GUARD:?}"))??;
        results.push(measured);
    }
    let cpu = mark.since(args.agent.process(), started.elapsed(), args.agent.clk_tck)?;

    let mut setup = Table::new();
    setup
        .row(
            "fleet",
            format!(
                "`{SERVICE}`, {} instances, each with a TTL check, passing",
                args.instances
            ),
        )
        .row(
            "watchers connected throughout",
            format!(
                "**{}**: {} SSE streams on `/v1/watch/{SERVICE}` + {} blocking queries on \
                 `{}?index=N&wait={}s`, each re-issued at once on return",
                Count(u64::from(args.sse_watchers + args.blocking_watchers)),
                Count(u64::from(args.sse_watchers)),
                Count(u64::from(args.blocking_watchers)),
                args.blocking_path,
                args.wait.as_secs()
            ),
        )
        .row(
            "changes",
            format!(
                "{} per variant or {} s, whichever first; after each, the change is undone, every \
                 watcher must see that too, then {} ms pause",
                Count(u64::from(args.iterations)),
                args.duration.as_secs_f64(),
                args.settle.as_millis()
            ),
        )
        .row("agent RSS, no watcher → all connected", per_watcher)
        .row(
            "agent CPU over both variants",
            cpu.server
                .map_or("n/a".to_owned(), |c| format!("{c:.2} cores")),
        );
    cpu.rows(&mut setup, "generator CPU (watchers, poller; same machine)");
    println!(
        "{}",
        setup.render(&format!(
            "Propagation to readers, {} watchers (propagation)",
            Count(u64::from(args.sse_watchers + args.blocking_watchers))
        ))
    );
    for measured in &results {
        println!("{}", render(measured, args));
    }
    Ok(())
}

impl Rig {
    /// Waits until every watcher has its baseline; how long that took.
    async fn connect(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let want = [
            (&mut self.designated, DESIGNATED),
            (&mut self.crowd, self.crowd_want),
        ];
        for (receipts, want) in want {
            let (mut sse, mut blocking) = (0, 0);
            while sse < want.sse || blocking < want.blocking {
                let receipt = receipts.recv().await.context("every watcher has stopped")?;
                match (receipt.kind, receipt.seen) {
                    (_, Seen::Failed(error)) => {
                        anyhow::bail!("a {:?} watcher could not connect: {error}", receipt.kind)
                    }
                    (Kind::Sse, Seen::Ready) => sse += 1,
                    (Kind::Blocking, Seen::Ready) => blocking += 1,
                    _ => {}
                }
            }
        }
        let index = fleet_index(self.addr).await?;
        self.index = index;
        Ok(started.elapsed())
    }

    /// Runs one variant: up to `--iterations` changes, each undone, within `--duration`.
    async fn measure(&mut self, variant: Variant, args: &Args) -> anyhow::Result<Measured> {
        eprintln!(
            "propagation: {} changes or {}s: {}",
            args.iterations,
            args.duration.as_secs_f64(),
            variant.title()
        );
        let mut measured = Measured {
            variant,
            changes: 0,
            elapsed: Duration::ZERO,
            write: Latencies::new(),
            endpoints: Probe::default(),
            sse: Probe::default(),
            sse_all: Probe::default(),
            blocking: Probe::default(),
            blocking_all: Probe::default(),
            sse_delivered: 0,
            blocking_returned: 0,
            resyncs: 0,
            unrelated: 0,
            polls: 0,
            polling: Duration::ZERO,
        };
        let started = Instant::now();
        let stop_at = started + args.duration;
        for iteration in 0..args.iterations {
            if Instant::now() >= stop_at {
                break;
            }
            let n = iteration % args.instances;
            self.change(&mut measured, n, args).await?;
            self.undo(variant, n, args).await?;
        }
        measured.elapsed = started.elapsed();
        Ok(measured)
    }
}

/// The service's current index (`X-Consul-Index` of a plain read).
async fn fleet_index(addr: SocketAddr) -> anyhow::Result<u64> {
    let mut connection = Connection::open(addr).await?;
    let path = format!("/v1/health/service/{SERVICE}");
    let answer = connection
        .get(&path)
        .await?
        .expect_ok(&format!("GET {path}"))?;
    consul_index(&answer)
}

fn render(measured: &Measured, args: &Args) -> String {
    let sse_all = u64::from(args.sse_watchers);
    let blocking_all = u64::from(args.blocking_watchers);
    let mut grid = Grid::new([
        "reader",
        "p50 from t0",
        "p99 from t0",
        "**p50 after ack**",
        "**p99 after ack**",
        "max after ack",
        "arrived before the ack",
        "missed",
        "p99 after ack ≤ 10 ms",
    ]);
    // Grid::row leaves the columns after these empty.
    grid.row([
        "the write itself: t0 → 200 (includes the fsync)".to_owned(),
        Millis(measured.write.at(0.5)).to_string(),
        Millis(measured.write.at(0.99)).to_string(),
    ]);
    let readers = [
        (
            "(a) `/v1/endpoints` no longer lists it (poller)".to_owned(),
            &measured.endpoints,
        ),
        (
            "(b) SSE event, designated watcher".to_owned(),
            &measured.sse,
        ),
        (
            format!("(b) SSE event, last of all {sse_all} watchers"),
            &measured.sse_all,
        ),
        (
            "(c) blocking query returns, designated".to_owned(),
            &measured.blocking,
        ),
        (
            format!("(c) blocking query returns, last of all {blocking_all}"),
            &measured.blocking_all,
        ),
    ];
    for (name, probe) in readers {
        grid.row([
            name,
            Millis(probe.from_t0.at(0.5)).to_string(),
            Millis(probe.from_t0.at(0.99)).to_string(),
            format!("**{}**", Millis(probe.from_ack.at(0.5))),
            format!("**{}**", Millis(probe.from_ack.at(0.99))),
            Millis(probe.from_ack.max()).to_string(),
            Count(probe.before_ack).to_string(),
            Count(probe.missed).to_string(),
            verdict(probe.met()).to_owned(),
        ]);
    }

    let changes = measured.changes;
    let mut table = Table::new();
    table
        .row(
            "changes measured",
            format!(
                "{} in {:.1} s",
                Count(changes),
                measured.elapsed.as_secs_f64()
            ),
        )
        .row(
            "SSE events delivered",
            format!(
                "{} of {} ({} watchers × {} changes)",
                Count(measured.sse_delivered),
                Count(sse_all * changes),
                sse_all,
                changes
            ),
        )
        .row(
            "blocking queries returned",
            format!(
                "{} of {}",
                Count(measured.blocking_returned),
                Count(blocking_all * changes)
            ),
        )
        .row(
            "SSE resyncs (a watcher fell behind)",
            Count(measured.resyncs),
        )
        .row(
            "receipts matching no change (late, or another event)",
            Count(measured.unrelated),
        )
        .row(
            "/v1/endpoints polls per change (mean time between polls)",
            format!(
                "{:.0} ({:.0} µs)",
                measured.polls as f64 / changes.max(1) as f64,
                measured.polling.as_secs_f64() / measured.polls.max(1) as f64 * 1e6
            ),
        );
    let met = [&measured.endpoints, &measured.sse, &measured.blocking]
        .iter()
        .all(|probe| probe.met());
    table.row(
        "target p99 ≤ 10 ms after the ack: (a), (b) and (c), designated",
        verdict(met),
    );
    table.row(
        format!(
            "target met by the last of all {} watchers too",
            Count(sse_all + blocking_all)
        ),
        verdict(measured.sse_all.met() && measured.blocking_all.met()),
    );
    let p99 = measured
        .endpoints
        .from_t0
        .at(0.99)
        .max(Duration::from_micros(1));
    table.row(
        "vs. the design notes' Memcached provider (10 s TTL: stale up to 10–20 s), computed",
        format!(
            "{}×–{}× sooner: 10–20 s ÷ (a)'s p99 from t0 of {}",
            Rate(REFERENCE_TTL.as_secs_f64() / p99.as_secs_f64()),
            Rate(REFERENCE_WORST.as_secs_f64() / p99.as_secs_f64()),
            Millis(p99)
        ),
    );
    format!(
        "{}\n{}",
        grid.render(&format!("Propagation: {}", measured.variant.title())),
        table.render("")
    )
}
