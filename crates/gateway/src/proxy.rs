//! One request through the gateway: route, pick, forward, retry, answer.
//!
//! Owns [`Proxy`], the per-request path, in the order a request takes it:
//! 1. match a route (host routes first, longest prefix) — none: 404; client refused: 403;
//! 2. pick an instance with the route's balancer, skipping instances already tried for this
//!    request and instances ejected for failing — none healthy: 503;
//! 3. forward on a pooled keep-alive connection, the path rewritten and the forwarding headers
//!    set ([`crate::forwarded`]);
//! 4. on failure, try another instance: always when the connection could not be made (the
//!    instance never saw the request), and for idempotent methods on a 502/503 or a broken
//!    connection, within the route's retry budget; after the last attempt: 502, or 504 when the
//!    instance did not answer in time.
//!
//! Every request is balanced on its own, whatever connection it came on: a client holding one
//! keep-alive connection still spreads its requests over every instance (the Docker Swarm
//! keep-alive pitfall of our design notes, where balancing happened per connection).
//!
//! It does not own listening and connection handling ([`crate::listener`]) nor what the routes
//! are ([`crate::routing`]).

use crate::body::ProxyBody;
use crate::error::GatewayError;
use crate::forwarded::{self, Client as ClientOrigin};
use crate::route::UpstreamProto;
use crate::routing::{ActiveRoute, Routing};
use crate::stats::Class;
use crate::upstream::{LeanBody, Outcome, Outgoing, Upstream};
use bytes::Bytes;
use http::header;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use wayfinder_balance::{Endpoint, Pick};

/// Longest wait for a connection to an instance (then the next instance is tried).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for an instance's response headers after the request was sent (then 504).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an unused pooled connection to an instance is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts per request beyond the first.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Largest request body kept in memory so the request can be retried; larger bodies are
/// streamed and sent once.
pub const MAX_REPLAYABLE_BODY: u64 = 64 * 1024;

/// Timeouts and retry limits of the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Connecting to an instance.
    pub connect_timeout: Duration,
    /// Waiting for response headers.
    pub response_timeout: Duration,
    /// Keeping an unused upstream connection.
    pub idle_timeout: Duration,
    /// Attempts beyond the first.
    pub max_retries: u32,
    /// How instances on `proto=https` routes are verified (trust roots, ALPN); `None` refuses
    /// such routes with 502 rather than ever falling back to plain HTTP.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            upstream_tls: None,
        }
    }
}

/// Largest still-streaming response body of an idempotent request that is read whole before
/// the answer starts: an instance that dies in the middle of it is then a failed attempt,
/// retried on another instance, instead of a truncated answer the client cannot retry
/// (the gateway chaos test in crates/cli/tests/chaos.rs found those). Larger bodies, and
/// bodies of unknown length, stream as they come.
const READ_WHOLE_BELOW: u64 = 64 * 1024;

/// `response` with its body read whole when it is small, known in length, not read yet, and
/// the request may be sent again; an error says how the body broke off.
async fn read_small_body(
    response: Response<LeanBody>,
    idempotent: bool,
    timeout: Duration,
) -> Result<Response<LeanBody>, String> {
    let small = matches!(response.body(), LeanBody::Stream(_))
        && response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|length| length <= READ_WHOLE_BELOW);
    if !idempotent || !small {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) => return Err(format!("the response body broke off: {error}")),
        Err(_) => return Err(format!("the response body took longer than {timeout:?}")),
    };
    Ok(Response::from_parts(parts, LeanBody::Full(Some(bytes))))
}

/// The body sent to an instance: kept in memory (so it can be sent again) or streamed once.
type UpstreamBody = Either<Full<Bytes>, Incoming>;

/// The gateway's request handler.
pub struct Proxy {
    routing: Arc<Routing>,
    /// Requests with a body in memory and no upgrade: the common case, in the request's task.
    upstream: Arc<Upstream>,
    /// Streaming request bodies and upgrades.
    client: Client<HttpConnector, UpstreamBody>,
    /// The client for `proto=https` routes, when TLS to instances is configured.
    tls_client: Option<Client<HttpsConnector<HttpConnector>, UpstreamBody>>,
    config: ProxyConfig,
}

/// The outcome of one attempt on one instance.
enum Attempt {
    /// The instance answered (any status); the body's in-flight guard is set when it is
    /// passed on.
    Answered(Response<ProxyBody>),
    /// The connection could not be made: the instance never saw the request.
    NotConnected(String),
    /// The request was (maybe) sent but the exchange broke.
    Broken(String),
    /// No response headers in time.
    TimedOut,
}

impl Proxy {
    /// A proxy serving `routing`'s routes.
    pub fn new(routing: Arc<Routing>, config: ProxyConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let tls_client = config.upstream_tls.as_ref().map(|tls| {
            let mut connector = connector.clone();
            connector.enforce_http(false);
            let https = HttpsConnectorBuilder::new()
                .with_tls_config(rustls::ClientConfig::clone(tls))
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(config.idle_timeout)
                .build(https)
        });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.idle_timeout)
            .build(connector);
        Proxy {
            routing,
            upstream: Upstream::new(config.connect_timeout, config.idle_timeout),
            client,
            tls_client,
            config,
        }
    }

    /// Handles one request from `client` (its connection's address and protocol).
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: &ClientOrigin,
    ) -> Response<ProxyBody> {
        let host = request_host(&request);
        let path = request.uri().path().to_owned();
        let Some(route) = self.routing.route(host.as_deref(), &path) else {
            return GatewayError::NoRoute { host, path }.response(None, None);
        };
        let service = route.spec.service.as_str();
        let refuse = |error: GatewayError| error.response(Some(&route_name(&route)), Some(service));
        if !route.spec.access.permits(client.ip) {
            return refuse(GatewayError::Forbidden {
                client: client.ip.to_string(),
            });
        }

        let https = route.spec.proto == UpstreamProto::Https;
        if https && self.tls_client.is_none() {
            // Never fall back to plain HTTP for an instance that asked for TLS.
            return refuse(GatewayError::UpstreamFailed {
                service: service.to_owned(),
                attempts: 0,
                reason: "the route says proto=https, and this gateway has no TLS settings for \
                         instances (the system's trust roots could not be loaded; pass \
                         --gateway-upstream-ca)"
                    .to_owned(),
            });
        }
        let upgrade = forwarded::is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let body = match replayable(&parts, body).await {
            Ok(body) => body,
            Err(reason) => return refuse(GatewayError::BadRequest { reason }),
        };
        let path_and_query = match upstream_path(&route, &parts.uri) {
            Ok(pq) => pq,
            Err(reason) => return refuse(GatewayError::BadRequest { reason }),
        };
        let origin_host = host;
        forwarded::prepare(&mut parts.headers, client, origin_host.as_deref());
        let idempotent = is_idempotent(&parts.method);
        let hash_key = hash_key(&route, &parts.headers, client.ip);

        let now = self.routing.now();
        route.budget.deposit(now);
        let backends = route.service.backends();
        let mut tried: Vec<usize> = Vec::new();
        let mut body = Some(body);
        let mut last_failure = String::from("no attempt made");
        let mut attempts = 0u32;
        let max_attempts = 1 + self.config.max_retries;
        while attempts < max_attempts {
            let now = self.routing.now();
            let outliers = &route.service.outliers;
            let fresh = |i: usize, e: &Endpoint| {
                !tried.contains(&i) && outliers.is_available(e.id.as_str(), now)
            };
            let untried = |i: usize, _: &Endpoint| !tried.contains(&i);
            let mut rng = fastrand::Rng::new();
            let mut fallback_rng = fastrand::Rng::new();
            let mut pick = Pick::new(now, &mut rng).accept(&fresh);
            if let Some(key) = hash_key.as_deref() {
                pick = pick.key(key);
            }
            let picked = route.balancer.pick(&backends.set, pick).or_else(|| {
                // Every untried instance is ejected: better to try one than to fail for sure
                // (Envoy's panic threshold does the same).
                let mut fallback = Pick::new(now, &mut fallback_rng).accept(&untried);
                if let Some(key) = hash_key.as_deref() {
                    fallback = fallback.key(key);
                }
                route.balancer.pick(&backends.set, fallback)
            });
            let (Some(index), Some(target)) =
                (picked, picked.and_then(|i| backends.targets.get(i)))
            else {
                break;
            };
            tried.push(index);
            attempts += 1;
            let host = forwarded::host(
                &route.spec.host_header,
                origin_host.as_deref(),
                target.authority.as_str(),
            );
            let in_flight = backends.set.start(index, now);
            let instance_stats = route.stats.instance(&target.id);
            let outcome = match body.as_ref() {
                // The common case: a body in memory and no upgrade, in this task.
                Some(Replay::Kept(bytes)) if !upgrade && !https => {
                    let outgoing = Outgoing {
                        method: &parts.method,
                        path: &path_and_query,
                        headers: &parts.headers,
                        host: host.as_ref(),
                        body: bytes,
                    };
                    let sent = self
                        .upstream
                        .send(&target.authority, &outgoing, self.config.response_timeout)
                        .await;
                    match sent {
                        Outcome::Answered(response) => {
                            let timeout = self.config.response_timeout;
                            match read_small_body(response, idempotent, timeout).await {
                                Ok(response) => {
                                    Attempt::Answered(response.map(|body| ProxyBody::Lean {
                                        body,
                                        in_flight: None,
                                    }))
                                }
                                Err(reason) => Attempt::Broken(reason),
                            }
                        }
                        Outcome::NotConnected(reason) => Attempt::NotConnected(reason),
                        Outcome::Broken(reason) => Attempt::Broken(reason),
                        Outcome::TimedOut => Attempt::TimedOut,
                    }
                }
                _ => {
                    let Some(attempt_body) = body
                        .as_ref()
                        .and_then(Replay::again)
                        .or_else(|| body.take().map(Replay::once))
                    else {
                        break;
                    };
                    let uri = match Uri::builder()
                        .scheme(if https { Scheme::HTTPS } else { Scheme::HTTP })
                        .authority(target.authority.clone())
                        .path_and_query(path_and_query.clone())
                        .build()
                    {
                        Ok(uri) => uri,
                        Err(error) => {
                            return refuse(GatewayError::BadRequest {
                                reason: error.to_string(),
                            });
                        }
                    };
                    let mut upstream = Request::new(attempt_body);
                    *upstream.method_mut() = parts.method.clone();
                    *upstream.uri_mut() = uri;
                    *upstream.version_mut() = Version::HTTP_11;
                    *upstream.headers_mut() = parts.headers.clone();
                    if let Some(value) = host {
                        upstream.headers_mut().insert(header::HOST, value);
                    }
                    self.send(upstream, https).await
                }
            };
            let done = self.routing.now();
            let id = &*target.id;
            let class = match &outcome {
                Attempt::Answered(response) => Class::of(response.status()),
                _ => Class::ServerError,
            };
            instance_stats.record(class, done.saturating_since(now));
            let record_failure = |id: &str| {
                if outliers.record_failure(id, done).is_some() {
                    instance_stats.ejected();
                }
            };
            match outcome {
                Attempt::Answered(response) => {
                    let status = response.status();
                    let retriable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                    ) && idempotent
                        && body.is_some()
                        && !upgrade;
                    if status.is_server_error() {
                        record_failure(id);
                    } else {
                        outliers.record_success(id, done);
                    }
                    if retriable && attempts < max_attempts && route.budget.try_withdraw(done) {
                        last_failure = format!("instance {id} answered {status}");
                        continue;
                    }
                    if let Some(guard) = &in_flight {
                        guard
                            .load()
                            .record_rtt(done.saturating_since(guard.started_at()), done);
                    }
                    route.stats.finished(attempts);
                    return self.pass_on(response, in_flight, client_upgrade);
                }
                Attempt::NotConnected(reason) => {
                    record_failure(id);
                    // Never sent: always safe to try another instance, and not charged to the
                    // budget (the failed attempt loaded no one).
                    last_failure = format!("instance {id}: {reason}");
                }
                Attempt::Broken(reason) => {
                    record_failure(id);
                    last_failure = format!("instance {id}: {reason}");
                    let may_retry =
                        idempotent && body.is_some() && !upgrade && route.budget.try_withdraw(done);
                    if !may_retry {
                        break;
                    }
                }
                Attempt::TimedOut => {
                    record_failure(id);
                    route.stats.finished(attempts);
                    return refuse(GatewayError::Timeout {
                        service: service.to_owned(),
                        timeout_ms: self.config.response_timeout.as_millis(),
                    });
                }
            }
        }
        route.stats.finished(attempts);
        if attempts == 0 {
            route.stats.unavailable();
            return refuse(GatewayError::NoHealthyInstance {
                service: service.to_owned(),
            });
        }
        refuse(GatewayError::UpstreamFailed {
            service: service.to_owned(),
            attempts,
            reason: last_failure,
        })
    }

    async fn send(&self, request: Request<UpstreamBody>, https: bool) -> Attempt {
        let sent = match (https, &self.tls_client) {
            (true, Some(tls_client)) => tls_client.request(request),
            _ => self.client.request(request),
        };
        match tokio::time::timeout(self.config.response_timeout, sent).await {
            Err(_) => Attempt::TimedOut,
            Ok(Ok(response)) => Attempt::Answered(response.map(|body| ProxyBody::Upstream {
                body,
                in_flight: None,
            })),
            Ok(Err(error)) if error.is_connect() => Attempt::NotConnected(describe(&error)),
            Ok(Err(error)) => Attempt::Broken(describe(&error)),
        }
    }

    /// The instance's response, streamed to the client; a `101 Switching Protocols` also joins
    /// the two upgraded connections.
    fn pass_on(
        &self,
        mut response: Response<ProxyBody>,
        in_flight: Option<wayfinder_balance::InFlight>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<ProxyBody> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let joined = async {
                    let (client, upstream) = tokio::try_join!(client_upgrade, upstream_upgrade)
                        .map_err(|e| e.to_string())?;
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    tokio::io::copy_bidirectional(&mut client, &mut upstream)
                        .await
                        .map_err(|e| e.to_string())?;
                    drop(in_flight);
                    Ok::<_, String>(())
                };
                if let Err(error) = joined.await {
                    tracing::debug!(%error, "upgraded connection ended");
                }
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, ProxyBody::empty());
        }
        let (mut parts, mut body) = response.into_parts();
        match &mut body {
            ProxyBody::Upstream {
                in_flight: slot, ..
            }
            | ProxyBody::Lean {
                in_flight: slot, ..
            } => {
                *slot = in_flight;
            }
            ProxyBody::Full(_) => {}
        }
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
        ] {
            parts.headers.remove(name);
        }
        Response::from_parts(parts, body)
    }
}

/// A request body, kept so that it can be sent more than once when it is small.
enum Replay {
    /// In memory: every attempt sends a copy.
    Kept(Bytes),
    /// Too large or of unknown length: sent once.
    Stream(Incoming),
}

impl Replay {
    fn again(&self) -> Option<UpstreamBody> {
        match self {
            Replay::Kept(bytes) => Some(Either::Left(Full::new(bytes.clone()))),
            Replay::Stream(_) => None,
        }
    }

    fn once(self) -> UpstreamBody {
        match self {
            Replay::Kept(bytes) => Either::Left(Full::new(bytes)),
            Replay::Stream(body) => Either::Right(body),
        }
    }
}

/// Reads a small body into memory (so the request can be retried); leaves larger ones to
/// stream.
async fn replayable(parts: &http::request::Parts, body: Incoming) -> Result<Replay, String> {
    use hyper::body::Body;
    if body.is_end_stream() {
        return Ok(Replay::Kept(Bytes::new()));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length <= MAX_REPLAYABLE_BODY => {
            let limit = usize::try_from(MAX_REPLAYABLE_BODY).unwrap_or(usize::MAX);
            Limited::new(body, limit)
                .collect()
                .await
                .map(|collected| Replay::Kept(collected.to_bytes()))
                .map_err(|e| format!("reading the request body failed: {e}"))
        }
        _ => Ok(Replay::Stream(body)),
    }
}

/// The host the client asked for: `Host`, or the URI's authority (HTTP/2, absolute form).
fn request_host(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

/// The path and query the instance is sent.
fn upstream_path(route: &ActiveRoute, uri: &Uri) -> Result<PathAndQuery, String> {
    let path = route.spec.rewrite.apply(uri.path());
    let text = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    PathAndQuery::try_from(text).map_err(|e| format!("the rewritten path is not valid: {e}"))
}

/// The route as `GET /v1/routes` names it: `host/prefix` or `prefix`.
fn route_name(route: &ActiveRoute) -> String {
    match &route.spec.host {
        Some(host) => format!("{host}{}", route.spec.prefix),
        None => route.spec.prefix.clone(),
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What a sticky route hashes for this request.
fn hash_key(route: &ActiveRoute, headers: &http::HeaderMap, client: IpAddr) -> Option<Vec<u8>> {
    use crate::route::HashOn;
    use wayfinder_balance::StrategyKind;
    let keyed = route.spec.balance.strategy == StrategyKind::ConsistentHash;
    if !keyed {
        return None;
    }
    let from_request = match &route.spec.balance.hash_on {
        HashOn::ClientIp => None,
        HashOn::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
        HashOn::Cookie(name) => cookie(headers, name).map(|v| v.as_bytes().to_vec()),
    };
    Some(from_request.unwrap_or_else(|| client.to_string().into_bytes()))
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// An error with its causes, for the 502 body and the logs.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
