//! `register-load`: registrations per second with durability on.
//!
//! `--clients` tasks each hold one keep-alive HTTP/1.1 connection and send
//! `PUT /v1/agent/service/register` back to back, every request with a new instance ID and no
//! checks, so what is measured is the write path alone: decode and validate, apply, one
//! group-committed fsync per batch, publish, answer. Only a 200 counts; anything else is an
//! error. The run stops at `--count` measured requests or `--duration`, whichever comes first,
//! after `--warmup` (whose requests are sent but not measured).
//!
//! Afterwards it lists the agent's services and checks that every acknowledged registration is
//! there. `--verify-only N` does just that check (bench/run uses it after a `kill -9` and a
//! restart on the same data dir).

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};
use wayfinder_bench::args::{AgentArgs, duration};
use wayfinder_bench::client::{Connection, get_json};
use wayfinder_bench::latency::{Latencies, Millis};
use wayfinder_bench::procfs::CpuMark;
use wayfinder_bench::report::{Count, Rate, Table, verdict};

/// The benchmark's target (docs/BENCHMARKS.md).
const TARGET_PER_SECOND: f64 = 10_000.0;
/// Largest `--count` accepted.
const MAX_COUNT: u64 = 1_000_000;
/// Largest `--clients` accepted.
const MAX_CLIENTS: u32 = 1024;
/// Instance IDs this benchmark registers start with this.
const ID_PREFIX: &str = "bench-";

#[derive(Parser, Debug)]
#[command(about = "Registrations per second against a running agent (durable write path)")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// Concurrent clients, each with one keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=MAX_CLIENTS as i64))]
    clients: u32,
    /// Most measured requests (the run also stops at --duration).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    count: u64,
    /// Longest measured time (the run also stops at --count).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Load sent before measuring starts (not counted), to warm connections and the agent.
    #[arg(long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// A request with no answer after this long is a failure (the connection is reopened).
    #[arg(long, default_value = "5s", value_parser = duration)]
    request_timeout: Duration,
    /// Write the number of acknowledged registrations here (for a later --verify-only).
    #[arg(long, value_name = "FILE")]
    ack_file: Option<PathBuf>,
    /// Spread the instances over this many service names (`bench`, or `bench-0`… when more
    /// than one). The benchmark uses one: every instance in one service, as a large deployment
    /// of one application looks.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    services: u32,
    /// Send no load: only check that the agent lists at least N bench instances.
    #[arg(long, value_name = "N")]
    verify_only: Option<u64>,
}

/// What every client task shares.
struct Plan {
    addr: SocketAddr,
    measure_from: Instant,
    stop_at: Instant,
    count: u64,
    measured_tickets: AtomicU64,
    warmup_tickets: AtomicU64,
    /// 200s inside the window so far, sampled once a second for the timeline.
    acknowledged: AtomicU64,
    request_timeout: Duration,
    services: u32,
}

/// What one client saw.
#[derive(Default)]
struct ClientOutcome {
    latencies: Latencies,
    /// 200s inside the measured window.
    acknowledged: u64,
    /// 200s during warm-up.
    warmup_acknowledged: u64,
    /// Answers other than 200 inside the measured window.
    rejected: u64,
    /// Requests with no answer (connection error or timeout) inside the measured window.
    failed: u64,
    /// Errors of either kind during warm-up.
    warmup_errors: u64,
    first_problem: Option<String>,
}

impl ClientOutcome {
    fn problem(&mut self, measured: bool, failure: bool, what: String) {
        match (measured, failure) {
            (true, true) => self.failed += 1,
            (true, false) => self.rejected += 1,
            (false, _) => self.warmup_errors += 1,
        }
        self.first_problem.get_or_insert(what);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(expected) = args.verify_only {
        let (listed, ok) = verify(args.agent.addr, expected).await?;
        println!(
            "{} bench instances listed, {} acknowledged before: {}",
            Count(listed),
            Count(expected),
            if ok { "ok" } else { "LOST WRITES" }
        );
        anyhow::ensure!(ok, "the agent lists fewer instances than were acknowledged");
        return Ok(());
    }
    run(args).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    eprintln!(
        "register-load: {} clients against {}, {}s warm-up, then up to {} requests or {}s",
        args.clients,
        args.agent.addr,
        args.warmup.as_secs_f64(),
        args.count,
        args.duration.as_secs_f64()
    );
    // Connect every client first, so connection set-up is in neither warm-up nor the window.
    let mut connections = Vec::with_capacity(args.clients as usize);
    for _ in 0..args.clients {
        connections.push(Connection::open(args.agent.addr).await?);
    }

    let now = Instant::now();
    let plan = Arc::new(Plan {
        addr: args.agent.addr,
        measure_from: now + args.warmup,
        stop_at: now + args.warmup + args.duration,
        count: args.count,
        measured_tickets: AtomicU64::new(0),
        warmup_tickets: AtomicU64::new(0),
        acknowledged: AtomicU64::new(0),
        request_timeout: args.request_timeout,
        services: args.services,
    });
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(client, connection)| {
            tokio::spawn(client_loop(client, connection, Arc::clone(&plan)))
        })
        .collect();

    sleep_until(plan.measure_from).await;
    let mark = CpuMark::now(args.agent.process())?;
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(per_second(Arc::clone(&plan), Arc::clone(&timeline)));
    // Every task stops by itself at the deadline; a request still out then ends by its own
    // timeout. This bound is only a guard against a bug here.
    let guard = args.duration + args.request_timeout + Duration::from_secs(10);
    let mut total = ClientOutcome::default();
    for task in tasks {
        let outcome = timeout(guard, task)
            .await
            .context("a client task overran its deadline")?
            .context("a client task panicked")?;
        total.latencies.merge(&outcome.latencies);
        total.acknowledged += outcome.acknowledged;
        total.warmup_acknowledged += outcome.warmup_acknowledged;
        total.rejected += outcome.rejected;
        total.failed += outcome.failed;
        total.warmup_errors += outcome.warmup_errors;
        if total.first_problem.is_none() {
            total.first_problem = outcome.first_problem;
        }
    }
    let elapsed = plan.measure_from.elapsed();
    let cpu = mark.since(args.agent.process(), elapsed, args.agent.clk_tck)?;
    sampler.abort();
    let timeline = timeline
        .lock()
        .map(|rates| rates.clone())
        .unwrap_or_default();

    let acknowledged_all = total.acknowledged + total.warmup_acknowledged;
    if let Some(path) = &args.ack_file {
        std::fs::write(path, acknowledged_all.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("register-load: load done; listing the agent's services to check them");
    let (listed, durable) = verify(args.agent.addr, acknowledged_all).await?;

    let rate = total.acknowledged as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let errors = total.rejected + total.failed;
    let mut table = Table::new();
    table
        .row(
            "clients (one keep-alive HTTP/1.1 connection each)",
            args.clients,
        )
        .row(
            "bound",
            format!(
                "{} requests or {} s, after {} s warm-up",
                Count(args.count),
                args.duration.as_secs_f64(),
                args.warmup.as_secs_f64()
            ),
        )
        .row(
            "requests acknowledged (200) in the window",
            Count(total.acknowledged),
        )
        .row("errors: non-200 answers", Count(total.rejected))
        .row(
            "errors: no answer (connection error or timeout)",
            Count(total.failed),
        )
        .row("elapsed", format!("{:.2} s", elapsed.as_secs_f64()))
        .row("**registrations/s**", format!("**{}**", Rate(rate)))
        .row(
            "registrations/s, each whole second of the window",
            timeline_text(&timeline),
        )
        .row(
            "latency p50 / p99 / p99.9 / max",
            format!(
                "{} / {} / {} / {}",
                Millis(total.latencies.at(0.50)),
                Millis(total.latencies.at(0.99)),
                Millis(total.latencies.at(0.999)),
                Millis(total.latencies.max())
            ),
        );
    if let Some(agent) = cpu.server {
        table.row("agent CPU", format!("{agent:.2} cores"));
    }
    cpu.rows(&mut table, "load generator CPU (same machine)");
    if let Some(agent) = cpu.server.filter(|_| total.acknowledged > 0) {
        table.row(
            "agent CPU per registration",
            format!(
                "{:.0} µs",
                agent * elapsed.as_secs_f64() / total.acknowledged as f64 * 1e6
            ),
        );
    }
    if let Some(bytes) = cpu.server_disk_writes.filter(|_| total.acknowledged > 0) {
        table.row(
            "agent disk writes per registration",
            format!(
                "{:.1} KiB",
                bytes as f64 / total.acknowledged as f64 / 1024.0
            ),
        );
    }
    if total.warmup_errors > 0 {
        table.row(
            "errors during warm-up (not in the window)",
            Count(total.warmup_errors),
        );
    }
    if let Some(problem) = &total.first_problem {
        table.row("first error", format!("`{problem}`"));
    }
    table
        .row(
            "durability check (GET /v1/agent/services)",
            format!(
                "{} instances listed ≥ {} acknowledged (warm-up included): {}",
                Count(listed),
                Count(acknowledged_all),
                if durable { "ok" } else { "**LOST WRITES**" }
            ),
        )
        .row(
            "target ≥ 10,000/s with no errors",
            verdict(rate >= TARGET_PER_SECOND && errors == 0),
        );
    println!(
        "{}",
        table.render("Registrations per second, durable (register-load)")
    );
    anyhow::ensure!(
        durable,
        "the agent lists fewer instances than it acknowledged"
    );
    Ok(())
}

/// One client: sends registrations on its connection until the deadline or the count.
async fn client_loop(client: usize, connection: Connection, plan: Arc<Plan>) -> ClientOutcome {
    let mut outcome = ClientOutcome::default();
    let mut connection = Some(connection);
    let mut n: u64 = 0;
    loop {
        let started = Instant::now();
        if started >= plan.stop_at {
            break;
        }
        let measured = started >= plan.measure_from;
        if measured {
            if plan.measured_tickets.fetch_add(1, Ordering::Relaxed) >= plan.count {
                break;
            }
        } else if plan.warmup_tickets.fetch_add(1, Ordering::Relaxed) >= plan.count {
            // Warm-up has its own cap (the same count); wait for the window.
            sleep_until(plan.measure_from).await;
            continue;
        }

        let Some(open) = connection.as_mut() else {
            match Connection::reopen(plan.addr, plan.request_timeout).await {
                Ok(fresh) => connection = Some(fresh),
                Err(problem) => outcome.problem(measured, true, problem),
            }
            continue;
        };

        let id = format!("{ID_PREFIX}{client}-{n}");
        let body = format!(
            r#"{{"Name":"{}","ID":"{id}","Address":"127.0.0.1","Port":{},"Tags":["bench"]}}"#,
            service_name(plan.services, n),
            1000 + n % 50_000
        );
        n += 1;
        let sent = Instant::now();
        match timeout(
            plan.request_timeout,
            open.put("/v1/agent/service/register", body),
        )
        .await
        {
            Ok(Ok(answer)) if answer.status == hyper::StatusCode::OK => {
                if measured {
                    outcome.latencies.record(sent.elapsed());
                    outcome.acknowledged += 1;
                    plan.acknowledged.fetch_add(1, Ordering::Relaxed);
                } else {
                    outcome.warmup_acknowledged += 1;
                }
            }
            Ok(Ok(answer)) => {
                let text = String::from_utf8_lossy(&answer.body);
                outcome.problem(
                    measured,
                    false,
                    format!("{} {}", answer.status, text.trim()),
                );
            }
            Ok(Err(error)) => {
                outcome.problem(measured, true, format!("{error:#}"));
                connection = None;
            }
            Err(_) => {
                outcome.problem(
                    measured,
                    true,
                    "no answer within --request-timeout".to_owned(),
                );
                connection = None;
            }
        }
    }
    outcome
}

/// The service an instance registers under: `bench`, or `bench-<n mod services>`.
fn service_name(services: u32, n: u64) -> String {
    if services == 1 {
        "bench".to_owned()
    } else {
        format!("bench-{}", n % u64::from(services))
    }
}

/// Appends to `rates` the registrations acknowledged in each whole second of the window, so
/// the report shows whether throughput holds as the catalog grows. Ends at the deadline, or
/// sooner when the caller aborts it because the count was reached.
async fn per_second(plan: Arc<Plan>, rates: Arc<Mutex<Vec<u64>>>) {
    let mut last = plan.acknowledged.load(Ordering::Relaxed);
    let mut tick = plan.measure_from;
    loop {
        tick += Duration::from_secs(1);
        if tick > plan.stop_at {
            return;
        }
        sleep_until(tick).await;
        let now = plan.acknowledged.load(Ordering::Relaxed);
        if let Ok(mut rates) = rates.lock() {
            rates.push(now - last);
        }
        last = now;
    }
}

fn timeline_text(rates: &[u64]) -> String {
    if rates.is_empty() {
        return "n/a (window under 1 s)".to_owned();
    }
    let all: Vec<String> = rates.iter().map(|r| Count(*r).to_string()).collect();
    all.join(", ")
}

/// Counts the bench instances the agent lists; true when at least `expected`.
async fn verify(addr: SocketAddr, expected: u64) -> anyhow::Result<(u64, bool)> {
    let services = get_json(addr, "/v1/agent/services").await?;
    let services = services
        .as_object()
        .context("GET /v1/agent/services did not answer a JSON object")?;
    let listed = services
        .keys()
        .filter(|id| id.starts_with(ID_PREFIX))
        .count() as u64;
    Ok((listed, listed >= expected))
}
