//! `backend-server`: the instances behind the proxies in the gateway benchmark.
//!
//! Listens on `--count` ephemeral loopback ports in one process and answers every request on
//! each with `200` and the same small JSON body (`--body-bytes`, 100 by default), on keep-alive
//! HTTP/1.1 connections. The body names which backend answered (`{"backend":N,…}`, padded so
//! that every backend's body has the same length), so the benchmark can check that a proxy
//! really spreads requests over all of them.
//!
//! It is as cheap per request as hyper allows (no routing, no allocation beyond hyper's own:
//! the body is one shared `Bytes`), because it shares the machine's cores with the proxy under
//! test, its peers and wrk: every microsecond it spends is one the proxy does not get.
//!
//! Prints one line per backend, `backend N listening on http://127.0.0.1:PORT`, then serves
//! until its stdin closes (the benchmark that started it has gone), it gets SIGTERM, or
//! `--lifetime` has passed, whichever comes first. Each listener stops accepting after
//! [`MAX_CONNECTIONS`] connections, so no loop here is unbounded.

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Connections each backend accepts before it stops listening (wrk only reconnects after an
/// error, so a run opens a few hundred at most).
const MAX_CONNECTIONS: u64 = 100_000;
/// How long connections may take to finish when we stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);
/// Shortest body: `{"backend":NN,"pad":""}` and a newline.
const MIN_BODY_BYTES: usize = 32;

#[derive(Parser, Debug)]
#[command(about = "Fixed-answer HTTP/1.1 backends on loopback ports, for the gateway benchmark")]
struct Args {
    /// Backends (listening ports) to run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    count: u32,
    /// tokio worker threads serving all of them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Length of every response body, in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(32..=65_536))]
    body_bytes: u32,
    /// Exit after this many seconds even if nobody stopped us.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    lifetime: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .thread_name("backend")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(args));
    // Reading stdin occupies a blocking thread that a plain drop of the runtime would wait for
    // until stdin closes; after a SIGTERM it may never close.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    result
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for _ in 0..args.count {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind 127.0.0.1:0")?;
        listeners.push(listener);
    }
    let mut out = std::io::stdout().lock();
    for (n, listener) in (1..).zip(listeners) {
        let addr = listener.local_addr()?;
        writeln!(out, "backend {n} listening on http://{addr}")?;
        tokio::spawn(accept(listener, addr, body(n, args.body_bytes as usize)));
    }
    out.flush()?;
    drop(out);

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        () = stdin_closed() => {}
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        () = tokio::time::sleep(Duration::from_secs(args.lifetime)) => {
            eprintln!("backend-server: --lifetime of {} s is over; exiting", args.lifetime);
        }
    }
    Ok(())
}

/// Resolves when stdin reaches its end or fails: whoever started us is gone.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    // Whatever is written to us is ignored; each read either returns bytes or ends the loop.
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

/// `{"backend":N,"pad":"xxx…"}` and a newline, exactly `length` bytes (at least
/// [`MIN_BODY_BYTES`]).
fn body(backend: u32, length: usize) -> Bytes {
    let head = format!("{{\"backend\":{backend},\"pad\":\"");
    let tail = "\"}\n";
    let pad = length
        .max(MIN_BODY_BYTES)
        .saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

async fn accept(listener: TcpListener, addr: SocketAddr, body: Bytes) {
    for _ in 0..MAX_CONNECTIONS {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("backend-server: accept on {addr}: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let mut response = Response::new(Full::new(body.clone()));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that goes away mid-request is not our problem to report.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    eprintln!("backend-server: {addr} accepted {MAX_CONNECTIONS} connections; no longer listening");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_asked_length_and_name_their_backend() {
        for backend in [1, 4, 64] {
            let body = body(backend, 100);
            assert_eq!(body.len(), 100);
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(json["backend"], backend);
        }
        assert_eq!(body(1, 1).len(), MIN_BODY_BYTES);
    }
}
