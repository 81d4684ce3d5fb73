//! `gateway-throughput`: requests per second and latency through the gateway to 4 local
//! backends, against HAProxy and nginx proxying to the same backends, in the same run (issue 4).
//!
//! Starts `backend-server` (4 fixed-answer backends on loopback ports, one process), registers
//! them as instances of `web` with the tag `urlprefix-/` and waits until `GET /v1/routes` shows
//! the route with all 4. Starts HAProxy (see `wayfinder_bench::haproxy`) and nginx as a reverse
//! proxy (see `wayfinder_bench::nginx`) in front of the same backends, round robin and keep-alive on both
//! sides, like the gateway. Checks that each proxy answers `GET /` and reaches every backend.
//! Then runs wrk against each side in turn, `--rounds` times, alternating (gateway, HAProxy,
//! nginx, direct, gateway, …) so that slow drift in what else the shared machine does lands on
//! all of them, after an unmeasured `--warmup` of each. "direct" is wrk straight to the first
//! backend with the same connections: the latency each proxy adds is its latency minus that.
//!
//! Reports every run and the medians, and the ratios the target is stated in: the gateway's
//! requests/s ≥ 1.1× the better peer's, and its p99 lower than that peer's.

use anyhow::Context;
use clap::Parser;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::time::{Instant, sleep, timeout};
use wayfinder_bench::args::{AgentArgs, duration, loopback_addr};
use wayfinder_bench::client::{Connection, get_json};
use wayfinder_bench::haproxy::{HAProxy, HAProxyConfig};
use wayfinder_bench::latency::Millis;
use wayfinder_bench::nginx::{Nginx, NginxConfig, Site};
use wayfinder_bench::process_group::ProcessGroup;
use wayfinder_bench::procfs::{CpuMark, CpuUse, Process};
use wayfinder_bench::report::{Count, Grid, Rate, Ratio, Table, median, verdict};
use wayfinder_bench::wrk::{self, Load, WrkReport};

/// Least multiple of the better peer's requests/s the gateway must serve (issue 4).
const TARGET_RATE_RATIO: f64 = 1.1;
/// The service the backends are registered as.
const SERVICE: &str = "web";
/// The path loaded on every side (the gateway's route is `urlprefix-/`).
const PATH: &str = "/";
/// How long the backends may take to print their addresses.
const BACKENDS_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway may take to route to every registered backend.
const ROUTES_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `GET /v1/routes` is asked meanwhile.
const ROUTES_POLL: Duration = Duration::from_millis(100);
/// Requests on one connection with which each side must show it reaches every backend.
const PROBE_REQUESTS: usize = 16;

#[derive(Parser, Debug)]
#[command(about = "Gateway throughput to local backends, side by side with HAProxy and nginx")]
struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    /// The agent's gateway address (the banner's `gateway:` line; loopback only).
    #[arg(long, value_parser = loopback_addr)]
    gateway: SocketAddr,
    /// The `backend-server` binary.
    #[arg(long, default_value = "backend-server")]
    backend_server: PathBuf,
    /// Backends to run and register.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    backends: u32,
    /// tokio worker threads of the backend process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    backend_threads: u32,
    /// Response body length of every backend, in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(32..=65_536))]
    body_bytes: u32,
    /// The HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy: PathBuf,
    /// HAProxy's `nbthread`.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    haproxy_threads: u32,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// nginx's `worker_processes`: a number, or `auto` (one per core).
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// An empty directory for the peers' configurations, pid files and logs.
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

/// What a run loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Gateway,
    HAProxy,
    Nginx,
    /// wrk straight to the first backend: the baseline the proxies add latency to.
    Direct,
}

impl Side {
    const ALL: [Side; 4] = [Side::Gateway, Side::HAProxy, Side::Nginx, Side::Direct];
    const PEERS: [Side; 2] = [Side::HAProxy, Side::Nginx];

    fn name(self) -> &'static str {
        match self {
            Side::Gateway => "gateway",
            Side::HAProxy => "haproxy",
            Side::Nginx => "nginx",
            Side::Direct => "direct",
        }
    }
}

/// One side as loaded: where, and which process is the proxy (none for direct).
struct Target {
    side: Side,
    addr: SocketAddr,
    proxy: Option<Process>,
}

/// One measured wrk run and the CPU used meanwhile.
struct Run {
    side: Side,
    report: WrkReport,
    /// The proxy's CPU (`server`), this process's and the machine's.
    cpu: CpuUse,
    /// The backend process's CPU (as `server`).
    backends_cpu: CpuUse,
}

impl Run {
    /// CPU per request in µs, of the proxy (None for direct) and of the backends.
    fn per_request(&self, cores: Option<f64>) -> Option<f64> {
        cores.map(|c| c * self.report.seconds / self.report.requests.max(1) as f64 * 1e6)
    }
}

/// The medians of one side's runs.
struct Medians {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    proxy_cpu_per_request: Option<f64>,
    backends_cpu_per_request: Option<f64>,
    response_bytes: f64,
}

impl Medians {
    fn of(runs: &[Run], side: Side) -> anyhow::Result<Self> {
        let runs: Vec<&Run> = runs.iter().filter(|r| r.side == side).collect();
        let of = |value: fn(&Run) -> f64| {
            median(runs.iter().map(|r| value(r))).with_context(|| format!("no {side:?} runs"))
        };
        Ok(Self {
            per_second: of(|r| r.report.per_second)?,
            p50: Duration::from_secs_f64(of(|r| r.report.p50.as_secs_f64())?),
            p99: Duration::from_secs_f64(of(|r| r.report.p99.as_secs_f64())?),
            proxy_cpu_per_request: median(runs.iter().filter_map(|r| r.per_request(r.cpu.server))),
            backends_cpu_per_request: median(
                runs.iter()
                    .filter_map(|r| r.per_request(r.backends_cpu.server)),
            ),
            response_bytes: of(|r| r.report.bytes_per_response())?,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let backends = Backends::start(&args).await?;
    let result = with_backends(&args, &backends).await;
    backends.stop().await;
    println!("{}", result?);
    Ok(())
}

/// Registers the backends, starts the peers, measures; the peers are stopped on every path.
async fn with_backends(args: &Args, backends: &Backends) -> anyhow::Result<String> {
    register(args, &backends.addrs).await?;
    wait_for_route(args).await?;
    let haproxy = HAProxy::start(
        &HAProxyConfig {
            binary: args.haproxy.clone(),
            dir: args.work_dir.join("haproxy"),
            threads: args.haproxy_threads,
            backends: backends.addrs.clone(),
        },
        PATH,
    )
    .await?;
    let nginx = match Nginx::start(&NginxConfig {
        binary: args.nginx.clone(),
        dir: args.work_dir.join("nginx"),
        workers: args.nginx_workers.clone(),
        site: Site::Proxy {
            backends: backends.addrs.clone(),
        },
    })
    .await
    {
        Ok(nginx) => nginx,
        Err(error) => {
            haproxy.stop().await;
            return Err(error);
        }
    };
    eprintln!(
        "gateway-throughput: backends {:?}; gateway {}, HAProxy {}, nginx {}",
        backends.addrs,
        args.gateway,
        haproxy.addr(),
        nginx.addr()
    );
    let targets = [
        Target {
            side: Side::Gateway,
            addr: args.gateway,
            proxy: args.agent.process(),
        },
        Target {
            side: Side::HAProxy,
            addr: haproxy.addr(),
            proxy: Some(Process::Pid(haproxy.pid())),
        },
        Target {
            side: Side::Nginx,
            addr: nginx.addr(),
            proxy: Some(Process::WithChildren(nginx.pid())),
        },
        Target {
            side: Side::Direct,
            addr: backends.addrs[0],
            proxy: None,
        },
    ];
    let result = compare(args, backends, &targets).await;
    let peer_errors = [
        ("HAProxy's output", haproxy.errors()),
        ("nginx's error log", nginx.errors()),
    ];
    haproxy.stop().await;
    nginx.stop().await;
    let mut report = result?;
    for (whose, errors) in peer_errors {
        if !errors.starts_with("no lines") {
            report.push_str(&format!("{whose} during the run: `{errors}`\n\n"));
        }
    }
    Ok(report)
}

/// Registers backend N as `web-N`, passing (no check), routed at `/`.
async fn register(args: &Args, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let mut connection = Connection::open(args.agent.addr).await?;
    for (n, addr) in (1..).zip(addrs) {
        let body = serde_json::json!({
            "Name": SERVICE,
            "ID": format!("{SERVICE}-{n}"),
            "Address": addr.ip().to_string(),
            "Port": addr.port(),
            "Tags": ["urlprefix-/"],
        });
        connection
            .put("/v1/agent/service/register", body.to_string())
            .await?
            .expect_ok(&format!("registering {SERVICE}-{n}"))?;
    }
    Ok(())
}

/// Waits until `GET /v1/routes` shows `/` → `web` with every backend passing and not ejected.
async fn wait_for_route(args: &Args) -> anyhow::Result<()> {
    let deadline = Instant::now() + ROUTES_TIMEOUT;
    let max_polls = (ROUTES_TIMEOUT.as_millis() / ROUTES_POLL.as_millis()) as u32 + 1;
    let mut routed = 0;
    for _ in 0..max_polls {
        let routes = get_json(args.agent.addr, "/v1/routes").await?;
        routed = routed_instances(&routes);
        if routed == args.backends as usize {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        sleep(ROUTES_POLL).await;
    }
    anyhow::bail!(
        "after {ROUTES_TIMEOUT:?}, GET /v1/routes shows {routed} of the {} backends routed at / → {SERVICE}",
        args.backends
    )
}

/// Instances of the `/` → `web` route that are passing and not ejected.
fn routed_instances(routes: &serde_json::Value) -> usize {
    let Some(routes) = routes.get("routes").and_then(|r| r.as_array()) else {
        return 0;
    };
    routes
        .iter()
        .filter(|r| {
            r.get("prefix").and_then(|p| p.as_str()) == Some(PATH)
                && r.get("service").and_then(|s| s.as_str()) == Some(SERVICE)
        })
        .filter_map(|r| r.get("instances").and_then(|i| i.as_array()))
        .flatten()
        .filter(|i| {
            i.get("health").and_then(|h| h.as_str()) == Some("passing")
                && i.get("ejected").and_then(|e| e.as_bool()) == Some(false)
        })
        .count()
}

/// What [`PROBE_REQUESTS`] requests on one connection to a side showed.
struct Probe {
    /// Distinct backends that answered.
    backends: BTreeSet<u64>,
}

/// Sends [`PROBE_REQUESTS`] `GET /` on one connection; every one must be a 200 with a backend's
/// body of the expected length.
async fn probe(target: &Target, body_bytes: usize) -> anyhow::Result<Probe> {
    let mut connection = Connection::open(target.addr).await?;
    let mut backends = BTreeSet::new();
    let what = format!("{} GET {PATH}", target.side.name());
    for _ in 0..PROBE_REQUESTS {
        let answer = connection.get(PATH).await?.expect_ok(&what)?;
        anyhow::ensure!(
            answer.body.len() == body_bytes,
            "{what}: a {} B body, not the backends' {body_bytes} B: {:?}",
            answer.body.len(),
            String::from_utf8_lossy(&answer.body)
        );
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .with_context(|| format!("{what}: the body is not a backend's JSON"))?;
        let backend = json
            .get("backend")
            .and_then(|b| b.as_u64())
            .with_context(|| format!("{what}: no \"backend\" number in {json}"))?;
        backends.insert(backend);
    }
    Ok(Probe { backends })
}

/// Probes, warms up and measures every side; the report as markdown.
async fn compare(args: &Args, backends: &Backends, targets: &[Target]) -> anyhow::Result<String> {
    let mut probes = Vec::new();
    for target in targets {
        probes.push((target.side, probe(target, args.body_bytes as usize).await?));
    }
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.duration,
    };
    let url = |target: &Target| format!("http://{}{PATH}", target.addr);
    if !args.warmup.is_zero() {
        let warmup = Load {
            duration: args.warmup,
            ..load
        };
        for target in targets {
            eprintln!("gateway-throughput: warm-up, {}", target.side.name());
            wrk::run(&args.wrk, warmup, &url(target)).await?;
        }
    }
    let load_before = load_average();
    let backend_process = Some(Process::Pid(backends.process.pid()));
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for target in targets {
            eprintln!(
                "gateway-throughput: round {round} of {}, {}",
                args.rounds,
                target.side.name()
            );
            let mark = CpuMark::now(target.proxy)?;
            let backends_mark = CpuMark::now(backend_process)?;
            let started = Instant::now();
            let report = wrk::run(&args.wrk, load, &url(target)).await?;
            let elapsed = started.elapsed();
            let clk_tck = args.agent.clk_tck;
            runs.push(Run {
                side: target.side,
                report,
                cpu: mark.since(target.proxy, elapsed, clk_tck)?,
                backends_cpu: backends_mark.since(backend_process, elapsed, clk_tck)?,
            });
        }
    }
    let load_after = load_average();
    render(args, &runs, &probes, (&load_before, &load_after))
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn render(
    args: &Args,
    runs: &[Run],
    probes: &[(Side, Probe)],
    (load_before, load_after): (&str, &str),
) -> anyhow::Result<String> {
    let medians: Vec<(Side, Medians)> = Side::ALL
        .iter()
        .map(|&side| Ok((side, Medians::of(runs, side)?)))
        .collect::<anyhow::Result<_>>()?;
    let of = |side: Side| {
        medians
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, m)| m)
            .context("a side without runs")
    };
    let gateway = of(Side::Gateway)?;
    let direct = of(Side::Direct)?;
    let better = Side::PEERS
        .into_iter()
        .map(|side| Ok((side, of(side)?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .max_by(|a, b| a.1.per_second.total_cmp(&b.1.per_second))
        .context("no peers")?;
    let errors: u64 = runs.iter().map(|r| r.report.errors()).sum();
    let rate_ratio = gateway.per_second / better.1.per_second.max(f64::EPSILON);
    let p99_ratio = gateway.p99.as_secs_f64() / better.1.p99.as_secs_f64().max(f64::EPSILON);

    let mut setup = Table::new();
    setup
        .row(
            "request",
            format!(
                "`GET {PATH}` through each proxy to {} backends (round robin, keep-alive to clients and to backends), or straight to one backend (direct)",
                args.backends
            ),
        )
        .row(
            "backends",
            format!(
                "`backend-server`: {} hyper HTTP/1.1 listeners in one process on {} tokio threads, `200` with a {} B JSON body",
                args.backends, args.backend_threads, args.body_bytes
            ),
        )
        .row(
            "load (each run)",
            format!(
                "`wrk {} <url>` on the same machine",
                load_args(args).join(" ")
            ),
        )
        .row(
            "runs",
            format!(
                "{} of each, alternating gateway, haproxy, nginx, direct, …, after a {} s unmeasured warm-up of each",
                args.rounds,
                args.warmup.as_secs_f64()
            ),
        )
        .row(
            "gateway",
            format!(
                "`wayfinder agent --dev --gateway-addr`, route `urlprefix-/` → `{SERVICE}` (round robin), tokio with one worker per core"
            ),
        )
        .row(
            "haproxy",
            format!(
                "`nbthread {}`, `balance roundrobin`, `option http-keep-alive`, `http-reuse always`, `option forwardfor`, no logging",
                args.haproxy_threads
            ),
        )
        .row(
            "nginx",
            format!(
                "`worker_processes {}`, upstream with `keepalive 64`, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, X-Forwarded-For/-Proto, no access log",
                args.nginx_workers
            ),
        )
        .row(
            "response size, headers included (gateway / haproxy / nginx / direct)",
            Side::ALL
                .iter()
                .map(|&side| of(side).map(|m| format!("{:.0} B", m.response_bytes)))
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(" / "),
        )
        .row(
            format!("backends answering {PROBE_REQUESTS} requests on one connection (gateway / haproxy / nginx / direct)"),
            probes
                .iter()
                .map(|(_, p)| format!("{} of {}", p.backends.len(), args.backends))
                .collect::<Vec<_>>()
                .join(" / "),
        )
        .row("errors (non-2xx and socket), all runs", Count(errors))
        .row(
            "load average before / after the measured runs",
            format!("{load_before} / {load_after}"),
        );

    let mut each = Grid::new([
        "run",
        "side",
        "requests/s",
        "p50",
        "p99",
        "errors",
        "proxy CPU",
        "proxy CPU per request",
        "backends CPU",
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
                .map_or("—".to_owned(), |c| format!("{c:.2} cores")),
            micros(run.per_request(run.cpu.server)),
            run.backends_cpu
                .server
                .map_or("n/a".to_owned(), |c| format!("{c:.2} cores")),
            run.cpu.machine_text(),
        ]);
    }

    let ratio_columns: Vec<String> = Side::PEERS
        .iter()
        .map(|p| format!("gateway ÷ {}", p.name()))
        .collect();
    let mut header = vec!["median of the runs".to_owned()];
    header.extend(Side::ALL.iter().map(|s| s.name().to_owned()));
    header.extend(ratio_columns);
    header.push(format!(
        "target (against {}, the better peer)",
        better.0.name()
    ));
    let mut summary = Grid::new(header);
    let peers: Vec<(Side, &Medians)> = Side::PEERS
        .iter()
        .map(|&s| Ok((s, of(s)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut row = |measure: &str,
                   value: &dyn Fn(Side, &Medians) -> Option<f64>,
                   show: &dyn Fn(Option<f64>) -> String,
                   target: Option<String>| {
        let bold = |cell: String| {
            if target.is_some() {
                format!("**{cell}**")
            } else {
                cell
            }
        };
        let mut cells = vec![bold(measure.to_owned())];
        for (side, m) in &medians {
            cells.push(bold(show(value(*side, m))));
        }
        for (side, peer) in &peers {
            cells.push(bold(
                match (value(Side::Gateway, gateway), value(*side, peer)) {
                    (Some(a), Some(b)) if b > 0.0 => Ratio(a / b).to_string(),
                    _ => "—".to_owned(),
                },
            ));
        }
        cells.push(target.unwrap_or_default());
        summary.row(cells);
    };
    let ms = |d: Duration| Some(d.as_secs_f64() * 1e3);
    let show_ms = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2} ms"));
    row(
        "requests/s",
        &|_, m| Some(m.per_second),
        &|v| v.map_or("—".to_owned(), |v| Rate(v).to_string()),
        Some(format!(
            "≥ {TARGET_RATE_RATIO}×: {} ({})",
            verdict(rate_ratio >= TARGET_RATE_RATIO && errors == 0),
            Ratio(rate_ratio)
        )),
    );
    row("latency p50", &|_, m| ms(m.p50), &show_ms, None);
    row(
        "latency p99",
        &|_, m| ms(m.p99),
        &show_ms,
        Some(format!(
            "lower: {} ({})",
            verdict(gateway.p99 < better.1.p99),
            Ratio(p99_ratio)
        )),
    );
    // What a proxy adds: its latency minus wrk's straight to a backend.
    let added = |side: Side, ours: Duration, direct: Duration| {
        (side != Side::Direct).then_some((ours.as_secs_f64() - direct.as_secs_f64()) * 1e3)
    };
    row(
        "p50 added over direct",
        &|s, m| added(s, m.p50, direct.p50),
        &signed_ms,
        None,
    );
    row(
        "p99 added over direct",
        &|s, m| added(s, m.p99, direct.p99),
        &signed_ms,
        None,
    );
    row(
        "proxy CPU per request",
        &|_, m| m.proxy_cpu_per_request,
        &micros,
        None,
    );
    row(
        "backends CPU per request",
        &|_, m| m.backends_cpu_per_request,
        &micros,
        None,
    );
    Ok(format!(
        "{}\n{}\n{}",
        setup.render("Gateway throughput, wayfinder vs HAProxy and nginx (gateway-throughput)"),
        each.render(""),
        summary.render("")
    ))
}

fn load_args(args: &Args) -> Vec<String> {
    Load {
        threads: args.threads,
        connections: args.connections,
        duration: args.duration,
    }
    .args()
}

/// `12.3 µs`, or `—` when not measured.
fn micros(value: Option<f64>) -> String {
    value.map_or("—".to_owned(), |us| format!("{us:.1} µs"))
}

/// `+0.42 ms` / `−0.05 ms`, or `—`.
fn signed_ms(value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(v) if v < 0.0 => format!("−{:.2} ms", -v),
        Some(v) => format!("+{v:.2} ms"),
    }
}

/// The `backend-server` process: its pid, where its backends listen, and its stdin (it exits
/// when that closes, so it cannot outlive us even if we are killed).
struct Backends {
    process: ProcessGroup,
    addrs: Vec<SocketAddr>,
    _stdin: Option<ChildStdin>,
}

impl Backends {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let mut process = ProcessGroup::spawn(
            Command::new(&args.backend_server)
                .arg("--count")
                .arg(args.backends.to_string())
                .arg("--threads")
                .arg(args.backend_threads.to_string())
                .arg("--body-bytes")
                .arg(args.body_bytes.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            &args.backend_server.display().to_string(),
        )?;
        let pid = process.pid();
        let child = process.child_mut();
        let pid_file = args.work_dir.join("backends.pid");
        std::fs::write(&pid_file, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .context("backend-server has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = Vec::new();
        let read = async {
            while addrs.len() < args.backends as usize {
                let line = lines
                    .next_line()
                    .await?
                    .context("backend-server exited before listing its backends")?;
                let addr = line
                    .rsplit_once(" listening on ")
                    .map(|(_, addr)| loopback_addr(addr))
                    .with_context(|| format!("unexpected line from backend-server: {line:?}"))?
                    .map_err(|e| anyhow::anyhow!("backend-server: {e}"))?;
                addrs.push(addr);
            }
            anyhow::Ok(())
        };
        timeout(BACKENDS_START_TIMEOUT, read)
            .await
            .with_context(|| {
                format!(
                    "backend-server did not list its backends within {BACKENDS_START_TIMEOUT:?}"
                )
            })??;
        Ok(Self {
            process,
            addrs,
            _stdin: stdin,
        })
    }

    async fn stop(self) {
        self.process.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_count_passing_instances_of_the_root_route() {
        let routes = serde_json::json!({"routes": [
            {"prefix": "/", "service": "web", "instances": [
                {"health": "passing", "ejected": false},
                {"health": "passing", "ejected": true},
                {"health": "warning", "ejected": false},
            ]},
            {"prefix": "/api", "service": "web", "instances": [
                {"health": "passing", "ejected": false},
            ]},
        ]});
        assert_eq!(routed_instances(&routes), 1);
        assert_eq!(routed_instances(&serde_json::json!({})), 0);
        assert_eq!(signed_ms(Some(-0.05)), "−0.05 ms");
        assert_eq!(signed_ms(Some(0.42)), "+0.42 ms");
    }
}
