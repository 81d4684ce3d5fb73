//! The HTTP API's group, updated by the middleware around the router and by the endpoints fast
//! path ([`crate::api`]).
//!
//! Routes are labelled by their template (`/v1/health/service/{name}`), never the raw path, so
//! the label set is bounded by the router's table; a path no route matches is `unmatched`.
//! Blocking queries (`?index=`) are counted but their duration is not observed: they wait up to
//! minutes by design, and would bury the latency of everything else in the top bucket.

use super::{Metrics, duration_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;

/// Labels of `wayfinder_api_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template, or `unmatched`.
    pub route: String,
    /// The response's status code.
    pub code: u16,
}

/// The `route` label of `wayfinder_api_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The matched route template, or `unmatched`.
    pub route: String,
}

/// The route label of the endpoints fast path (the router's template for the same reads).
pub const ENDPOINTS_ROUTE: &str = "/v1/endpoints/{service}";

/// The HTTP API's metrics, with the fast path's handles resolved once.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// `wayfinder_api_requests_total{route,code}`.
    pub requests: Family<RouteLabels, Counter>,
    /// `wayfinder_api_request_duration_seconds{route}` (blocking queries left out).
    pub durations: Family<RouteLabel, Histogram>,
    /// The fast path's `{route="/v1/endpoints/{service}",code="200"}` counter.
    fast_ok: Counter,
    /// The fast path's duration histogram.
    fast_duration: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let durations: Family<RouteLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(duration_buckets()));
        let fast_ok = requests
            .get_or_create(&RouteLabels {
                route: ENDPOINTS_ROUTE.to_owned(),
                code: 200,
            })
            .clone();
        let fast_duration = durations
            .get_or_create(&RouteLabel {
                route: ENDPOINTS_ROUTE.to_owned(),
            })
            .clone();
        Self {
            requests,
            durations,
            fast_ok,
            fast_duration,
        }
    }
}

impl ApiMetrics {
    /// Registers the group in `metrics` and returns its handles.
    pub fn register(metrics: &mut Metrics) -> Self {
        let group = Self::default();
        let registry = metrics.registry_mut();
        registry.register(
            "api_requests",
            "HTTP API requests, by route template and status code",
            group.requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "HTTP API request durations by route template, blocking queries (index=) excluded",
            group.durations.clone(),
        );
        group
    }

    /// Counts one `200` answer of the fast path that started at `start`: two pre-resolved
    /// handles, no label lookup.
    pub fn fast_answered(&self, start: Instant) {
        self.fast_ok.inc();
        self.fast_duration.observe(start.elapsed().as_secs_f64());
    }

    /// Counts one routed request; `timer` is `None` for a blocking query.
    pub fn answered(&self, route: &str, code: u16, timer: Option<RouteTimer>) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                code,
            })
            .inc();
        if let Some(RouteTimer(start)) = timer {
            self.durations
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .observe(start.elapsed().as_secs_f64());
        }
    }
}

/// When a request arrived, read once by the fast path and carried to the router's middleware
/// in the request's extensions, so a routed request reads the clock once too.
#[derive(Debug, Clone, Copy)]
pub struct RouteTimer(pub Instant);
