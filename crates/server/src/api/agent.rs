//! `/v1/agent/*`: registration, deregistration, TTL updates, and the agent's local view.

use super::error::ApiError;
use super::health::{health_checks, observe};
use super::query::{Params, indexed, json};
use super::{ApiState, State, body};
use crate::blocking::{self, Scope};
use crate::consul::request::{CheckUpdateBody, ServiceBody, check_registration};
use crate::consul::response::{AgentServiceJson, HealthCheckJson};
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, put};
use serde_json::json as object;
use std::collections::BTreeMap;
use std::sync::Arc;
use wayfinder_catalog::{Check, CheckId, CheckKind, Command, InstanceId, Source, Status};

/// Message for a script check refused because the agent does not allow them.
const SCRIPTS_DISABLED: &str = "script checks (Args/ScriptArgs) are disabled on this agent for API \
     registrations; start it with --enable-script-checks to allow them (this lets anyone who can \
     reach the API run programs), or define the check in --config-dir with --enable-local-script-checks";

/// `GET /v1/agent/self`: who this agent is. Every top-level value is an object (Go client).
pub async fn self_info(state: State) -> Response {
    let node = &state.node;
    json(&object!({
        "Config": {
            "Datacenter": node.datacenter,
            "PrimaryDatacenter": node.datacenter,
            "NodeName": node.name,
            "NodeID": node.id,
            "Server": true,
            "Revision": "wayfinder",
            "Version": env!("CARGO_PKG_VERSION"),
        },
        "Member": {
            "Name": node.name,
            "Addr": node.address,
            "Port": 8301,
            "Tags": {"dc": node.datacenter, "role": "consul"},
            "Status": 1,
        },
        "Coord": {},
        "DebugConfig": {},
        "Meta": {},
        "Stats": {},
    }))
}

/// `GET /v1/agent/services`: every instance on this agent, by ID. Blocks on the catalog index
/// (Consul blocks these on a content hash; an index serves the same purpose and is cheaper).
pub async fn services(state: State, params: Params) -> Result<Response, ApiError> {
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let services: BTreeMap<&str, AgentServiceJson<'_>> = catalog
        .all_instances()
        .map(|view| {
            (
                view.instance.id.as_str(),
                AgentServiceJson::new(view.instance, &state.node),
            )
        })
        .collect();
    Ok(indexed(catalog.index(), &services))
}

/// `GET /v1/agent/checks`: every check on this agent, by ID, with the last run's output.
/// Blocks on the catalog index.
pub async fn checks(state: State, params: Params) -> Result<Response, ApiError> {
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let all: Vec<_> = catalog.checks().collect();
    let observations = observe(&state, &all);
    let checks: BTreeMap<&str, HealthCheckJson<'_>> = all
        .iter()
        .map(|check| check.id.as_str())
        .zip(health_checks(&catalog, &all, &observations, &state.node))
        .collect();
    Ok(indexed(catalog.index(), &checks))
}

/// `PUT /v1/agent/service/register`: upsert an instance with its checks.
pub async fn register(state: State, params: Params, request: Body) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let value = body::json(request).await?;
    let service = ServiceBody::decode(value)?;
    if let Some(field) = service
        .script_check_field()
        .filter(|_| !state.enable_script_checks)
    {
        return Err(ApiError::field(field, SCRIPTS_DISABLED));
    }
    let registration =
        service.into_registration(Source::Api, params.flag("replace-existing-checks")?)?;
    state
        .writer
        .submit(Command::Register(Box::new(registration)))
        .await?;
    Ok(StatusCode::OK)
}

fn unknown_service(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

fn unknown_check(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

/// `PUT /v1/agent/service/deregister/{id}`: remove an instance and its checks.
pub async fn deregister(state: State, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let id = InstanceId::new(&id, "ID").map_err(|_| unknown_service(&id))?;
    state.writer.submit(Command::Deregister(id)).await?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/check/register`: add a check on its own (node-level or to a service).
pub async fn register_check(state: State, request: Body) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let value = body::json(request).await?;
    let (definition, is_script) = check_registration(value)?;
    if is_script && !state.enable_script_checks {
        return Err(ApiError::field("Args", SCRIPTS_DISABLED));
    }
    state
        .writer
        .submit(Command::RegisterCheck(Box::new(definition)))
        .await?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/check/deregister/{id}`.
pub async fn deregister_check(
    state: State,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let id = CheckId::new(&id, "CheckID").map_err(|_| unknown_check(&id))?;
    state.writer.submit(Command::DeregisterCheck(id)).await?;
    Ok(StatusCode::OK)
}

/// The route of `PUT /v1/agent/check/{pass,warn,fail}/{id}?note=`, one per `status`: a TTL
/// update with the note as output. GET is taken too: python-consul 0.7.1 heartbeats with GET
/// (reference §0.7).
pub fn heartbeat_route(status: Status) -> MethodRouter<Arc<ApiState>> {
    let handler = move |state: State, Path(id): Path<String>, params: Params| async move {
        heartbeat(&state, &id, status, params.get("note").unwrap_or("")).await
    };
    put(handler).get(handler)
}

/// `PUT /v1/agent/check/update/{id}` with `{"Status", "Output"}`.
pub async fn update(
    state: State,
    Path(id): Path<String>,
    request: Body,
) -> Result<StatusCode, ApiError> {
    let value = body::json(request).await?;
    let (status, output) = CheckUpdateBody::decode(value)?;
    heartbeat(&state, &id, status, &output).await
}

/// A TTL update: reset the TTL timer and keep the output (in memory, always), and write the
/// status only when it changes (DESIGN.md: a result that does not change a status writes
/// nothing).
async fn heartbeat(
    state: &State,
    id: &str,
    status: Status,
    output: &str,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let catalog = state.snapshots.load();
    let check: &Check = catalog.check(id).ok_or_else(|| unknown_check(id))?;
    if !matches!(check.kind, CheckKind::Ttl { .. }) {
        return Err(ApiError::bad_request(format!(
            "CheckID {id:?} does not have associated TTL; only TTL checks take pass/warn/fail/update"
        )));
    }
    let mut output = output.to_owned();
    wayfinder_catalog::truncate_output(&mut output);
    let check_id = check.id.clone();
    drop(catalog);
    state
        .scheduler
        .heartbeat(&check_id, status, output.clone())
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    state
        .writer
        .submit(Command::SetCheckStatus {
            id: check_id,
            status,
            output,
        })
        .await?;
    Ok(StatusCode::OK)
}
