//! Reading request bodies: a size limit with a JSON 413, no Content-Type requirement (Python
//! Consul clients send none), and JSON syntax errors reported with line and column.

use super::error::ApiError;
use crate::config::agent_config::MAX_BODY_BYTES;
use axum::body::Body;
use axum::http::StatusCode;
use serde_json::Value;

/// Reads the whole body as JSON. Empty → 400, over 1 MiB → 413, invalid → 400.
pub async fn json(body: Body) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY_BYTES} bytes (1 MiB); send a smaller body"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request decode failed: the body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("request decode failed: {e}; the body must be JSON"))
    })
}
