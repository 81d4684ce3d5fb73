//! Errors the API answers with: a status code and a JSON body that says what is wrong, which
//! field, and what to do. Bad input is always 4xx and never changes anything.

use crate::consul::request::RequestError;
use crate::write_path::WriteError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wayfinder_catalog::CatalogError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 about one request field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: (!field.is_empty()).then_some(field),
        }
    }

    /// 400 without a specific field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for an unknown path or ID.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match &error {
            RequestError::Decode(e) => ApiError::field(
                e.field.clone(),
                format!("request decode failed: {}", e.reason),
            ),
            RequestError::Invalid(e) => ApiError::field(e.field.clone(), e.reason.clone()),
        }
    }
}

impl From<wayfinder_catalog::ValidationError> for ApiError {
    fn from(error: wayfinder_catalog::ValidationError) -> Self {
        ApiError::field(error.field, error.reason)
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Rejected(CatalogError::Invalid(e)) => e.into(),
            WriteError::Rejected(e @ CatalogError::UnknownInstance(_))
            | WriteError::Rejected(e @ CatalogError::UnknownCheck(_)) => {
                ApiError::not_found(capitalize(&e.to_string()))
            }
            WriteError::Rejected(e @ CatalogError::IndexNotIncreasing { .. }) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            e @ WriteError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            e @ WriteError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
