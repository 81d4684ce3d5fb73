//! `check-capacity`: how many HTTP checks the agent's scheduler keeps running, and at what CPU.
//!
//! Starts `--servers` HTTP servers inside this process on loopback ports (each answers
//! `GET /health` with 200 "ok" and counts requests and accepted connections), registers
//! `--checks` instances `chk-<i>`, each with an HTTP check against server `i % servers` at
//! `--interval`, waits (bounded) until every check is passing, then measures for `--window`:
//! checks executed per second (the servers' counters, so what the agent actually sent, not what
//! it reports), the agent's CPU in cores and its resident memory.
//!
//! The servers share the machine's cores with the agent; their CPU is reported too (as this
//! process's CPU), since on a 2-core machine it is taken from the same budget.

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use axum::serve::ListenerExt;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, timeout};
use wayfinder_bench::args::{AgentArgs, duration};
use wayfinder_bench::client::{Connection, get_json};
use wayfinder_bench::procfs::{CpuMark, Process};
use wayfinder_bench::report::{Count, Rate, Table, verdict};

/// Share of the nominal rate (checks / interval) that must be executed to meet the target.
const TARGET_RATE_SHARE: f64 = 0.95;
/// Most agent CPU, in cores, the target allows.
const TARGET_AGENT_CORES: f64 = 1.0;
/// Largest `--checks` accepted.
const MAX_CHECKS: u64 = 100_000;
/// Instance IDs this benchmark registers start with this.
const ID_PREFIX: &str = "chk-";
/// How often readiness is polled while waiting for every check to pass.
const POLL_EVERY: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(about = "HTTP check capacity of a running agent's health scheduler")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// HTTP checks to register.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=MAX_CHECKS))]
    checks: u64,
    /// Local HTTP servers the checks are spread over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    servers: u16,
    /// Every check's interval (and timeout).
    #[arg(long, default_value = "1s", value_parser = duration)]
    interval: Duration,
    /// Concurrent registration clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    register_clients: u32,
    /// Longest wait for registration to finish.
    #[arg(long, default_value = "120s", value_parser = duration)]
    register_timeout: Duration,
    /// Longest wait for every check to be passing.
    #[arg(long, default_value = "60s", value_parser = duration)]
    settle_timeout: Duration,
    /// Pause after every check passes and before measuring.
    #[arg(long, default_value = "2s", value_parser = duration)]
    settle: Duration,
    /// Measured window.
    #[arg(long, default_value = "15s", value_parser = duration)]
    window: Duration,
}

/// What one checked server has seen.
#[derive(Default)]
struct Served {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// The checked servers, running until [`Servers::stop`].
struct Servers {
    ports: Vec<u16>,
    served: Vec<Arc<Served>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    async fn start(count: u16) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut servers = Servers {
            ports: Vec::new(),
            served: Vec::new(),
            stop,
            tasks: Vec::new(),
        };
        for _ in 0..count {
            let served = Arc::new(Served::default());
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot bind a checked server")?;
            servers.ports.push(listener.local_addr()?.port());
            let counting = Arc::clone(&served);
            let listener = listener.tap_io(move |stream| {
                counting.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
            });
            let router = Router::new()
                .route("/health", get(health))
                .with_state(Arc::clone(&served));
            let mut stopped = stopped.clone();
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
            servers.tasks.push(tokio::spawn(server.into_future()));
            servers.served.push(served);
        }
        Ok(servers)
    }

    fn requests(&self) -> u64 {
        self.served
            .iter()
            .map(|s| s.requests.load(Ordering::Relaxed))
            .sum()
    }

    fn connections(&self) -> u64 {
        self.served
            .iter()
            .map(|s| s.connections.load(Ordering::Relaxed))
            .sum()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            // The agent keeps checking until it is stopped; don't wait on its connections.
            let _ = timeout(Duration::from_secs(2), task).await;
        }
    }
}

async fn health(State(served): State<Arc<Served>>) -> &'static str {
    served.requests.fetch_add(1, Ordering::Relaxed);
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let servers = Servers::start(args.servers).await?;
    let result = run(&args, &servers).await;
    servers.stop().await;
    result
}

async fn run(args: &Args, servers: &Servers) -> anyhow::Result<()> {
    eprintln!(
        "check-capacity: {} HTTP checks every {}s over {} local servers, against {}",
        args.checks,
        args.interval.as_secs_f64(),
        args.servers,
        args.agent.addr
    );
    let registered_in = timeout(args.register_timeout, register_all(args, &servers.ports))
        .await
        .context("registration did not finish within --register-timeout")??;
    eprintln!(
        "check-capacity: registered {} in {:.1}s; waiting for every check to pass",
        args.checks,
        registered_in.as_secs_f64()
    );

    let waited_from = Instant::now();
    let mut passing = 0;
    while waited_from.elapsed() < args.settle_timeout {
        passing = count_in_state(args.agent.addr, "passing").await?;
        eprintln!("check-capacity: {passing} of {} passing", args.checks);
        if passing >= args.checks {
            break;
        }
        sleep(POLL_EVERY).await;
    }
    let all_passed_after = waited_from.elapsed();
    let all_passing = passing >= args.checks;
    sleep(args.settle).await;

    eprintln!(
        "check-capacity: measuring for {}s",
        args.window.as_secs_f64()
    );
    let mark = CpuMark::now(args.agent.process())?;
    let started = Instant::now();
    let requests_before = servers.requests();
    let connections_before = servers.connections();
    let mut per_second = Vec::new();
    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last = (Instant::now(), requests_before);
    while started.elapsed() + Duration::from_millis(500) < args.window {
        ticker.tick().await;
        let now = (Instant::now(), servers.requests());
        per_second.push((now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64());
        last = now;
    }
    let remaining = args.window.saturating_sub(started.elapsed());
    sleep(remaining).await;
    let elapsed = started.elapsed();
    let executed = servers.requests() - requests_before;
    let connections = servers.connections() - connections_before;
    let cpu = mark.since(args.agent.process(), elapsed, args.agent.clk_tck)?;
    let memory = args.agent.process().map(Process::memory_kib).transpose()?;

    let critical = count_in_state(args.agent.addr, "critical").await?;
    let warning = count_in_state(args.agent.addr, "warning").await?;

    let nominal = args.checks as f64 / args.interval.as_secs_f64();
    let rate = executed as f64 / elapsed.as_secs_f64();
    let (slowest, fastest) = per_second
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let mut table = Table::new();
    table
        .row(
            "checks",
            format!(
                "{} HTTP, every {} s (timeout {} s), over {} local servers",
                Count(args.checks),
                args.interval.as_secs_f64(),
                args.interval.as_secs_f64(),
                args.servers
            ),
        )
        .row(
            format!(
                "registration ({}-way concurrent, with checks)",
                args.register_clients
            ),
            format!(
                "{:.1} s ({}/s)",
                registered_in.as_secs_f64(),
                Rate(args.checks as f64 / registered_in.as_secs_f64())
            ),
        )
        .row(
            "all passing after registration",
            if all_passing {
                format!("{:.1} s", all_passed_after.as_secs_f64())
            } else {
                format!(
                    "**no**: {} of {} after {} s",
                    Count(passing),
                    Count(args.checks),
                    args.settle_timeout.as_secs()
                )
            },
        )
        .row("window", format!("{:.1} s", elapsed.as_secs_f64()))
        .row(
            "**checks executed/s** (servers' counters)",
            format!("**{}**", Rate(rate)),
        )
        .row(
            "slowest / fastest 1 s within the window",
            if per_second.is_empty() {
                "n/a".to_owned()
            } else {
                format!("{} / {}", Rate(slowest), Rate(fastest))
            },
        )
        .row(
            "new TCP connections/s to the servers",
            format!("{:.1}", connections as f64 / elapsed.as_secs_f64()),
        );
    match cpu.server {
        Some(agent) => {
            table.row("**agent CPU**", format!("**{agent:.2} cores**"));
            if executed > 0 {
                table.row(
                    "agent CPU per check run",
                    format!(
                        "{:.1} µs",
                        agent * elapsed.as_secs_f64() / executed as f64 * 1e6
                    ),
                );
            }
        }
        None => {
            table.row("agent CPU", "not measured (no --agent-pid)");
        }
    }
    if let Some(memory) = memory {
        table.row(
            "agent RSS (peak)",
            format!(
                "{:.1} MiB ({:.1} MiB)",
                memory.rss_kib as f64 / 1024.0,
                memory.peak_rss_kib as f64 / 1024.0
            ),
        );
    }
    cpu.rows(
        &mut table,
        "checked servers' CPU (this process, same machine)",
    )
    .row(
        "checks critical / warning after the window",
        format!("{critical} / {warning}"),
    );
    let rate_met = rate >= nominal * TARGET_RATE_SHARE;
    let cpu_met = cpu.server.map(|cores| cores <= TARGET_AGENT_CORES);
    table.row(
        format!(
            "target ≥ {} checks/s executed",
            Rate(nominal * TARGET_RATE_SHARE)
        ),
        verdict(rate_met && all_passing),
    );
    table.row(
        "target agent CPU ≤ 1.0 core",
        cpu_met.map_or("not measured", verdict),
    );
    println!(
        "{}",
        table.render("Health scheduler capacity (check-capacity)")
    );
    Ok(())
}

/// Registers every `chk-<i>` with its HTTP check, `--register-clients` at a time; returns how
/// long it took. Any answer but 200 stops the benchmark: the capacity would be meaningless.
async fn register_all(args: &Args, ports: &[u16]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let ports: Arc<[u16]> = ports.into();
    let mut tasks = Vec::new();
    for _ in 0..args.register_clients {
        let mut connection = Connection::open(args.agent.addr).await?;
        let (next, ports, total, interval) = (
            Arc::clone(&next),
            Arc::clone(&ports),
            args.checks,
            args.interval,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let port = ports[i as usize % ports.len()];
                let every = go_duration(interval);
                let body = format!(
                    r#"{{"Name":"capacity","ID":"{ID_PREFIX}{i}","Address":"127.0.0.1","Port":{port},"Check":{{"HTTP":"http://127.0.0.1:{port}/health","Interval":"{every}","Timeout":"{every}"}}}}"#
                );
                let answer = connection.put("/v1/agent/service/register", body).await?;
                anyhow::ensure!(
                    answer.status == hyper::StatusCode::OK,
                    "registering {ID_PREFIX}{i} answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
        }));
    }
    for task in tasks {
        task.await.context("a registration task panicked")??;
    }
    Ok(started.elapsed())
}

/// A duration as Consul's API writes it: `1s`, or `1500ms` when not whole seconds.
fn go_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// How many of this benchmark's checks are in `state` (`/v1/health/state/{state}`).
async fn count_in_state(addr: SocketAddr, state: &str) -> anyhow::Result<u64> {
    let checks = get_json(addr, &format!("/v1/health/state/{state}")).await?;
    let checks = checks
        .as_array()
        .context("/v1/health/state did not answer a JSON array")?;
    let ours = checks
        .iter()
        .filter(|check| {
            check
                .get("ServiceID")
                .and_then(|id| id.as_str())
                .is_some_and(|id| id.starts_with(ID_PREFIX))
        })
        .count();
    Ok(ours as u64)
}
