//! A lean HTTP/1.1 client for the proxy's common case, run in the request's own task.
//!
//! Owns [`Upstream`]: pooled keep-alive connections to instances, one request at a time on
//! each, written and read by the task that serves the client's request. hyper-util's pooled
//! client hands every request to a separate connection task through a channel and back through
//! a oneshot, and runs a second HTTP state machine there; under load that hop, its wake-ups and
//! the pool's bookkeeping were the largest part of the gateway's user-space cost per request
//! (docs/BENCHMARKS.md, gateway). Here a request costs one write, one read of the response head
//! (parsed with `httparse`, as hyper does) and, when the body is small, nothing else: the
//! connection is back in the pool before the response leaves.
//!
//! What it takes: requests whose body is in memory (the proxy keeps small bodies so it can retry
//! them) and that are not upgrades. Streaming request bodies and upgrades (WebSocket) go through
//! hyper's client in [`crate::proxy`]. Response bodies are framed as RFC 9112 §6.3 says:
//! none (HEAD, 1xx, 204, 304), `Transfer-Encoding: chunked` (decoded here; hyper re-frames for the
//! client), `Content-Length`, or until the instance closes.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head accepted from an instance.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 100;
/// Idle connections kept per instance.
const MAX_IDLE_PER_INSTANCE: usize = 256;
/// Bytes read from an instance at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Pooled keep-alive connections to instances.
#[derive(Debug)]
pub struct Upstream {
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One connection to an instance, with what has been read from it and not used yet.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buffer: BytesMut,
}

/// How one exchange ended.
#[derive(Debug)]
pub enum Outcome {
    /// The instance answered.
    Answered(Response<LeanBody>),
    /// No connection could be made: the instance never saw the request.
    NotConnected(String),
    /// The exchange broke after the request may have reached the instance.
    Broken(String),
    /// No response head within the timeout.
    TimedOut,
}

/// A request as the lean client sends it.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The method.
    pub method: &'a Method,
    /// Path and query, as the instance is to see them.
    pub path: &'a PathAndQuery,
    /// Headers; framing headers are the client's business and are replaced.
    pub headers: &'a HeaderMap,
    /// The `Host` to send instead of the one in `headers`, if any.
    pub host: Option<&'a HeaderValue>,
    /// The whole body (empty for none).
    pub body: &'a Bytes,
}

impl Upstream {
    /// An empty pool.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Upstream {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
            idle_timeout,
        })
    }

    /// Sends `request` to `authority` and reads the response head, within `response_timeout`.
    /// A pooled connection that the instance closed while idle (the request cannot have been
    /// read) is replaced by a fresh one, once.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        request: &Outgoing<'_>,
        response_timeout: Duration,
    ) -> Outcome {
        let head = encode_head(request);
        let mut pooled = self.checkout(authority);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match self.connect(authority).await {
                    Ok(conn) => conn,
                    Err(reason) => return Outcome::NotConnected(reason),
                },
            };
            if let Err(error) = write_request(&mut conn.stream, &head, request.body).await {
                if reused {
                    continue;
                }
                return Outcome::Broken(format!("sending the request failed: {error}"));
            }
            let read = tokio::time::timeout(response_timeout, read_head(&mut conn, request.method));
            match read.await {
                Err(_) => return Outcome::TimedOut,
                Ok(Ok(Some(head))) => {
                    return Outcome::Answered(self.response(authority.clone(), conn, head));
                }
                // Closed before answering: on a reused connection that is the instance closing
                // an idle keep-alive connection as the request arrived, which an idempotent
                // request may be sent again for (what hyper and nginx do too).
                Ok(Ok(None)) if reused && is_idempotent(request.method) => continue,
                Ok(Ok(None)) => {
                    return Outcome::Broken(
                        "the instance closed the connection without answering".into(),
                    );
                }
                Ok(Err(error)) => return Outcome::Broken(error.to_string()),
            }
        }
    }

    fn checkout(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.get_mut(authority)?;
        while let Some(Idle { conn, since }) = conns.pop() {
            if since.elapsed() < self.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, authority: Authority, conn: Conn) {
        if !conn.buffer.is_empty() {
            // Bytes past the response: the instance broke framing; do not reuse.
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.entry(authority).or_default();
        if conns.len() < MAX_IDLE_PER_INSTANCE {
            conns.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Conn, String> {
        let connect = TcpStream::connect(authority.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(format!("connecting to {authority} failed: {error}")),
            Err(_) => {
                return Err(format!(
                    "connecting to {authority} took longer than {:?}",
                    self.connect_timeout
                ));
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "gateway: cannot turn Nagle's algorithm off upstream");
        }
        Ok(Conn {
            stream,
            buffer: BytesMut::with_capacity(READ_CHUNK),
        })
    }

    /// The response for a parsed head; the body reads the rest from `conn`, which goes back to
    /// the pool once the body is complete (at once when it was read with the head).
    fn response(
        self: &Arc<Self>,
        authority: Authority,
        mut conn: Conn,
        head: Head,
    ) -> Response<LeanBody> {
        let Head {
            status,
            headers,
            framing,
            reusable,
        } = head;
        let body = match framing {
            Framing::Empty => {
                if reusable {
                    self.give_back(authority, conn);
                }
                LeanBody::Full(Some(Bytes::new()))
            }
            Framing::Length(length) if conn.buffer.len() as u64 >= length => {
                let bytes = conn.buffer.split_to(length as usize).freeze();
                if reusable {
                    self.give_back(authority, conn);
                }
                LeanBody::Full(Some(bytes))
            }
            framing => LeanBody::Stream(Box::new(Streaming {
                conn: Some(conn),
                state: match framing {
                    Framing::Length(length) => State::Length(length),
                    Framing::Chunked => State::ChunkSize,
                    _ => State::UntilClose,
                },
                reusable,
                pool: Arc::clone(self),
                authority,
            })),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = headers;
        response
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request line and headers, with the body's length.
fn encode_head(request: &Outgoing<'_>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256 + request.headers.len() * 32);
    head.extend_from_slice(request.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(request.path.as_str().as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = request.host {
        head.extend_from_slice(b"host: ");
        head.extend_from_slice(host.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in request.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (request.host.is_some() && name == header::HOST)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let needs_length = !request.body.is_empty()
        || matches!(*request.method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length {
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(request.body.len().to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

async fn write_request(stream: &mut TcpStream, head: &[u8], body: &Bytes) -> io::Result<()> {
    if body.is_empty() {
        return stream.write_all(head).await;
    }
    let mut all = Vec::with_capacity(head.len() + body.len());
    all.extend_from_slice(head);
    all.extend_from_slice(body);
    stream.write_all(&all).await
}

/// A parsed response head.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reusable: bool,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads until a complete final (non-1xx) response head is in the buffer; `None` when the
/// instance closed the connection before sending a byte.
async fn read_head(conn: &mut Conn, method: &Method) -> io::Result<Option<Head>> {
    loop {
        if !conn.buffer.is_empty() {
            match parse_head(&conn.buffer, method)? {
                Parsed::Complete(length, head) => {
                    conn.buffer.advance(length);
                    if head.status.is_informational() {
                        continue;
                    }
                    return Ok(Some(head));
                }
                Parsed::Partial if conn.buffer.len() >= MAX_HEAD => {
                    return Err(invalid(format!(
                        "the response head is larger than {MAX_HEAD} bytes"
                    )));
                }
                Parsed::Partial => {}
            }
        }
        let had = conn.buffer.len();
        if read_more(conn).await? == 0 {
            return if had == 0 {
                Ok(None)
            } else {
                Err(invalid(
                    "the instance closed the connection mid-head".into(),
                ))
            };
        }
    }
}

async fn read_more(conn: &mut Conn) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    conn.buffer.reserve(READ_CHUNK);
    conn.stream.read_buf(&mut conn.buffer).await
}

enum Parsed {
    Complete(usize, Head),
    Partial,
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

fn parse_head(bytes: &[u8], method: &Method) -> io::Result<Parsed> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let length = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(error) => return Err(invalid(format!("the response head is malformed: {error}"))),
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| invalid("the response has no valid status".into()))?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut chunked = false;
    let mut content_length: Option<u64> = None;
    let mut close = parsed.version == Some(0);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        if name == header::TRANSFER_ENCODING {
            chunked = value
                .to_str()
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name == header::CONTENT_LENGTH {
            let length = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("the response has an invalid Content-Length".into()))?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(invalid(
                    "the response has two different Content-Lengths".into(),
                ));
            }
            content_length = Some(length);
        } else if name == header::CONNECTION {
            close |= value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        }
        headers.append(name, value);
    }
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = content_length {
        if length == 0 {
            Framing::Empty
        } else {
            Framing::Length(length)
        }
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Parsed::Complete(
        length,
        Head {
            status,
            headers,
            framing,
            reusable: !close,
        },
    ))
}

/// A response body from the lean client.
#[derive(Debug)]
pub enum LeanBody {
    /// Read together with the head (or empty): the connection is already back in the pool.
    Full(Option<Bytes>),
    /// Still being read from the connection.
    Stream(Box<Streaming>),
}

/// A body read from its connection as the client takes it.
#[derive(Debug)]
pub struct Streaming {
    conn: Option<Conn>,
    state: State,
    reusable: bool,
    pool: Arc<Upstream>,
    authority: Authority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes of a `Content-Length` body still to come.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes of the current chunk still to come.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk.
    ChunkEnd,
    /// Expecting trailer lines until an empty one.
    Trailers,
    /// Reading until the instance closes.
    UntilClose,
    /// Complete.
    Done,
}

/// What the buffer yields in the current state.
enum Step {
    Data(Bytes),
    Again,
    NeedMore,
    Finished,
}

impl Streaming {
    fn step(&mut self, buffer: &mut BytesMut) -> io::Result<Step> {
        match self.state {
            State::Done => Ok(Step::Finished),
            State::Length(0) => {
                self.state = State::Done;
                Ok(Step::Finished)
            }
            State::Length(left) | State::ChunkData(left) if !buffer.is_empty() => {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                let data = buffer.split_to(take).freeze();
                let left = left - take as u64;
                self.state = match self.state {
                    State::Length(_) => State::Length(left),
                    _ if left == 0 => State::ChunkEnd,
                    _ => State::ChunkData(left),
                };
                Ok(Step::Data(data))
            }
            State::Length(_) | State::ChunkData(_) => Ok(Step::NeedMore),
            State::UntilClose if !buffer.is_empty() => Ok(Step::Data(buffer.split().freeze())),
            State::UntilClose => Ok(Step::NeedMore),
            State::ChunkSize => {
                let Some(line) = take_line(buffer)? else {
                    return Ok(Step::NeedMore);
                };
                let digits = line[..].split(|b| *b == b';').next().unwrap_or_default();
                let text = std::str::from_utf8(digits)
                    .ok()
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && t.len() <= 16)
                    .ok_or_else(|| invalid("a chunk size is malformed".into()))?;
                let size = u64::from_str_radix(text, 16)
                    .map_err(|_| invalid(format!("chunk size {text:?} is not hexadecimal")))?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
                Ok(Step::Again)
            }
            State::ChunkEnd => match take_line(buffer)? {
                None => Ok(Step::NeedMore),
                Some(line) if line.is_empty() => {
                    self.state = State::ChunkSize;
                    Ok(Step::Again)
                }
                Some(_) => Err(invalid("a chunk is longer than its size".into())),
            },
            State::Trailers => match take_line(buffer)? {
                None => Ok(Step::NeedMore),
                Some(line) if line.is_empty() => {
                    self.state = State::Done;
                    Ok(Step::Finished)
                }
                // Trailers are dropped: hyper's server would need them as a trailers frame,
                // and no instance behind a gateway relies on them reaching the client.
                Some(_) => Ok(Step::Again),
            },
        }
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && self.state == State::Done
        {
            self.pool.give_back(self.authority.clone(), conn);
        }
    }
}

/// One CRLF-terminated line from the front of `buffer`, without the CRLF; `None` until a whole
/// line is there.
fn take_line(buffer: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match buffer.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            let mut line = buffer.split_to(end + 2);
            line.truncate(end);
            Ok(Some(line))
        }
        None if buffer.len() > MAX_HEAD => Err(invalid("a chunk line is too long".into())),
        None => Ok(None),
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let streaming = match self.get_mut() {
            LeanBody::Full(bytes) => {
                return Poll::Ready(
                    bytes
                        .take()
                        .filter(|b| !b.is_empty())
                        .map(|b| Ok(Frame::data(b))),
                );
            }
            LeanBody::Stream(streaming) => streaming,
        };
        loop {
            let Some(mut conn) = streaming.conn.take() else {
                return Poll::Ready(None);
            };
            let step = streaming.step(&mut conn.buffer);
            match step {
                Err(error) => return Poll::Ready(Some(Err(error))),
                Ok(Step::Data(bytes)) => {
                    streaming.conn = Some(conn);
                    if !matches!(streaming.state, State::Length(0)) {
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    streaming.state = State::Done;
                    streaming.finish();
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(Step::Again) => streaming.conn = Some(conn),
                Ok(Step::Finished) => {
                    streaming.conn = Some(conn);
                    streaming.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {
                    conn.buffer.reserve(READ_CHUNK);
                    let polled = tokio_util::io::poll_read_buf(
                        Pin::new(&mut conn.stream),
                        cx,
                        &mut conn.buffer,
                    );
                    match polled {
                        Poll::Pending => {
                            streaming.conn = Some(conn);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                        Poll::Ready(Ok(0)) if streaming.state == State::UntilClose => {
                            streaming.state = State::Done;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Some(Err(invalid(
                                "the instance closed the connection mid-body".into(),
                            ))));
                        }
                        Poll::Ready(Ok(_)) => streaming.conn = Some(conn),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            LeanBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            LeanBody::Stream(streaming) => streaming.state == State::Done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            LeanBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            LeanBody::Stream(streaming) => match streaming.state {
                State::Length(left) => SizeHint::with_exact(left),
                _ => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// An instance that answers each request it reads (up to the blank line) with the next of
    /// `answers`, written in pieces to exercise partial reads: `Some((bytes, close))` writes the
    /// bytes and closes the connection if `close`; `None` closes it without answering. Counts
    /// the connections it accepted.
    async fn instance(
        answers: Vec<Option<(&'static [u8], bool)>>,
    ) -> (Authority, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            'accept: while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                loop {
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => request.push(byte[0]),
                            _ => continue 'accept,
                        }
                    }
                    match answers.next() {
                        Some(Some((answer, close))) => {
                            for piece in answer.chunks(7) {
                                if stream.write_all(piece).await.is_err() {
                                    continue 'accept;
                                }
                            }
                            if close {
                                continue 'accept;
                            }
                        }
                        Some(None) | None => continue 'accept,
                    }
                }
            }
        });
        (addr.to_string().parse().expect("authority"), accepted)
    }

    fn keep(bytes: &'static [u8]) -> Option<(&'static [u8], bool)> {
        Some((bytes, false))
    }

    async fn get(
        upstream: &Arc<Upstream>,
        authority: &Authority,
        method: Method,
    ) -> (StatusCode, Bytes) {
        let headers = HeaderMap::new();
        let path = PathAndQuery::from_static("/x");
        let body = Bytes::new();
        let outgoing = Outgoing {
            method: &method,
            path: &path,
            headers: &headers,
            host: None,
            body: &body,
        };
        match upstream
            .send(authority, &outgoing, Duration::from_secs(5))
            .await
        {
            Outcome::Answered(response) => {
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_else(|e| Bytes::from(format!("body error: {e}")));
                (status, bytes)
            }
            other => panic!("no answer: {other:?}"),
        }
    }

    fn pool() -> Arc<Upstream> {
        Upstream::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn length_chunked_and_empty_bodies_share_one_kept_alive_connection() {
        let (authority, accepted) = instance(vec![
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            keep(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0a\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"),
            keep(b"HTTP/1.1 204 No Content\r\n\r\n"),
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nend"),
        ])
        .await;
        let upstream = pool();
        assert_eq!(
            get(&upstream, &authority, Method::GET).await,
            (StatusCode::OK, Bytes::from("hello"))
        );
        assert_eq!(
            get(&upstream, &authority, Method::GET).await,
            (StatusCode::CREATED, Bytes::from("abc0123456789"))
        );
        assert_eq!(
            get(&upstream, &authority, Method::GET).await,
            (StatusCode::NO_CONTENT, Bytes::new())
        );
        assert_eq!(
            get(&upstream, &authority, Method::GET).await,
            (StatusCode::OK, Bytes::from("end"))
        );
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one connection, kept alive"
        );
    }

    #[tokio::test]
    async fn a_body_until_close_is_read_whole_and_its_connection_not_reused() {
        let (authority, accepted) = instance(vec![
            Some((b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true)),
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"),
        ])
        .await;
        let upstream = pool();
        assert_eq!(
            get(&upstream, &authority, Method::GET).await,
            (StatusCode::OK, Bytes::from("until the end"))
        );
        assert_eq!(
            get(&upstream, &authority, Method::GET).await.1,
            Bytes::from("next")
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_by_the_instance_is_replaced_for_a_get() {
        let (authority, accepted) = instance(vec![
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
            None,
            keep(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
        ])
        .await;
        let upstream = pool();
        assert_eq!(
            get(&upstream, &authority, Method::GET).await.1,
            Bytes::from("a")
        );
        // The pooled connection is closed when the second request arrives: sent again on a
        // fresh one.
        assert_eq!(
            get(&upstream, &authority, Method::GET).await.1,
            Bytes::from("b")
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_not_panics() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"[..],
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            let (authority, _) = instance(vec![keep(answer)]).await;
            let upstream = pool();
            let headers = HeaderMap::new();
            let path = PathAndQuery::from_static("/x");
            let body = Bytes::new();
            let outgoing = Outgoing {
                method: &Method::GET,
                path: &path,
                headers: &headers,
                host: None,
                body: &body,
            };
            match upstream
                .send(&authority, &outgoing, Duration::from_secs(5))
                .await
            {
                Outcome::Broken(_) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(answer)),
            }
        }
        let (authority, _) = instance(vec![keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )])
        .await;
        let upstream = pool();
        let (_, body) = get(&upstream, &authority, Method::GET).await;
        assert!(body.starts_with(b"body error"), "{body:?}");
    }

    #[test]
    fn the_request_head_replaces_framing_and_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("client.example"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        let host = HeaderValue::from_static("10.0.0.1:80");
        let path = PathAndQuery::from_static("/a?b=1");
        let body = Bytes::from_static(b"abc");
        let head = encode_head(&Outgoing {
            method: &Method::POST,
            path: &path,
            headers: &headers,
            host: Some(&host),
            body: &body,
        });
        let text = String::from_utf8(head).expect("ascii");
        assert!(
            text.starts_with("POST /a?b=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\n"),
            "{text}"
        );
        assert!(
            text.contains("x-kept: 1\r\n") && text.contains("content-length: 3\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("client.example") && !text.contains("chunked"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }
}
