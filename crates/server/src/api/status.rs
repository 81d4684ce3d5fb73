//! `/v1/status/*`: a single agent is its own leader.

use super::State;
use super::query::json;
use axum::response::Response;

/// `GET /v1/status/leader`: a JSON string, the leader's address (this agent).
#[utoipa::path(
    get,
    path = "/v1/status/leader",
    tag = "status",
    responses(
        (status = 200, description = "The leader's address: this agent", body = String, content_type = "application/json"),
    )
)]
pub async fn leader(state: State) -> Response {
    json(&format!("{}:8300", state.node.address))
}

/// `GET /v1/status/peers`: the raft peers (this agent alone).
#[utoipa::path(
    get,
    path = "/v1/status/peers",
    tag = "status",
    responses(
        (status = 200, description = "The raft peers: this agent alone", body = Vec<String>),
    )
)]
pub async fn peers(state: State) -> Response {
    json(&[format!("{}:8300", state.node.address)])
}
