//! What every HTTP client of a Consul-shaped agent needs before and after a request: which
//! agent URLs are acceptable, and a transport error worth logging. Shared by this crate's
//! [`crate::Discovery`] and registration and by the agent's `--upstream-consul` mirror.

use reqwest::Url;

/// Parses an agent's base URL: `http(s)://host[:port][/prefix]`, with no query, fragment or
/// credentials (which would end up in logs). The error is the reason, for a message that also
/// names the URL.
pub fn parse_agent_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".to_owned());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("it must not have a query or fragment".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL would end up in logs; leave them out".to_owned());
    }
    Ok(parsed)
}

/// A reqwest error with its causes: reqwest's own text is often just "error sending request",
/// and the cause ("connection refused") is what tells an operator what to fix.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
