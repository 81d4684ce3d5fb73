//! Memcached as a shared store of rendered endpoint lists (issue 3, "Memcached, as the original
//! design had it, without the staleness").
//!
//! The original Endpoint Provider (design note 000) read Consul on a cache miss and stored the
//! list in Memcached with a 10 s TTL, so a dead node stayed in answers for up to ~20 s. Here the
//! agent that owns the catalog *pushes*: every change of a service rewrites its key, and a
//! fleet of stateless `--provider-only` agents reads the keys. Freshness comes from the push,
//! never from an expiry.
//!
//! ```text
//!  primary agent (--cache)                         provider agents (--provider-only --cache)
//!  writer task ─► EndpointCache ─► CachePusher ──► memcached ◄── EndpointProvider ◄── GET /v1/endpoints
//!                 (subscriber)     (subscriber: enqueue;        one GET per request; own view
//!                                   own task: coalesce, write)  kept for outages (BYPASS)
//! ```
//!
//! Decisions, and why:
//! - **Key and value.** `endpoints:{service}` holds exactly the bytes the primary's
//!   `GET /v1/endpoints/{service}` answers (the shared rendering). The key is deleted when the
//!   service has no passing instance or is gone, so a provider answers 404 for both.
//! - **No expiry.** Keys are written with no TTL. An expiry would turn a primary outage longer
//!   than the TTL into a fleet-wide 404 — the failure providers exist to absorb — while
//!   buying nothing for freshness, which the push already gives. What an expiry would clean up
//!   is instead handled explicitly: a key whose write or delete failed is retried by the next
//!   resync; a server that lost its data (restart, flush) is detected by a sentinel key and
//!   resynced; evicted keys are restored by a periodic anti-entropy resync
//!   ([`pusher::ANTI_ENTROPY_INTERVAL`]). The one leak left: keys of services that vanished
//!   while *no* catalog remembered them (a `--dev` primary restarted against the same
//!   memcached); flush memcached when throwing a catalog away.
//! - **Sharding.** Several servers split the keys by rendezvous hashing over a hash we define
//!   ([`memcached::stable_hash`], FNV-1a), not Rust's `DefaultHasher`, whose output may change
//!   between Rust releases: a primary and a provider built by different compilers must still
//!   agree on where `endpoints:worker-service` lives. Writing every key to every server was
//!   rejected: it multiplies writes, and servers that missed a write would disagree with no
//!   way to tell which is right. Primary and providers must list the same servers (order does
//!   not matter, spelling does); adding a server moves only the keys that now belong to it.
//! - **Outages.** Each server's reachability is a small state machine ([`outage`]): one warning
//!   when an outage begins, one info line when it ends, a gauge and a counter — never a line per
//!   request. While a server is down nobody waits on it: the pusher skips it and resyncs it when
//!   it returns; providers answer from their own view (`X-Cache-Status: BYPASS`).
//! - **ETag on providers** is a hash of the body ([`memcached::body_etag`]): the stored bytes do
//!   not carry the service's index (they are exactly the primary's body), so a provider cannot
//!   know it. The hash is the same on every provider, so a client moving between providers
//!   behind a load balancer keeps a valid `If-None-Match`.

pub mod memcached;
pub mod outage;
pub mod provider;
pub mod pusher;

pub use memcached::{CacheUrl, CacheUrlError, ServerAddr};
pub use provider::EndpointProvider;
pub use pusher::CachePusher;

use crate::config::AgentConfig;
use crate::endpoints::EndpointCache;
use crate::metrics::{CacheMetrics, Metrics};
use crate::write_path::Subscriber;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::Catalog;

/// Why a provider-only agent refuses writes (the 403 body).
pub const PROVIDER_ONLY_REASON: &str = "this agent is a provider-only Endpoint Provider \
     (--provider-only); register services with the primary agent";

/// Why the cache settings cannot be used; the agent refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `--cache` is not a usable `memcached://` URL.
    #[error("invalid --cache: {0}")]
    Url(#[from] CacheUrlError),
    /// A server's host name does not resolve.
    #[error(
        "cannot resolve memcached server {server} from --cache: {reason}; \
         check the host name (or use an IP address)"
    )]
    Resolve {
        /// The server as configured.
        server: String,
        /// What the resolver or client said.
        reason: String,
    },
    /// `--provider-only` without `--cache`.
    #[error(
        "--provider-only needs --cache memcached://host:port: a provider has no catalog of its \
         own and serves only what the primary agent pushes into Memcached"
    )]
    ProviderWithoutCache,
    /// `--provider-only` with `--config-dir`.
    #[error(
        "--provider-only cannot load --config-dir: a provider registers nothing; give the \
         service files to the primary agent"
    )]
    ProviderWithConfigDir,
}

/// What `--cache` and `--provider-only` ask for, validated before the agent touches anything.
#[derive(Debug, Clone)]
pub enum CacheSettings {
    /// No cache: the agent answers from its own catalog only.
    Off,
    /// Push every change of a service's endpoint list to these servers.
    Push(CacheUrl),
    /// Serve `/v1/endpoints` from these servers; own no catalog.
    Provide(CacheUrl),
}

impl CacheSettings {
    /// Parses and checks the agent's cache settings (start-up: an error stops the agent).
    pub fn from_config(config: &AgentConfig) -> Result<Self, CacheError> {
        let url = config
            .cache
            .as_deref()
            .map(str::parse::<CacheUrl>)
            .transpose()?;
        match (url, config.provider_only) {
            (None, false) => Ok(Self::Off),
            (Some(url), false) => Ok(Self::Push(url)),
            (None, true) => Err(CacheError::ProviderWithoutCache),
            (Some(_), true) if config.config_dir.is_some() => {
                Err(CacheError::ProviderWithConfigDir)
            }
            (Some(url), true) => Ok(Self::Provide(url)),
        }
    }

    /// Whether this agent is a stateless provider (no durable store, no writes).
    pub fn is_provider_only(&self) -> bool {
        matches!(self, Self::Provide(_))
    }

    /// Registers the cache metrics (when a cache is configured) and connects: resolves every
    /// server and starts the pusher's or the provider's background task. Memcached need not be
    /// up: connections are dialed lazily, and an unreachable server is an outage, not an error.
    pub async fn start(
        self,
        metrics: &mut Metrics,
        catalog: Arc<Catalog>,
        endpoints: &Arc<EndpointCache>,
    ) -> Result<RunningCache, CacheError> {
        match self {
            Self::Off => Ok(RunningCache::default()),
            Self::Push(url) => {
                let metrics = CacheMetrics::register(metrics);
                let (pusher, task) =
                    pusher::start(&url, catalog, Arc::clone(endpoints), metrics).await?;
                Ok(RunningCache {
                    pusher: Some(pusher),
                    provider: None,
                    task: Some(task),
                })
            }
            Self::Provide(url) => {
                let metrics = CacheMetrics::register(metrics);
                let (provider, task) = provider::start(&url, metrics).await?;
                Ok(RunningCache {
                    pusher: None,
                    provider: Some(provider),
                    task: Some(task),
                })
            }
        }
    }
}

/// The cache side of a running agent: what the write path and the API plug in, and the
/// background task to stop at shutdown.
#[derive(Default)]
pub struct RunningCache {
    pusher: Option<Arc<CachePusher>>,
    provider: Option<Arc<EndpointProvider>>,
    task: Option<CacheTask>,
}

impl RunningCache {
    /// The write-path subscriber that enqueues changed services for the pusher, if pushing.
    pub fn subscriber(&self) -> Option<Arc<dyn Subscriber>> {
        self.pusher
            .as_ref()
            .map(|pusher| Arc::clone(pusher) as Arc<dyn Subscriber>)
    }

    /// The Memcached reader that answers `/v1/endpoints`, on a provider-only agent.
    pub fn provider(&self) -> Option<Arc<EndpointProvider>> {
        self.provider.clone()
    }

    /// Why the API refuses writes, on a provider-only agent.
    pub fn read_only_reason(&self) -> Option<String> {
        self.provider
            .as_ref()
            .map(|_| PROVIDER_ONLY_REASON.to_owned())
    }

    /// Stops the background task. The pusher first writes what is still queued (bounded by
    /// [`pusher::SHUTDOWN_FLUSH`]), so call this after the writer has drained.
    pub async fn close(self) {
        if let Some(task) = self.task {
            task.close().await;
        }
    }
}

/// A named background task with a shutdown path (STYLE.md habit 3).
pub struct CacheTask {
    name: &'static str,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl CacheTask {
    fn spawn(
        name: &'static str,
        run: impl FnOnce(CancellationToken) -> futures::future::BoxFuture<'static, ()>,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        Self { name, task, stop }
    }

    /// Asks the task to stop and waits for it.
    pub async fn close(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(task = self.name, %error, "cache task ended abnormally");
        }
    }
}
