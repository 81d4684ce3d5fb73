//! The Consul-shaped HTTP API: routing, and the state handlers share.
//!
//! Reads come from the published snapshot (no lock, no IO); writes go through the one write
//! path ([`crate::write_path::Writer`]) and answer only once durable.

mod agent;
mod body;
mod catalog;
mod error;
mod health;
mod query;
mod status;

pub use error::ApiError;

use crate::consul::response::NodeInfo;
use crate::snapshots::Snapshots;
use crate::write_path::Writer;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use std::sync::Arc;
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
}

/// Shared handler state.
pub type State = axum::extract::State<Arc<ApiState>>;

/// Builds the router for every `/v1` endpoint.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/service/register", put(agent::register))
        // GET too: python-consul 0.7.1 deregisters and heartbeats with GET (reference §0.7).
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent::deregister).get(agent::deregister),
        )
        .route("/v1/agent/check/register", put(agent::register_check))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent::deregister_check).get(agent::deregister_check),
        )
        .route(
            "/v1/agent/check/pass/{id}",
            put(agent::pass).get(agent::pass),
        )
        .route(
            "/v1/agent/check/warn/{id}",
            put(agent::warn).get(agent::warn),
        )
        .route(
            "/v1/agent/check/fail/{id}",
            put(agent::fail).get(agent::fail),
        )
        .route("/v1/agent/check/update/{id}", put(agent::update))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .fallback(unknown_path)
        .layer(middleware::from_fn(explain_method_not_allowed))
        .with_state(state)
}

async fn unknown_path(request: Request<Body>) -> ApiError {
    ApiError::not_found(format!(
        "Invalid URL path: {} is not a recognized HTTP API endpoint",
        request.uri().path()
    ))
}

/// axum answers a wrong method with an empty 405 (and adds `Allow` itself, outside this
/// layer); give it a body that says what went wrong.
async fn explain_method_not_allowed(request: Request<Body>, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on this endpoint; the Allow header lists the methods it takes"),
    )
    .into_response()
}
