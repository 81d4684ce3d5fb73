//! `consumer`: calls `worker-service` through the client library and prints who answered.
//!
//! Each call picks a healthy worker from the live endpoint set (random, as our design notes'
//! mobile client did), sends `GET /` and, when that fails, retries on another worker within
//! the call's deadline. Kill a worker while this runs and every call still succeeds.
//!
//! ```text
//! cargo run -p wayfinder-client --example consumer -- --agent http://127.0.0.1:8500
//! ```

use anyhow::Context;
use clap::Parser;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wayfinder_client::{Discovery, Endpoint};

/// Calls a service through Wayfinder's client library and prints who answered.
#[derive(Parser, Debug)]
struct Args {
    /// The agent's HTTP API.
    #[arg(
        long,
        env = "WAYFINDER_HTTP_ADDR",
        default_value = "http://127.0.0.1:8500"
    )]
    agent: String,
    /// The service to call.
    #[arg(long, default_value = "worker-service")]
    service: String,
    /// How many calls to make; 0 calls until interrupted.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Pause between calls.
    #[arg(long, value_parser = humantime_ms, default_value = "500")]
    interval_ms: Duration,
}

fn humantime_ms(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{text:?} is not a number of milliseconds: {e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let discovery = Discovery::new(&args.agent)?;
    let service = discovery.service(&args.service)?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(wayfinder_client::tls::platform_config()?)
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;

    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = 0u64;
    let mut call = 0u64;
    while args.count == 0 || call < args.count {
        call += 1;
        let started = Instant::now();
        match service.call(|endpoint| ask(&http, endpoint)).await {
            Ok(id) => {
                println!(
                    "call {call}: answered by {id} in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                );
                *answered.entry(id).or_default() += 1;
            }
            Err(error) => {
                failed += 1;
                println!("call {call}: FAILED: {error}");
            }
        }
        if let Some(stale) = service.freshness().stale_for() {
            println!("  (the agent is unreachable; endpoints known as of {stale:?} ago)");
        }
        tokio::time::sleep(args.interval_ms).await;
    }
    let by: Vec<String> = answered.iter().map(|(id, n)| format!("{id} {n}")).collect();
    println!(
        "{call} calls, {} succeeded, {failed} failed; answered by: {}",
        call - failed,
        by.join(", ")
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {call} calls failed");
    }
    Ok(())
}

/// `GET /` on one worker: it answers with its ID.
async fn ask(http: &reqwest::Client, endpoint: Arc<Endpoint>) -> anyhow::Result<String> {
    let answer: serde_json::Value = http
        .get(endpoint.http_url("/"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{endpoint} answered without an id"))
}
