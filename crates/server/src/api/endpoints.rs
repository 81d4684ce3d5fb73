//! `GET /v1/endpoints/{service}`: the Endpoint Provider's answer, a bare JSON array of healthy
//! endpoints, with `ETag` = the service's modify index, `If-None-Match` → 304, blocking
//! `?index=&wait=`, and `X-Cache-Status` saying whether the pre-rendered answer was used.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::acl::Access;
use crate::blocking::{self, Scope};
use crate::endpoints::{EndpointFilter, EndpointJson, Rendered};
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
#[utoipa::path(
    get,
    path = "/v1/endpoints/{service}",
    tag = "endpoints",
    params(("service" = String, Path, description = "The service name"), ("tag" = Option<Vec<String>>, Query, description = "Keep endpoints with every one of these tags"), ("meta" = Option<Vec<String>>, Query, description = "`key:value`: keep endpoints with this meta"), ("include" = Option<String>, Query, description = "`warning` to list warning instances too"), ("If-None-Match" = Option<String>, Header, description = "An ETag of a previous answer: 304 if unchanged"), super::openapi::Blocking),
    responses(
        (status = 200, description = "The healthy endpoints of the service. Plain reads of a rendered answer are served before routing (api/fast_path.rs) with the same bytes and headers", body = Vec<EndpointJson<'_>>, headers(("X-Consul-Index" = u64, description = "The service's index; pass it as `?index=` to block for the next change"), ("ETag" = String, description = "The answer's entity tag, for If-None-Match"), ("X-Cache-Status" = String, description = "HIT (pre-rendered), MISS or BYPASS"))),
        (status = 304, description = "If-None-Match names the current answer"),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 404, description = "No instance is registered under that name", body = ErrorBody<'_>),
        (status = 503, description = "Nothing healthy right now, or the catalog is not loaded yet; see Retry-After", body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn endpoints(
    state: State,
    authz: Authz,
    Path(service): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authz.require_service(&service, Access::Read)?;
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

/// `GET /v1/endpoints`: the one question without a service name.
#[utoipa::path(
    get,
    path = "/v1/endpoints",
    tag = "endpoints",
    responses(
        (status = 400, description = "A service name is required", body = ErrorBody<'_>),
    )
)]
pub async fn missing_service() -> ApiError {
    ApiError::field(
        "service",
        "a service name is required: GET /v1/endpoints/{service}",
    )
}

/// `GET /v1/endpoints/`: the same question, with the trailing slash.
#[utoipa::path(
    get,
    path = "/v1/endpoints/",
    tag = "endpoints",
    responses(
        (status = 400, description = "A service name is required", body = ErrorBody<'_>),
    )
)]
pub async fn missing_service_slash() -> ApiError {
    missing_service().await
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
