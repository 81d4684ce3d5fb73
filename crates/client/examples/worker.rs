//! `worker`: a service instance that registers itself with the agent, serves HTTP and reports
//! its ID.
//!
//! It listens on 127.0.0.1 (an ephemeral port unless `--port`), registers as `worker-service`
//! with an HTTP check on its own `/health` (or a TTL check it heartbeats, with `--ttl`), and
//! answers `GET /` with `{"id": "<its ID>"}`. On SIGTERM or Ctrl-C it deregisters first, then
//! stops serving, so no client is sent to it while it shuts down.
//!
//! ```text
//! cargo run -p wayfinder-client --example worker -- --agent http://127.0.0.1:8500 --id worker-1
//! ```

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use std::time::Duration;
use wayfinder_client::{OnSigterm, Registration};

/// A worker that registers itself with Wayfinder and answers with its ID.
#[derive(Parser, Debug)]
struct Args {
    /// The agent's HTTP API.
    #[arg(
        long,
        env = "WAYFINDER_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500"
    )]
    agent: String,
    /// The instance ID (unique per agent).
    #[arg(long)]
    id: String,
    /// The service name.
    #[arg(long, default_value = "worker-service")]
    service: String,
    /// The port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Use a TTL check of this many seconds (heartbeated by the client library) instead of an
    /// HTTP check the agent runs against `/health`.
    #[arg(long)]
    ttl: Option<u64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;

    let registration = Registration::new(&args.service)
        .id(&args.id)
        .address(addr.ip().to_string())
        .port(addr.port())
        .on_sigterm(OnSigterm::Notify);
    let registration = match args.ttl {
        Some(seconds) => registration.ttl_check(Duration::from_secs(seconds)),
        None => registration.http_check(format!("http://{addr}/health"), Duration::from_secs(1)),
    };
    let registered = registration.register(&args.agent).await?;
    println!("worker {} listening on {addr}", args.id);

    let app = Router::new()
        .route("/", get(identify))
        .route("/health", get(|| async { "ok" }))
        .with_state(args.id.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = registered.terminated() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            // Deregistered before the listener closes, so new clients stop being sent here;
            // clients that learn of it a round trip later retry elsewhere (`call`).
            if let Err(error) = registered.deregister().await {
                eprintln!("worker: could not deregister: {error}");
            }
        })
        .await?;
    println!("worker {} stopped", args.id);
    Ok(())
}

async fn identify(State(id): State<String>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "id": id }))
}
