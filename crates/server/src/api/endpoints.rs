//! `GET /v1/endpoints/{service}`: the Endpoint Provider's answer, a bare JSON array of healthy
//! endpoints, with `ETag` = the service's modify index, `If-None-Match` → 304, blocking
//! `?index=&wait=`, and `X-Cache-Status` saying whether the pre-rendered answer was used.

use super::State;
use super::error::ApiError;
use super::query::Params;
use crate::blocking::{self, Scope};
use crate::endpoints::{EndpointFilter, Rendered};
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// `X-Cache-Status`: whether the pre-rendered answer was used (`HIT`) or one was rendered for
/// this request (`MISS`); `BYPASS` on a provider answering without Memcached.
pub(crate) const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
/// `X-Consul-Index`: the index the answer was made at, as Consul's reads carry it.
pub(crate) const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
/// `no-cache`: clients revalidate every time (the answer changes the moment a write lands).
pub(crate) const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
/// `application/json`.
pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Seconds a client should wait before asking again when nothing is healthy: one typical
/// check interval.
const RETRY_AFTER_SECONDS: &str = "1";

/// `GET /v1/endpoints/{service}`.
pub async fn endpoints(
    state: State,
    Path(service): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the catalog is not loaded yet; retry shortly",
        )
        .with_header(header::RETRY_AFTER, RETRY_AFTER_SECONDS));
    }
    let filter = filter(&params)?;
    if let Some(provider) = &state.provider {
        // A provider-only agent (issue 3, "Memcached") answers from Memcached. `?index=` is
        // validated but answered at once: the stored bytes carry no index to wait on.
        params.blocking()?;
        return provider.endpoints(&service, &filter, &headers).await;
    }
    let catalog = blocking::wait(
        &state.snapshots,
        Scope::Service(&service),
        params.blocking()?,
    )
    .await;
    if !catalog.has_service(&service) {
        return Err(ApiError::not_found(format!(
            "unknown service {service:?}: no instance is registered under that name"
        ))
        .with_service(&service));
    }
    let (rendered, cache_status) = if filter.is_default() {
        match state.endpoints.get_or_render(&catalog, &service) {
            (rendered, true) => (rendered, "HIT"),
            (rendered, false) => (rendered, "MISS"),
        }
    } else {
        (
            std::sync::Arc::new(state.endpoints.render_filtered(&catalog, &service, &filter)),
            "MISS",
        )
    };
    if rendered.count == 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service {service:?} has no healthy instance right now"),
        )
        .with_service(&service)
        .with_header(header::RETRY_AFTER, RETRY_AFTER_SECONDS));
    }
    Ok(respond(&rendered, cache_status, &headers))
}

/// `GET /v1/endpoints/`: the one question without a service name.
pub async fn missing_service() -> ApiError {
    ApiError::field(
        "service",
        "a service name is required: GET /v1/endpoints/{service}",
    )
}

fn filter(params: &Params) -> Result<EndpointFilter, ApiError> {
    let mut filter = EndpointFilter {
        tags: params.all("tag").map(str::to_owned).collect(),
        ..EndpointFilter::default()
    };
    for pair in params.all("meta") {
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| ApiError::field("meta", format!("{pair:?} must be key:value")))?;
        filter.meta.push((key.to_owned(), value.to_owned()));
    }
    for include in params.all("include") {
        match include {
            "warning" => filter.include_warning = true,
            other => {
                return Err(ApiError::field(
                    "include",
                    format!("{other:?} cannot be included; the only choice is include=warning"),
                ));
            }
        }
    }
    Ok(filter)
}

fn respond(rendered: &Rendered, cache_status: &'static str, request: &HeaderMap) -> Response {
    let mut response = list_response(
        rendered.body.clone(),
        rendered.etag.clone(),
        cache_status,
        request,
    );
    response
        .headers_mut()
        .insert(X_CONSUL_INDEX, rendered.index_header.clone());
    response
}

/// An endpoint list as `/v1/endpoints` answers it, whoever produced it (this agent's catalog,
/// or Memcached on a provider-only agent): 304 when the request's `If-None-Match` already names
/// `etag` (a quoted entity tag), else 200 with `body` as JSON; either way with `ETag`,
/// `Cache-Control: no-cache` (clients revalidate every time) and `X-Cache-Status`.
pub(crate) fn list_response(
    body: Bytes,
    etag: HeaderValue,
    cache_status: &'static str,
    request: &HeaderMap,
) -> Response {
    let not_modified = if_none_match(request, etag.as_bytes());
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let headers = response.headers_mut();
    if !not_modified {
        headers.insert(header::CONTENT_TYPE, JSON);
    }
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, NO_CACHE);
    headers.insert(X_CACHE_STATUS, HeaderValue::from_static(cache_status));
    response
}

/// Whether the request's `If-None-Match` names `etag` (weak validators compare equal, as the
/// header's weak comparison says) or is `*`.
fn if_none_match(request: &HeaderMap, etag: &[u8]) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag
            })
        })
}
