//! The gateway inside the agent (`--gateway-addr`): how catalog changes reach its routing, and
//! its listener's life.
//!
//! Owns the feed from the write path to [`wayfinder_gateway::Routing`]. The writer only records
//! which services a batch touched and the catalog it published ([`GatewayFeed`], a few
//! nanoseconds per batch); a task of its own rebuilds those services' instance lists and, when
//! their routes changed, the route table. Changes that arrive while it works are coalesced into
//! its next pass, so a registration storm on one large service costs one rebuild per pass, not
//! one per write (the endpoint cache learned the same lesson, docs/BENCHMARKS.md).
//!
//! The proxy itself, the route table and the balancing live in `wayfinder-gateway`.

use crate::write_path::{Published, Subscriber};
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::{Catalog, Touched};
pub use wayfinder_gateway::outlier::OutlierConfig;
use wayfinder_gateway::{Proxy, Routing};
pub use wayfinder_gateway::{ProxyConfig, RoutingConfig};

/// What the agent's gateway is configured with.
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    /// Where the gateway listens; `None`: no gateway.
    pub addr: Option<SocketAddr>,
    /// Routes, ejection and retry settings.
    pub routing: RoutingConfig,
    /// Timeouts and retry limits.
    pub proxy: ProxyConfig,
    /// TLS on the gateway's listener (`--gateway-tls-cert`, `--gateway-tls-key`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// CA certificates (PEM) trusted for instances on `proto=https` routes, beside the
    /// system's roots (`--gateway-upstream-ca`).
    pub upstream_ca: Option<std::path::PathBuf>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Its settings cannot work.
    #[error(transparent)]
    Settings(#[from] wayfinder_gateway::routing::RoutingError),
    /// Its address could not be bound.
    #[error("cannot listen on {addr} for the gateway: {source}; is another process using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Changes waiting for the gateway task.
#[derive(Default)]
struct Pending {
    services: BTreeSet<String>,
    catalog: Option<Arc<Catalog>>,
}

/// The write path's side of the feed: records, never rebuilds.
pub struct GatewayFeed {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Subscriber for GatewayFeed {
    fn published(&self, change: &Published<'_>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for touched in change.touched {
            if let Touched::Service(name) = touched {
                pending.services.insert(name.as_str().to_owned());
            }
        }
        pending.catalog = Some(Arc::clone(change.catalog));
        drop(pending);
        self.wake.notify_one();
    }
}

/// A gateway bound to its address, fed by the write path.
pub struct Gateway {
    routing: Arc<Routing>,
    feed: Arc<GatewayFeed>,
    /// One socket per gateway thread, all on `addr`.
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
    proxy: ProxyConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where each update's duration is recorded (`wayfinder_gateway_table_update_seconds`).
    updates: Option<Histogram>,
}

impl Gateway {
    /// Binds `addr` and builds the routing for `catalog`.
    pub async fn bind(
        addr: SocketAddr,
        config: GatewayConfig,
        catalog: &Catalog,
    ) -> Result<Gateway, GatewayError> {
        let routing = Routing::new(config.routing, catalog)?;
        let tls = config
            .tls
            .as_ref()
            .map(|files| files.acceptor(&[b"h2", b"http/1.1"]))
            .transpose()?;
        let mut proxy = config.proxy;
        proxy.upstream_tls = crate::tls::upstream_client_config(config.upstream_ca.as_deref())?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let listeners = wayfinder_gateway::listener::bind_reuseport(addr, threads)
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listeners
            .first()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .map_err(|source| GatewayError::Bind { addr, source })?
            .unwrap_or(addr);
        Ok(Gateway {
            routing: Arc::new(routing),
            feed: Arc::new(GatewayFeed {
                pending: Mutex::new(Pending::default()),
                wake: Notify::new(),
            }),
            listeners,
            addr,
            proxy,
            tls,
            updates: None,
        })
    }

    /// The address the gateway listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Records the duration of every update in `histogram`.
    pub fn record_updates_in(&mut self, histogram: Histogram) {
        self.updates = Some(histogram);
    }

    /// The live routing (for `GET /v1/routes`).
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing)
    }

    /// The subscriber the writer feeds.
    pub fn feed(&self) -> Arc<GatewayFeed> {
        Arc::clone(&self.feed)
    }

    /// Starts the feed task and the listener; both stop when `stop` is cancelled, the listener
    /// after the requests in flight have finished.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        let Gateway {
            routing,
            feed,
            listeners,
            proxy,
            tls,
            updates,
            ..
        } = self;
        let feeder = tokio::spawn(apply_changes(
            Arc::clone(&routing),
            Arc::clone(&feed),
            updates,
            stop.clone(),
        ));
        let new_proxy = move || Proxy::new(Arc::clone(&routing), proxy.clone());
        tokio::spawn(async move {
            let served =
                wayfinder_gateway::listener::serve_on_threads(listeners, new_proxy, tls, stop)
                    .await;
            if let Err(error) = served {
                tracing::error!(%error, "gateway: cannot start its worker threads");
            }
            feeder.abort();
            let _ = feeder.await;
            tracing::info!("gateway stopped");
        })
    }
}

/// The gateway task: applies pending changes, coalescing whatever arrived meanwhile.
async fn apply_changes(
    routing: Arc<Routing>,
    feed: Arc<GatewayFeed>,
    updates: Option<Histogram>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = feed.wake.notified() => {}
            () = stop.cancelled() => return,
        }
        let Pending { services, catalog } =
            std::mem::take(&mut *feed.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(catalog) = catalog {
            let started = tokio::time::Instant::now();
            routing.apply(&catalog, services.iter().map(String::as_str));
            if let Some(updates) = &updates {
                updates.observe(started.elapsed().as_secs_f64());
            }
        }
    }
}
