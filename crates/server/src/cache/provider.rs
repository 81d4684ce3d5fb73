//! The provider side: answer `GET /v1/endpoints/{service}` from Memcached, on a stateless
//! `--provider-only` agent (the design note's Endpoint Provider, minus its staleness).
//!
//! A request costs one GET on the server holding `endpoints:{service}`, over a pooled
//! connection. What a provider answers:
//!
//! | Memcached | answer | `X-Cache-Status` |
//! |---|---|---|
//! | has the key | 200, the stored bytes | `HIT` |
//! | no key | 404 JSON: unknown service or no healthy instance | `MISS` |
//! | down, or restarted and not yet refilled | the provider's own view: 200 with the last body it read for the service (or 404 if its last read was a miss) | `BYPASS` |
//! | down, and the provider never read the service | 503 JSON with `Retry-After` | `BYPASS` |
//!
//! The own view is a map from service to the last answer read from Memcached; it holds only
//! services that had a key at some point (a miss never adds an entry), so requests for made-up
//! names cannot grow it. While a server is out, requests do not touch it at all: the
//! `cache-probe` task checks every server each [`PROBE_INTERVAL`] and brings it back, so an
//! outage costs clients nothing in latency and the log gets one line at each end of it
//! ([`super::outage`]).
//!
//! What a provider cannot do, and says so: filtered questions (`tag`, `meta`, `include`) get
//! 400, because Memcached holds only the default rendering; blocking queries (`?index=`) are
//! answered at once, because the stored bytes carry no index to wait on (clients poll with
//! `If-None-Match` instead; the ETag is a hash of the body — see the `cache` module docs).

use super::memcached::{Shards, body_etag, get_bytes, is_outage, key_for};
use super::outage::{Availability, Reachability, Role};
use super::{CacheError, CacheTask, CacheUrl};
use crate::api::{ApiError, list_response};
use crate::endpoints::EndpointFilter;
use crate::metrics::{CacheMetrics, ReadLabel};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dashmap::DashMap;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wayfinder_catalog::ServiceName;

pub use super::pusher::PROBE_INTERVAL;

/// Bound on one dial or one GET. A provider that waits longer than this on Memcached would be
/// slower than answering from its own view; the server is then treated as down until a probe
/// succeeds.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections kept open per server for reuse: a provider under load has many requests in
/// flight, and each one beyond the idle pool would dial (and close) a connection of its own.
pub const MAX_IDLE_CONNECTIONS: usize = 128;
/// Seconds a client should wait before asking again after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// The last answer Memcached gave for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The stored endpoint list.
    Body(Bytes),
    /// No key: unknown, or nothing healthy.
    Gone,
}

/// Where one answer came from (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Read from Memcached.
    Hit(Bytes),
    /// Memcached has no key for the service.
    Miss,
    /// Memcached is out; this is the last body read for the service.
    Bypass(Bytes),
    /// Memcached is out; the last read for the service was a miss.
    BypassGone,
    /// Memcached is out and the service was never read.
    Unavailable,
}

/// Reads endpoint lists from Memcached and keeps its own view for outages.
pub struct EndpointProvider {
    shards: Shards,
    availability: Availability,
    own_view: DashMap<Arc<str>, Seen>,
    metrics: CacheMetrics,
    // Resolved once: the hot path must not look a label set up per request.
    hits: Counter,
    misses: Counter,
    errors: Counter,
}

/// Resolves the servers and starts the `cache-probe` task.
pub async fn start(
    url: &CacheUrl,
    metrics: CacheMetrics,
) -> Result<(Arc<EndpointProvider>, CacheTask), CacheError> {
    let shards = Shards::connect(url, READ_TIMEOUT, MAX_IDLE_CONNECTIONS).await?;
    let provider = Arc::new(EndpointProvider::new(shards, metrics));
    tracing::info!(cache = %url, "provider-only: serving /v1/endpoints from memcached");
    let probing = Arc::clone(&provider);
    let task = CacheTask::spawn("cache-probe", move |stop| probing.run_probes(stop).boxed());
    Ok((provider, task))
}

impl EndpointProvider {
    fn new(shards: Shards, metrics: CacheMetrics) -> Self {
        let availability = Availability::new(Role::Provider, shards.names(), metrics.clone());
        let read = |result| metrics.reads.get_or_create_owned(&ReadLabel { result });
        Self {
            hits: read("hit"),
            misses: read("miss"),
            errors: read("error"),
            shards,
            availability,
            own_view: DashMap::new(),
            metrics,
        }
    }

    /// Answers `GET /v1/endpoints/{service}` (the handler has validated the query string).
    pub async fn endpoints(
        &self,
        service: &str,
        filter: &EndpointFilter,
        request: &HeaderMap,
    ) -> Result<Response, ApiError> {
        if !filter.is_default() {
            let field = if !filter.tags.is_empty() {
                "tag"
            } else if !filter.meta.is_empty() {
                "meta"
            } else {
                "include"
            };
            return Err(ApiError::field(
                field,
                format!(
                    "?{field}= is not available on a provider-only agent: Memcached holds only \
                     each service's unfiltered list; ask the primary agent for filtered lists"
                ),
            ));
        }
        // No registered service can have an invalid name: skip the round trip.
        if ServiceName::new(service, "service").is_err() {
            return Ok(not_found(service, "MISS"));
        }
        Ok(match self.lookup(service).await {
            Answer::Hit(body) => found(body, "HIT", request),
            Answer::Bypass(body) => found(body, "BYPASS", request),
            Answer::Miss => not_found(service, "MISS"),
            Answer::BypassGone => not_found(service, "BYPASS"),
            Answer::Unavailable => unavailable(service),
        })
    }

    /// Reads `service`'s list: one GET, or the own view when its server is out.
    pub async fn lookup(&self, service: &str) -> Answer {
        let key = key_for(service);
        let server = self.shards.route(&key);
        if !self.availability.is_up(server) {
            return self.bypass(service);
        }
        match get_bytes(self.shards.get(server), &key).await {
            Ok(Some(body)) => {
                self.hits.inc();
                self.remember(service, Seen::Body(body.clone()));
                Answer::Hit(body)
            }
            Ok(None) => {
                self.misses.inc();
                // Only services that once had a key are kept (bounded by real services).
                if let Some(mut seen) = self.own_view.get_mut(service) {
                    *seen = Seen::Gone;
                }
                Answer::Miss
            }
            Err(error) => {
                self.errors.inc();
                if is_outage(&error) {
                    self.availability.report(server, Reachability::Down, &error);
                } else {
                    // One command refused while the server answers: no outage to announce.
                    tracing::debug!(%service, %error, "memcached read failed; answering from own view");
                }
                self.bypass(service)
            }
        }
    }

    fn remember(&self, service: &str, seen: Seen) {
        match self.own_view.get_mut(service) {
            Some(mut entry) => *entry = seen,
            None => {
                self.own_view.insert(Arc::from(service), seen);
            }
        }
    }

    fn bypass(&self, service: &str) -> Answer {
        self.metrics.bypass.inc();
        match self.own_view.get(service).map(|seen| seen.value().clone()) {
            Some(Seen::Body(body)) => Answer::Bypass(body),
            Some(Seen::Gone) => Answer::BypassGone,
            None => Answer::Unavailable,
        }
    }

    /// Probes every server each [`PROBE_INTERVAL`]: the sync marker present is up, absent is
    /// unsynced (memcached lost its data and no primary has refilled it), an error is down.
    async fn run_probes(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => self.probe().await,
            }
        }
        tracing::debug!("cache probe stopped");
    }

    async fn probe(&self) {
        let answers = self.shards.sync_markers().await;
        for (server, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(Some(_)) => self
                    .availability
                    .report(server, Reachability::Up, &"synced"),
                Ok(None) => {
                    self.availability
                        .report(server, Reachability::Unsynced, &"no sync marker")
                }
                Err(error) => self.availability.report(server, Reachability::Down, &error),
            };
        }
    }
}

/// 200 with the stored list (or 304 when the client has it).
fn found(body: Bytes, cache_status: &'static str, request: &HeaderMap) -> Response {
    let etag = HeaderValue::try_from(body_etag(&body))
        .expect("hex digits between quotes are a valid header value");
    list_response(body, etag, cache_status, request)
}

fn not_found(service: &str, cache_status: &'static str) -> Response {
    let mut response = ApiError::not_found(format!(
        "service {service:?} is unknown or has no healthy instance right now \
         (the Endpoint Provider cache holds no list for it)"
    ))
    .with_service(service)
    .into_response();
    response
        .headers_mut()
        .insert("X-Cache-Status", HeaderValue::from_static(cache_status));
    response
}

fn unavailable(service: &str) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "memcached is unreachable and this provider has not read service {service:?} \
             before, so it has nothing to answer from; retry shortly"
        ),
    )
    .with_service(service)
    .with_header(header::RETRY_AFTER, RETRY_AFTER_SECONDS)
    .into_response();
    response
        .headers_mut()
        .insert("X-Cache-Status", HeaderValue::from_static("BYPASS"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider whose only server is a closed port: every read fails fast (refused).
    async fn provider_without_memcached() -> (EndpointProvider, CacheMetrics) {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url: CacheUrl = format!("memcached://127.0.0.1:{port}")
            .parse()
            .expect("url");
        let shards = Shards::connect(&url, READ_TIMEOUT, 1)
            .await
            .expect("resolve");
        let metrics = CacheMetrics::default();
        (EndpointProvider::new(shards, metrics.clone()), metrics)
    }

    #[tokio::test]
    async fn an_outage_serves_the_own_view_and_counts_bypasses() {
        let (provider, metrics) = provider_without_memcached().await;
        provider.remember("web", Seen::Body(Bytes::from_static(b"[1]")));
        provider.remember("db", Seen::Gone);
        assert_eq!(
            provider.lookup("web").await,
            Answer::Bypass(Bytes::from_static(b"[1]"))
        );
        assert_eq!(metrics.outages.get(), 1, "the failed GET began the outage");
        assert_eq!(metrics.up.get(), 0);
        assert_eq!(provider.lookup("db").await, Answer::BypassGone);
        assert_eq!(provider.lookup("never-seen").await, Answer::Unavailable);
        assert_eq!(metrics.bypass.get(), 3);
        assert_eq!(
            metrics.outages.get(),
            1,
            "one outage, however many requests"
        );
        assert_eq!(
            provider.errors.get(),
            1,
            "a server known down is not asked again"
        );
    }

    #[tokio::test]
    async fn filters_are_refused_and_bad_names_are_unknown() {
        let (provider, _) = provider_without_memcached().await;
        let filter = EndpointFilter {
            include_warning: true,
            ..EndpointFilter::default()
        };
        let error = provider
            .endpoints("web", &filter, &HeaderMap::new())
            .await
            .expect_err("filters are refused");
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
        let response = provider
            .endpoints("not a name", &EndpointFilter::default(), &HeaderMap::new())
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            provider.errors.get(),
            0,
            "an invalid name costs no round trip"
        );
    }

    #[test]
    fn found_sets_etag_and_honours_if_none_match() {
        let body = Bytes::from_static(b"[{\"host\":\"10.0.0.1\",\"port\":80}]");
        let response = found(body.clone(), "HIT", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()[header::ETAG].clone();
        assert_eq!(response.headers()["X-Cache-Status"], "HIT");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, etag);
        let response = found(body, "HIT", &request);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    }
}
