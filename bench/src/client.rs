//! One keep-alive HTTP/1.1 connection to the agent.
//!
//! Each load-generating task owns exactly one [`Connection`] and sends its requests on it one
//! after another, the way a well-behaved client library does. We use hyper's connection-level
//! client rather than a pooled client so that "64 clients" means exactly 64 TCP connections,
//! never more (a pool would open extra connections under load and hide that cost).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Pause after a failed connect before a load loop tries again (see [`Connection::reopen`]).
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// An open HTTP/1.1 connection; requests on it are sent one at a time.
pub struct Connection {
    host: HeaderValue,
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The response headers (`X-Consul-Index` for blocking queries).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The answer if it is a 200, else an error naming `what` was attempted and what came back.
    pub fn expect_ok(self, what: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.status == StatusCode::OK,
            "{what} answered {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body).trim()
        );
        Ok(self)
    }
}

impl Connection {
    /// Connects to `addr` (TCP_NODELAY, as every HTTP client does for small requests).
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}; is the agent running?"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP/1.1 handshake with {addr} failed"))?;
        // The connection future does the socket IO; it ends when `sender` is dropped or the
        // peer closes.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let host = HeaderValue::from_str(&addr.to_string())?;
        Ok(Self {
            host,
            sender,
            driver,
        })
    }

    /// Opens a fresh connection for a load loop that lost its last one, within `limit`. The
    /// error says what went wrong, ready for the loop's failure count; after a failed connect
    /// it has already paused for [`RECONNECT_PAUSE`], so a dead peer is not spun on.
    pub async fn reopen(addr: SocketAddr, limit: Duration) -> Result<Self, String> {
        match tokio::time::timeout(limit, Self::open(addr)).await {
            Ok(Ok(fresh)) => Ok(fresh),
            Ok(Err(error)) => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                Err(format!("{error:#}"))
            }
            Err(_) => Err("connect timed out".to_owned()),
        }
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let (parts, body) = self.start(method, path, body).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends one request and returns as soon as the response head arrives, with the body still
    /// to read: for responses that never end by themselves, such as a watch stream. The
    /// connection carries nothing else until that body is read to its end or dropped.
    pub async fn start(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await.context("the connection closed")?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        Ok(self.sender.send_request(request).await?)
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&mut self, path: &str, json: impl Into<Bytes>) -> anyhow::Result<Answer> {
        self.send(Method::PUT, path, json.into()).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, Bytes::new()).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// `GET path` on a fresh connection, expecting 200 and a JSON body.
pub async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut connection = Connection::open(addr).await?;
    let answer = connection
        .get(path)
        .await
        .with_context(|| format!("GET {path}"))?
        .expect_ok(&format!("GET {path}"))?;
    serde_json::from_slice(&answer.body).with_context(|| format!("GET {path}: body is not JSON"))
}
