//! `scale`: one agent holding 100,000 instances in 10,000 services (issue 10).
//!
//! Against an agent started with the gateway on (bench/run gives it a durable data dir):
//!
//! 1. the 10-instance `worker-service` fleet, then the agent's RSS, `GET
//!    /v1/endpoints/worker-service` with wrk, and (with `--dns`) `worker-service.service.consul`
//!    A queries over UDP: the small-catalog figures;
//! 2. `--instances` more instances, `--per-service` to a service, each service with a
//!    `urlprefix-/scale-N` tag (so the gateway holds one route per service), registered by
//!    `--clients` keep-alive clients as fast as the durable write path acknowledges, in tenfold
//!    steps (1,000, 10,000, …, then `--instances`). After each step the same three figures
//!    again: the read rates against catalog size (`--plot-data` writes them for
//!    `bench/plot.py`), the registration rate, and the agent's resident memory per instance
//!    (growth over the small catalog, and the whole RSS divided by the instances);
//! 3. the read rates beside the largest catalog as ratios of the small ones (target ≥ 0.9);
//! 4. `--route-changes` changes to one service's routes (its instance re-registered with a new
//!    prefix each time), and the gateway's own histogram of update durations
//!    (`wayfinder_gateway_table_update_seconds`) read before and after: how long one changed
//!    service takes to reach the live route table with 10,000 routes in it (target < 1 ms).
//!
//! With `--memory-only` it only registers the instances and reports the RSS growth: bench/run
//! runs it against a second agent started without the gateway, to tell the registry's own
//! memory per instance (catalog, renderings, events, store) from the gateway's (route specs,
//! balancer sets, load and outlier state for every routed instance).
//!
//! Every loop is bounded by a count and a deadline, and talks to loopback only.

use anyhow::Context;
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use wayfinder_bench::args::loopback_addr;
use wayfinder_bench::args::{AgentArgs, duration};
use wayfinder_bench::client::Connection;
use wayfinder_bench::dns::{self, DnsLoad, DnsReport};
use wayfinder_bench::fleet;
use wayfinder_bench::report::{Count, Grid, Rate, Ratio, Table, verdict};
use wayfinder_bench::wrk::{self, Load};

/// Most instances accepted.
const MAX_INSTANCES: u64 = 1_000_000;
/// Longest the registration phase may take before the run gives up.
const REGISTER_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Parser, Debug)]
#[command(about = "100,000 instances in one agent: memory, read rate, gateway updates")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// wrk binary.
    #[arg(long)]
    wrk: PathBuf,
    /// Instances to add beside the 10-instance fleet.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_INSTANCES))]
    instances: u64,
    /// Instances per service.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000u64))]
    per_service: u64,
    /// Concurrent registering clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// Route changes to time.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    route_changes: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Each wrk run (and each DNS run).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// The agent's DNS address (`--dns-addr`), to measure DNS answers beside the catalog too.
    #[arg(long, value_parser = loopback_addr)]
    dns: Option<std::net::SocketAddr>,
    /// Where to write the measurements per catalog size as JSON, for `bench/plot.py`.
    #[arg(long)]
    plot_data: Option<PathBuf>,
    /// Only register the instances and report the agent's memory (for an agent without the
    /// gateway, whose per-instance balancer state is measured by the full run).
    #[arg(long)]
    memory_only: bool,
    /// Concurrent DNS clients (one UDP socket each, one query in flight each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    dns_clients: u32,
}

fn registration(n: u64, per_service: u64) -> String {
    let service = n / per_service;
    format!(
        r#"{{"Name":"scale-{service}","ID":"scale-{n}","Address":"10.{a}.{b}.{c}","Port":{port},"Tags":["urlprefix-/scale-{service}","v1"],"Meta":{{"version":"1.4.2"}}}}"#,
        a = (n >> 16) & 0xff,
        b = (n >> 8) & 0xff,
        c = n & 0xff,
        port = 8000 + n % 1000,
    )
}

/// Registers instances `from..to` with `clients` connections; returns the seconds it took.
async fn register_range(args: &Args, from: u64, to: u64) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(from));
    let started = Instant::now();
    let deadline = started + REGISTER_DEADLINE;
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let next = Arc::clone(&next);
        let (addr, total, per_service) = (args.agent.addr, to, args.per_service);
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "registration took over {REGISTER_DEADLINE:?}"
                );
                connection
                    .put("/v1/agent/service/register", registration(n, per_service))
                    .await?
                    .expect_ok(&format!("registering scale-{n}"))?;
            }
        }));
    }
    for task in tasks {
        task.await.context("a registering client panicked")??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The samples of `/metrics` whose name starts with `prefix`.
async fn metrics(
    connection: &mut Connection,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let answer = connection
        .get("/metrics")
        .await?
        .expect_ok("GET /metrics")?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    Ok(text
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The bucket bound under which `quantile` of the observations between `before` and `after`
/// fall (Prometheus' `le` buckets: an upper bound, not an interpolation).
fn bucket_quantile(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    quantile: f64,
) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(key, value)| {
            let le = key.split("le=\"").nth(1)?.split('"').next()?;
            let bound: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, value - before.get(key).copied().unwrap_or(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= quantile * total)
        .map(|(bound, _)| *bound)
}

fn micros(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() => format!("≤ {:.0} µs", s * 1e6),
        Some(_) => "> 82 ms".to_owned(),
        None => "no observation".to_owned(),
    }
}

async fn read_rate(args: &Args) -> anyhow::Result<wrk::WrkReport> {
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.duration,
    };
    let url = format!("http://{}/v1/endpoints/{}", args.agent.addr, fleet::SERVICE);
    wrk::run(&args.wrk, load, &url).await
}

/// `--memory-only`: the agent's RSS before and after the instances are registered, nothing
/// else (run against an agent without the gateway: the registry's own cost per instance).
async fn memory_only(
    args: &Args,
    process: &wayfinder_bench::procfs::Process,
) -> anyhow::Result<()> {
    let small_rss = process.memory_kib()?.rss_kib;
    let seconds = register_range(args, 0, args.instances).await?;
    let large_rss = process.memory_kib()?.rss_kib;
    let mut table = Table::new();
    memory_rows(&mut table, args, seconds, small_rss, large_rss);
    println!(
        "{}",
        table.render("Scale: memory per instance without the gateway (scale --memory-only)")
    );
    Ok(())
}

/// The rows both reports share: catalog size, registration rate, and the agent's RSS growth
/// per added instance against the 1 KiB target.
fn memory_rows(table: &mut Table, args: &Args, seconds: f64, small_rss: u64, large_rss: u64) {
    let growth = large_rss.saturating_sub(small_rss) as f64 * 1024.0 / args.instances as f64;
    table
        .row(
            "instances / services",
            format!(
                "{} / {}",
                Count(args.instances + u64::from(fleet::DEFAULT_INSTANCES)),
                Count(args.instances.div_ceil(args.per_service) + 1)
            ),
        )
        .row(
            format!("registrations/s (durable, {} clients)", args.clients),
            Rate(args.instances as f64 / seconds),
        )
        .row(
            "agent RSS, 10 instances → all",
            format!("{} KiB → {} KiB", Count(small_rss), Count(large_rss)),
        )
        .row(
            "**RSS growth per added instance** (target ≤ 1,024 B)",
            format!("{growth:.0} B {}", verdict(growth <= 1024.0)),
        );
}

/// Catalog sizes (added instances) measured on the way to `total`: each tenfold step from
/// 1,000, then `total` itself.
fn checkpoints(total: u64) -> Vec<u64> {
    let mut steps: Vec<u64> = std::iter::successors(Some(1_000u64), |n| n.checked_mul(10))
        .take_while(|&n| n < total)
        .collect();
    steps.push(total);
    steps
}

/// What one catalog size measured.
struct Size {
    /// Instances in the catalog, the fleet's 10 included.
    instances: u64,
    /// The agent's resident memory right after the last registration.
    rss_kib: u64,
    /// wrk on `GET /v1/endpoints/worker-service`.
    read: wrk::WrkReport,
    /// DNS A queries for `worker-service`, when the agent serves DNS.
    dns: Option<DnsReport>,
}

/// The agent's memory, then its endpoint and DNS read rates, with `instances` registered.
async fn measure(
    args: &Args,
    process: &wayfinder_bench::procfs::Process,
    instances: u64,
) -> anyhow::Result<Size> {
    let rss_kib = process.memory_kib()?.rss_kib;
    let read = read_rate(args).await?;
    let dns = dns_rate(args).await?;
    Ok(Size {
        instances,
        rss_kib,
        read,
        dns,
    })
}

/// Quantiles the DNS latency distribution is plotted at.
const PLOTTED_QUANTILES: [f64; 8] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// Writes what `bench/plot.py` draws: each size's rates and memory, and the DNS latency
/// distribution at each size.
fn write_plot_data(path: &std::path::Path, sizes: &[Size]) -> anyhow::Result<()> {
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    let sizes: Vec<serde_json::Value> = sizes
        .iter()
        .map(|size| {
            serde_json::json!({
                "instances": size.instances,
                "rss_kib": size.rss_kib,
                "endpoints_per_second": size.read.per_second,
                "endpoints_p50_ms": millis(size.read.p50),
                "endpoints_p99_ms": millis(size.read.p99),
                "dns_per_second": size.dns.as_ref().map(|d| d.per_second),
                "dns_quantiles_ms": size.dns.as_ref().map(|d| {
                    PLOTTED_QUANTILES
                        .iter()
                        .map(|&q| [q, millis(d.latencies.at(q))])
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "sizes": sizes }))?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The DNS answer rate for the fleet's service, when the agent serves DNS.
async fn dns_rate(args: &Args) -> anyhow::Result<Option<DnsReport>> {
    let Some(server) = args.dns else {
        return Ok(None);
    };
    let load = DnsLoad {
        clients: args.dns_clients,
        duration: args.duration,
    };
    let name = format!("{}.service.consul", fleet::SERVICE);
    Ok(Some(dns::run(server, &name, load).await?))
}

/// `rate/s, p99` of a DNS run, and its failures.
fn dns_cell(report: &DnsReport) -> String {
    format!(
        "{} answers/s, p99 {:?} ({} bad, {} lost)",
        Rate(report.per_second),
        report.latencies.at(0.99),
        report.bad,
        report.lost
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let process = args
        .agent
        .process()
        .context("scale needs --agent-pid to read memory")?;
    let mut connection = Connection::open(args.agent.addr).await?;
    fleet::register(&mut connection, fleet::DEFAULT_INSTANCES).await?;
    if args.memory_only {
        return memory_only(&args, &process).await;
    }
    let mut sizes = vec![measure(&args, &process, u64::from(fleet::DEFAULT_INSTANCES)).await?];
    let mut seconds = 0.0;
    let mut registered = 0;
    for checkpoint in checkpoints(args.instances) {
        seconds += register_range(&args, registered, checkpoint).await?;
        registered = checkpoint;
        sizes.push(
            measure(
                &args,
                &process,
                checkpoint + u64::from(fleet::DEFAULT_INSTANCES),
            )
            .await?,
        );
    }
    if let Some(path) = &args.plot_data {
        write_plot_data(path, &sizes)?;
    }
    let (first, last) = (&sizes[0], &sizes[sizes.len() - 1]);
    let (small, small_dns, small_rss) = (&first.read, &first.dns, first.rss_kib);
    let (large, large_dns, large_rss) = (&last.read, &last.dns, last.rss_kib);

    let mut connection = Connection::open(args.agent.addr).await?;
    let histogram = "wayfinder_gateway_table_update_seconds";
    let before = metrics(&mut connection, histogram).await?;
    for change in 0..args.route_changes {
        let body = format!(
            r#"{{"Name":"scale-0","ID":"scale-0","Address":"10.0.0.0","Port":8000,"Tags":["urlprefix-/scale-0-v{change}"]}}"#
        );
        connection
            .put("/v1/agent/service/register", body)
            .await?
            .expect_ok("changing scale-0's route")?;
    }
    // The gateway applies changes on its own task: wait (bounded) until it has seen them all.
    let count_key = format!("{histogram}_count");
    let wanted = before.get(&count_key).copied().unwrap_or(0.0) + 1.0;
    let waited = Instant::now();
    let mut after = metrics(&mut connection, histogram).await?;
    while after.get(&count_key).copied().unwrap_or(0.0) < wanted
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = metrics(&mut connection, histogram).await?;
    }
    let updates = after.get(&count_key).copied().unwrap_or(0.0)
        - before.get(&count_key).copied().unwrap_or(0.0);
    let sum_key = format!("{histogram}_sum");
    let mean = (after.get(&sum_key).copied().unwrap_or(0.0)
        - before.get(&sum_key).copied().unwrap_or(0.0))
        / updates.max(1.0);
    let buckets = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        m.iter()
            .filter(|(k, _)| k.contains("_bucket"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let (b0, b1) = (buckets(&before), buckets(&after));
    let p50 = bucket_quantile(&b0, &b1, 0.5);
    let p99 = bucket_quantile(&b0, &b1, 0.99);

    let instances = args.instances + u64::from(fleet::DEFAULT_INSTANCES);
    let whole_per_instance = large_rss as f64 * 1024.0 / instances as f64;
    let ratio = large.per_second / small.per_second.max(1.0);
    let mut table = Table::new();
    memory_rows(&mut table, &args, seconds, small_rss, large_rss);
    table
        .row(
            "whole RSS per instance",
            format!("{whole_per_instance:.0} B"),
        )
        .row(
            "GET /v1/endpoints/worker-service, 10-instance catalog",
            format!("{} req/s, p99 {:?}", Rate(small.per_second), small.p99),
        )
        .row(
            "the same, beside the large catalog",
            format!("{} req/s, p99 {:?}", Rate(large.per_second), large.p99),
        )
        .row(
            "**read rate, large ÷ small** (target ≥ 0.9)",
            format!("{} {}", Ratio(ratio), verdict(ratio >= 0.9)),
        )
        .row(
            "DNS `worker-service.service.consul` A, 10-instance catalog",
            small_dns
                .as_ref()
                .map_or_else(|| "not measured (no --dns)".to_owned(), dns_cell),
        )
        .row(
            "the same, beside the large catalog",
            large_dns
                .as_ref()
                .map_or_else(|| "not measured (no --dns)".to_owned(), dns_cell),
        );
    if let (Some(small_dns), Some(large_dns)) = (small_dns, large_dns) {
        let dns_ratio = large_dns.per_second / small_dns.per_second.max(1.0);
        table.row(
            "**DNS answer rate, large ÷ small** (target ≥ 0.9)",
            format!("{} {}", Ratio(dns_ratio), verdict(dns_ratio >= 0.9)),
        );
    }
    table
        .row(
            "gateway updates timed (one changed service, ~10,000 routes)",
            format!("{updates:.0}"),
        )
        .row("gateway update, mean", format!("{:.0} µs", mean * 1e6))
        .row(
            "gateway update, p50 / p99 (histogram bucket bound)",
            format!("{} / {}", micros(p50), micros(p99)),
        )
        .row(
            "**gateway update p99 < 1 ms**",
            verdict(p99.is_some_and(|p| p < 0.001)),
        )
        .row(
            "wrk errors / non-2xx (small, large)",
            format!(
                "{}/{}, {}/{}",
                small.errors(),
                small.non_2xx,
                large.errors(),
                large.non_2xx
            ),
        );
    println!(
        "{}",
        table.render("Scale: 100,000 instances in one agent (scale)")
    );
    let mut by_size = Grid::new([
        "instances",
        "agent RSS",
        "`/v1/endpoints` req/s",
        "`/v1/endpoints` p99",
        "DNS answers/s",
        "DNS p99",
    ]);
    for size in &sizes {
        by_size.row([
            Count(size.instances).to_string(),
            format!("{} KiB", Count(size.rss_kib)),
            Rate(size.read.per_second).to_string(),
            format!("{:?}", size.read.p99),
            size.dns
                .as_ref()
                .map_or_else(|| "—".to_owned(), |d| Rate(d.per_second).to_string()),
            size.dns
                .as_ref()
                .map_or_else(|| "—".to_owned(), |d| format!("{:?}", d.latencies.at(0.99))),
        ]);
    }
    println!(
        "{}",
        by_size.render("Scale: read rates by catalog size (scale)")
    );
    Ok(())
}
