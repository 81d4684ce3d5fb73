//! `GET /health` (liveness: the process answers) and `GET /ready` (readiness: the catalog is
//! loaded and the store accepts writes), for load balancers and orchestrators.

use super::State;
use super::query::json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json as object;

/// Always 200 while the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operator",
    responses(
        (status = 200, description = "The process serves HTTP", body = Object),
    )
)]
pub async fn health() -> Response {
    json(&object!({"status": "ok"}))
}

/// 200 when the catalog is loaded and the last store commit succeeded, else 503 saying which.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operator",
    responses(
        (status = 200, description = "The catalog is loaded and the store accepts writes", body = Object),
        (status = 503, description = "Not ready: the body says which part", body = Object),
    )
)]
pub async fn ready(state: State) -> Response {
    let catalog = state.is_ready();
    let stale = state.writer.is_stale();
    let store = state.writer.is_healthy() && !stale;
    let body = object!({
        "catalog": if catalog { "loaded" } else { "loading" },
        "store": match (stale, store) {
            (true, _) => "stale: etcd is unreachable; the catalog is served read-only and may be out of date",
            (false, true) => "ok",
            (false, false) => "failing: writes are not being saved; see the agent's log",
        },
    });
    if catalog && store {
        json(&body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, json(&body)).into_response()
    }
}
