//! `GET /v1/watch/{service}` and `GET /v1/watch`: watch streams as Server-Sent Events.
//!
//! Every stream starts with a baseline, then follows live events:
//! - without `Last-Event-ID` (a fresh client), one `event: resync` holding the scope's full
//!   state (`{"index", "service", "instances"}`, or `{"index", "services"}` for all);
//! - with a `Last-Event-ID` the agent still has history for, every event of the scope after it,
//!   so a reconnecting client misses nothing;
//! - with an older, unparseable or unknown `Last-Event-ID`, a `resync` as for a fresh client.
//!
//! Then one `registered`, `deregistered` or `health` event per change (see
//! [`crate::events`] for the data), a `resync` again whenever the client fell too far behind
//! to be sent every event, and a comment line every 15 s so proxies keep idle streams open.
//! Watching a service that is not registered (yet) is allowed: it starts with no instances.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use crate::acl::Access;
use crate::events::{Position, Watch, WatchScope};
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use wayfinder_catalog::ServiceName;

/// How often an idle stream gets a comment line, so proxies and load balancers that cut idle
/// connections (often after 30–60 s) keep it open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// The header browsers' `EventSource` sends when it reconnects.
const LAST_EVENT_ID: &str = "last-event-id";

/// `GET /v1/watch/{service}`: the changes to one service.
#[utoipa::path(
    get,
    path = "/v1/watch/{service}",
    tag = "watch",
    params(("service" = String, Path, description = "The service name"), ("Last-Event-ID" = Option<String>, Header, description = "The last event id a reconnecting client saw")),
    responses(
        (status = 200, description = "Server-Sent Events: a `resync` baseline, then `registered`, `deregistered` and `health` events of this service", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 503, description = "The agent is shutting down", body = ErrorBody<'_>),
    )
)]
pub async fn service(
    state: State,
    authz: Authz,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = ServiceName::new(&service, "service")?;
    authz.require_service(name.as_str(), Access::Read)?;
    Ok(stream(&state, WatchScope::Service(name), &headers))
}

/// `GET /v1/watch`: the changes to every service.
#[utoipa::path(
    get,
    path = "/v1/watch",
    tag = "watch",
    params(("Last-Event-ID" = Option<String>, Header, description = "The last event id a reconnecting client saw")),
    responses(
        (status = 200, description = "Server-Sent Events: a `resync` baseline, then every service's changes", body = String, content_type = "text/event-stream"),
        (status = 503, description = "The agent is shutting down", body = ErrorBody<'_>),
    )
)]
pub async fn all(state: State, authz: Authz, headers: HeaderMap) -> Result<Response, ApiError> {
    // One stream is shared by every watcher of all services, so it cannot be filtered per
    // token: it needs read on every service.
    if !authz.reads_everything() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Permission denied: token {:?} cannot read every service, which /v1/watch \
                 streams; watch the services it may read with /v1/watch/{{service}}",
                authz.0.name()
            ),
        ));
    }
    Ok(stream(&state, WatchScope::All, &headers))
}

/// The SSE response for `scope`, or 503 once the agent is shutting down.
fn stream(state: &super::ApiState, scope: WatchScope, headers: &HeaderMap) -> Response {
    let watch: Watch = match state.events.watch(scope, resume_from(headers)) {
        Ok(watch) => watch,
        Err(closed) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, closed.to_string())
                .into_response();
        }
    };
    let mut response = Sse::new(watch.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE_INTERVAL))
        .into_response();
    // nginx buffers proxied responses by default, which would hold events back.
    response
        .headers_mut()
        .insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    response
}

/// The position a reconnecting client last saw. Anything unparseable is treated as "too far
/// behind" (the client gets a resync), never as an error: a browser reconnects with whatever id
/// it last saw, and refusing it would only make it retry forever.
fn resume_from(headers: &HeaderMap) -> Option<Position> {
    let value = headers.get(LAST_EVENT_ID)?;
    let parsed = value
        .to_str()
        .map_err(|_| format!("{value:?} is not text"))
        .and_then(|text| text.parse::<Position>().map_err(|e| e.to_string()));
    match parsed {
        Ok(position) => Some(position),
        Err(reason) => {
            tracing::debug!(%reason, "Last-Event-ID ignored; the watch starts with a resync");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_parsed_or_ignored() {
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                LAST_EVENT_ID,
                HeaderValue::from_bytes(value).expect("header value"),
            );
            resume_from(&headers)
        };
        assert_eq!(with(b"17.2"), Some(Position::event(17, 2)));
        assert_eq!(with(b"17"), Some(Position::end_of(17)));
        assert_eq!(with(b"not-a-position"), None);
        assert_eq!(with(b"\xff\xfe"), None);
        assert_eq!(resume_from(&HeaderMap::new()), None);
    }
}
