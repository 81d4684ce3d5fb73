//! `etcd-writes`: registrations through an agent on etcd, against etcd's own write rate on the
//! same machine (issue 10: "100,000 registrations as fast as durability allows, figure reported
//! against etcd's own write rate").
//!
//! `bench/run etcd-writes` starts a single-member etcd and one agent with
//! `--store etcd://…` on it; this generator then measures, one after the other, with the same
//! number of clients, the same count and the same deadline:
//!
//! 1. **etcd alone**: `--clients` tasks, each with its own gRPC connection (`etcd-client`),
//!    send `Put` of one instance row to a new key under `/bench-etcd/` back to back, each
//!    waiting for etcd's acknowledgement (committed: in the WAL, fsynced) before the next.
//!    The value is the exact row the agent stores for one registration of the kind phase 2
//!    sends (read back from etcd after one probe registration), unless `--value-bytes` says
//!    otherwise.
//! 2. **the agent on that etcd**: `--clients` tasks, each with one keep-alive HTTP/1.1
//!    connection, send `PUT /v1/agent/service/register` with a new instance ID back to back.
//!    The agent acknowledges once etcd committed the write and the agent applied it.
//!
//! Only acknowledged writes count (a 200, or a `Put` answer). Each phase stops at `--count`
//! writes or `--duration`, whichever comes first. Besides rates (overall and in each whole
//! second) and latencies it reports, per phase, etcd's revisions (one per committed transaction: the agent batches queued
//! registrations into one transaction, so the ratio can exceed 1), etcd's WAL fsyncs (from
//! its `/metrics`), the CPU of etcd, of the agent, of this process and of the machine, and
//! afterwards checks that etcd holds at least as many keys as were acknowledged.
//!
//! Every loop is bounded by a count and a deadline, and only loopback addresses are accepted.

use anyhow::Context;
use clap::Parser;
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, timeout};
use wayfinder_bench::args::{AgentArgs, duration, loopback_addr};
use wayfinder_bench::client::{Connection, RECONNECT_PAUSE};
use wayfinder_bench::latency::{Latencies, Millis};
use wayfinder_bench::procfs::{CpuMark, Process};
use wayfinder_bench::report::{Count, Grid, Rate, Ratio};

/// Largest `--clients` accepted.
const MAX_CLIENTS: u32 = 1024;
/// Largest `--count` accepted.
const MAX_COUNT: u64 = 1_000_000;
/// Where phase 1 writes: a prefix of its own, outside the agent's catalog.
const ETCD_PREFIX: &str = "/bench-etcd/";
/// The agent's key prefix (`--store etcd://…` without `?prefix=`).
const AGENT_PREFIX: &str = "/wayfinder";
/// Instance IDs phase 2 registers start with this; the ticket follows, seven digits wide
/// (tickets stay below [`MAX_COUNT`]).
const ID_PREFIX: &str = "bench-";
/// The probe registration's ID: as long as every other ID, so its row is as long as theirs,
/// and outside [`ID_PREFIX`], so the count of stored keys is of the load's alone.
const PROBE_ID: &str = "probe-0000000";
/// etcd's counter of WAL fsyncs (a histogram's count), in its Prometheus `/metrics`.
const WAL_FSYNCS: &str = "etcd_disk_wal_fsync_duration_seconds_count";

#[derive(Parser, Debug)]
#[command(about = "Registrations through an agent on etcd, against etcd's own Put rate")]
struct Args {
    /// The agent (started with `--store etcd://<--etcd>`).
    #[command(flatten)]
    agent: AgentArgs,
    /// etcd's client address, e.g. 127.0.0.1:2379 (loopback only).
    #[arg(long, value_parser = loopback_addr)]
    etcd: SocketAddr,
    /// etcd's pid, to report its CPU use.
    #[arg(long)]
    etcd_pid: Option<u32>,
    /// Concurrent clients in each phase, each with one connection of its own.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=MAX_CLIENTS as i64))]
    clients: u32,
    /// Most acknowledged writes per phase (each phase also stops at --duration).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    count: u64,
    /// Longest time per phase (each phase also stops at --count).
    #[arg(long, default_value = "60s", value_parser = duration)]
    duration: Duration,
    /// A request with no answer after this long is a failure (the connection is reopened).
    #[arg(long, default_value = "5s", value_parser = duration)]
    request_timeout: Duration,
    /// Size of the value phase 1 puts. Default: the size of the row the agent stored for the
    /// probe registration, so both phases write values of the same size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=1_048_576))]
    value_bytes: Option<u64>,
}

/// The count and deadline every client task of a phase shares.
struct Bounds {
    tickets: AtomicU64,
    count: u64,
    stop_at: Instant,
    request_timeout: Duration,
    /// Writes acknowledged so far, sampled once a second into `timeline`.
    acknowledged: AtomicU64,
    /// Writes acknowledged in each whole second so far.
    timeline: Mutex<Vec<u64>>,
}

impl Bounds {
    /// The next write's ticket, or `None` once the count or the deadline is reached.
    fn next(&self) -> Option<u64> {
        if Instant::now() >= self.stop_at {
            return None;
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        (ticket < self.count).then_some(ticket)
    }
}

/// What the clients of one phase saw.
#[derive(Default)]
struct Outcome {
    latencies: Latencies,
    acknowledged: u64,
    /// Refused answers, timeouts and connection errors.
    failed: u64,
    first_problem: Option<String>,
}

impl Outcome {
    fn failure(&mut self, what: String) {
        self.failed += 1;
        self.first_problem.get_or_insert(what);
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// One phase's results, with what etcd and the processes did meanwhile.
struct Phase {
    outcome: Outcome,
    elapsed: Duration,
    /// Writes acknowledged in each whole second: does the rate hold as etcd and the catalog grow?
    timeline: Vec<u64>,
    /// etcd revisions the phase added: one per committed transaction (a `Put` is one).
    revisions: u64,
    /// etcd WAL fsyncs during the phase, when its `/metrics` answered.
    wal_fsyncs: Option<u64>,
    etcd_cpu: Option<f64>,
    agent_cpu: Option<f64>,
    generator_cpu: f64,
    machine: String,
    /// Keys etcd holds under the phase's prefix afterwards.
    stored: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.outcome.acknowledged as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

#[derive(Clone, Copy)]
enum Load {
    /// Phase 1: `Put` straight to etcd, this many bytes each.
    Etcd,
    /// Phase 2: registrations through the agent.
    Agent,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut etcd = connect(args.etcd, args.request_timeout).await?;

    // One registration, to learn the size of the row the agent stores for it.
    let mut probe = Connection::open(args.agent.addr).await?;
    probe
        .put("/v1/agent/service/register", register_body(PROBE_ID))
        .await?
        .expect_ok("the probe registration")?;
    let probe_key = format!("{AGENT_PREFIX}/instances/{PROBE_ID}");
    let row = etcd
        .get(probe_key.as_str(), None)
        .await
        .with_context(|| format!("cannot read {probe_key} from etcd"))?
        .kvs()
        .first()
        .map(|kv| kv.value().to_vec())
        .with_context(|| format!("the agent acknowledged the probe, but etcd has no {probe_key}; is the agent on --etcd?"))?;
    let value: Arc<Vec<u8>> = Arc::new(match args.value_bytes {
        Some(bytes) => padded_json(bytes as usize),
        None => row.clone(),
    });

    eprintln!(
        "etcd-writes: phase 1, {} clients putting {}-byte values to etcd at {}, up to {} or {}s",
        args.clients,
        value.len(),
        args.etcd,
        args.count,
        args.duration.as_secs_f64()
    );
    let direct = phase(&args, &mut etcd, Load::Etcd, &value).await?;
    eprintln!(
        "etcd-writes: phase 2, {} clients registering through the agent at {}",
        args.clients, args.agent.addr
    );
    let through = phase(&args, &mut etcd, Load::Agent, &value).await?;

    print!(
        "{}",
        report(&args, &direct, &through, value.len(), row.len())
    );
    anyhow::ensure!(
        direct.stored >= direct.outcome.acknowledged
            && through.stored >= through.outcome.acknowledged,
        "etcd holds fewer keys than were acknowledged"
    );
    Ok(())
}

/// Runs one phase and takes etcd's and the processes' readings around it.
async fn phase(
    args: &Args,
    etcd: &mut Client,
    load: Load,
    value: &Arc<Vec<u8>>,
) -> anyhow::Result<Phase> {
    // Connect every client first, so connection set-up is outside the measured time.
    let mut etcd_clients = Vec::new();
    let mut http_clients = Vec::new();
    for _ in 0..args.clients {
        match load {
            Load::Etcd => etcd_clients.push(connect(args.etcd, args.request_timeout).await?),
            Load::Agent => http_clients.push(Connection::open(args.agent.addr).await?),
        }
    }
    let revision_before = revision(etcd).await?;
    let fsyncs_before = wal_fsyncs(args.etcd).await;
    let etcd_process = args.etcd_pid.map(Process::Pid);
    let mark = CpuMark::now(etcd_process)?;
    let agent_before = args.agent.process().map(Process::cpu_ticks).transpose()?;

    let started = Instant::now();
    let bounds = Arc::new(Bounds {
        tickets: AtomicU64::new(0),
        count: args.count,
        stop_at: started + args.duration,
        request_timeout: args.request_timeout,
        acknowledged: AtomicU64::new(0),
        timeline: Mutex::new(Vec::new()),
    });
    let sampler = tokio::spawn(per_second(started, Arc::clone(&bounds)));
    let mut tasks = Vec::new();
    for client in etcd_clients {
        let (bounds, value, addr) = (Arc::clone(&bounds), Arc::clone(value), args.etcd);
        tasks.push(tokio::spawn(put_loop(client, addr, bounds, value)));
    }
    for connection in http_clients {
        let (bounds, addr) = (Arc::clone(&bounds), args.agent.addr);
        tasks.push(tokio::spawn(register_loop(connection, addr, bounds)));
    }
    // Every task stops by itself at the deadline; a request still out then ends by its own
    // timeout. This bound is only a guard against a bug here.
    let guard = args.duration + args.request_timeout + Duration::from_secs(10);
    let mut outcome = Outcome::default();
    for task in tasks {
        outcome.merge(
            timeout(guard, task)
                .await
                .context("a client task overran its deadline")?
                .context("a client task panicked")?,
        );
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let timeline = bounds
        .timeline
        .lock()
        .map(|rates| rates.clone())
        .unwrap_or_default();

    let cpu = mark.since(etcd_process, elapsed, args.agent.clk_tck)?;
    let agent_cpu = match (agent_before, args.agent.process()) {
        (Some(before), Some(agent)) => Some(
            agent.cpu_ticks()?.saturating_sub(before) as f64
                / args.agent.clk_tck as f64
                / elapsed.as_secs_f64().max(f64::EPSILON),
        ),
        _ => None,
    };
    let revisions = revision(etcd).await?.saturating_sub(revision_before);
    let wal_fsyncs = match (fsyncs_before, wal_fsyncs(args.etcd).await) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let prefix = match load {
        Load::Etcd => ETCD_PREFIX.to_owned(),
        Load::Agent => format!("{AGENT_PREFIX}/instances/{ID_PREFIX}"),
    };
    let stored = etcd
        .get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .context("cannot count the keys in etcd")?
        .count();
    Ok(Phase {
        outcome,
        elapsed,
        timeline,
        revisions,
        wal_fsyncs,
        etcd_cpu: cpu.server,
        agent_cpu,
        generator_cpu: cpu.generator,
        machine: cpu.machine_text(),
        stored: u64::try_from(stored).unwrap_or(0),
    })
}

/// Phase 1, one client: `Put` to a new key per ticket, one at a time.
async fn put_loop(
    mut client: Client,
    addr: SocketAddr,
    bounds: Arc<Bounds>,
    value: Arc<Vec<u8>>,
) -> Outcome {
    let mut outcome = Outcome::default();
    while let Some(ticket) = bounds.next() {
        let key = format!("{ETCD_PREFIX}{ticket:07}");
        let sent = Instant::now();
        match timeout(
            bounds.request_timeout,
            client.put(key, value.as_slice(), None),
        )
        .await
        {
            Ok(Ok(_)) => {
                outcome.latencies.record(sent.elapsed());
                outcome.acknowledged += 1;
                bounds.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => outcome.failure(format!("Put: {error}")),
            Err(_) => {
                outcome.failure("Put: no answer within --request-timeout".to_owned());
                // The channel may be wedged: start again on a fresh one.
                match connect(addr, bounds.request_timeout).await {
                    Ok(fresh) => client = fresh,
                    Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
                }
            }
        }
    }
    outcome
}

/// Phase 2, one client: a registration with a new instance ID per ticket, one at a time.
async fn register_loop(connection: Connection, addr: SocketAddr, bounds: Arc<Bounds>) -> Outcome {
    let mut outcome = Outcome::default();
    let mut connection = Some(connection);
    while let Some(ticket) = bounds.next() {
        let Some(open) = connection.as_mut() else {
            match Connection::reopen(addr, bounds.request_timeout).await {
                Ok(fresh) => connection = Some(fresh),
                Err(problem) => outcome.failure(problem),
            }
            continue;
        };
        let body = register_body(&format!("{ID_PREFIX}{ticket:07}"));
        let sent = Instant::now();
        match timeout(
            bounds.request_timeout,
            open.put("/v1/agent/service/register", body),
        )
        .await
        {
            Ok(Ok(answer)) if answer.status == hyper::StatusCode::OK => {
                outcome.latencies.record(sent.elapsed());
                outcome.acknowledged += 1;
                bounds.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(answer)) => {
                let text = String::from_utf8_lossy(&answer.body);
                outcome.failure(format!("{} {}", answer.status, text.trim()));
            }
            Ok(Err(error)) => {
                outcome.failure(format!("{error:#}"));
                connection = None;
            }
            Err(_) => {
                outcome.failure("no answer within --request-timeout".to_owned());
                connection = None;
            }
        }
    }
    outcome
}

/// Appends to `bounds.timeline` the writes acknowledged in each whole second from `started`,
/// until the deadline; the caller aborts it sooner when the count is reached first.
async fn per_second(started: Instant, bounds: Arc<Bounds>) {
    let mut last = 0;
    let mut tick = started;
    loop {
        tick += Duration::from_secs(1);
        if tick > bounds.stop_at {
            return;
        }
        tokio::time::sleep_until(tick).await;
        let now = bounds.acknowledged.load(Ordering::Relaxed);
        if let Ok(mut rates) = bounds.timeline.lock() {
            rates.push(now - last);
        }
        last = now;
    }
}

/// A registration as `register-load` sends it: one instance of `bench`, no checks.
fn register_body(id: &str) -> String {
    format!(r#"{{"Name":"bench","ID":"{id}","Address":"127.0.0.1","Port":8080,"Tags":["bench"]}}"#)
}

/// A JSON object of exactly `bytes` bytes (at least 2: `{}`).
fn padded_json(bytes: usize) -> Vec<u8> {
    const SHELL: usize = r#"{"pad":""}"#.len();
    if bytes < SHELL {
        return format!("{{{}}}", " ".repeat(bytes.saturating_sub(2))).into_bytes();
    }
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes - SHELL)).into_bytes()
}

async fn connect(addr: SocketAddr, request_timeout: Duration) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(request_timeout)
        .with_timeout(request_timeout);
    Client::connect([format!("http://{addr}")], Some(options))
        .await
        .with_context(|| format!("cannot connect to etcd at {addr}"))
}

/// etcd's current revision (from the header of any read).
async fn revision(etcd: &mut Client) -> anyhow::Result<u64> {
    let answer = etcd
        .get(ETCD_PREFIX, Some(GetOptions::new().with_count_only()))
        .await
        .context("cannot read etcd's revision")?;
    let revision = answer
        .header()
        .map(|header| header.revision())
        .context("etcd answered without a header")?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

/// etcd's WAL fsyncs so far, from its `/metrics`; `None` when it does not answer or say.
async fn wal_fsyncs(addr: SocketAddr) -> Option<u64> {
    let answer = Connection::open(addr)
        .await
        .ok()?
        .get("/metrics")
        .await
        .ok()?;
    let text = std::str::from_utf8(&answer.body).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix(WAL_FSYNCS)?.trim();
        value.parse::<f64>().ok().map(|count| count as u64)
    })
}

fn report(args: &Args, direct: &Phase, through: &Phase, value: usize, row: usize) -> String {
    let mut grid = Grid::new([
        "measure",
        "etcd alone: `Put`",
        "wayfinder on that etcd: `PUT /v1/agent/service/register`",
    ]);
    let mut both = |what: &str, cell: &dyn Fn(&Phase) -> String| {
        grid.row([what.to_owned(), cell(direct), cell(through)]);
    };
    both("clients (one connection each)", &|_| {
        args.clients.to_string()
    });
    both("bound", &|_| {
        format!(
            "{} writes or {} s",
            Count(args.count),
            args.duration.as_secs_f64()
        )
    });
    grid.row([
        "bytes per value".to_owned(),
        format!("{value} (the agent's row for one registration is {row})"),
        format!("{row} (the instance row in etcd)"),
    ]);
    let mut both = |what: &str, cell: &dyn Fn(&Phase) -> String| {
        grid.row([what.to_owned(), cell(direct), cell(through)]);
    };
    both("acknowledged", &|p| {
        Count(p.outcome.acknowledged).to_string()
    });
    both("failed (error or timeout)", &|p| {
        Count(p.outcome.failed).to_string()
    });
    both("elapsed", &|p| format!("{:.2} s", p.elapsed.as_secs_f64()));
    both("**writes/s**", &|p| format!("**{}**", Rate(p.rate())));
    both("writes/s, each whole second", &|p| {
        if p.timeline.is_empty() {
            return "n/a (under 1 s)".to_owned();
        }
        let seconds: Vec<String> = p.timeline.iter().map(|r| Count(*r).to_string()).collect();
        seconds.join(", ")
    });
    both("latency p50 / p99 / max", &|p| {
        format!(
            "{} / {} / {}",
            Millis(p.outcome.latencies.at(0.50)),
            Millis(p.outcome.latencies.at(0.99)),
            Millis(p.outcome.latencies.max())
        )
    });
    both("etcd transactions (revisions added)", &|p| {
        Count(p.revisions).to_string()
    });
    both("writes per etcd transaction", &|p| {
        per(p.outcome.acknowledged, p.revisions)
    });
    both("etcd WAL fsyncs", &|p| optional(p.wal_fsyncs.map(Count)));
    both("writes per WAL fsync", &|p| match p.wal_fsyncs {
        Some(fsyncs) => per(p.outcome.acknowledged, fsyncs),
        None => "n/a".to_owned(),
    });
    both("etcd CPU", &|p| optional(p.etcd_cpu.map(Cores)));
    both("agent CPU", &|p| optional(p.agent_cpu.map(Cores)));
    both("load generator CPU (same machine)", &|p| {
        Cores(p.generator_cpu).to_string()
    });
    both("machine CPU, all processes", &|p| p.machine.clone());
    both("keys in etcd afterwards ≥ acknowledged", &|p| {
        format!(
            "{} ≥ {}: {}",
            Count(p.stored),
            Count(p.outcome.acknowledged),
            if p.stored >= p.outcome.acknowledged {
                "ok"
            } else {
                "**LOST WRITES**"
            }
        )
    });
    let first_problems = |phase: &Phase| {
        phase
            .outcome
            .first_problem
            .as_ref()
            .map_or_else(|| "none".to_owned(), |p| format!("`{p}`"))
    };
    let problems = [first_problems(direct), first_problems(through)];
    grid.row([
        "first error".to_owned(),
        problems[0].clone(),
        problems[1].clone(),
    ]);
    grid.row([
        "**wayfinder ÷ etcd, writes/s**".to_owned(),
        String::new(),
        format!(
            "**{}**",
            Ratio(through.rate() / direct.rate().max(f64::EPSILON))
        ),
    ]);
    grid.render("Registrations against etcd's own write rate (`etcd-writes`)")
}

/// `a / b` with one decimal, or n/a when `b` is zero.
fn per(a: u64, b: u64) -> String {
    if b == 0 {
        return "n/a".to_owned();
    }
    format!("{:.1}", a as f64 / b as f64)
}

fn optional(value: Option<impl Display>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// CPU in cores, as the other reports write it.
struct Cores(f64);

impl Display for Cores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} cores", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_values_have_the_asked_size() {
        for bytes in [2, 5, 10, 11, 300, 4096] {
            assert_eq!(padded_json(bytes).len(), bytes);
        }
        assert!(serde_json::from_slice::<serde_json::Value>(&padded_json(300)).is_ok());
        assert!(serde_json::from_slice::<serde_json::Value>(&padded_json(2)).is_ok());
    }

    #[test]
    fn bounds_stop_at_the_count() {
        let bounds = Bounds {
            tickets: AtomicU64::new(0),
            count: 2,
            stop_at: Instant::now() + Duration::from_secs(60),
            request_timeout: Duration::from_secs(1),
            acknowledged: AtomicU64::new(0),
            timeline: Mutex::new(Vec::new()),
        };
        assert_eq!(bounds.next(), Some(0));
        assert_eq!(bounds.next(), Some(1));
        assert_eq!(bounds.next(), None);
    }
}
