//! `/v1/health/*`: instances and checks filtered by health.

use super::authz::Authz;
use super::catalog::node_meta_matches;
use super::error::{ApiError, ErrorBody};
use super::query::{Params, indexed, indexed_bytes};
use super::{ApiState, State};
use crate::acl::Access;
use crate::blocking::{self, Scope};
use crate::consul::response::{HealthCheckJson, LastRun, NodeInfo, ServiceEntryJson};
use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;
use wayfinder_catalog::{Catalog, Check, Status};
use wayfinder_health::Observation;

/// The live output and latency of a check, from the scheduler's last run.
fn last_run(observation: Option<&Observation>) -> LastRun<'_> {
    observation.map_or_else(LastRun::default, |o| LastRun {
        output: Some(&o.output),
        latency: Some(o.latency),
    })
}

/// `GET /v1/health/service/{name}?passing&tag=`: instances with node, service and checks.
/// `?passing` keeps only instances whose every check passes (warning is dropped, as in Consul).
#[utoipa::path(
    get,
    path = "/v1/health/service/{name}",
    tag = "health",
    params(("name" = String, Path, description = "The service name"), ("passing" = Option<bool>, Query, description = "Keep only instances whose every check passes"), ("tag" = Option<Vec<String>>, Query, description = "Keep instances with every one of these tags"), ("node-meta" = Option<Vec<String>>, Query, description = "`key:value` filters on the node"), super::openapi::Consistency, super::openapi::Blocking),
    responses(
        (status = 200, description = "The service's instances with node, service and checks", body = Vec<ServiceEntryJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
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
    let passing = params.flag("passing")?;
    let blocking_params = params.blocking()?;
    let catalog = blocking::wait(&state.snapshots, Scope::Service(&name), blocking_params).await;
    let index = catalog.service_index(&name);
    let render = || render_service(&state, &catalog, &name, &params, passing);
    let body = if blocking_params.index > 0 {
        let question = params.question(&format!("/v1/health/service/{name}"));
        state.shared_reads.get_or_render(question, index, render)
    } else {
        render()
    };
    Ok(indexed_bytes(index, body))
}

/// The `/v1/health/service` answer for one question, as JSON.
fn render_service(
    state: &ApiState,
    catalog: &Catalog,
    name: &str,
    params: &Params,
    passing: bool,
) -> Bytes {
    let tags: Vec<&str> = params.all("tag").collect();
    let views: Vec<_> = if node_meta_matches(params) {
        catalog
            .instances_of(name)
            .filter(|view| view.instance.has_tags(&tags))
            .filter(|view| !passing || view.health == Status::Passing)
            .collect()
    } else {
        Vec::new()
    };
    let observations: Vec<Vec<(String, Observation)>> = views
        .iter()
        .map(|view| {
            view.checks
                .iter()
                .filter_map(|c| {
                    state
                        .scheduler
                        .observation(c.id.as_str())
                        .map(|o| (c.id.to_string(), o))
                })
                .collect()
        })
        .collect();
    let entries: Vec<ServiceEntryJson<'_>> = views
        .iter()
        .zip(&observations)
        .map(|(view, observed)| {
            ServiceEntryJson::new(view, &state.node, |check: &Check| {
                last_run(
                    observed
                        .iter()
                        .find(|(id, _)| id == check.id.as_str())
                        .map(|(_, o)| o),
                )
            })
        })
        .collect();
    // Plain structs of strings and numbers always serialize; `[]` is the harmless fallback.
    Bytes::from(serde_json::to_vec(&entries).unwrap_or_else(|_| b"[]".to_vec()))
}

/// `GET /v1/health/checks/{name}`: the checks of every instance of a service.
#[utoipa::path(
    get,
    path = "/v1/health/checks/{name}",
    tag = "health",
    params(("name" = String, Path, description = "The service name"), super::openapi::Consistency, super::openapi::Blocking),
    responses(
        (status = 200, description = "The checks of every instance of the service", body = Vec<HealthCheckJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 500, description = "`dc` names another datacenter (Consul answers 500 too)", body = ErrorBody<'_>),
    )
)]
pub async fn checks(
    state: State,
    authz: Authz,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.check_read(&state.node.datacenter)?;
    authz.require_service(&name, Access::Read)?;
    let catalog = blocking::wait(&state.snapshots, Scope::Service(&name), params.blocking()?).await;
    let checks: Vec<_> = catalog.checks_of_service(&name).collect();
    let observations = observe(&state, &checks);
    let body: Vec<HealthCheckJson<'_>> =
        health_checks(&catalog, &checks, &observations, &state.node).collect();
    Ok(indexed(catalog.service_index(&name), &body))
}

/// `GET /v1/health/state/{state}`: every check in a state (`any` for all), including the
/// node's `serfHealth`, which is always passing.
#[utoipa::path(
    get,
    path = "/v1/health/state/{state}",
    tag = "health",
    params(("state" = String, Path, description = "`any`, `passing`, `warning` or `critical`"), super::openapi::Consistency, super::openapi::Blocking),
    responses(
        (status = 200, description = "Every check in that state, with the node's serfHealth", body = Vec<HealthCheckJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 500, description = "`dc` names another datacenter (Consul answers 500 too)", body = ErrorBody<'_>),
    )
)]
pub async fn state(
    state: State,
    authz: Authz,
    Path(wanted): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.check_read(&state.node.datacenter)?;
    let filter: Option<Status> = match wanted.as_str() {
        "any" => None,
        other => Some(other.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Bad state {other:?}: use any, passing, warning or critical"
            ))
        })?),
    };
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let checks: Vec<_> = catalog
        .checks()
        .filter(|c| filter.is_none_or(|s| c.status == s))
        .filter(|c| {
            let service = catalog.owner(c).map(|i| i.service.as_str());
            authz.reads_check(service, &state.node.name)
        })
        .collect();
    let observations = observe(&state, &checks);
    let mut body = Vec::with_capacity(checks.len() + 1);
    if filter.is_none_or(|s| s == Status::Passing) {
        body.push(HealthCheckJson::serf(&state.node));
    }
    body.extend(health_checks(&catalog, &checks, &observations, &state.node));
    Ok(indexed(catalog.index(), &body))
}

/// The scheduler's last observation of each of `checks`, in the same order. They are owned
/// (copied out of the scheduler), so they are collected before the JSON borrows from them.
pub(super) fn observe(state: &ApiState, checks: &[&Arc<Check>]) -> Vec<Option<Observation>> {
    checks
        .iter()
        .map(|c| state.scheduler.observation(c.id.as_str()))
        .collect()
}

/// `checks` as `HealthCheck` objects, each with its owner from `catalog` and its last run from
/// `observations` (as [`observe`] returns them for the same checks).
pub(super) fn health_checks<'a>(
    catalog: &'a Catalog,
    checks: &[&'a Arc<Check>],
    observations: &'a [Option<Observation>],
    node: &'a NodeInfo,
) -> impl Iterator<Item = HealthCheckJson<'a>> {
    checks
        .iter()
        .zip(observations)
        .map(move |(check, observed)| {
            HealthCheckJson::new(
                check,
                catalog.owner(check),
                node,
                last_run(observed.as_ref()),
            )
        })
}
