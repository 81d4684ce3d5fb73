//! Query-string parameters as Consul reads them: repeatable keys (`tag`), presence flags
//! (`passing`, `stale`), and the response headers every blocking-capable read carries.

use super::error::ApiError;
use crate::blocking::BlockingParams;
use crate::consul::duration;
use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

/// Parsed query parameters, in order, repeats kept.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// This request's question without its `index` and `wait`, for sharing one rendering
    /// among the blocking readers asking it (see `shared_reads`).
    pub fn question(&self, path: &str) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| k != "index" && k != "wait")
            .collect();
        pairs.sort();
        let mut question = path.to_owned();
        for (key, value) in pairs {
            question.push('\n');
            question.push_str(key);
            question.push('=');
            question.push_str(value);
        }
        question
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A presence flag: set unless absent or given as a false value (Go's ParseBool rules).
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::field(
                key,
                format!("invalid value {other:?} for ?{key}; use true or false"),
            )),
        }
    }

    /// Checks the parameters every catalog/health read accepts: the datacenter must be ours,
    /// and `stale` and `consistent` exclude each other.
    pub fn check_read(&self, datacenter: &str) -> Result<(), ApiError> {
        if self.get("stale").is_some() && self.get("consistent").is_some() {
            return Err(ApiError::bad_request(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        if self.get("filter").is_some_and(|f| !f.is_empty()) {
            // Answering unfiltered would hand the client instances it asked to exclude.
            return Err(ApiError::field(
                "filter",
                "filter expressions are not supported by this agent; filter with ?tag= or \
                 ?passing, or on the client",
            ));
        }
        if let Some(dc) = self
            .get("dc")
            .filter(|dc| !dc.is_empty() && *dc != datacenter)
        {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("No path to datacenter {dc:?}: this agent serves {datacenter:?} only"),
            ));
        }
        self.blocking().map(|_| ())
    }

    /// The blocking-query parameters `?index=&wait=` (reference §3).
    pub fn blocking(&self) -> Result<BlockingParams, ApiError> {
        let index = match self.get("index") {
            None | Some("") => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ApiError::field(
                    "index",
                    format!("Invalid index {text:?}: must be an unsigned integer"),
                )
            })?),
        };
        let wait = match self.get("wait") {
            None | Some("") => None,
            Some(text) => Some(
                duration::parse(text)
                    .map_err(|e| ApiError::field("wait", format!("Invalid wait time: {e}")))?,
            ),
        };
        Ok(BlockingParams::new(index, wait))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        match raw {
            None => Ok(Params::default()),
            Some(raw) => serde_urlencoded::from_str(&raw)
                .map(Params)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
        }
    }
}

/// A JSON body with the headers Consul's blocking-capable endpoints send.
pub fn indexed<T: Serialize>(index: u64, body: &T) -> Response {
    with_index_headers(index, json(body))
}

/// Like [`indexed`], for a body already rendered to JSON.
pub fn indexed_bytes(index: u64, body: Bytes) -> Response {
    let response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    with_index_headers(index, response)
}

fn with_index_headers(index: u64, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    response
}

/// A JSON body, `Content-Type: application/json`.
pub fn json<T: Serialize>(body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the response failed: {e}"),
        )
        .into_response(),
    }
}
