//! `/v1/catalog/*`: what is registered, regardless of health.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::{Params, indexed};
use crate::acl::Access;
use crate::blocking::{self, Scope};
use crate::consul::response::ServiceNodeJson;
use axum::extract::Path;
use axum::response::Response;
use std::collections::BTreeMap;

/// Whether `node-meta` filters (repeatable `key:value`) match this agent's node. The node's
/// only meta is Consul's `consul-network-segment` = "".
pub(super) fn node_meta_matches(params: &Params) -> bool {
    params.all("node-meta").all(|pair| {
        let (key, value) = pair.split_once(':').unwrap_or((pair, ""));
        key == "consul-network-segment" && value.is_empty()
    })
}

/// `GET /v1/catalog/services`: service name → union of its instances' tags. Blocks on the
/// catalog index.
#[utoipa::path(
    get,
    path = "/v1/catalog/services",
    tag = "catalog",
    params(("node-meta" = Option<Vec<String>>, Query, description = "`key:value` filters on the node"), super::openapi::Consistency, super::openapi::Blocking),
    responses(
        (status = 200, description = "Service name to the union of its instances' tags", body = BTreeMap<String, Vec<String>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 500, description = "`dc` names another datacenter (Consul answers 500 too)", body = ErrorBody<'_>),
    )
)]
pub async fn services(state: State, authz: Authz, params: Params) -> Result<Response, ApiError> {
    params.check_read(&state.node.datacenter)?;
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let mut services: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    if node_meta_matches(&params) {
        for summary in catalog
            .services()
            .filter(|summary| authz.reads_service(summary.name.as_str()))
        {
            services.insert(summary.name.as_str(), summary.tags.into_iter().collect());
        }
    }
    Ok(indexed(catalog.index(), &services))
}

/// `GET /v1/catalog/service/{name}?tag=`: every instance of a service as a ServiceNode.
/// Blocks on the service's own index.
#[utoipa::path(
    get,
    path = "/v1/catalog/service/{name}",
    tag = "catalog",
    params(("name" = String, Path, description = "The service name"), ("tag" = Option<Vec<String>>, Query, description = "Keep instances with every one of these tags"), ("node-meta" = Option<Vec<String>>, Query, description = "`key:value` filters on the node"), super::openapi::Consistency, super::openapi::Blocking),
    responses(
        (status = 200, description = "Every instance of the service, as Consul ServiceNodes", body = Vec<ServiceNodeJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 500, description = "`dc` names another datacenter (Consul answers 500 too)", body = ErrorBody<'_>),
    )
)]
pub async fn service(
    state: State,
    authz: Authz,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.check_read(&state.node.datacenter)?;
    authz.require_service(&name, Access::Read)?;
    let catalog = blocking::wait(&state.snapshots, Scope::Service(&name), params.blocking()?).await;
    let tags: Vec<&str> = params.all("tag").collect();
    let nodes: Vec<ServiceNodeJson<'_>> = if node_meta_matches(&params) {
        catalog
            .instances_of(&name)
            .filter(|view| view.instance.has_tags(&tags))
            .map(|view| ServiceNodeJson::new(view.instance, &state.node))
            .collect()
    } else {
        Vec::new()
    };
    Ok(indexed(catalog.service_index(&name), &nodes))
}
