//! `wayfinder`: service discovery and load balancing in one binary.
//!
//! `wayfinder agent --dev` runs an agent with a throw-away catalog; without `--dev` the catalog
//! lives in `--data-dir` and survives restarts and crashes. The other commands (`services`,
//! `endpoints`, `register`, …) are operator tools that talk to a running agent's HTTP API.
#![forbid(unsafe_code)]

mod banner;
mod commands;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use wayfinder_server::acl::AclConfig;
use wayfinder_server::api::HttpLimits;
use wayfinder_server::config::{
    DEFAULT_DATA_DIR, DEFAULT_DATACENTER, DEFAULT_HTTP_ADDR, default_node_name,
};
use wayfinder_server::dns::DnsConfig;
use wayfinder_server::gateway::{GatewayConfig, OutlierConfig, ProxyConfig, RoutingConfig};
use wayfinder_server::tls::TlsFiles;
use wayfinder_server::{Agent, AgentConfig, DataDir};

#[derive(Parser)]
#[command(
    name = "wayfinder",
    version,
    about = "Service discovery and load balancing, Consul-compatible"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run an agent: the registry, health checks and the Consul-shaped HTTP API.
    Agent(Box<AgentArgs>),
    /// List services with their instance counts by health.
    Services(commands::services::ServicesArgs),
    /// Show a service's healthy endpoints, or follow its changes with --watch.
    Endpoints(commands::endpoints::EndpointsArgs),
    /// Register a service instance from a JSON definition file.
    Register(commands::registration::RegisterArgs),
    /// Deregister a service instance by ID.
    Deregister(commands::registration::DeregisterArgs),
    /// Set a TTL check to passing, warning or critical.
    Check(commands::checks::CheckArgs),
    /// List the agents in the cluster (today: the one agent asked).
    Members(commands::members::MembersArgs),
    /// Show the gateway's route table.
    Routes(commands::routes::RoutesArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Keep the catalog in a temporary directory, removed at exit.
    #[arg(long, conflicts_with = "data_dir")]
    dev: bool,
    /// Directory of the durable catalog.
    #[arg(long, env = "WAYFINDER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the catalog in a shared etcd cluster instead (cluster mode: several agents, one
    /// catalog), e.g. `etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379?prefix=/wayfinder`.
    #[arg(long, env = "WAYFINDER_STORE", value_name = "URL")]
    store: Option<String>,
    /// In cluster mode, how long this agent's membership lease lives unrenewed: when it dies,
    /// the other agents take over its health checks within this time (at least 3s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration, requires = "store")]
    cluster_lease_ttl: Duration,
    /// Directory of service definition files (*.hcl, *.json), reloaded on SIGHUP.
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Agent settings file (*.hcl or *.json) with the `acl { }` block: ACLs on, the default
    /// policy, tokens and their rules (see README, "Access control").
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Serve the HTTP API over TLS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require API clients to present a certificate signed by one of these CAs (PEM): mutual
    /// TLS, as Consul's `verify_incoming`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Address of the HTTP API (port 0 picks a free port; the banner shows it).
    #[arg(long, default_value = DEFAULT_HTTP_ADDR, value_name = "ADDR")]
    http_addr: SocketAddr,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormatArg,
    /// Log filter, e.g. `info` or `wayfinder_health=debug`.
    #[arg(long, env = "WAYFINDER_LOG", default_value = "info")]
    log_level: String,
    /// Allow script checks registered through the HTTP API (lets API callers run programs).
    #[arg(long)]
    enable_script_checks: bool,
    /// Allow script checks defined in --config-dir files only.
    #[arg(long)]
    enable_local_script_checks: bool,
    /// Node name shown in catalog answers (default: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Datacenter name.
    #[arg(long, default_value = DEFAULT_DATACENTER)]
    datacenter: String,
    /// Memcached servers to push rendered endpoint lists into, e.g.
    /// memcached://127.0.0.1:11211[,127.0.0.1:11212].
    #[arg(long, value_name = "URL")]
    cache: Option<String>,
    /// Serve /v1/endpoints from --cache only: no registrations, no checks, no durable state.
    #[arg(long, requires = "cache")]
    provider_only: bool,
    /// Mirror an existing Consul (or Wayfinder) agent read-only, e.g. http://10.0.0.2:8500.
    #[arg(long, value_name = "URL", conflicts_with = "provider_only")]
    upstream_consul: Option<String>,
    /// Run the gateway, a reverse proxy to healthy instances, on this address (e.g.
    /// 127.0.0.1:9999; port 0 picks a free port). Routes come from `urlprefix-` tags.
    #[arg(long, value_name = "ADDR", conflicts_with = "provider_only")]
    gateway_addr: Option<SocketAddr>,
    /// Serve the gateway over TLS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires_all = ["gateway_addr", "gateway_tls_key"])]
    gateway_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --gateway-tls-cert.
    #[arg(long, value_name = "FILE", requires = "gateway_tls_cert")]
    gateway_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) trusted for instances on `proto=https` routes, beside the
    /// system's roots.
    #[arg(long, value_name = "FILE", requires = "gateway_addr")]
    gateway_upstream_ca: Option<PathBuf>,
    /// Also route /{service}/… to every service (prefix stripped).
    #[arg(long, requires = "gateway_addr")]
    gateway_service_routes: bool,
    /// Longest wait for a connection to an instance before the next one is tried.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    gateway_connect_timeout: Duration,
    /// Longest wait for an instance's response headers (then 504).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    gateway_response_timeout: Duration,
    /// How long an unused connection to an instance is kept for reuse.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = duration)]
    gateway_idle_timeout: Duration,
    /// Attempts per request beyond the first.
    #[arg(long, value_name = "N", default_value_t = 2)]
    gateway_max_retries: u32,
    /// Consecutive failures that eject an instance from the gateway.
    #[arg(long, value_name = "N", default_value_t = 5)]
    gateway_ejection_failures: u32,
    /// Largest share of a service's instances ejected at once, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 50)]
    gateway_max_ejected_percent: u8,
    /// Answer DNS (UDP and TCP) on this address, e.g. 127.0.0.1:8600 (Consul's port; 0 picks
    /// a free port): `<service>.service.<domain>` A/AAAA and SRV, healthy instances only.
    #[arg(long, value_name = "ADDR")]
    dns_addr: Option<SocketAddr>,
    /// The domain DNS answers for; other names are refused.
    #[arg(
        long,
        value_name = "DOMAIN",
        default_value = "consul",
        requires = "dns_addr"
    )]
    dns_domain: String,
    /// TTL of DNS answers, in seconds (0: resolvers do not cache, a failed instance is gone at
    /// once).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        requires = "dns_addr"
    )]
    dns_ttl: u32,
    /// How long resolvers may cache "no such name", in seconds (the SOA's negative TTL).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        requires = "dns_addr"
    )]
    dns_negative_ttl: u32,
    /// Leave instances with a warning check out of DNS answers.
    #[arg(long, requires = "dns_addr")]
    dns_only_passing: bool,
    /// Open HTTP API connections one client IP may hold (0: no limit); one more is answered
    /// 429 and closed.
    #[arg(long, value_name = "N", default_value_t = wayfinder_server::api::DEFAULT_MAX_CONNS_PER_CLIENT)]
    http_max_conns_per_client: u32,
    /// How long an HTTP API client may take to send a request's headers (an idle keep-alive
    /// connection is closed after it too).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    http_header_timeout: Duration,
    /// Writes (PUT, POST, DELETE) per second one client IP may make on the HTTP API, in bursts
    /// of the same size; over it: 429 with Retry-After. Off unless set.
    #[arg(long, value_name = "PER_SECOND")]
    http_write_rate: Option<std::num::NonZeroU32>,
}

/// A duration as Consul writes them (`500ms`, `1s`, `1m30s`).
fn duration(text: &str) -> Result<Duration, String> {
    wayfinder_server::consul::duration::parse(text).map_err(|e| e.to_string())
}

/// mimalloc rather than glibc's malloc: the agent allocates and frees small buffers per request
/// and per event on every worker thread, which mimalloc's thread-local pages serve without the
/// arena locking and consolidation glibc does (see docs/BENCHMARKS.md for the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Agent(args) => {
            init_logging(&args)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("wayfinder")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(run_agent(*args))?;
            return Ok(ExitCode::SUCCESS);
        }
        Commands::Services(args) => commands::services::run(&args),
        Commands::Endpoints(args) => commands::endpoints::run(&args),
        Commands::Register(args) => commands::registration::register(&args),
        Commands::Deregister(args) => commands::registration::deregister(&args),
        Commands::Check(args) => commands::checks::run(&args),
        Commands::Members(args) => commands::members::run(&args),
        Commands::Routes(args) => commands::routes::run(&args),
    };
    Ok(commands::finish(result))
}

fn init_logging(args: &AgentArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).with_context(|| {
        format!(
            "invalid --log-level {:?}; try `info` or `debug`",
            args.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormatArg::Text => builder.init(),
        LogFormatArg::Json => builder.json().init(),
    }
    Ok(())
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let data_dir = if args.dev {
        DataDir::Temporary
    } else {
        DataDir::Path(
            args.data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        )
    };
    let acl = match &args.config_file {
        Some(path) => AclConfig::from_file(path).context("the settings file was refused")?,
        None => AclConfig::default(),
    };
    let http_tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca,
        }),
        _ => None,
    };
    let config = AgentConfig {
        acl,
        http_tls,
        http_addr: args.http_addr,
        data_dir,
        store: args.store,
        cluster_lease_ttl: args.cluster_lease_ttl,
        config_dir: args.config_dir,
        enable_script_checks: args.enable_script_checks,
        enable_local_script_checks: args.enable_local_script_checks,
        node_name: args.node.unwrap_or_else(default_node_name),
        datacenter: args.datacenter,
        cache: args.cache,
        provider_only: args.provider_only,
        upstream_consul: args.upstream_consul,
        gateway: GatewayConfig {
            addr: args.gateway_addr,
            routing: RoutingConfig {
                service_routes: args.gateway_service_routes,
                outlier: OutlierConfig {
                    consecutive_failures: args.gateway_ejection_failures,
                    max_ejected_percent: args.gateway_max_ejected_percent,
                    ..OutlierConfig::default()
                },
                ..RoutingConfig::default()
            },
            proxy: ProxyConfig {
                connect_timeout: args.gateway_connect_timeout,
                response_timeout: args.gateway_response_timeout,
                idle_timeout: args.gateway_idle_timeout,
                max_retries: args.gateway_max_retries,
                upstream_tls: None,
            },
            tls: match (args.gateway_tls_cert, args.gateway_tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert,
                    key,
                    client_ca: None,
                }),
                _ => None,
            },
            upstream_ca: args.gateway_upstream_ca,
        },
        dns: DnsConfig {
            addr: args.dns_addr,
            domain: args.dns_domain,
            ttl: args.dns_ttl,
            negative_ttl: args.dns_negative_ttl,
            only_passing: args.dns_only_passing,
        },
        http_limits: HttpLimits {
            max_conns_per_client: args.http_max_conns_per_client,
            header_timeout: args.http_header_timeout,
            write_rate_per_client: args.http_write_rate,
        },
    };
    let agent = Agent::start(config.clone())
        .await
        .context("the agent could not start")?;
    banner::print(&config, &agent);

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let reloader = agent.reloader();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config files");
            match reloader.reload().await {
                Ok(summary) => tracing::info!(
                    registered = summary.registered,
                    removed = summary.removed,
                    "config reloaded"
                ),
                Err(error) => {
                    tracing::error!(%error, "config reload refused; the running catalog is unchanged")
                }
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    };
    agent
        .serve(shutdown)
        .await
        .context("the agent stopped with an error")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
