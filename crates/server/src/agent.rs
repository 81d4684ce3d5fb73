//! The running agent: opens the store, restores the catalog, starts the writer and the health
//! scheduler, loads config files, and serves the API until told to stop.
//!
//! Start-up order matters: the catalog is restored and config files are validated *before* the
//! listener is bound, so a broken file stops the agent before anyone can talk to it. Shutdown
//! runs the other way: stop accepting requests and let in-flight ones finish, stop the checks,
//! then let the writer drain its queue and close the store cleanly.

use crate::api::{self, ApiState, SharedReads};
use crate::cache::{CacheError, CacheSettings, RunningCache};
use crate::cluster::{Cluster, MIN_LEASE_TTL, MemberSet, MembershipTasks};
use crate::config::service_files::{self, ConfigError, Definitions, ScriptPolicy};
use crate::config::{AgentConfig, DataDir};
use crate::consul::response::NodeInfo;
use crate::endpoints::EndpointCache;
use crate::events::EventHub;
use crate::gateway::Gateway;
use crate::metrics::{
    ApiMetrics, CatalogMetrics, CheckMetrics, CheckRunsCollector, DnsMetrics, GatewayCollector,
    Metrics,
};
use crate::snapshots::Snapshots;
use crate::upstream::{self, Mirror, UpstreamClient, UpstreamError};
use crate::write_path::{Published, Subscriber, WriteError, Writer, WriterTaskHandle};
use futures::future::join_all;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wayfinder_catalog::{Catalog, CatalogError, CheckId, Command, Source, Touched};
use wayfinder_health::{Report, Scheduler, SchedulerConfig};
use wayfinder_store::{EmbeddedStore, EtcdSettings, EtcdStore, MemberRecord, Store, StoreError};

/// Reports from check runners that may wait for the writer.
const REPORT_QUEUE: usize = 4096;

/// Why the agent could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A config file is broken; nothing was loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The temporary data dir for `--dev` could not be created.
    #[error("cannot create a temporary data dir for --dev: {0}; check TMPDIR is writable")]
    TempDir(std::io::Error),
    /// The HTTP address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another agent (or Consul) using it? pass --http-addr"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The DNS interface could not start.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    /// The gateway could not start.
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    /// Applying config-file definitions failed.
    #[error("applying config files failed: {0}")]
    Apply(#[from] WriteError),
    /// `--cache` / `--provider-only` cannot be used as given.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// `--upstream-consul` cannot be used as given.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A TLS certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The ACL bootstrap file in the data directory cannot be read.
    #[error(transparent)]
    Acl(#[from] crate::acl::BootstrapError),
    /// Cluster mode cannot start as configured.
    #[error("cluster mode: {0}")]
    Cluster(String),
}

/// What a config reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Services and checks registered (or re-registered) from files.
    pub registered: usize,
    /// Config-file services removed because their file no longer defines them.
    pub removed: usize,
}

/// Feeds every published batch to the health scheduler, so runners start, stop and learn the
/// catalog's status for exactly the checks that changed.
struct HealthSubscriber(Scheduler);

impl Subscriber for HealthSubscriber {
    fn published(&self, change: &Published<'_>) {
        let checks = change.touched.iter().filter_map(|touched| match touched {
            Touched::Check(id) => Some(id),
            _ => None,
        });
        self.0.update(change.catalog, checks);
    }
}

/// Reloads `--config-dir` into the running catalog (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    config_dir: Option<PathBuf>,
    /// IDs of the top-level checks the last load defined, to remove those a reload drops.
    config_checks: Arc<std::sync::Mutex<BTreeSet<CheckId>>>,
    scripts: ScriptPolicy,
    writer: Writer,
    snapshots: Arc<Snapshots>,
    /// The gateway's routing, which takes the files' `route` blocks; `None` without a gateway.
    routing: Option<Arc<wayfinder_gateway::Routing>>,
}

impl Reloader {
    /// Reads the config dir and reconciles: registers every definition and removes config-file
    /// services that are no longer defined. A broken dir changes nothing.
    pub async fn reload(&self) -> Result<ReloadSummary, AgentError> {
        let definitions = match &self.config_dir {
            Some(dir) => service_files::load_dir(dir, self.scripts)?,
            None => Definitions::default(),
        };
        self.apply(definitions).await
    }

    async fn apply(&self, definitions: Definitions) -> Result<ReloadSummary, AgentError> {
        match &self.routing {
            Some(routing) => routing.set_config_routes(definitions.routes.clone()),
            None if !definitions.routes.is_empty() => tracing::warn!(
                routes = definitions.routes.len(),
                "config files define gateway routes, but the gateway is off (--gateway-addr)"
            ),
            None => {}
        }
        let defined: BTreeSet<String> = definitions
            .services
            .iter()
            .map(|r| r.instance.id.to_string())
            .collect();
        let loaded_checks: BTreeSet<CheckId> = definitions
            .checks
            .iter()
            .filter_map(|c| c.id.clone())
            .collect();
        let commands: Vec<Command> = definitions.into_commands().collect();
        // Dry run on a copy (an O(1) clone): a definition the catalog refuses (a check for an
        // unknown service, an ID owned by an API registration) must stop the whole load before
        // anything is written, never half-load.
        let mut trial = Catalog::clone(&self.snapshots.load());
        for command in &commands {
            trial
                .apply(trial.index() + 1, command)
                .map_err(|error| AgentError::Apply(WriteError::Rejected(error)))?;
        }
        let mut summary = ReloadSummary::default();
        for result in join_all(
            commands
                .into_iter()
                .map(|command| self.writer.submit(command)),
        )
        .await
        {
            result?;
            summary.registered += 1;
        }
        let stale_services: Vec<Command> = self
            .snapshots
            .load()
            .all_instances()
            .filter(|view| view.instance.source == Source::Config)
            .filter(|view| !defined.contains(view.instance.id.as_str()))
            .map(|view| Command::Deregister(view.instance.id.clone()))
            .collect();
        // Checks carry no source, so the config checks of the previous load are remembered here
        // (in memory: a check removed from the files while the agent was down stays until it is
        // deregistered through the API).
        let stale_checks: Vec<Command> = {
            let mut previous = self
                .config_checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let stale = previous
                .difference(&loaded_checks)
                .map(|id| Command::DeregisterCheck(id.clone()))
                .collect();
            *previous = loaded_checks;
            stale
        };
        for command in stale_services.into_iter().chain(stale_checks) {
            match self.writer.submit(command).await {
                Ok(_) => summary.removed += 1,
                Err(WriteError::Rejected(
                    CatalogError::UnknownInstance(_) | CatalogError::UnknownCheck(_),
                )) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(summary)
    }
}

/// A started agent, listening but not yet serving.
pub struct Agent {
    state: Arc<ApiState>,
    listener: TcpListener,
    http_limits: crate::api::HttpLimits,
    http_tls: Option<tokio_rustls::TlsAcceptor>,
    http_addr: SocketAddr,
    data_dir: PathBuf,
    reloader: Reloader,
    writer_task: WriterTaskHandle,
    report_task: JoinHandle<()>,
    cache: RunningCache,
    mirror: Option<Mirror>,
    gateway: Option<Gateway>,
    dns: Option<crate::dns::Dns>,
    /// The membership tasks, in cluster mode.
    membership: Option<MembershipTasks>,
    _temporary: Option<tempfile::TempDir>,
}

/// The opened store, until the writer takes it.
enum Backend {
    /// The embedded file store (the default).
    Embedded(Arc<dyn Store>),
    /// A shared etcd cluster (`--store etcd://…`).
    Etcd(Box<EtcdStore>),
}

impl Agent {
    /// Opens the store, restores the catalog, loads config files, and binds the listener.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        // A bad --cache URL must stop the agent before it touches anything.
        let cache = CacheSettings::from_config(&config)?;
        // So must a bad --upstream-consul URL.
        let upstream = config
            .upstream_consul
            .as_deref()
            .map(|url| UpstreamClient::new(url, upstream::DEFAULT_WAIT))
            .transpose()?;
        // A provider is stateless: whatever --data-dir says, it keeps nothing (as --dev).
        let data_dir_setting = match cache.is_provider_only() {
            true => &DataDir::Temporary,
            false => &config.data_dir,
        };
        let (data_dir, temporary) = match data_dir_setting {
            DataDir::Path(path) => (path.clone(), None),
            DataDir::Temporary => {
                let dir = tempfile::Builder::new()
                    .prefix("wayfinder-dev-")
                    .tempdir()
                    .map_err(AgentError::TempDir)?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let scripts = ScriptPolicy {
            enable_script_checks: config.enable_script_checks,
            enable_local_script_checks: config.enable_local_script_checks,
        };
        // Validate config files before touching anything: a broken file must stop start-up.
        let definitions = match &config.config_dir {
            Some(dir) => service_files::load_dir(dir, scripts)?,
            None => Definitions::default(),
        };

        if config.store.is_some() && config.cluster_lease_ttl < MIN_LEASE_TTL {
            return Err(AgentError::Cluster(format!(
                "--cluster-lease-ttl {:?} is below {MIN_LEASE_TTL:?}: a renewal through a dead \
                 etcd member can take 2 s, and the lease must outlive it",
                config.cluster_lease_ttl
            )));
        }
        let (backend, catalog) = match &config.store {
            Some(url) => {
                let settings = EtcdSettings::parse(url)?;
                let store = EtcdStore::connect(settings).await?;
                let catalog = store.load().await?.into_catalog();
                tracing::info!(
                    index = catalog.index(),
                    instances = catalog.instance_count(),
                    store = url,
                    "catalog read from etcd"
                );
                (Backend::Etcd(Box::new(store)), catalog)
            }
            None => {
                // Start-up only, before serving: a short blocking open and read is fine here.
                let store = EmbeddedStore::open(&data_dir)?;
                let catalog = store.load()?.into_catalog();
                tracing::info!(
                    index = catalog.index(),
                    instances = catalog.instance_count(),
                    data_dir = %data_dir.display(),
                    "catalog restored"
                );
                (Backend::Embedded(Arc::new(store)), catalog)
            }
        };
        let snapshots = Arc::new(Snapshots::new(catalog));

        let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
        let scheduler = Scheduler::new(reports_tx, SchedulerConfig::default());
        let etcd = match &backend {
            Backend::Etcd(store) => Some(EtcdStore::clone(store)),
            Backend::Embedded(_) => None,
        };
        if etcd.is_some() {
            // Nothing is this agent's to run until it has read the member set (with itself in
            // it): a check another agent runs must not run twice meanwhile.
            scheduler.set_ownership(Arc::new(|_: &CheckId| false));
        }
        let node_address = config.http_addr.ip().to_string();
        let events = Arc::new(EventHub::new(&snapshots.load(), node_address.clone()));
        let endpoints = Arc::new(EndpointCache::new(node_address.clone()));
        let mut gateway = match config.gateway.addr {
            Some(addr) => {
                let mut gateway_config = config.gateway.clone();
                gateway_config.routing.node_address = node_address;
                gateway_config.routing.config_routes = definitions.routes.clone();
                Some(Gateway::bind(addr, gateway_config, &snapshots.load()).await?)
            }
            None => None,
        };
        let mut metrics = Metrics::new();
        let cache = cache
            .start(&mut metrics, snapshots.load(), &endpoints)
            .await?;
        let catalog_metrics = CatalogMetrics::register(&mut metrics);
        let check_metrics = CheckMetrics::register(&mut metrics);
        CheckRunsCollector::register(&mut metrics, scheduler.clone());
        let api_metrics = ApiMetrics::register(&mut metrics);
        let dns_metrics = DnsMetrics::register(&mut metrics);
        if let Some(gateway) = &mut gateway {
            let updates = GatewayCollector::register(&mut metrics, gateway.routing());
            gateway.record_updates_in(updates);
        }
        let subscribers: Vec<Arc<dyn Subscriber>> = vec![
            Arc::new(HealthSubscriber(scheduler.clone())),
            Arc::clone(&endpoints) as Arc<dyn Subscriber>,
            Arc::clone(&events) as Arc<dyn Subscriber>,
        ]
        .into_iter()
        // The pusher and the gateway only enqueue here; each rebuilds on its own task from
        // the catalog it is handed, so their place in this list does not matter.
        .chain(cache.subscriber())
        .chain(gateway.as_ref().map(|g| g.feed() as Arc<dyn Subscriber>))
        .collect();
        let (writer, writer_task) = match backend {
            Backend::Embedded(store) => {
                Writer::spawn(store, Arc::clone(&snapshots), subscribers, catalog_metrics)
            }
            Backend::Etcd(store) => {
                Writer::spawn_etcd(*store, Arc::clone(&snapshots), subscribers, catalog_metrics)
            }
        };
        {
            let catalog = snapshots.load();
            let all: Vec<_> = catalog.checks().map(|c| c.id.clone()).collect();
            scheduler.update(&catalog, all.iter());
        }
        let report_task = tokio::spawn(write_reports(
            reports,
            writer.clone(),
            scheduler.clone(),
            Arc::clone(&snapshots),
            check_metrics,
        ));

        let reloader = Reloader {
            config_dir: config.config_dir.clone(),
            config_checks: Arc::default(),
            scripts,
            writer: writer.clone(),
            snapshots: Arc::clone(&snapshots),
            routing: gateway.as_ref().map(Gateway::routing),
        };
        let summary = reloader.apply(definitions).await?;
        if config.config_dir.is_some() {
            tracing::info!(
                registered = summary.registered,
                removed = summary.removed,
                "config files loaded"
            );
        }

        // Read the certificates before binding: a bad file stops the start with its reason.
        let http_tls = config
            .http_tls
            .as_ref()
            .map(|files| files.acceptor(&[b"h2", b"http/1.1"]))
            .transpose()?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| AgentError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(AgentError::Serve)?;
        let node = NodeInfo::new(
            config.node_name.clone(),
            http_addr.ip().to_string(),
            config.datacenter.clone(),
        );
        let dns = match config.dns.addr {
            Some(addr) => Some(
                crate::dns::Dns::bind(
                    addr,
                    &config.dns,
                    node.clone(),
                    Arc::clone(&snapshots),
                    dns_metrics,
                )
                .await?,
            ),
            None => None,
        };
        // The bootstrap token is kept beside the catalog; an agent without a durable catalog
        // of its own (a provider, a mirror) has none to hand out.
        let bootstrap = match config.acl.enabled && !config.provider_only && upstream.is_none() {
            true => crate::acl::Bootstrap::in_dir(&data_dir)?,
            false => crate::acl::Bootstrap::none(),
        };
        let acl = Arc::new(crate::acl::Acl::new(&config.acl, bootstrap));
        // Last, after everything that can fail: from here on, this agent owns checks.
        let (cluster, membership) = match etcd {
            Some(store) => {
                let local = MemberRecord {
                    id: Cluster::new_member_id(),
                    name: config.node_name.clone(),
                    address: http_addr.to_string(),
                    datacenter: config.datacenter.clone(),
                };
                if http_addr.ip().is_unspecified() {
                    tracing::warn!(
                        address = %http_addr,
                        "the HTTP API listens on all addresses, so other agents cannot forward \
                         TTL heartbeats to this one; give --http-addr a routable IP"
                    );
                }
                let (members_tx, members_rx) = watch::channel(Arc::new(MemberSet::new()));
                let cluster = Arc::new(
                    Cluster::new(local.clone(), members_rx)
                        .map_err(|e| AgentError::Cluster(e.to_string()))?,
                );
                scheduler.set_ownership(cluster.ownership());
                let resync = {
                    let scheduler = scheduler.clone();
                    let snapshots = Arc::clone(&snapshots);
                    move |_: &MemberSet| scheduler.sync(&snapshots.load())
                };
                let tasks = MembershipTasks::spawn(
                    store,
                    local,
                    config.cluster_lease_ttl,
                    members_tx,
                    resync,
                );
                (Some(cluster), Some(tasks))
            }
            None => (None, None),
        };
        let state = Arc::new(ApiState {
            acl,
            snapshots,
            writer,
            scheduler,
            node,
            enable_script_checks: config.enable_script_checks,
            endpoints,
            // A mirror is ready after its first full sync (until then it may hold a stale
            // view), and takes its writes from the upstream only.
            ready: AtomicBool::new(upstream.is_none()),
            read_only: upstream
                .as_ref()
                .map(|client| upstream::read_only_reason(client.base_url()))
                .or_else(|| cache.read_only_reason()),
            events,
            metrics: Arc::new(metrics),
            api_metrics,
            provider: cache.provider(),
            shared_reads: SharedReads::default(),
            routing: gateway.as_ref().map(Gateway::routing),
            cluster,
        });
        let mirror = upstream.map(|client| {
            use std::sync::atomic::Ordering;
            let (writer, snapshots) = (state.writer.clone(), Arc::clone(&state.snapshots));
            let state = Arc::clone(&state);
            let ready = move || state.ready.store(true, Ordering::Release);
            Mirror::spawn(client, writer, snapshots, ready)
        });
        Ok(Agent {
            state,
            listener,
            http_limits: config.http_limits,
            http_tls,
            http_addr,
            data_dir,
            reloader,
            writer_task,
            report_task,
            cache,
            mirror,
            gateway,
            dns,
            membership,
            _temporary: temporary,
        })
    }

    /// The address the gateway is bound to, when it is on.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(Gateway::addr)
    }

    /// The address the DNS interface is bound to (UDP and TCP), when it is on.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(crate::dns::Dns::addr)
    }

    /// The address the HTTP API is bound to (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The data directory in use (a temporary one with `--dev`).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// A handle that reloads `--config-dir` while the agent serves.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then stops gracefully: in-flight requests finish,
    /// checks stop, queued writes are made durable and the store is closed.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let Agent {
            state,
            listener,
            http_limits,
            http_tls,
            reloader,
            writer_task,
            report_task,
            cache,
            mirror,
            gateway,
            dns,
            membership,
            _temporary,
            ..
        } = self;
        let scheduler = state.scheduler.clone();
        // Plain endpoint reads are answered before routing (see `api::fast_path`).
        let service = api::FastEndpoints::new(Arc::clone(&state), api::router(Arc::clone(&state)));
        // Watch streams never finish by themselves, and the graceful drain waits for every
        // response: end them the moment shutdown starts, before the drain.
        let events = Arc::clone(&state.events);
        let stop_gateway = tokio_util::sync::CancellationToken::new();
        let gateway_task = gateway.map(|gateway| gateway.spawn(stop_gateway.clone()));
        let dns_task = dns.map(|dns| dns.spawn(stop_gateway.clone()));
        let stopping_gateway = stop_gateway.clone();
        let shutdown = async move {
            shutdown.await;
            events.close();
            stopping_gateway.cancel();
        };
        drop(state);
        api::serve(listener, service, http_limits, http_tls, shutdown).await;
        tracing::info!("HTTP API stopped; stopping checks and closing the store");
        stop_gateway.cancel();
        if let Some(task) = gateway_task {
            let _ = task.await;
        }
        if let Some(task) = dns_task {
            let _ = task.await;
        }
        // Before the writer closes: the mirror writes through it.
        if let Some(mirror) = mirror {
            mirror.shutdown().await;
        }
        scheduler.shutdown().await;
        // After the checks stopped, before the writer closes: the other agents take this
        // one's checks over as soon as its record goes.
        if let Some(membership) = membership {
            membership.shutdown().await;
        }
        report_task.abort();
        let _ = report_task.await;
        drop(reloader);
        drop(scheduler);
        writer_task.close().await;
        // After the writer: the pusher flushes the last changes it was handed.
        cache.close().await;
        Ok(())
    }
}

/// Turns check-runner reports into writes, in the order the runners sent them, dropping
/// reports a later run or heartbeat has already superseded. Each write's durability is awaited
/// on its own task, so many checks changing at once share one group commit; a report about
/// something already gone (deregistered meanwhile) is not an error.
async fn write_reports(
    mut reports: mpsc::Receiver<Report>,
    writer: Writer,
    scheduler: Scheduler,
    snapshots: Arc<Snapshots>,
    metrics: CheckMetrics,
) {
    while let Some(report) = reports.recv().await {
        if !scheduler.is_current(&report) {
            continue;
        }
        // Labelled by the registered check's kind: one snapshot load per reported change.
        if let Report::Status { check, status, .. } = &report {
            let catalog = snapshots.load();
            if let Some(registered) = catalog.check(check.as_ref()) {
                metrics.changed(&registered.kind, *status);
            }
        }
        let command = match report.clone() {
            Report::Status {
                check,
                status,
                output,
            } => Command::SetCheckStatus {
                id: check,
                status,
                output,
            },
            Report::DeregisterCritical { instance, check } => {
                tracing::info!(
                    %instance, %check,
                    "deregistering: critical for longer than DeregisterCriticalServiceAfter"
                );
                Command::Deregister(instance)
            }
        };
        let Ok(written) = writer.enqueue(command).await else {
            return;
        };
        let scheduler = scheduler.clone();
        tokio::spawn(async move {
            match written.await {
                Ok(_)
                | Err(WriteError::Rejected(
                    CatalogError::UnknownCheck(_) | CatalogError::UnknownInstance(_),
                )) => {}
                Err(error) => {
                    tracing::warn!(%error, "health report not written; the next run reports it again");
                    scheduler.unwritten(&report);
                }
            }
        });
    }
}
