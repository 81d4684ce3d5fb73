//! The gateway's listening socket: accepts client connections and serves each with HTTP/1.1
//! (keep-alive, upgrades) or HTTP/2 (prior knowledge, h2c), every request through the
//! [`Proxy`].
//!
//! Owns the connection lifecycle: `TCP_NODELAY`, a timeout on reading request headers (a slow
//! or idle client cannot hold a connection's task forever), and a graceful stop that lets
//! requests in flight finish while accepting nothing new. With a [`TlsAcceptor`] every
//! connection is TLS first (the handshake in its own task, under [`HANDSHAKE_TIMEOUT`]) and
//! instances see `X-Forwarded-Proto: https`.
//!
//! [`serve_on_threads`] runs one single-threaded runtime per core, each with its own socket on
//! the gateway's port (`SO_REUSEPORT`: the kernel spreads new connections evenly over them) and
//! owning its connections, its proxy and its upstream pool, as nginx's and HAProxy's workers
//! do: a request never migrates between threads, so there is no work stealing, no cross-thread
//! wake-up and no shared pool lock on the hot path.

use crate::forwarded;
use crate::proxy::Proxy;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's headers (and how long an idle keep-alive
/// connection waits for the next request).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a client may take to finish the TLS handshake (with a TLS listener).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for requests in flight to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Binds `threads` sockets to `addr` (port 0: one free port for all of them), each with
/// `SO_REUSEPORT` so that the kernel balances connections across them.
pub fn bind_reuseport(
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::new();
    let mut addr = addr;
    for _ in 0..threads.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        // The others join the port the first one got.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves on `listeners` (from [`bind_reuseport`]), one thread of its own each, each with its
/// own proxy (made by `new_proxy`), until `stop` is cancelled; resolves when every thread has
/// drained.
pub async fn serve_on_threads(
    listeners: Vec<std::net::TcpListener>,
    new_proxy: impl Fn() -> Proxy,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut done = Vec::new();
    for (worker, listener) in listeners.into_iter().enumerate() {
        let proxy = Arc::new(new_proxy());
        let stop = stop.clone();
        let tls = tls.clone();
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("gateway-{worker}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "gateway: cannot start a worker thread's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, proxy, tls, stop.cancelled_owned()).await,
                        Err(error) => {
                            tracing::error!(%error, "gateway: a worker cannot use the listener");
                        }
                    }
                });
                let _ = finished.send(());
            })?;
        done.push(finished_rx);
    }
    for finished in done {
        let _ = finished.await;
    }
    Ok(())
}

/// Serves `proxy` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(DEFAULT_HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before accept: keep
                    // serving the others, without spinning.
                    tracing::warn!(%error, "gateway: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "gateway: cannot turn Nagle's algorithm off");
        }
        let proxy = Arc::clone(&proxy);
        let origin = Arc::new(forwarded::Client::new(
            client.ip(),
            if tls.is_some() { "https" } else { "http" },
        ));
        let service = service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let origin = Arc::clone(&origin);
            async move { Ok::<_, Infallible>(proxy.handle(request, &origin).await) }
        });
        let Some(tls) = &tls else {
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %client, "gateway: client connection ended with an error");
                }
            });
            continue;
        };
        // The handshake runs in the connection's own task, under a deadline.
        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %client, "gateway: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%client, "gateway: TLS handshake took too long");
                    return;
                }
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, %client, "gateway: client connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("gateway: requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
}
