//! `GET /v1/members`: the agents that share this catalog.
//!
//! In cluster mode, the members whose records etcd holds under a live lease (every one of them
//! is alive by construction: a dead agent's record goes when its lease expires). An agent with
//! its own catalog is a cluster of one and lists itself. `wayfinder members` prints this.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::json;
use crate::acl::Access;
use axum::response::Response;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
struct MemberJson<'a> {
    /// The member's ID: unique per agent process (the node name for an agent on its own).
    id: &'a str,
    /// Its node name.
    name: &'a str,
    /// Where its HTTP API answers.
    address: &'a str,
    /// Its datacenter.
    datacenter: &'a str,
    /// Always `alive`: only live members are listed.
    status: &'static str,
}

/// `GET /v1/members`.
#[utoipa::path(
    get,
    path = "/v1/members",
    tag = "operator",
    responses(
        (status = 200, description = "The live members, by ID; this agent alone when it keeps its own catalog", body = Vec<MemberJson<'_>>),
        (status = 403, description = "The token may not read this agent (`agent:read`)", body = ErrorBody<'_>),
    )
)]
pub async fn members(state: State, authz: Authz) -> Result<Response, ApiError> {
    authz.require_agent(&state.node.name, Access::Read)?;
    const ALIVE: &str = "alive";
    Ok(match &state.cluster {
        Some(cluster) => {
            let members = cluster.members();
            let list: Vec<MemberJson<'_>> = members
                .values()
                .map(|m| MemberJson {
                    id: &m.id,
                    name: &m.name,
                    address: &m.address,
                    datacenter: &m.datacenter,
                    status: ALIVE,
                })
                .collect();
            json(&list)
        }
        None => {
            let node = &state.node;
            json(&[MemberJson {
                id: &node.name,
                name: &node.name,
                address: &node.address,
                datacenter: &node.datacenter,
                status: ALIVE,
            }])
        }
    })
}
