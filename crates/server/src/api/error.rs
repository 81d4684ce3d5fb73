//! Errors the API answers with: a status code and a JSON body that says what is wrong, which
//! field, and what to do. Bad input is always 4xx and never changes anything.

use crate::consul::request::RequestError;
use crate::write_path::WriteError;
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wayfinder_catalog::CatalogError;

/// An error response. Boxed inside so that `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Details>);

#[derive(Debug)]
struct Details {
    status: StatusCode,
    message: String,
    field: Option<String>,
    service: Option<String>,
    header: Option<(HeaderName, &'static str)>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(Box::new(Details {
            status,
            message: message.into(),
            field: None,
            service: None,
            header: None,
        }))
    }

    /// 400 about one request field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let mut error = Self::new(StatusCode::BAD_REQUEST, message);
        error.0.field = (!field.is_empty()).then_some(field);
        error
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

impl ApiError {
    /// Names the service the error is about in the body (Endpoint Provider errors).
    pub fn with_service(mut self, service: &str) -> Self {
        self.0.service = Some(service.to_owned());
        self
    }

    /// Adds a response header, such as `Retry-After`.
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.0.header = Some((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let details = *self.0;
        let body = ErrorBody {
            error: &details.message,
            field: details.field.as_deref(),
            service: details.service.as_deref(),
        };
        let mut response = (details.status, Json(body)).into_response();
        if let Some((name, value)) = details.header {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
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
            e @ (WriteError::ShuttingDown | WriteError::Unavailable(_)) => {
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
