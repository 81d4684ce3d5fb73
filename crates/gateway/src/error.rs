//! Answers the gateway makes itself, when it cannot or may not pass a request on.
//!
//! Owns [`GatewayError`]: each kind maps to one status (no route 404, refused client 403, no
//! healthy instance 503, upstream failure after retries 502, timeout 504, unusable request 400),
//! and every answer has a JSON body naming the route and service and a `X-Wayfinder-Gateway`
//! header with the kind, so a client (or an operator reading a log) can tell a gateway refusal
//! from an instance's own 502/503.

use crate::body::ProxyBody;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

/// Marks an answer the gateway made itself; the value is the error kind.
pub const GATEWAY_HEADER: HeaderName = HeaderName::from_static("x-wayfinder-gateway");

/// Why the gateway answered instead of an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the host and path.
    #[error("no route matches {host:?} {path:?}; GET /v1/routes on the agent lists the routes")]
    NoRoute {
        /// The request's host, if it named one.
        host: Option<String>,
        /// The request's path.
        path: String,
    },
    /// The route's `allow=`/`deny=` lists refuse the client.
    #[error("the route does not serve clients at {client}")]
    Forbidden {
        /// The client's address.
        client: String,
    },
    /// The route's service has no passing or warning instance (or every one was tried).
    #[error("service {service:?} has no healthy instance right now")]
    NoHealthyInstance {
        /// The service.
        service: String,
    },
    /// Every attempt failed (connection refused, reset, or an error status that was retried).
    #[error("{service:?} could not be reached after {attempts} attempt(s): {reason}")]
    UpstreamFailed {
        /// The service.
        service: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The instance did not send response headers in time.
    #[error("{service:?} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The service.
        service: String,
        /// The response-header timeout.
        timeout_ms: u128,
    },
    /// The request cannot be forwarded as it is.
    #[error("the request cannot be forwarded: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
}

impl GatewayError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute { .. } => StatusCode::NOT_FOUND,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::NoHealthyInstance { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The kind, as the `X-Wayfinder-Gateway` header and the metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::NoRoute { .. } => "no-route",
            GatewayError::Forbidden { .. } => "forbidden",
            GatewayError::NoHealthyInstance { .. } => "no-healthy-instance",
            GatewayError::UpstreamFailed { .. } => "upstream-failed",
            GatewayError::Timeout { .. } => "timeout",
            GatewayError::BadRequest { .. } => "bad-request",
        }
    }

    /// The answer: status, JSON body `{"error", "kind", "route", "service"}` and the marker
    /// header. `route` is the matched prefix (with its host), when there was a match.
    pub fn response(&self, route: Option<&str>, service: Option<&str>) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": self.to_string(),
            "kind": self.kind(),
            "route": route,
            "service": service,
        });
        let mut response = Response::new(ProxyBody::full(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(GATEWAY_HEADER, HeaderValue::from_static(self.kind()));
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn answers_carry_status_kind_and_json() {
        let error = GatewayError::NoHealthyInstance {
            service: "web".into(),
        };
        let response = error.response(Some("/web"), Some("web"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(GATEWAY_HEADER),
            Some(&HeaderValue::from_static("no-healthy-instance"))
        );
        assert!(response.headers().contains_key(RETRY_AFTER));
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(json["route"], "/web");
        assert_eq!(json["service"], "web");
        assert_eq!(json["kind"], "no-healthy-instance");
    }
}
