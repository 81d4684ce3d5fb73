//! `/v1/agent/*`: registration, deregistration, TTL updates, and the agent's local view.

use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::health::{health_checks, observe};
use super::query::{Params, indexed, json};
use super::{State, body};
use crate::acl::Access;
use crate::blocking::{self, Scope};
use crate::consul::request::{CheckBody, CheckUpdateBody, ServiceBody, check_registration};
use crate::consul::response::{AgentServiceJson, HealthCheckJson};
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json as object;
use std::collections::BTreeMap;
use wayfinder_catalog::{Check, CheckId, CheckKind, Command, InstanceId, Source, Status};
use wayfinder_health::HealthError;

/// Message for a script check refused because the agent does not allow them.
const SCRIPTS_DISABLED: &str = "script checks (Args/ScriptArgs) are disabled on this agent for API \
     registrations; start it with --enable-script-checks to allow them (this lets anyone who can \
     reach the API run programs), or define the check in --config-dir with --enable-local-script-checks";

/// `GET /v1/agent/self`: who this agent is. Every top-level value is an object (Go client).
#[utoipa::path(
    get,
    path = "/v1/agent/self",
    tag = "agent",
    responses(
        (status = 200, description = "This agent as a Consul node: Config, Member, Coord, DebugConfig, Meta, Stats", body = Object),
        (status = 403, description = "The token may not read this agent (`agent:read`)", body = ErrorBody<'_>),
    )
)]
pub async fn self_info(state: State, authz: Authz) -> Result<Response, ApiError> {
    let node = &state.node;
    authz.require_agent(&node.name, Access::Read)?;
    Ok(json(&object!({
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
    })))
}

/// `GET /v1/agent/services`: every instance on this agent, by ID. Blocks on the catalog index
/// (Consul blocks these on a content hash; an index serves the same purpose and is cheaper).
#[utoipa::path(
    get,
    path = "/v1/agent/services",
    tag = "agent",
    params(super::openapi::Blocking),
    responses(
        (status = 200, description = "Every instance on this agent, by ID", body = BTreeMap<String, AgentServiceJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
    )
)]
pub async fn services(state: State, authz: Authz, params: Params) -> Result<Response, ApiError> {
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let services: BTreeMap<&str, AgentServiceJson<'_>> = catalog
        .all_instances()
        .filter(|view| authz.reads_service(view.instance.service.as_str()))
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
#[utoipa::path(
    get,
    path = "/v1/agent/checks",
    tag = "agent",
    params(super::openapi::Blocking),
    responses(
        (status = 200, description = "Every check on this agent, by ID, with the last run's output", body = BTreeMap<String, HealthCheckJson<'_>>, headers(("X-Consul-Index" = u64, description = "The index of this answer; pass it as `?index=` to block for the next change"))),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
    )
)]
pub async fn checks(state: State, authz: Authz, params: Params) -> Result<Response, ApiError> {
    let catalog = blocking::wait(&state.snapshots, Scope::Catalog, params.blocking()?).await;
    let all: Vec<_> = catalog
        .checks()
        .filter(|check| {
            let service = catalog.owner(check).map(|i| i.service.as_str());
            authz.reads_check(service, &state.node.name)
        })
        .collect();
    let observations = observe(&state, &all);
    let checks: BTreeMap<&str, HealthCheckJson<'_>> = all
        .iter()
        .map(|check| check.id.as_str())
        .zip(health_checks(&catalog, &all, &observations, &state.node))
        .collect();
    Ok(indexed(catalog.index(), &checks))
}

/// `PUT /v1/agent/service/register`: upsert an instance with its checks.
#[utoipa::path(
    put,
    path = "/v1/agent/service/register",
    tag = "agent",
    params(("replace-existing-checks" = Option<bool>, Query, description = "Drop the instance's checks that this registration does not list")),
    request_body(content = ServiceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered, durably"),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent), or the token lacks `service:write`", body = ErrorBody<'_>),
    )
)]
pub async fn register(
    state: State,
    authz: Authz,
    params: Params,
    request: Body,
) -> Result<StatusCode, ApiError> {
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
    let instance = &registration.instance;
    authz.require_service(instance.service.as_str(), Access::Write)?;
    // Re-registering an ID replaces that instance: the token must be able to write the
    // service it belongs to now, or one service's token could take over another's instance.
    if let Some(existing) = state.snapshots.load().instance(instance.id.as_str()) {
        authz.require_service(existing.instance.service.as_str(), Access::Write)?;
    }
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
#[utoipa::path(
    method(get, put),
    path = "/v1/agent/service/deregister/{id}",
    tag = "agent",
    params(("id" = String, Path, description = "The instance ID")),
    responses(
        (status = 200, description = "Deregistered, durably"),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No instance has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn deregister(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let id = InstanceId::new(&id, "ID").map_err(|_| unknown_service(&id))?;
    if let Some(existing) = state.snapshots.load().instance(id.as_str()) {
        authz.require_service(existing.instance.service.as_str(), Access::Write)?;
    }
    state.writer.submit(Command::Deregister(id)).await?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/check/register`: add a check on its own (node-level or to a service).
#[utoipa::path(
    put,
    path = "/v1/agent/check/register",
    tag = "agent",
    request_body(content = CheckBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered, durably"),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
    )
)]
pub async fn register_check(
    state: State,
    authz: Authz,
    request: Body,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let value = body::json(request).await?;
    let (definition, is_script) = check_registration(value)?;
    {
        let catalog = state.snapshots.load();
        let owner = definition
            .service_id
            .as_ref()
            .and_then(|id| catalog.instance(id.as_str()));
        require_check_write(
            &state,
            &authz,
            owner.as_ref().map(|view| view.instance.service.as_str()),
        )?;
        if let Some(existing) = definition
            .id
            .as_ref()
            .and_then(|id| catalog.check(id.as_str()))
        {
            require_check_write(
                &state,
                &authz,
                catalog.owner(existing).map(|i| i.service.as_str()),
            )?;
        }
    }
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
#[utoipa::path(
    method(get, put),
    path = "/v1/agent/check/deregister/{id}",
    tag = "agent",
    params(("id" = String, Path, description = "The check ID")),
    responses(
        (status = 200, description = "Deregistered, durably"),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No check has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn deregister_check(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let id = CheckId::new(&id, "CheckID").map_err(|_| unknown_check(&id))?;
    {
        let catalog = state.snapshots.load();
        if let Some(existing) = catalog.check(id.as_str()) {
            require_check_write(
                &state,
                &authz,
                catalog.owner(existing).map(|i| i.service.as_str()),
            )?;
        }
    }
    state.writer.submit(Command::DeregisterCheck(id)).await?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/check/pass/{id}?note=`: a TTL update to passing with the note as output.
/// GET is taken too: python-consul 0.7.1 heartbeats with GET (reference §0.7).
#[utoipa::path(
    method(get, put),
    path = "/v1/agent/check/pass/{id}",
    tag = "agent",
    params(
        ("id" = String, Path, description = "The TTL check's ID"),
        ("note" = Option<String>, Query, description = "The check's new output"),
    ),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a TTL check, or a bad query", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No check has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn pass(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<StatusCode, ApiError> {
    heartbeat(
        &state,
        &authz,
        &headers,
        &id,
        Status::Passing,
        params.get("note").unwrap_or(""),
    )
    .await
}

/// `PUT /v1/agent/check/warn/{id}?note=`: a TTL update to warning with the note as output.
/// GET is taken too: python-consul 0.7.1 heartbeats with GET (reference §0.7).
#[utoipa::path(
    method(get, put),
    path = "/v1/agent/check/warn/{id}",
    tag = "agent",
    params(
        ("id" = String, Path, description = "The TTL check's ID"),
        ("note" = Option<String>, Query, description = "The check's new output"),
    ),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a TTL check, or a bad query", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No check has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn warn(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<StatusCode, ApiError> {
    heartbeat(
        &state,
        &authz,
        &headers,
        &id,
        Status::Warning,
        params.get("note").unwrap_or(""),
    )
    .await
}

/// `PUT /v1/agent/check/fail/{id}?note=`: a TTL update to critical with the note as output.
/// GET is taken too: python-consul 0.7.1 heartbeats with GET (reference §0.7).
#[utoipa::path(
    method(get, put),
    path = "/v1/agent/check/fail/{id}",
    tag = "agent",
    params(
        ("id" = String, Path, description = "The TTL check's ID"),
        ("note" = Option<String>, Query, description = "The check's new output"),
    ),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a TTL check, or a bad query", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No check has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn fail(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<StatusCode, ApiError> {
    heartbeat(
        &state,
        &authz,
        &headers,
        &id,
        Status::Critical,
        params.get("note").unwrap_or(""),
    )
    .await
}

/// `PUT /v1/agent/check/update/{id}` with `{"Status", "Output"}`.
#[utoipa::path(
    put,
    path = "/v1/agent/check/update/{id}",
    tag = "agent",
    params(("id" = String, Path, description = "The TTL check's ID")),
    request_body(content = CheckUpdateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Bad input: `error` says what, `field` which parameter or body field", body = ErrorBody<'_>),
        (status = 403, description = "This agent refuses writes (a mirror or provider-only agent)", body = ErrorBody<'_>),
        (status = 404, description = "No check has this ID", body = ErrorBody<'_>),
    )
)]
pub async fn update(
    state: State,
    authz: Authz,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> Result<StatusCode, ApiError> {
    let value = body::json(request).await?;
    let (status, output) = CheckUpdateBody::decode(value)?;
    heartbeat(&state, &authz, &headers, &id, status, &output).await
}

/// A TTL update: reset the TTL timer and keep the output (in memory, always), and write the
/// status only when it changes (DESIGN.md: a result that does not change a status writes
/// nothing).
///
/// In cluster mode the TTL timer lives on the member that owns the check: a heartbeat for a
/// check another member runs is forwarded there (once: a forwarded one is handled where it
/// lands). If the owner cannot be reached (it died and its lease has not expired yet), the
/// status is written here, through etcd, so a change still lands; the owner's successor then
/// starts the TTL afresh.
async fn heartbeat(
    state: &State,
    authz: &Authz,
    headers: &HeaderMap,
    id: &str,
    status: Status,
    output: &str,
) -> Result<StatusCode, ApiError> {
    state.check_writable()?;
    let catalog = state.snapshots.load();
    let check: &Check = catalog.check(id).ok_or_else(|| unknown_check(id))?;
    require_check_write(
        state,
        authz,
        catalog.owner(check).map(|i| i.service.as_str()),
    )?;
    if !matches!(check.kind, CheckKind::Ttl { .. }) {
        return Err(ApiError::bad_request(format!(
            "CheckID {id:?} does not have associated TTL; only TTL checks take pass/warn/fail/update"
        )));
    }
    let mut output = output.to_owned();
    wayfinder_catalog::truncate_output(&mut output);
    let check_id = check.id.clone();
    drop(catalog);
    if let Some(cluster) = &state.cluster {
        let forwarded = headers.contains_key(crate::cluster::FORWARDED_HEADER);
        let owner = cluster.owner_of(check_id.as_str());
        match owner {
            Some(owner) if !forwarded && owner.id != cluster.local().id => {
                match cluster
                    .forward_heartbeat(&owner, check_id.as_str(), status, &output, authz.token())
                    .await
                {
                    Ok(()) => return Ok(StatusCode::OK),
                    Err(error) => tracing::warn!(
                        %error, check = %check_id,
                        "TTL heartbeat not forwarded to the check's owner; writing its status here"
                    ),
                }
            }
            _ => {}
        }
    }
    match state.scheduler.heartbeat(&check_id, status, output.clone()) {
        Ok(()) => {}
        // In cluster mode the check may be run by another member (or by none, for a moment,
        // while ownership moves): the status is written all the same.
        Err(HealthError::UnknownCheck(_)) if state.cluster.is_some() => {}
        Err(error) => return Err(ApiError::not_found(error.to_string())),
    }
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

/// A check belongs to its service (`service:write` on it) or, without one, to the node
/// (`agent:write` on this agent).
fn require_check_write(
    state: &State,
    authz: &Authz,
    service: Option<&str>,
) -> Result<(), ApiError> {
    match service {
        Some(service) => authz.require_service(service, Access::Write),
        None => authz.require_agent(&state.node.name, Access::Write),
    }
}
