//! `GET /v1/openapi.json`: the OpenAPI 3 document of every route the agent serves.
//!
//! The document is not written by hand: each handler carries a `#[utoipa::path]` annotation,
//! and [`super::routes`] registers handlers through utoipa-axum, which adds a route and its
//! documentation in one step. The document is built once, on the first request, from that
//! same route list, so it cannot drift from what the router serves (a test below checks).
//! The fast path for `/v1/endpoints/{service}` ([`super::FastEndpoints`]) answers a subset of
//! that route's requests with the router's exact bytes, so the route's documentation covers it.

use super::error::ApiError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::LazyLock;
use utoipa::{IntoParams, OpenApi};

/// The document's fixed parts; the paths come from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wayfinder agent HTTP API",
        description = "A Consul-shaped service-discovery API (`/v1/agent`, `/v1/catalog`, \
            `/v1/health`, `/v1/status`), Wayfinder's own reads (`/v1/endpoints`, `/v1/watch`, \
            `/v1/routes`, `/v1/members`) and the operator probes (`/health`, `/ready`, `/metrics`). Errors are \
            JSON `{\"error\", \"field\"?, \"service\"?}` with a 4xx or 5xx status."
    ),
    tags(
        (name = "agent", description = "Registration, deregistration and TTL updates on this agent"),
        (name = "catalog", description = "Consul catalog reads"),
        (name = "health", description = "Consul health reads"),
        (name = "status", description = "Consul status reads: a single agent is its own leader"),
        (name = "endpoints", description = "Endpoint lists for clients and load balancers"),
        (name = "watch", description = "Live changes as Server-Sent Events"),
        (name = "operator", description = "Probes, metrics, gateway routes, cluster members and this document"),
    )
)]
pub struct ApiDoc;

/// `?index=` and `?wait=`, the blocking-query parameters of Consul's reads.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "read by the OpenAPI derive only; handlers parse the query"
)]
pub struct Blocking {
    /// Answer only once the answer's index is past this one, or `wait` has run out; the
    /// `X-Consul-Index` header of a previous answer is the value to pass.
    index: Option<u64>,
    /// How long a blocking query may wait, as a Go duration (`50ms`, `10s`, `5m`); default 5m,
    /// at most 10m (longer values are cut to 10m).
    #[param(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")]
    wait: Option<String>,
}

/// The read-consistency parameters Consul's reads take, checked but answered alike.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "read by the OpenAPI derive only; handlers parse the query"
)]
pub struct Consistency {
    /// Accept a stale answer (every answer of a single agent is current); not with `consistent`.
    stale: Option<String>,
    /// Ask for a consistent answer; not with `stale`.
    consistent: Option<String>,
    /// The datacenter; only this agent's own (or empty) is served.
    dc: Option<String>,
    /// Consul filter expressions are not supported: any non-empty value is refused with 400.
    filter: Option<String>,
}

/// Makes every operationId unique, as OpenAPI requires and client generators rely on: utoipa
/// names an operation after its handler, so `agent::services` and `catalog::services` would
/// share one, and a handler taking GET and PUT gives both the same. The tag (the module's
/// area) is put in front, and the method after when one handler serves several.
pub(super) fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
            ("head", &mut item.head),
            ("options", &mut item.options),
            ("trace", &mut item.trace),
        ];
        let methods = operations.iter().filter(|(_, op)| op.is_some()).count();
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let tag = operation
                .tags
                .as_ref()
                .and_then(|tags| tags.first())
                .map_or("", String::as_str);
            let name = operation.operation_id.as_deref().unwrap_or(method);
            let mut id = format!("{tag}_{name}");
            if methods > 1 {
                id = format!("{id}_{method}");
            }
            operation.operation_id = Some(id);
        }
    }
}

/// The document, rendered once.
static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    let (_, document) = super::routed();
    serde_json::to_vec(&document)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

/// Serves the OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operator",
    responses(
        (status = 200, description = "The OpenAPI 3 document of this API", body = Object),
    )
)]
pub async fn document() -> Response {
    match &*DOCUMENT {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.clone(),
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the OpenAPI document failed: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// `(path, METHOD)` of every route `router` serves, read from its `Debug` form: axum has
    /// no API that lists routes, and reading the router itself (rather than a list kept beside
    /// it) is what catches a route added without documentation.
    fn served(router: &axum::Router<std::sync::Arc<super::super::ApiState>>) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        let routed = debug
            .split("fallback_router:")
            .next()
            .expect("split always yields one part");
        let (routes, nodes) = routed
            .split_once("node: Node { paths: {")
            .expect("axum's Router Debug lists the path router's paths");
        let mut methods: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for part in routes.split("RouteId(").skip(1) {
            let (id, rest) = part.split_once(')').expect("RouteId(N)");
            if let Some((_, allow)) = rest.split_once("allow_header: Bytes(b\"") {
                let allow = allow.split('"').next().expect("a quoted Allow value");
                methods.insert(id, allow.split(',').filter(|m| *m != "HEAD").collect());
            }
        }
        let mut served = BTreeSet::new();
        for part in nodes.split("RouteId(").skip(1) {
            let (id, rest) = part.split_once(')').expect("RouteId(N)");
            let path = rest.split('"').nth(1).expect("a quoted path");
            let route_methods = methods.get(id).expect("every path has a method router");
            for method in route_methods {
                served.insert(format!("{method} {path}"));
            }
        }
        served
    }

    /// `(path, METHOD)` of every operation `document` describes.
    fn documented(document: &utoipa::openapi::OpenApi) -> BTreeSet<String> {
        let mut documented = BTreeSet::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ] {
                if operation.is_some() {
                    documented.insert(format!("{method} {path}"));
                }
            }
        }
        documented
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let (router, document) = super::super::routed();
        let served = served(&router);
        // The parse found the routes (a changed Debug form must not make this pass vacuously).
        assert!(served.len() >= 30, "{served:#?}");
        assert!(
            served.contains("PUT /v1/agent/check/pass/{id}"),
            "{served:#?}"
        );
        assert_eq!(served, documented(&document));
    }

    #[test]
    fn every_operation_id_is_unique() {
        let (_, document) = super::super::routed();
        let mut seen = BTreeSet::new();
        for item in document.paths.paths.values() {
            let operations = [
                &item.get,
                &item.put,
                &item.post,
                &item.delete,
                &item.patch,
                &item.head,
                &item.options,
                &item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let id = operation
                    .operation_id
                    .clone()
                    .expect("every operation has an id");
                assert!(seen.insert(id.clone()), "operationId {id} is used twice");
            }
        }
        assert!(
            seen.contains("agent_services") && seen.contains("catalog_services"),
            "{seen:?}"
        );
        assert!(
            seen.contains("agent_pass_get") && seen.contains("agent_pass_put"),
            "{seen:?}"
        );
    }

    #[test]
    fn the_served_document_is_the_routed_one_and_valid_json() {
        let body = super::DOCUMENT.as_ref().expect("the document encodes");
        let value: serde_json::Value = serde_json::from_slice(body).expect("JSON");
        assert!(
            value["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3."))
        );
        let paths = value["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/v1/openapi.json"));
        assert!(
            paths["/v1/watch"]["get"]["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some()
        );
    }
}
