//! HTTP to the agent's Consul-shaped API: one keep-alive connection pool per [`AgentHttp`],
//! answers as status, `X-Consul-Index` and body, and transport failures as
//! [`ClientError::Unreachable`]. What each answer means is the caller's business.

use crate::error::ClientError;
use crate::transport::{describe, parse_agent_url};
use reqwest::{Client, Method, StatusCode, Url};
use std::sync::Arc;
use std::time::Duration;

/// Longest a TCP connect to the agent may take: it is normally local, so a slow connect is
/// already a failure worth reporting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes of an error body quoted in an error.
const ERROR_BODY_QUOTE: usize = 512;

/// The agent's base URL and a connection pool to it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AgentHttp {
    http: Client,
    base: Arc<str>,
    /// The ACL token sent as `X-Consul-Token`, from the environment (see [`TOKEN_ENV`]).
    token: Option<Arc<str>>,
}

/// Where the client finds its ACL token: `WAYFINDER_TOKEN`, else `CONSUL_HTTP_TOKEN` (the
/// variable Consul's own clients read), so a service needs no code to run under ACLs.
pub(crate) const TOKEN_ENV: [&str; 2] = ["WAYFINDER_TOKEN", "CONSUL_HTTP_TOKEN"];

/// The token in the environment, if one is set and not empty.
fn token_from_env() -> Option<Arc<str>> {
    TOKEN_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|token| token.trim().to_owned())
        .find(|token| !token.is_empty())
        .map(Arc::from)
}

impl std::fmt::Debug for AgentHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHttp")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One answer from the agent.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// `X-Consul-Index`, when present and a number.
    pub index: Option<u64>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// `self` when it is a 2xx, else [`ClientError::Status`] naming `what`.
    pub fn success(self, what: &str) -> Result<Reply, ClientError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(ClientError::Status {
            what: what.to_owned(),
            status: self.status.as_u16(),
            body: quote(String::from_utf8_lossy(&self.body).trim(), ERROR_BODY_QUOTE),
        })
    }
}

impl AgentHttp {
    /// A client for the agent at `url` (`http(s)://host[:port]`, optionally with a path prefix
    /// when the agent sits behind a proxy).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = parse_agent_url(url).map_err(|reason| bad(&reason))?;
        let tls = crate::tls::platform_config().map_err(|e| ClientError::Setup(e.to_string()))?;
        let http = Client::builder()
            .tls_backend_preconfigured(tls)
            // The agent is local or internal; an HTTP(S)_PROXY meant for the outside world
            // must not capture it.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("wayfinder-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(describe(&e)))?;
        Ok(AgentHttp {
            http,
            base: parsed.as_str().trim_end_matches('/').into(),
            token: token_from_env(),
        })
    }

    /// The agent's base URL, as used in requests and errors.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `segments` (each percent-encoded as one path segment) under the base, with
    /// `query` pairs.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ClientError> {
        let mut url = Url::parse(&self.base).map_err(|e| ClientError::BadUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        url.path_segments_mut()
            .map_err(|()| ClientError::BadUrl {
                url: self.base.to_string(),
                reason: "it cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one request and reads the whole answer within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        json: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut request = self.http.request(method, url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token.as_ref());
        }
        if let Some(json) = json {
            request = request.json(json);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            agent: self.base.to_string(),
            reason: describe(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(Reply {
            status,
            index,
            body,
        })
    }
}

/// At most `limit` bytes of `text` (cut at a character boundary), with `…` when cut.
fn quote(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_accepted() {
        for good in [
            "http://127.0.0.1:8500",
            "http://localhost:8500/",
            "http://[::1]:8500",
            "https://127.0.0.1:8501",
        ] {
            assert!(AgentHttp::new(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8500",
            "ftp://127.0.0.1",
            "http://:8500",
            "http://127.0.0.1:8500/?x=1",
            "http://user:pw@127.0.0.1:8500",
        ] {
            assert!(AgentHttp::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_segments_are_escaped() {
        let agent = AgentHttp::new("http://127.0.0.1:8500/").expect("url");
        let url = agent
            .url(
                &["v1", "health", "service", "a b/c"],
                &[("index", "5"), ("tag", "x&y")],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8500/v1/health/service/a%20b%2Fc?index=5&tag=x%26y"
        );
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary() {
        assert_eq!(quote("abc", 5), "abc");
        assert_eq!(quote("ééé", 3), "é…");
    }
}
