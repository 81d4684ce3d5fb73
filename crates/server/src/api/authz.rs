//! The request's identity under ACLs: an extractor handlers take, and the questions they ask
//! it before they read or write (see [`crate::acl`]).

use super::ApiState;
use super::error::ApiError;
use crate::acl::{Access, Identity};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use std::sync::Arc;

/// Consul's token header.
const TOKEN_HEADER: &str = "x-consul-token";

/// Who sent the request. Taken by every handler that reads or changes the catalog or the
/// agent; with ACLs off it costs nothing and allows everything.
#[derive(Clone)]
pub struct Authz(pub Identity, Option<String>);

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_tuple("Authz").field(&self.0).finish()
    }
}

impl FromRequestParts<Arc<ApiState>> for Authz {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        if !state.acl.is_enabled() {
            return Ok(Authz(Identity::Unrestricted, None));
        }
        let token = token_of(parts)?;
        let identity = state
            .acl
            .resolve(token.as_deref())
            .map_err(|error| ApiError::new(StatusCode::FORBIDDEN, error.to_string()))?;
        Ok(Authz(identity, token))
    }
}

/// The token a request carries, from the first of `X-Consul-Token`, `Authorization: Bearer`
/// and `?token=` that is present (Consul's order).
fn token_of(parts: &Parts) -> Result<Option<String>, ApiError> {
    if let Some(value) = parts.headers.get(TOKEN_HEADER) {
        let token = value.to_str().map_err(|_| {
            ApiError::bad_request("X-Consul-Token is not valid text; send the token as ASCII")
        })?;
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Authorization must be `Bearer <token>`; or send the token in X-Consul-Token",
                )
            })?;
        return Ok(Some(token.trim().to_owned()));
    }
    let query = parts.uri.query().unwrap_or_default();
    Ok(serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find(|(key, _)| key == "token")
        .map(|(_, token)| token))
}

impl Authz {
    /// The token the request carried (under ACLs), for a request this agent makes on its
    /// behalf to another member; never logged.
    pub fn token(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Whether this request may read the service called `name`.
    pub fn reads_service(&self, name: &str) -> bool {
        self.0.service(name) >= Access::Read
    }

    /// Whether this request may read a check: through the service it belongs to, or, for a
    /// node-level check (no service), through the agent named `node`.
    pub fn reads_check(&self, service: Option<&str>, node: &str) -> bool {
        match service {
            Some(service) => self.reads_service(service),
            None => self.0.agent(node) >= Access::Read,
        }
    }

    /// Refuses with 403 unless this request has `needed` on the service `name`.
    pub fn require_service(&self, name: &str, needed: Access) -> Result<(), ApiError> {
        match self.0.service(name) >= needed {
            true => Ok(()),
            false => Err(denied(&self.0, "service", name, needed)),
        }
    }

    /// Refuses with 403 unless this request has `needed` on the agent named `node`.
    pub fn require_agent(&self, node: &str, needed: Access) -> Result<(), ApiError> {
        match self.0.agent(node) >= needed {
            true => Ok(()),
            false => Err(denied(&self.0, "agent", node, needed)),
        }
    }

    /// Whether lists can be returned whole, without asking about each service.
    pub fn reads_everything(&self) -> bool {
        self.0.reads_everything()
    }
}

fn denied(identity: &Identity, kind: &str, name: &str, needed: Access) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "Permission denied: token {:?} lacks {kind}:{} on {name:?}; ask for a token with a \
             `{kind}_prefix` rule that covers it",
            identity.name(),
            needed.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(
        build: impl FnOnce(axum::http::request::Builder) -> axum::http::request::Builder,
    ) -> Parts {
        let (parts, ()) = build(Request::builder().uri("/v1/x?token=from-query"))
            .body(())
            .expect("request")
            .into_parts();
        parts
    }

    #[test]
    fn the_token_comes_from_the_header_then_bearer_then_query() {
        let header = parts(|b| {
            b.header("X-Consul-Token", "h")
                .header("Authorization", "Bearer b")
        });
        assert_eq!(token_of(&header).expect("ok").as_deref(), Some("h"));
        let bearer = parts(|b| b.header("Authorization", "Bearer b"));
        assert_eq!(token_of(&bearer).expect("ok").as_deref(), Some("b"));
        let query = parts(|b| b);
        assert_eq!(token_of(&query).expect("ok").as_deref(), Some("from-query"));
        let basic = parts(|b| b.header("Authorization", "Basic dXNlcjpwdw=="));
        assert!(token_of(&basic).is_err());
    }
}
