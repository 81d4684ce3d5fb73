//! Blocking queries against the upstream, and the rules a well-behaved Consul client follows
//! between them (reference §3): the index it sends next, how long it pauses, how it backs off.
//!
//! The rules are plain values ([`IndexCursor`], [`Backoff`], [`unchanged_pause`]) so they are
//! unit-tested without a network; [`UpstreamClient`] only does the HTTP.

use super::model::{self, HealthEntry};
use bytes::Bytes;
use reqwest::{Client, StatusCode, Url};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long each blocking query asks the upstream to hold the answer (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Added to `wait + wait/16` (the upstream's own jitter) for the request timeout, so a slow but
/// healthy answer is not cut off.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Longest a TCP (and TLS) connect to the upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two queries of one loop whose index did not move, so an upstream that
/// answers at once without blocking is asked at most once a second.
pub const MIN_UNCHANGED_INTERVAL: Duration = Duration::from_secs(1);
/// First back-off delay after a failed query; doubled per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest back-off delay between retries.
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
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("it must not have a query or fragment"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials in the URL would end up in logs; leave them out",
            ));
        }
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let http = Client::builder()
            .tls_backend_preconfigured(tls_config()?)
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

/// The request timeout for a blocking query of `wait`: the upstream may hold it for
/// `wait + wait/16` (its jitter), plus [`TIMEOUT_MARGIN`] for the answer to travel.
pub fn request_timeout(wait: Duration) -> Duration {
    wait + wait / 16 + TIMEOUT_MARGIN
}

/// TLS for an `https://` upstream: the platform's roots on ring, set explicitly (the workspace
/// builds reqwest without a default crypto provider).
fn tls_config() -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Client(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| UpstreamError::Client(e.to_string()))?
        .with_no_client_auth())
}

/// A reqwest error with its causes (reqwest's own text is often just "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

/// What an answer's index says about the data (reference §3, client rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The index moved forward: the data may have changed.
    Changed,
    /// Same index: nothing changed (the wait ran out).
    Unchanged,
    /// The index went backwards (the upstream's state was reset or a different server
    /// answered): the data is current, and the next query starts over at index 0.
    WentBackwards,
}

/// The index a loop sends next, following Consul's client rules: an answered index below 1
/// counts as 1, and an index that goes backwards resets the loop to 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCursor {
    index: u64,
}

impl IndexCursor {
    /// The `index` to send: 0 (answer at once) before the first answer and after a reset.
    pub fn request_index(&self) -> u64 {
        self.index
    }

    /// Takes in an answer's `X-Consul-Index`.
    pub fn advance(&mut self, answered: u64) -> Progress {
        let answered = answered.max(1);
        if answered < self.index {
            self.index = 0;
            Progress::WentBackwards
        } else if answered == self.index {
            Progress::Unchanged
        } else {
            self.index = answered;
            Progress::Changed
        }
    }
}

/// How long a loop pauses after an answer whose index did not move, given how long that query
/// took: whatever is left of [`MIN_UNCHANGED_INTERVAL`]. A query that blocked for its whole
/// wait goes again at once; one answered instantly waits.
pub fn unchanged_pause(elapsed: Duration) -> Duration {
    MIN_UNCHANGED_INTERVAL.saturating_sub(elapsed)
}

/// Exponential back-off with jitter for consecutive failures, capped at [`BACKOFF_MAX`].
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        backoff_delay(self.failures, fastrand::f64())
    }

    /// Forgets the failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The delay after `failures` consecutive failures: `BACKOFF_BASE * 2^(failures-1)`, capped at
/// [`BACKOFF_MAX`], then scaled into its upper half by `jitter` in [0, 1) so that loops which
/// failed together do not retry together.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_query_does_not_block_and_any_answer_is_a_change() {
        let mut cursor = IndexCursor::default();
        assert_eq!(cursor.request_index(), 0);
        assert_eq!(cursor.advance(57), Progress::Changed);
        assert_eq!(cursor.request_index(), 57);
    }

    #[test]
    fn an_index_below_one_counts_as_one() {
        let mut cursor = IndexCursor::default();
        assert_eq!(cursor.advance(0), Progress::Changed);
        assert_eq!(
            cursor.request_index(),
            1,
            "never send index=0 after an answer"
        );
        assert_eq!(cursor.advance(0), Progress::Unchanged);
    }

    #[test]
    fn the_same_index_is_no_change() {
        let mut cursor = IndexCursor::default();
        cursor.advance(10);
        assert_eq!(cursor.advance(10), Progress::Unchanged);
        assert_eq!(cursor.request_index(), 10);
    }

    #[test]
    fn an_index_that_goes_backwards_resets_to_zero() {
        let mut cursor = IndexCursor::default();
        cursor.advance(100);
        assert_eq!(cursor.advance(7), Progress::WentBackwards);
        assert_eq!(cursor.request_index(), 0, "next query answers at once");
        assert_eq!(cursor.advance(7), Progress::Changed);
        assert_eq!(cursor.request_index(), 7);
    }

    #[test]
    fn unchanged_answers_are_rate_limited_but_long_blocks_are_not() {
        assert_eq!(unchanged_pause(Duration::ZERO), MIN_UNCHANGED_INTERVAL);
        assert_eq!(
            unchanged_pause(Duration::from_millis(300)),
            MIN_UNCHANGED_INTERVAL - Duration::from_millis(300)
        );
        assert_eq!(unchanged_pause(Duration::from_secs(300)), Duration::ZERO);
    }

    #[test]
    fn back_off_doubles_with_jitter_up_to_the_cap() {
        assert_eq!(backoff_delay(1, 1.0), BACKOFF_BASE);
        assert_eq!(backoff_delay(1, 0.0), BACKOFF_BASE / 2);
        assert_eq!(backoff_delay(3, 1.0), BACKOFF_BASE * 4);
        for failures in [7, 8, 50, u32::MAX] {
            assert_eq!(backoff_delay(failures, 1.0), BACKOFF_MAX);
            assert_eq!(backoff_delay(failures, 0.0), BACKOFF_MAX / 2);
        }
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first <= BACKOFF_BASE && first >= BACKOFF_BASE / 2);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= BACKOFF_MAX);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_BASE);
    }

    #[test]
    fn the_timeout_outlasts_the_upstreams_jittered_wait() {
        assert_eq!(
            request_timeout(DEFAULT_WAIT),
            Duration::from_millis(300_000 + 18_750) + TIMEOUT_MARGIN
        );
    }

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
