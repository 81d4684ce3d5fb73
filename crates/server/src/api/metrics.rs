//! `GET /metrics` (OpenMetrics text, for Prometheus scrapes) and `GET /v1/agent/metrics`
//! (Consul's path: JSON by default, the same text with `?format=prometheus`).

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::{Params, json};
use crate::acl::Access;
use crate::metrics::OPENMETRICS_CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operator",
    responses(
        (status = 200, description = "Every metric, in the OpenMetrics text format", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 403, description = "The token may not read this agent (`agent:read`)", body = ErrorBody<'_>),
    )
)]
pub async fn prometheus(state: State, authz: Authz) -> Result<Response, ApiError> {
    authz.require_agent(&state.node.name, Access::Read)?;
    Ok(openmetrics(&state))
}

/// `GET /v1/agent/metrics[?format=prometheus]`.
#[utoipa::path(
    get,
    path = "/v1/agent/metrics",
    tag = "operator",
    params(("format" = Option<String>, Query, description = "`prometheus` for the OpenMetrics text")),
    responses(
        (status = 200, description = "Every metric: JSON by default, OpenMetrics text with `format=prometheus`", content((Object = "application/json"), (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 403, description = "The token may not read this agent (`agent:read`)", body = ErrorBody<'_>),
    )
)]
pub async fn agent_metrics(
    state: State,
    authz: Authz,
    params: Params,
) -> Result<Response, ApiError> {
    authz.require_agent(&state.node.name, Access::Read)?;
    match params.get("format") {
        None | Some("") => match state.metrics.to_json() {
            Ok(body) => Ok(json(&body)),
            Err(_) => Err(encoding_failed()),
        },
        Some("prometheus") => Ok(openmetrics(&state)),
        Some(other) => Err(ApiError::field(
            "format",
            format!("unknown format {other:?}; use format=prometheus, or omit it for JSON"),
        )),
    }
}

fn openmetrics(state: &State) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => encoding_failed().into_response(),
    }
}

fn encoding_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "encoding the metrics failed; this is a bug, please report it with the agent's log",
    )
}
