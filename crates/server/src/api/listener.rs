//! The HTTP API's listening socket and the limits every client lives under.
//!
//! A registry decides where traffic goes, so one careless or hostile client must not be able
//! to starve it. This module owns the connection lifecycle of the API (what `axum::serve` did,
//! plus limits it cannot express):
//!
//! - connections per client IP (`--http-max-conns-per-client`, 200 by default, as Consul's
//!   `limits.http_max_conns_per_client`): one more gets a `429` JSON answer and is closed;
//! - a deadline for reading request headers (`--http-header-timeout`, 30 s): a slow or idle
//!   client cannot hold a connection's task forever (blocking queries are not affected — the
//!   deadline covers reading the request, not waiting for the answer);
//! - a cap on request-header bytes (64 KiB): more is refused with `431` by the HTTP codec;
//! - writes per second per client IP (`--http-write-rate`, off by default as in Consul): a
//!   `PUT`, `POST` or `DELETE` over the rate gets `429` with `Retry-After`, and changes nothing.
//!
//! Bodies are capped where they are read (1 MiB, `413`; see `api::body`), and instance sizes
//! (tags, meta, checks) by the catalog's validation.

use super::error::ApiError;
use crate::tls::HANDSHAKE_TIMEOUT;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// Default of `--http-max-conns-per-client` (Consul's default too).
pub const DEFAULT_MAX_CONNS_PER_CLIENT: u32 = 200;
/// Default of `--http-header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of request line and headers read before the request is refused with `431`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The limits of the HTTP API (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections one client IP may hold; `0`: no limit.
    pub max_conns_per_client: u32,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Writes per second one client IP may make (bursts up to the same number); `None`: no
    /// limit.
    pub write_rate_per_client: Option<NonZeroU32>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_conns_per_client: DEFAULT_MAX_CONNS_PER_CLIENT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            write_rate_per_client: None,
        }
    }
}

/// Open connections per client IP. A [`ConnectionSlot`] gives its place back when dropped.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection, counted against its client until dropped.
struct ConnectionSlot {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    /// A slot for one more connection from `client`, or `None` when it already holds `max`.
    fn take(self: &Arc<Self>, client: IpAddr, max: u32) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            connections: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves `service` on `listener` under `limits` until `shutdown` resolves, then lets the
/// requests in flight finish (watch streams are ended by the caller's shutdown future).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let connections = Arc::new(Connections::default());
    let writes: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>> = limits
        .write_rate_per_client
        .map(|rate| Arc::new(RateLimiter::keyed(Quota::per_second(rate))));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before accept: keep
                    // serving the others, without spinning.
                    tracing::warn!(%error, "HTTP API: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle off, as nginx's `tcp_nodelay on`: a watch event or an answer leaves at once
        // instead of waiting behind the client's delayed ACK of the previous one.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot turn Nagle's algorithm off for a connection");
        }
        let Some(slot) = connections.take(client.ip(), limits.max_conns_per_client) else {
            tokio::spawn(refuse_connection(
                stream,
                client,
                limits.max_conns_per_client,
            ));
            continue;
        };
        // Forget clients whose bucket is full again, so the map stays small.
        if let Some(writes) = writes.as_ref().filter(|writes| writes.len() > 4096) {
            writes.retain_recent();
            writes.shrink_to_fit();
        }
        let writes = writes.clone();
        let service = service.clone();
        let per_request =
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let mut service = service.clone();
                let limited = writes
                    .as_ref()
                    .and_then(|writes| write_refused(writes, client, request.method()));
                async move {
                    match limited {
                        Some(response) => Ok::<_, Infallible>(response),
                        None => service.call(request.map(Body::new)).await,
                    }
                }
            });
        let Some(tls) = &tls else {
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), per_request)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %client, "HTTP API: client connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        // The handshake runs in the connection's own task, under a deadline, so a client that
        // never finishes it holds nothing but its slot.
        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %client, "HTTP API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%client, "HTTP API: TLS handshake took too long");
                    return;
                }
            };
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), per_request);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, %client, "HTTP API: client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// `429` for a write over the client's rate; `None` lets the request through.
fn write_refused(
    writes: &DefaultKeyedRateLimiter<IpAddr>,
    client: SocketAddr,
    method: &Method,
) -> Option<Response> {
    if !matches!(*method, Method::PUT | Method::POST | Method::DELETE) {
        return None;
    }
    let not_until = writes.check_key(&client.ip()).err()?;
    let wait = not_until.wait_time_from(governor::clock::Clock::now(
        &governor::clock::DefaultClock::default(),
    ));
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many writes from {}: over --http-write-rate; retry after {seconds} s",
            client.ip()
        ),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// Answers a connection over the client's limit with one `429` and closes it, so the client
/// learns why instead of seeing a reset.
async fn refuse_connection(mut stream: TcpStream, client: SocketAddr, max: u32) {
    tracing::debug!(%client, max, "HTTP API: connection refused, client over its limit");
    let body = serde_json::json!({
        "error": format!(
            "too many connections from {}: at most {max} (--http-max-conns-per-client); \
             reuse keep-alive connections or close idle ones",
            client.ip()
        ),
        "field": null,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(error)) = written {
        tracing::debug!(%error, %client, "HTTP API: could not tell a refused client why");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_client_and_given_back() {
        let connections = Arc::new(Connections::default());
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = connections.take(a, 2);
        let second = connections.take(a, 2);
        assert!(first.is_some() && second.is_some());
        assert!(
            connections.take(a, 2).is_none(),
            "a third from a is refused"
        );
        assert!(connections.take(b, 2).is_some(), "b has its own count");
        drop(first);
        assert!(
            connections.take(a, 2).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn zero_means_no_connection_limit() {
        let connections = Arc::new(Connections::default());
        let a: IpAddr = [127, 0, 0, 1].into();
        let slots: Vec<_> = (0..1000).filter_map(|_| connections.take(a, 0)).collect();
        assert_eq!(slots.len(), 1000);
    }

    #[test]
    fn only_writes_are_rate_limited() {
        let writes = RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN));
        let client: SocketAddr = ([127, 0, 0, 1], 5000).into();
        assert!(
            write_refused(&writes, client, &Method::PUT).is_none(),
            "the first passes"
        );
        let refused = write_refused(&writes, client, &Method::PUT).expect("the second is refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        assert!(
            write_refused(&writes, client, &Method::GET).is_none(),
            "reads are not limited"
        );
        let other: SocketAddr = ([127, 0, 0, 2], 5000).into();
        assert!(
            write_refused(&writes, other, &Method::POST).is_none(),
            "per client"
        );
    }
}
