//! Blocking queries against the upstream. The rules a well-behaved Consul client follows
//! between them (the index it sends next, how long it pauses, how it backs off) are
//! [`wayfinder_client::blocking`]'s, shared with the Rust client library; this module only does
//! the HTTP.

use bytes::Bytes;
use reqwest::{Client, StatusCode};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use wayfinder_client::blocking::request_timeout;
use wayfinder_client::model::{self, HealthEntry};
use wayfinder_client::transport::{describe, parse_agent_url};

/// Longest a TCP (and TLS) connect to the upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First back-off delay after a failed query; doubled per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest back-off delay between retries: the upstream is a shared server with many clients.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most bytes of an error body quoted in a log line.
const ERROR_BODY_QUOTE: usize = 256;

/// Why `--upstream-consul` cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The URL is not `http(s)://host[:port]`.
    #[error("--upstream-consul {url:?} is not usable: {reason}; pass e.g. http://10.0.0.2:8500")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client for the upstream: {0}")]
    Client(String),
}

/// Why one query failed. Every kind is retried; they differ in how they are logged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// No answer: connection refused or reset, timeout, or the upstream answered 5xx (Consul
    /// without a leader). Logged once per outage.
    #[error("{0}")]
    Unreachable(String),
    /// A 4xx answer (an ACL denial, a path the upstream does not serve): a set-up problem.
    #[error("the upstream answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A 200 whose headers or body are not what the endpoint promises.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl FetchError {
    /// Whether this is part of an outage (as opposed to an answer that is wrong).
    pub fn is_outage(&self) -> bool {
        matches!(self, FetchError::Unreachable(_))
    }
}

/// One answer of a blocking query: the upstream's index and the decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// `X-Consul-Index`.
    pub index: u64,
    /// The decoded body.
    pub body: T,
}

/// HTTP access to the upstream's catalog and health endpoints. Cheap to clone (one connection
/// pool); each blocking query holds one connection while it waits.
#[derive(Clone)]
pub struct UpstreamClient {
    http: Client,
    base: Arc<str>,
    wait: Duration,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("base", &self.base)
            .field("wait", &self.wait)
            .finish()
    }
}

impl UpstreamClient {
    /// A client for the upstream at `url` (`http://host:8500`, or `https://`), whose blocking
    /// queries wait up to `wait`. Fails on a URL that is not http(s) with a host.
    pub fn new(url: &str, wait: Duration) -> Result<Self, UpstreamError> {
        let bad = |reason: &str| UpstreamError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = parse_agent_url(url).map_err(|reason| bad(&reason))?;
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let http = Client::builder()
            .tls_backend_preconfigured(
                wayfinder_client::tls::platform_config()
                    .map_err(|e| UpstreamError::Client(e.to_string()))?,
            )
            // The upstream is an internal service; an HTTP(S)_PROXY meant for the outside
            // world must not capture it.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(request_timeout(wait))
            .user_agent(concat!(
                "wayfinder/",
                env!("CARGO_PKG_VERSION"),
                " (mirror)"
            ))
            .build()
            .map_err(|e| UpstreamError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base: base.into(),
            wait,
        })
    }

    /// The upstream's base URL, as used in requests and log lines.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/catalog/services`: the names of every service.
    pub async fn service_names(&self, index: u64) -> Result<Answer<BTreeSet<String>>, FetchError> {
        let (index, body) = self.get("/v1/catalog/services", index).await?;
        let names = model::decode_service_names(&body).map_err(|e| FetchError::Malformed(e.0))?;
        Ok(Answer { index, body: names })
    }

    /// `GET /v1/health/service/{name}`: every instance of `service` with its checks; entries
    /// that do not decode come back as `Err` with the reason.
    pub async fn health(
        &self,
        service: &str,
        index: u64,
    ) -> Result<Answer<Vec<Result<HealthEntry, String>>>, FetchError> {
        // Mirrored names are DNS labels (letters, digits, dashes): nothing to escape.
        let (index, body) = self
            .get(&format!("/v1/health/service/{service}"), index)
            .await?;
        let entries = model::decode_health(&body).map_err(|e| FetchError::Malformed(e.0))?;
        Ok(Answer {
            index,
            body: entries,
        })
    }

    /// One blocking query: `index=0` (the first) answers at once, any other blocks upstream
    /// until the index passes it or `wait` ends.
    async fn get(&self, path: &str, index: u64) -> Result<(u64, Bytes), FetchError> {
        let mut url = format!("{}{path}?wait={}ms", self.base, self.wait.as_millis());
        if index > 0 {
            url.push_str(&format!("&index={index}"));
        }
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(describe(&e)))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            let body = quote(body.trim());
            return Err(if status.is_server_error() {
                FetchError::Unreachable(format!("the upstream answered {status}: {body}"))
            } else {
                FetchError::Refused {
                    status: status.as_u16(),
                    body,
                }
            });
        }
        let index = response
            .headers()
            .get("X-Consul-Index")
            .ok_or_else(|| FetchError::Malformed("no X-Consul-Index header".to_owned()))?
            .to_str()
            .ok()
            .and_then(|raw| raw.trim().parse::<u64>().ok())
            .ok_or_else(|| FetchError::Malformed("X-Consul-Index is not a number".to_owned()))?;
        let body = response
            .bytes()
            .await
            .map_err(|e| FetchError::Unreachable(describe(&e)))?;
        Ok((index, body))
    }
}

fn quote(body: &str) -> String {
    if body.len() <= ERROR_BODY_QUOTE {
        return body.to_owned();
    }
    let mut end = ERROR_BODY_QUOTE;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfinder_client::blocking::DEFAULT_WAIT;

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        for good in [
            "http://127.0.0.1:8500",
            "http://consul.internal:8500/",
            "https://consul:8501",
        ] {
            let client =
                UpstreamClient::new(good, DEFAULT_WAIT).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(!client.base_url().ends_with('/'), "{}", client.base_url());
        }
        for bad in [
            "127.0.0.1:8500",
            "ftp://x",
            "http://",
            "http://h:1/?x=1",
            "http://u:p@h:1",
            "not a url",
        ] {
            assert!(UpstreamClient::new(bad, DEFAULT_WAIT).is_err(), "{bad}");
        }
    }
}
