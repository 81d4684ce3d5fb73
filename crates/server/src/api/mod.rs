//! The Consul-shaped HTTP API: routing, and the state handlers share.
//!
//! Reads come from the published snapshot (no lock, no IO); writes go through the one write
//! path ([`crate::write_path::Writer`]) and answer only once durable.

mod acl;
mod agent;
mod authz;
mod body;
mod catalog;
mod endpoints;
mod error;
mod fast_path;
mod health;
mod listener;
mod members;
mod metrics;
mod openapi;
mod probes;
mod query;
mod routes;
mod shared_reads;

pub use shared_reads::SharedReads;
mod status;
mod watch;

pub(crate) use endpoints::list_response;
pub use error::ApiError;
pub use fast_path::FastEndpoints;
pub use listener::{
    DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNS_PER_CLIENT, HttpLimits, MAX_HEADER_BYTES, serve,
};

use crate::cache::EndpointProvider;
use crate::consul::response::NodeInfo;
use crate::endpoints::EndpointCache;
use crate::events::EventHub;
use crate::metrics::RouteTimer;
use crate::metrics::{ApiMetrics, Metrics};
use crate::snapshots::Snapshots;
use crate::write_path::Writer;
use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, StatusCode};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wayfinder_health::Scheduler;

/// What every handler can reach.
pub struct ApiState {
    /// Published catalog snapshots.
    pub snapshots: Arc<Snapshots>,
    /// The write path.
    pub writer: Writer,
    /// Check runners: live output, latency and TTL heartbeats.
    pub scheduler: Scheduler,
    /// This agent as a Consul node.
    pub node: NodeInfo,
    /// Whether script checks may be registered through the API.
    pub enable_script_checks: bool,
    /// Pre-rendered Endpoint Provider answers.
    pub endpoints: Arc<EndpointCache>,
    /// Whether the catalog is loaded (false until a mirror's first sync).
    pub ready: std::sync::atomic::AtomicBool,
    /// Why this agent refuses writes, if it does (mirror of an upstream, provider-only).
    pub read_only: Option<String>,
    /// Renderings shared by blocking readers of the same question.
    pub shared_reads: SharedReads,
    /// Watch streams (`/v1/watch`): one fan-out of rendered events for every watcher, so the
    /// cost of a change does not grow with the number of watchers. Closed at shutdown.
    pub events: Arc<EventHub>,
    /// Every registered metric, served by `/metrics` and `/v1/agent/metrics`; frozen once the
    /// agent serves (subsystems keep their own handles to update).
    pub metrics: Arc<Metrics>,
    /// Request counts and durations, updated by [`count_requests`] and the fast path.
    pub api_metrics: ApiMetrics,
    /// On a `--provider-only` agent, the Memcached reader that answers `/v1/endpoints`
    /// instead of the (empty) local catalog; `None` on an agent that owns a catalog.
    pub provider: Option<Arc<EndpointProvider>>,
    /// The gateway's live routes, when `--gateway-addr` is on (`GET /v1/routes`).
    pub routing: Option<Arc<wayfinder_gateway::Routing>>,
    /// Access control: tokens, rules, the bootstrap token (allows everything when off).
    pub acl: Arc<crate::acl::Acl>,
    /// The cluster's members and check ownership, in cluster mode (`--store etcd://…`);
    /// `None` for an agent with its own catalog.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl ApiState {
    /// Whether the catalog is loaded and answers can be trusted.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Refuses a write on a read-only agent with 403 and the reason.
    pub fn check_writable(&self) -> Result<(), ApiError> {
        match &self.read_only {
            None => Ok(()),
            Some(reason) => Err(ApiError::new(StatusCode::FORBIDDEN, reason.clone())),
        }
    }
}

/// Shared handler state.
pub type State = axum::extract::State<Arc<ApiState>>;

/// Every route the agent serves, each with its OpenAPI documentation: the one list both the
/// router and `/v1/openapi.json` are made from. A handler is listed with `routes!`, which
/// takes its path and methods from the handler's `#[utoipa::path]`.
fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(agent::self_info))
        .routes(routes!(metrics::agent_metrics))
        .routes(routes!(metrics::prometheus))
        .routes(routes!(agent::services))
        .routes(routes!(agent::checks))
        .routes(routes!(agent::register))
        // GET too: python-consul 0.7.1 deregisters and heartbeats with GET (reference §0.7).
        .routes(routes!(agent::deregister))
        .routes(routes!(agent::register_check))
        .routes(routes!(agent::deregister_check))
        .routes(routes!(agent::pass))
        .routes(routes!(agent::warn))
        .routes(routes!(agent::fail))
        .routes(routes!(agent::update))
        .routes(routes!(catalog::services))
        .routes(routes!(catalog::service))
        .routes(routes!(health::service))
        .routes(routes!(health::checks))
        .routes(routes!(health::state))
        .routes(routes!(status::leader))
        .routes(routes!(status::peers))
        .routes(routes!(endpoints::endpoints))
        .routes(routes!(endpoints::missing_service))
        .routes(routes!(endpoints::missing_service_slash))
        .routes(routes!(routes::routes))
        .routes(routes!(members::members))
        .routes(routes!(watch::service))
        .routes(routes!(watch::all))
        .routes(routes!(probes::health))
        .routes(routes!(probes::ready))
        .routes(routes!(openapi::document))
        .routes(routes!(acl::bootstrap))
        .routes(routes!(acl::token_self))
}

/// The routes with their fallbacks, and the document describing them (before state and the
/// request counter are added; a test compares the two).
fn routed() -> (Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    let (router, mut document) = routes().split_for_parts();
    openapi::unique_operation_ids(&mut document);
    let router = router
        .fallback(unknown_path)
        // A router-level fallback, not a middleware: nothing is added to every request's path.
        .method_not_allowed_fallback(method_not_allowed);
    (router, document)
}

/// Builds the router for every endpoint. Routes are added in [`routes`], with their
/// documentation, never here; the one exception is the web UI's pages ([`crate::ui`]), which
/// are not API operations and so are not in the OpenAPI document.
pub fn router(state: Arc<ApiState>) -> Router {
    let (router, _) = routed();
    router
        .merge(crate::ui::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// Set on every answer of a cluster agent that has lost etcd: the catalog it serves may be
/// out of date (it is the last one the agent applied).
pub const STALE_HEADER: &str = "x-wayfinder-stale";

/// The route label of a request no route matched (the fallbacks): one label for every such
/// path, so a scanner cannot grow the label set.
const UNMATCHED: &str = "unmatched";

/// Counts every routed request by route template and status code, and times it unless it is a
/// blocking query (see [`crate::metrics::ApiMetrics`]). The clock was read by the fast path
/// when it let the request through ([`RouteTimer`]); it is read here only without it.
async fn count_requests(
    state: State,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let blocking = request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|pair| pair.starts_with("index=")));
    let timer = match blocking {
        true => None,
        false => Some(
            request
                .extensions()
                .get::<RouteTimer>()
                .copied()
                .unwrap_or_else(|| RouteTimer(tokio::time::Instant::now())),
        ),
    };
    let mut response = next.run(request).await;
    if state.writer.is_stale() {
        response
            .headers_mut()
            .insert(STALE_HEADER, http::HeaderValue::from_static("true"));
    }
    state
        .api_metrics
        .answered(&route, response.status().as_u16(), timer);
    response
}

async fn unknown_path(request: Request<Body>) -> ApiError {
    ApiError::not_found(format!(
        "Invalid URL path: {} is not a recognized HTTP API endpoint",
        request.uri().path()
    ))
}

/// A known path asked with the wrong method: 405 with a body that says so (axum adds `Allow`).
async fn method_not_allowed(request: Request<Body>) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on this endpoint; the Allow header lists the methods it takes",
            request.method()
        ),
    )
}
