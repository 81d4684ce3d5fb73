//! The one read that dominates traffic, answered before routing.
//!
//! Mobile apps and SDKs ask `GET /v1/endpoints/{service}` far more often than anything else,
//! and almost always in its plain form: no query, no `If-None-Match`, a service whose answer is
//! already rendered. Through the router that answer paid for path matching, extractors (the
//! service name copied into a `String`, the query parsed, the request headers cloned) and
//! headers formatted per request: about 11 µs of agent CPU against nginx's 6 µs for the same
//! bytes (docs/BENCHMARKS.md). Here it costs a snapshot load, one map lookup and five header
//! values that were built when the answer was rendered.
//!
//! Everything else — a query, a conditional request, a miss, an unknown or unhealthy service, a
//! name that needs percent-decoding, a provider-only agent — goes through the router unchanged,
//! so the fast path holds no rule of its own: it answers only where the router would answer
//! `200 HIT` with exactly these bytes and headers (a test below compares the two).

use super::ApiState;
use super::endpoints::{JSON, NO_CACHE, X_CACHE_STATUS, X_CONSUL_INDEX};
use crate::metrics::RouteTimer;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::Response;
use futures::future::{Either, Ready, ready};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower::Service;

/// The path prefix the fast path serves.
const PREFIX: &str = "/v1/endpoints/";

/// The API's service: plain endpoint reads answered at once, everything else routed.
#[derive(Clone)]
pub struct FastEndpoints {
    state: Arc<ApiState>,
    router: Router,
}

impl FastEndpoints {
    /// Puts the fast path in front of `router`, reading from `state`.
    pub fn new(state: Arc<ApiState>, router: Router) -> Self {
        Self { state, router }
    }
}

impl Service<Request<Body>> for FastEndpoints {
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<Ready<Result<Response, Infallible>>, <Router as Service<Request<Body>>>::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready (axum documents it), and the fast path needs nothing.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The one clock read of the request; a routed request carries it to the middleware.
        let start = Instant::now();
        match answer(&self.state, &request) {
            Some(response) => {
                self.state.api_metrics.fast_answered(start);
                Either::Left(ready(Ok(response)))
            }
            None => {
                request.extensions_mut().insert(RouteTimer(start));
                Either::Right(self.router.call(request))
            }
        }
    }
}

/// The router's `200 HIT` answer to `request`, if it is a plain endpoint read of a service
/// whose rendering is current; `None` sends the request through the router.
fn answer(state: &ApiState, request: &Request<Body>) -> Option<Response> {
    if request.method() != Method::GET
        || request.uri().query().is_some()
        || request.headers().contains_key(header::IF_NONE_MATCH)
        || state.provider.is_some()
        // Under ACLs the token decides; the router asks it.
        || state.acl.is_enabled()
        || !state.is_ready()
        || state.writer.is_stale()
    {
        return None;
    }
    let service = request.uri().path().strip_prefix(PREFIX)?;
    // Names that need decoding, or are not a single segment, are the router's to judge.
    if service.is_empty() || service.contains(['/', '%']) {
        return None;
    }
    let index = state.snapshots.load().live_service_index(service)?;
    let rendered = state.endpoints.get(service, index)?;
    if rendered.count == 0 {
        return None;
    }
    let mut response = Response::new(Body::from(rendered.body.clone()));
    let headers = response.headers_mut();
    headers.reserve(5);
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(header::ETAG, rendered.etag.clone());
    headers.insert(header::CACHE_CONTROL, NO_CACHE);
    headers.insert(X_CACHE_STATUS, HeaderValue::from_static("HIT"));
    headers.insert(X_CONSUL_INDEX, rendered.index_header.clone());
    Some(response)
}
