//! HTTP checks: 2xx passing, 429 warning, anything else (or no answer in time) critical.
//!
//! All checks share one pooled, keep-alive client per TLS mode (verified, skip-verify), so
//! 10,000 checks at 1 s cost 10,000 requests a second on warm connections, not 10,000
//! handshakes. The exception is a check with a `TLSServerName`: the name sent in SNI (and
//! verified) differs from the host connected to, which a shared client cannot express per
//! request; such a check gets its own client whose resolver maps the server name back to the
//! URL's host. They are rare, and the client still keeps its connection alive between runs.
//!
//! Redirects are followed up to [`MAX_REDIRECTS`] hops, as Go's default client does for Consul.
//! Proxies from the environment are ignored: a health check measures the instance, not a proxy.

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Client, Url};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::debug;
use wayfinder_catalog::{MAX_OUTPUT_BYTES, Status, go_duration};

use super::tls::TlsTrust;
use super::{ProbeContext, ProbeResult, error_chain};

/// Most redirects followed before the check fails (Go's default client stops after 10).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// `Accept` sent unless the check sets one (Consul's).
const DEFAULT_ACCEPT: &str = "text/plain, text/*, */*";

/// Most body bytes read after the kept prefix, so that a large body still leaves the connection
/// reusable; past this the connection is dropped instead.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The HTTP fields of a check definition.
pub(crate) struct HttpSpec<'a> {
    pub(crate) url: &'a str,
    pub(crate) method: &'a str,
    pub(crate) headers: &'a BTreeMap<String, Vec<String>>,
    pub(crate) body: &'a str,
    pub(crate) tls_skip_verify: bool,
    pub(crate) tls_server_name: &'a str,
}

/// The shared clients, built on first use.
#[derive(Debug, Default)]
pub(crate) struct HttpClients {
    verified: OnceLock<Result<Client, String>>,
    skip_verify: OnceLock<Result<Client, String>>,
}

impl HttpClients {
    fn get(&self, tls: &TlsTrust, user_agent: &str, skip_verify: bool) -> Result<Client, String> {
        let cell = if skip_verify {
            &self.skip_verify
        } else {
            &self.verified
        };
        cell.get_or_init(|| build_client(tls, user_agent, skip_verify, None))
            .clone()
    }
}

fn build_client(
    tls: &TlsTrust,
    user_agent: &str,
    skip_verify: bool,
    resolver: Option<Arc<SameHost>>,
) -> Result<Client, String> {
    let mut defaults = HeaderMap::new();
    defaults.insert(ACCEPT, HeaderValue::from_static(DEFAULT_ACCEPT));
    let mut builder = Client::builder()
        .tls_backend_preconfigured(tls.http_client_config(skip_verify)?)
        .user_agent(user_agent)
        .default_headers(defaults)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .no_proxy()
        .tcp_nodelay(true);
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// An HTTP check prepared to run.
#[derive(Debug)]
pub(crate) struct HttpProbe {
    client: Client,
    request: reqwest::Request,
    /// `HTTP GET http://…`, the prefix of every output (with the URL as registered).
    label: String,
    timeout: Duration,
}

impl HttpProbe {
    /// Parses the definition once; an error is the output every run will report.
    pub(crate) fn new(
        spec: HttpSpec<'_>,
        timeout: Duration,
        context: &ProbeContext,
    ) -> Result<Self, String> {
        let method = if spec.method.is_empty() {
            Method::GET
        } else {
            Method::from_bytes(spec.method.as_bytes())
                .map_err(|_| format!("HTTP {} {}: invalid method", spec.method, spec.url))?
        };
        let label = format!("HTTP {method} {}", spec.url);
        let mut url = Url::parse(spec.url).map_err(|e| format!("{label}: invalid URL: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, values) in spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{label}: invalid header name {name:?}"))?;
            for value in values {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| format!("{label}: invalid value for header {name}"))?;
                headers.append(name.clone(), value);
            }
        }

        let client = if !spec.tls_server_name.is_empty() && url.scheme() == "https" {
            let host = url
                .host_str()
                .ok_or_else(|| format!("{label}: URL has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            if !headers.contains_key(HOST) {
                let authority = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_owned(),
                };
                let value = HeaderValue::from_str(&authority)
                    .map_err(|_| format!("{label}: invalid host {authority:?}"))?;
                headers.insert(HOST, value);
            }
            url.set_host(Some(spec.tls_server_name))
                .map_err(|e| format!("{label}: invalid TLS server name: {e}"))?;
            build_client(
                &context.tls,
                &context.user_agent,
                spec.tls_skip_verify,
                Some(Arc::new(SameHost { host })),
            )
        } else {
            context
                .http
                .get(&context.tls, &context.user_agent, spec.tls_skip_verify)
        }
        .map_err(|e| format!("{label}: {e}"))?;

        let mut request = reqwest::Request::new(method, url);
        *request.headers_mut() = headers;
        if !spec.body.is_empty() {
            *request.body_mut() = Some(Bytes::copy_from_slice(spec.body.as_bytes()).into());
        }
        Ok(Self {
            client,
            request,
            label,
            timeout,
        })
    }

    /// Sends the request and reads (a capped prefix of) the answer, within the timeout.
    pub(crate) async fn run(&self) -> ProbeResult {
        let Some(request) = self.request.try_clone() else {
            return ProbeResult::critical(format!("{}: request cannot be repeated", self.label));
        };
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => ProbeResult::critical(format!(
                "{}: {}",
                self.label,
                error_chain(&error.without_url())
            )),
            Err(_) => ProbeResult::critical(format!(
                "{}: timed out after {}",
                self.label,
                go_duration(self.timeout)
            )),
        }
    }

    async fn exchange(&self, request: reqwest::Request) -> Result<ProbeResult, reqwest::Error> {
        let mut response = self.client.execute(request).await?;
        let code = response.status();
        let mut body = Vec::new();
        let mut seen = 0usize;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    seen += chunk.len();
                    let room = MAX_OUTPUT_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if seen > MAX_OUTPUT_BYTES + DRAIN_LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // Consul keeps the status code when the body breaks off; so do we.
                    debug!(error = %error_chain(&error), "reading the health check body");
                    break;
                }
            }
        }
        let status = match code.as_u16() {
            200..=299 => Status::Passing,
            429 => Status::Warning,
            _ => Status::Critical,
        };
        let body = String::from_utf8_lossy(&body);
        let mut output = String::with_capacity(self.label.len() + body.len() + 32);
        let _ = write!(output, "{}: {}", self.label, code.as_u16());
        if let Some(reason) = code.canonical_reason() {
            let _ = write!(output, " {reason}");
        }
        let _ = write!(output, " Output: {body}");
        Ok(ProbeResult::new(status, output))
    }
}

/// Resolves whatever name is asked (the TLS server name) to the URL's real host.
#[derive(Debug)]
struct SameHost {
    host: String,
}

impl Resolve for SameHost {
    fn resolve(&self, _name: Name) -> Resolving {
        let host = self.host.clone();
        Box::pin(async move {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
