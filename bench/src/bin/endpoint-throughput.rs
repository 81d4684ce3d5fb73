//! `endpoint-throughput`: `GET /v1/endpoints/worker-service` requests per second, against nginx
//! serving the same bytes as a static file, in the same run.
//!
//! Registers the `worker-service` fleet (10 instances, passing), fetches the agent's answer and
//! has nginx serve exactly those bytes at the same path (see `wayfinder_bench::nginx` for its
//! configuration and why). Then runs wrk against each side in turn, `--rounds` times,
//! alternating (agent, nginx, agent, nginx, …) so that slow drift in what else the shared
//! machine does lands on both, after an unmeasured `--warmup` of each. Reports every run and
//! the medians, and the ratios the targets are stated in: requests/s ≥ 0.9× nginx's, p99 ≤ 1.5×
//! nginx's.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use wayfinder_bench::args::{AgentArgs, duration};
use wayfinder_bench::client::Connection;
use wayfinder_bench::fleet::{self, SERVICE};
use wayfinder_bench::latency::Millis;
use wayfinder_bench::nginx::{Nginx, NginxConfig, Site};
use wayfinder_bench::procfs::{CpuMark, CpuUse, Process};
use wayfinder_bench::report::{Count, Grid, Rate, Ratio, Table, median, verdict};
use wayfinder_bench::wrk::{self, Load, WrkReport};

/// Least share of nginx's requests/s the agent must serve (issue 3).
const TARGET_RATE_RATIO: f64 = 0.9;
/// Most the agent's p99 may be, as a multiple of nginx's (issue 3).
const TARGET_P99_RATIO: f64 = 1.5;

#[derive(Parser, Debug)]
#[command(about = "GET /v1/endpoints throughput of a running agent, side by side with nginx")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// Instances of worker-service to register.
    #[arg(long, default_value_t = fleet::DEFAULT_INSTANCES, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    instances: u32,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// nginx's `worker_processes`: a number, or `auto` (one per core).
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// An empty directory for nginx's configuration, the served file and its logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// wrk threads (`-t`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// wrk keep-alive connections (`-c`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Each measured wrk run (`-d`; whole seconds).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// An unmeasured wrk run against each side first (0s for none).
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// Measured runs of each side.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
}

/// Which server a run loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Wayfinder,
    Nginx,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Wayfinder => "wayfinder",
            Side::Nginx => "nginx",
        }
    }
}

/// One measured wrk run and the CPU used meanwhile.
struct Run {
    side: Side,
    report: WrkReport,
    cpu: CpuUse,
}

impl Run {
    /// Server CPU per request, in µs (None without a server pid).
    fn cpu_per_request(&self) -> Option<f64> {
        let seconds = self.report.seconds;
        self.cpu
            .server
            .map(|cores| cores * seconds / self.report.requests.max(1) as f64 * 1e6)
    }
}

/// The medians of one side's runs.
struct Medians {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_request: Option<f64>,
}

impl Medians {
    fn of(runs: &[Run], side: Side) -> anyhow::Result<Self> {
        let runs: Vec<&Run> = runs.iter().filter(|r| r.side == side).collect();
        let of = |value: fn(&Run) -> f64| median(runs.iter().map(|r| value(r)));
        Ok(Self {
            per_second: of(|r| r.report.per_second).context("no runs")?,
            p50: Duration::from_secs_f64(of(|r| r.report.p50.as_secs_f64()).context("no runs")?),
            p99: Duration::from_secs_f64(of(|r| r.report.p99.as_secs_f64()).context("no runs")?),
            cpu_per_request: median(runs.iter().filter_map(|r| r.cpu_per_request())),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = format!("/v1/endpoints/{SERVICE}");
    let mut connection = Connection::open(args.agent.addr).await?;
    fleet::register(&mut connection, args.instances).await?;
    let body = connection
        .get(&path)
        .await?
        .expect_ok(&format!("GET {path}"))?
        .body;
    let listed = fleet::listed_ids(&body)?.len();
    anyhow::ensure!(
        listed == args.instances as usize,
        "GET {path} lists {listed} endpoints, not the {} registered",
        args.instances
    );
    let nginx = Nginx::start(&NginxConfig {
        binary: args.nginx.clone(),
        dir: args.work_dir.clone(),
        workers: args.nginx_workers.clone(),
        site: Site::StaticFile {
            path: path.clone(),
            body: body.clone(),
        },
    })
    .await?;
    eprintln!(
        "endpoint-throughput: {} bytes of {path} from the agent at {}; nginx serves them at {}",
        body.len(),
        args.agent.addr,
        nginx.addr()
    );
    let result = compare(&args, &nginx, &path, body.len()).await;
    let nginx_errors = nginx.errors();
    nginx.stop().await;
    let report = result?;
    println!("{report}");
    if !nginx_errors.starts_with("no lines") {
        println!("nginx's error log during the run: `{nginx_errors}`\n");
    }
    Ok(())
}

/// Warms up and measures both sides; the report as markdown.
async fn compare(
    args: &Args,
    nginx: &Nginx,
    path: &str,
    body_bytes: usize,
) -> anyhow::Result<String> {
    let sides = [
        (
            Side::Wayfinder,
            format!("http://{}{path}", args.agent.addr),
            args.agent.process(),
        ),
        (
            Side::Nginx,
            format!("http://{}{path}", nginx.addr()),
            Some(Process::WithChildren(nginx.pid())),
        ),
    ];
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.duration,
    };
    if !args.warmup.is_zero() {
        let warmup = Load {
            duration: args.warmup,
            ..load
        };
        for (side, url, _) in &sides {
            eprintln!("endpoint-throughput: warm-up, {}", side.name());
            wrk::run(&args.wrk, warmup, url).await?;
        }
    }
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for (side, url, process) in &sides {
            eprintln!(
                "endpoint-throughput: round {round} of {}, {}",
                args.rounds,
                side.name()
            );
            let mark = CpuMark::now(*process)?;
            let started = Instant::now();
            let report = wrk::run(&args.wrk, load, url).await?;
            let cpu = mark.since(*process, started.elapsed(), args.agent.clk_tck)?;
            runs.push(Run {
                side: *side,
                report,
                cpu,
            });
        }
    }
    // The agent must have answered from its rendering, not re-rendered per request.
    let mut connection = Connection::open(args.agent.addr).await?;
    let cache_status = connection
        .get(path)
        .await?
        .headers
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    render(args, &runs, body_bytes, &cache_status)
}

fn render(
    args: &Args,
    runs: &[Run],
    body_bytes: usize,
    cache_status: &str,
) -> anyhow::Result<String> {
    let ours = Medians::of(runs, Side::Wayfinder)?;
    let theirs = Medians::of(runs, Side::Nginx)?;
    let rate_ratio = ours.per_second / theirs.per_second.max(f64::EPSILON);
    let p50_ratio = ours.p50.as_secs_f64() / theirs.p50.as_secs_f64().max(f64::EPSILON);
    let p99_ratio = ours.p99.as_secs_f64() / theirs.p99.as_secs_f64().max(f64::EPSILON);
    let errors: u64 = runs.iter().map(|r| r.report.errors()).sum();
    let response_bytes = |side: Side| {
        median(
            runs.iter()
                .filter(|r| r.side == side)
                .map(|r| r.report.bytes_per_response()),
        )
        .unwrap_or(0.0)
    };

    let mut setup = Table::new();
    setup
        .row(
            "request",
            format!(
                "`GET /v1/endpoints/{SERVICE}`, {} passing instances",
                args.instances
            ),
        )
        .row(
            "load (each run)",
            format!(
                "`wrk {} <url>` on the same machine",
                wrk::Load {
                    threads: args.threads,
                    connections: args.connections,
                    duration: args.duration,
                }
                .args()
                .join(" ")
            ),
        )
        .row(
            "runs",
            format!(
                "{} of each, alternating wayfinder, nginx, …, after a {} s unmeasured warm-up of each",
                args.rounds,
                args.warmup.as_secs_f64()
            ),
        )
        .row(
            "peer",
            format!(
                "nginx, `worker_processes {}`, keep-alive, the agent's body as a static file",
                args.nginx_workers
            ),
        )
        .row("body (identical bytes on both)", format!("{body_bytes} B"))
        .row(
            "response size, headers included (wayfinder / nginx)",
            format!(
                "{:.0} B / {:.0} B",
                response_bytes(Side::Wayfinder),
                response_bytes(Side::Nginx)
            ),
        )
        .row(
            "agent's X-Cache-Status after the runs",
            format!("`{cache_status}`"),
        )
        .row("errors (non-2xx and socket), all runs", Count(errors));

    let mut each = Grid::new([
        "run",
        "server",
        "requests/s",
        "p50",
        "p99",
        "errors",
        "server CPU",
        "server CPU per request",
        "machine CPU",
    ]);
    for (n, run) in runs.iter().enumerate() {
        each.row([
            (n + 1).to_string(),
            run.side.name().to_owned(),
            Rate(run.report.per_second).to_string(),
            Millis(run.report.p50).to_string(),
            Millis(run.report.p99).to_string(),
            Count(run.report.errors()).to_string(),
            run.cpu
                .server
                .map_or("n/a".to_owned(), |c| format!("{c:.2} cores")),
            run.cpu_per_request()
                .map_or("n/a".to_owned(), |us| format!("{us:.1} µs")),
            run.cpu.machine_text(),
        ]);
    }

    let mut summary = Grid::new([
        "median of the runs",
        "wayfinder",
        "nginx",
        "wayfinder ÷ nginx",
        "target",
    ]);
    side_by_side(
        &mut summary,
        "requests/s",
        (Rate(ours.per_second), Rate(theirs.per_second)),
        rate_ratio,
        Some(format!(
            "≥ {TARGET_RATE_RATIO}×: {}",
            verdict(rate_ratio >= TARGET_RATE_RATIO && errors == 0)
        )),
    );
    side_by_side(
        &mut summary,
        "latency p50",
        (Millis(ours.p50), Millis(theirs.p50)),
        p50_ratio,
        None,
    );
    side_by_side(
        &mut summary,
        "latency p99",
        (Millis(ours.p99), Millis(theirs.p99)),
        p99_ratio,
        Some(format!(
            "≤ {TARGET_P99_RATIO}×: {}",
            verdict(p99_ratio <= TARGET_P99_RATIO)
        )),
    );
    if let (Some(a), Some(b)) = (ours.cpu_per_request, theirs.cpu_per_request) {
        side_by_side(
            &mut summary,
            "server CPU per request",
            (format!("{a:.1} µs"), format!("{b:.1} µs")),
            a / b.max(f64::EPSILON),
            None,
        );
    }
    Ok(format!(
        "{}\n{}\n{}",
        setup.render("Endpoint throughput, wayfinder vs nginx (endpoint-throughput)"),
        each.render(""),
        summary.render("")
    ))
}

/// A row of wayfinder vs nginx and their ratio; rows with a target are set in bold.
fn side_by_side(
    grid: &mut Grid,
    measure: &str,
    (ours, theirs): (impl std::fmt::Display, impl std::fmt::Display),
    ratio: f64,
    target: Option<String>,
) {
    let bold = |cell: String| {
        if target.is_some() {
            format!("**{cell}**")
        } else {
            cell
        }
    };
    grid.row([
        bold(measure.to_owned()),
        bold(ours.to_string()),
        bold(theirs.to_string()),
        bold(Ratio(ratio).to_string()),
        target.clone().unwrap_or_default(),
    ]);
}
