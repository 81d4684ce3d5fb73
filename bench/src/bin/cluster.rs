//! `cluster`: three agents sharing one etcd cluster (issue 7).
//!
//! Two measurements, against agents `bench/run cluster` started with `--store etcd://…`:
//!
//! 1. **Propagation.** `--iterations` times, one after another: register a new instance of
//!    `prop` through agent A and, at the same moment, poll agent B's
//!    `GET /v1/endpoints/prop` back to back on a keep-alive connection until it lists the
//!    instance. Reported from the moment the write was sent, and from A's acknowledgement
//!    (the write is committed in etcd and applied on A), as p50/p99/max.
//! 2. **Writes per second through three agents.** `--clients` tasks, spread round robin over
//!    the agents, each with one keep-alive connection, register new instances of `load` back to
//!    back for `--duration` (or `--count` writes). Only a 200 counts. Afterwards every agent
//!    must list every acknowledged instance: no acknowledged write is lost, and every write
//!    reached every agent.
//!
//! Every loop is bounded by a count and a deadline, and only loopback addresses are accepted.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::{Instant, timeout};
use wayfinder_bench::args::{duration, loopback_addr};
use wayfinder_bench::client::{Connection, get_json};
use wayfinder_bench::latency::{Latencies, Millis};
use wayfinder_bench::report::{Count, Rate, Table};

/// Largest `--iterations` accepted.
const MAX_ITERATIONS: u32 = 10_000;
/// Largest `--clients` accepted.
const MAX_CLIENTS: u32 = 512;
/// Largest `--count` accepted.
const MAX_COUNT: u64 = 1_000_000;
/// How long one propagation may take before the iteration counts as lost.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most polls of B per iteration (the poll also stops at [`STEP_TIMEOUT`]).
const MAX_POLLS: u32 = 1_000_000;
/// How long the agents get to list every acknowledged write after the load stops.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Propagation between agents, and writes per second, in cluster mode")]
struct Args {
    /// The agents' HTTP addresses, comma-separated (loopback only): A first, then B, ...
    #[arg(long, value_delimiter = ',', value_parser = loopback_addr, required = true)]
    agents: Vec<SocketAddr>,
    /// Writes on A whose propagation to B is measured.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=MAX_ITERATIONS as i64))]
    iterations: u32,
    /// Concurrent writers for the throughput part, spread over the agents.
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(1..=MAX_CLIENTS as i64))]
    clients: u32,
    /// Longest throughput run.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Most throughput writes.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    count: u64,
    /// A request with no answer after this long is a failure.
    #[arg(long, default_value = "5s", value_parser = duration)]
    request_timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.agents.len() >= 2,
        "--agents needs at least two addresses (A, B, ...)"
    );
    let propagation = propagation(&args).await?;
    let throughput = throughput(&args).await?;

    let mut table = Table::new();
    table
        .row("agents sharing the etcd cluster", args.agents.len())
        .row(
            "propagation writes on A (measured / timed out)",
            format!(
                "{} / {}",
                propagation.from_send.count(),
                propagation.timed_out
            ),
        );
    for (name, latencies) in [
        ("from the write being sent", &propagation.from_send),
        ("from A's acknowledgement", &propagation.from_ack),
    ] {
        table.row(
            format!("A → B `/v1/endpoints` {name}: p50 / p99 / max"),
            format!(
                "{} / {} / {}",
                Millis(latencies.at(0.5)),
                Millis(latencies.at(0.99)),
                Millis(latencies.max())
            ),
        );
    }
    table
        .row(
            "A's write acknowledgement: p50 / p99",
            format!(
                "{} / {}",
                Millis(propagation.ack.at(0.5)),
                Millis(propagation.ack.at(0.99))
            ),
        )
        .row(
            "throughput: writers (keep-alive connections), spread over the agents",
            args.clients,
        )
        .row(
            "throughput: measured time",
            format!("{:.1} s", throughput.elapsed.as_secs_f64()),
        )
        .row("throughput: acknowledged writes", Count(throughput.ok))
        .row(
            "throughput: failed writes (non-200 or timeout)",
            Count(throughput.failed),
        )
        .row(
            "**writes per second through the agents**",
            Rate(throughput.ok as f64 / throughput.elapsed.as_secs_f64().max(1e-9)),
        )
        .row(
            "write latency: p50 / p99 / max",
            format!(
                "{} / {} / {}",
                Millis(throughput.latencies.at(0.5)),
                Millis(throughput.latencies.at(0.99)),
                Millis(throughput.latencies.max())
            ),
        )
        .row(
            "every agent lists every acknowledged write",
            match &throughput.verified {
                Ok(()) => "yes".to_owned(),
                Err(problem) => format!("**no**: {problem}"),
            },
        );
    print!(
        "{}",
        table.render("Cluster mode: 3 agents on one 3-member etcd (`cluster`)")
    );
    Ok(())
}

struct Propagation {
    from_send: Latencies,
    from_ack: Latencies,
    ack: Latencies,
    timed_out: u32,
}

async fn propagation(args: &Args) -> anyhow::Result<Propagation> {
    let (a, b) = (args.agents[0], args.agents[1]);
    let mut writer = Connection::open(a).await?;
    let mut poller = Connection::open(b).await?;
    let mut result = Propagation {
        from_send: Latencies::new(),
        from_ack: Latencies::new(),
        ack: Latencies::new(),
        timed_out: 0,
    };
    for i in 0..args.iterations {
        let id = format!("prop-{i:05}");
        let body = serde_json::json!({
            "Name": "prop", "ID": id, "Address": "10.9.0.1", "Port": 20000 + (i % 40000)
        })
        .to_string();
        let needle = format!("\"id\":\"{id}\"");
        let sent = Instant::now();
        let write = async {
            let answer = writer.put("/v1/agent/service/register", body).await?;
            answer.expect_ok("register on A")?;
            anyhow::Ok(Instant::now())
        };
        let seen = async {
            for _ in 0..MAX_POLLS {
                let answer = poller.get("/v1/endpoints/prop").await?;
                if answer.status.is_success() && contains(&answer.body, needle.as_bytes()) {
                    return anyhow::Ok(Instant::now());
                }
            }
            anyhow::bail!("B never listed {id} within {MAX_POLLS} polls")
        };
        match timeout(STEP_TIMEOUT, async { tokio::join!(write, seen) }).await {
            Ok((Ok(acked), Ok(visible))) => {
                result.from_send.record(visible - sent);
                result
                    .from_ack
                    .record(visible.saturating_duration_since(acked));
                result.ack.record(acked - sent);
            }
            Ok((write, seen)) => {
                write.context("propagation write")?;
                seen.context("propagation poll")?;
            }
            Err(_) => {
                result.timed_out += 1;
                // The connections may be mid-request: start the next iteration on fresh ones.
                writer = Connection::open(a).await?;
                poller = Connection::open(b).await?;
            }
        }
    }
    Ok(result)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct Throughput {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies: Latencies,
    verified: Result<(), String>,
}

async fn throughput(args: &Args) -> anyhow::Result<Throughput> {
    let tickets = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + args.duration;
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let addr = args.agents[client as usize % args.agents.len()];
        let (tickets, ok, failed) = (tickets.clone(), ok.clone(), failed.clone());
        let (count, request_timeout) = (args.count, args.request_timeout);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let mut connection = Connection::open(addr).await?;
            while Instant::now() < stop_at {
                let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                if ticket >= count {
                    break;
                }
                let body = serde_json::json!({
                    "Name": "load", "ID": format!("load-{ticket:07}"),
                    "Address": "10.9.1.1", "Port": 30000 + (ticket % 30000)
                })
                .to_string();
                let sent = Instant::now();
                match timeout(
                    request_timeout,
                    connection.put("/v1/agent/service/register", body),
                )
                .await
                {
                    Ok(Ok(answer)) if answer.status.is_success() => {
                        latencies.record(sent.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        connection = Connection::open(addr).await?;
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::new();
    for task in tasks {
        latencies.merge(&task.await.context("writer task")??);
    }
    let elapsed = started.elapsed();
    let acknowledged = ok.load(Ordering::Relaxed);
    let verified = verify(&args.agents, acknowledged).await;
    Ok(Throughput {
        ok: acknowledged,
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        latencies,
        verified,
    })
}

/// Waits (bounded) until every agent lists at least `acknowledged` instances of `load`.
async fn verify(agents: &[SocketAddr], acknowledged: u64) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    for agent in agents {
        loop {
            let listed = get_json(*agent, "/v1/catalog/service/load")
                .await
                .map(|v| v.as_array().map_or(0, Vec::len) as u64)
                .map_err(|e| e.to_string())?;
            if listed >= acknowledged {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{agent} lists {listed} of {acknowledged} after {SETTLE:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
