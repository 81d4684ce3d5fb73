//! `GET /v1/routes`: the gateway's live route table, as the proxy sees it right now.
//!
//! Each route with where it came from, how it balances and rewrites, and the instances it
//! would send to (health, weight, requests in flight, ejected or not); then the claims that
//! lost to another route and the `urlprefix-` tags that could not be parsed, so an operator
//! can see why a path does not go where they expected.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::json;
use crate::acl::Access;
use axum::response::Response;
use serde::Serialize;
use wayfinder_balance::Health;
use wayfinder_gateway::route::{HostHeader, RouteSpec};
use wayfinder_gateway::routing::ActiveRoute;

#[derive(Serialize, utoipa::ToSchema)]
struct RoutesJson<'a> {
    routes: Vec<RouteJson<'a>>,
    conflicts: Vec<ConflictJson>,
    tag_errors: Vec<TagErrorJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RouteJson<'a> {
    host: Option<&'a str>,
    prefix: &'a str,
    service: &'a str,
    source: String,
    strategy: &'static str,
    strip: Option<&'a str>,
    prepend: Option<&'a str>,
    proto: &'static str,
    host_header: String,
    split: Option<SplitJson<'a>>,
    slow_start_seconds: Option<f64>,
    allow: Vec<String>,
    deny: Vec<String>,
    instances: Vec<InstanceJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SplitJson<'a> {
    tag: &'a str,
    weight: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct InstanceJson {
    id: String,
    address: String,
    health: &'static str,
    weight: u32,
    in_flight: u64,
    ejected: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConflictJson {
    host: Option<String>,
    prefix: String,
    winner: String,
    loser: String,
    source: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TagErrorJson {
    service: String,
    instance: String,
    error: String,
}

/// `GET /v1/routes`.
#[utoipa::path(
    get,
    path = "/v1/routes",
    tag = "operator",
    responses(
        (status = 200, description = "The gateway's live routes, conflicts and tag errors", body = RoutesJson<'_>),
        (status = 403, description = "The token may not read this agent (`agent:read`)", body = ErrorBody<'_>),
        (status = 404, description = "The gateway is off (no --gateway-addr)", body = ErrorBody<'_>),
    )
)]
pub async fn routes(state: State, authz: Authz) -> Result<Response, ApiError> {
    authz.require_agent(&state.node.name, Access::Read)?;
    let Some(routing) = &state.routing else {
        return Err(ApiError::not_found(
            "the gateway is off: start the agent with --gateway-addr to route requests",
        ));
    };
    let table = routing.table();
    let now = routing.now();
    let routes = table
        .entries()
        .into_iter()
        .map(|(_, _, route)| route_json(route, now))
        .collect();
    let (conflicts, problems) = routing.problems();
    Ok(json(&RoutesJson {
        routes,
        conflicts: conflicts
            .into_iter()
            .map(|c| ConflictJson {
                host: c.host,
                prefix: c.prefix,
                winner: c.winner,
                loser: c.loser,
                source: c.source,
            })
            .collect(),
        tag_errors: problems
            .into_iter()
            .map(|p| TagErrorJson {
                service: p.service,
                instance: p.instance,
                error: p.error,
            })
            .collect(),
    }))
}

fn route_json(route: &ActiveRoute, now: wayfinder_balance::Nanos) -> RouteJson<'_> {
    let spec: &RouteSpec = &route.spec;
    let backends = route.service.backends();
    let instances = backends
        .set
        .endpoints()
        .iter()
        .zip(&backends.targets)
        .enumerate()
        .map(|(i, (endpoint, target))| InstanceJson {
            id: endpoint.id.as_str().to_owned(),
            address: target.authority.to_string(),
            health: match endpoint.health {
                Health::Passing => "passing",
                Health::Warning => "warning",
            },
            weight: endpoint.weight(),
            in_flight: backends.set.load(i).map_or(0, |l| l.in_flight()),
            ejected: !route
                .service
                .outliers
                .is_available(endpoint.id.as_str(), now),
        })
        .collect();
    RouteJson {
        host: spec.host.as_deref(),
        prefix: &spec.prefix,
        service: &spec.service,
        source: spec.source.to_string(),
        strategy: spec.balance.strategy.as_str(),
        strip: spec.rewrite.strip.as_deref(),
        prepend: spec.rewrite.prepend.as_deref(),
        proto: spec.proto.scheme(),
        host_header: match &spec.host_header {
            HostHeader::Incoming => "incoming".to_owned(),
            HostHeader::Destination => "dst".to_owned(),
            HostHeader::Fixed(name) => name.clone(),
        },
        split: spec.balance.split.as_ref().map(|s| SplitJson {
            tag: s.tag(),
            weight: s.weight(),
        }),
        slow_start_seconds: spec
            .balance
            .slow_start
            .as_ref()
            .map(|s| s.window().as_secs_f64()),
        allow: spec.access.allow.iter().map(ToString::to_string).collect(),
        deny: spec.access.deny.iter().map(ToString::to_string).collect(),
        instances,
    }
}
