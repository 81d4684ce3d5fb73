//! The operator commands' view of an agent: its address, the token, one blocking HTTP client,
//! and errors that say what to do next.
//!
//! This module owns turning `--http-addr` into a base URL, sending `X-Consul-Token`, and
//! mapping transport failures and refusals to [`CommandError`]. It does not know any endpoint's
//! shape; the command modules decode what they ask for.

use reqwest::Url;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// The agent address used when neither `--http-addr` nor `WAYFINDER_HTTP_ADDR` is set.
pub const DEFAULT_AGENT_ADDR: &str = "http://127.0.0.1:8500";

/// Longest wait for a TCP connection to the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for a whole answer (the commands ask nothing that blocks; `--watch` streams
/// use a client without it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Exit code when the agent refused a request or the input was wrong.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code when the agent could not be reached at all.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Where the agent is and how to talk to it: shared by every operator command.
#[derive(clap::Args, Clone, Debug)]
pub struct AgentTarget {
    /// The agent's HTTP API, as a URL or `host:port`.
    #[arg(
        long,
        env = "WAYFINDER_HTTP_ADDR",
        default_value = DEFAULT_AGENT_ADDR,
        value_name = "URL"
    )]
    pub http_addr: String,
    /// Token sent as `X-Consul-Token`, for an agent with ACLs on (see README, "Access control").
    #[arg(
        long,
        env = "WAYFINDER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why a command failed, and so which exit code it ends with.
#[derive(Debug)]
pub enum CommandError {
    /// No answer from the agent: not running, wrong address, or too slow.
    Unreachable(String),
    /// The agent answered with an error, or the command's input is wrong.
    Refused(String),
}

impl CommandError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Unreachable(_) => EXIT_UNREACHABLE,
            CommandError::Refused(_) => EXIT_REFUSED,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unreachable(message) | CommandError::Refused(message) => {
                f.write_str(message)
            }
        }
    }
}

/// What a command returns.
pub type CommandResult<T = ()> = Result<T, CommandError>;

/// A connection to one agent's HTTP API.
pub struct AgentHttp {
    base: Url,
    token: Option<String>,
    client: Client,
}

/// An answer the agent gave, successful or not.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or a refusal naming what was asked.
    pub fn json(&self, what: &str) -> CommandResult<Value> {
        serde_json::from_str(&self.body).map_err(|error| {
            CommandError::Refused(format!(
                "the agent's answer to {what} is not the JSON expected: {error}"
            ))
        })
    }

    /// The agent's own words for a failed request: its JSON `error` (and `field`), else the
    /// body's text, else the status.
    pub fn refusal(&self) -> String {
        let parsed: Option<Value> = serde_json::from_str(&self.body).ok();
        if let Some(error) = parsed.as_ref().and_then(|v| v.get("error")?.as_str()) {
            return match parsed.as_ref().and_then(|v| v.get("field")?.as_str()) {
                Some(field) => format!("{error} (field {field})"),
                None => error.to_owned(),
            };
        }
        let text = self.body.trim();
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            text.to_owned()
        }
    }
}

impl AgentHttp {
    /// A client for the agent at `target.http_addr` (a URL, or `host:port` meaning `http://`).
    pub fn new(target: &AgentTarget) -> CommandResult<Self> {
        Self::build(target, Some(REQUEST_TIMEOUT))
    }

    /// A client without a total timeout, for streams that stay open until Ctrl-C.
    pub fn streaming(target: &AgentTarget) -> CommandResult<Self> {
        Self::build(target, None)
    }

    fn build(target: &AgentTarget, timeout: Option<Duration>) -> CommandResult<Self> {
        let base = parse_base(&target.http_addr)?;
        // reqwest is built with `rustls-no-provider`; an `Err` only means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder()
            // The agent is local or internal; an HTTP(S)_PROXY meant for the outside world
            // must not capture it.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("wayfinder-cli/", env!("CARGO_PKG_VERSION")));
        builder = builder.timeout(timeout);
        let client = builder.build().map_err(|error| {
            CommandError::Refused(format!("cannot set up an HTTP client: {error}"))
        })?;
        Ok(AgentHttp {
            base,
            token: target.token.clone().filter(|t| !t.is_empty()),
            client,
        })
    }

    /// The agent's base URL, as shown in messages.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the base, each segment escaped (names and IDs may hold
    /// characters that mean something in a URL).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET url`.
    pub fn get(&self, url: Url) -> CommandResult<Answer> {
        self.send(self.client.get(url))
    }

    /// `PUT url` with an optional JSON body.
    pub fn put(&self, url: Url, body: Option<&Value>) -> CommandResult<Answer> {
        let mut request = self.client.put(url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        self.send(request)
    }

    /// `GET url` and the open response, for reading a stream line by line.
    pub fn open(&self, url: Url, headers: &[(&str, &str)]) -> CommandResult<Response> {
        let mut request = self.with_token(self.client.get(url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().map_err(|error| self.transport_error(&error))
    }

    /// `GET url`, expecting 2xx and JSON; anything else is the agent's refusal.
    pub fn get_json(&self, url: Url, what: &str) -> CommandResult<Value> {
        let answer = self.get(url)?;
        if !answer.is_success() {
            return Err(CommandError::Refused(format!(
                "the agent refused {what}: {}",
                answer.refusal()
            )));
        }
        answer.json(what)
    }

    fn with_token(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> CommandResult<Answer> {
        let response = self
            .with_token(request)
            .send()
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .map_err(|error| self.transport_error(&error))?;
        Ok(Answer { status, body })
    }

    /// A transport failure in an operator's words: where we tried, why it failed, what to do.
    pub fn transport_error(&self, error: &reqwest::Error) -> CommandError {
        let cause = root_cause(error);
        let why = if error.is_timeout() {
            "no answer in time".to_owned()
        } else {
            cause
        };
        CommandError::Unreachable(format!(
            "cannot reach the agent at {}: {why}; is `wayfinder agent` running? set \
             WAYFINDER_HTTP_ADDR (or --http-addr) to its address",
            self.base()
        ))
    }
}

/// The base URL for `addr`: a URL with a scheme, or `host:port` meaning `http://host:port`.
pub fn parse_base(addr: &str) -> CommandResult<Url> {
    let addr = addr.trim();
    let text = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let url = Url::parse(&text).map_err(|error| {
        CommandError::Refused(format!(
            "{addr:?} is not an agent address ({error}); use a URL such as \
             http://127.0.0.1:8500 or host:port"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CommandError::Refused(format!(
            "{addr:?} is not an agent address; use http://host:port or https://host:port"
        )));
    }
    Ok(url)
}

/// The most specific reason in an error chain: an IO error's kind ("connection refused"), else
/// the innermost message.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error.to_string();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::Other => io.to_string(),
                kind => kind.to_string(),
            };
        }
        innermost = e.to_string();
        current = e.source();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_means_http() {
        let url = parse_base("127.0.0.1:8500").expect("host:port is accepted");
        assert_eq!(url.as_str(), "http://127.0.0.1:8500/");
    }

    #[test]
    fn urls_keep_their_scheme() {
        let url = parse_base("https://agent.internal:8501").expect("a URL is accepted");
        assert_eq!(url.scheme(), "https");
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(parse_base("ftp://agent:21").is_err());
    }

    #[test]
    fn refusal_quotes_the_error_and_field() {
        let answer = Answer {
            status: 400,
            body: r#"{"error":"Name is required","field":"Name"}"#.to_owned(),
        };
        assert_eq!(answer.refusal(), "Name is required (field Name)");
        let empty = Answer {
            status: 404,
            body: String::new(),
        };
        assert_eq!(empty.refusal(), "HTTP 404");
    }
}
