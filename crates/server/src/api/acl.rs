//! `/v1/acl/*`: the bootstrap token and "who am I", in Consul's shapes.

use super::State;
use super::authz::Authz;
use super::error::{ApiError, ErrorBody};
use super::query::json;
use crate::acl::{BootstrapError, Identity};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json as object;

/// Consul's ID of the built-in policy that allows everything.
const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// `PUT /v1/acl/bootstrap`: hands out the management token, once, to the first caller.
#[utoipa::path(
    put,
    path = "/v1/acl/bootstrap",
    tag = "acl",
    responses(
        (status = 200, description = "The management token: SecretID is shown this once", body = Object),
        (status = 401, description = "ACLs are disabled on this agent", body = ErrorBody<'_>),
        (status = 403, description = "Bootstrap was done already, or a management token is configured, or this agent keeps no data", body = ErrorBody<'_>),
        (status = 500, description = "The token's digest could not be stored", body = ErrorBody<'_>),
    )
)]
pub async fn bootstrap(state: State) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    if state.acl.has_configured_management() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            BootstrapError::Done.to_string(),
        ));
    }
    let secret = state.acl.bootstrap().create().map_err(|error| {
        let status = match error {
            BootstrapError::Done | BootstrapError::Unavailable => StatusCode::FORBIDDEN,
            BootstrapError::Io { .. } | BootstrapError::Random => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    })?;
    tracing::warn!("ACL bootstrap token handed out (accessor \"bootstrap\")");
    Ok(json(&object!({
        "AccessorID": "bootstrap",
        "SecretID": secret,
        "Description": "Bootstrap Token (Global Management)",
        "Policies": [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}],
        "Local": false,
    })))
}

/// `GET /v1/acl/token/self`: which token the request carries (never its secret).
#[utoipa::path(
    get,
    path = "/v1/acl/token/self",
    tag = "acl",
    responses(
        (status = 200, description = "The token's name (AccessorID) and whether it is a management token", body = Object),
        (status = 401, description = "ACLs are disabled on this agent", body = ErrorBody<'_>),
        (status = 403, description = "The token is not known (ACL not found)", body = ErrorBody<'_>),
    )
)]
pub async fn token_self(state: State, authz: Authz) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    let management = matches!(authz.0, Identity::Management { .. });
    let policies = match management {
        true => object!([{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}]),
        false => object!([]),
    };
    Ok(json(&object!({
        "AccessorID": authz.0.name(),
        "Description": match management {
            true => "Management token",
            false => "Token with rules from --config-file",
        },
        "Policies": policies,
        "Local": true,
    })))
}

/// 401 when ACLs are off, as Consul answers its ACL endpoints then.
fn require_enabled(state: &State) -> Result<(), ApiError> {
    match state.acl.is_enabled() {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled; set acl { enabled = true } in --config-file",
        )),
    }
}
