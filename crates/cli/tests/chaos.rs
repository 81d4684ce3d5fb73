//! Chaos, bounded in time, against the real binary (issue 9; figures in docs/RELIABILITY.md):
//!
//! - the gateway under GET load while its backends are killed (SIGKILL) and restarted at
//!   random for 60 s: not one request may fail — retries on another instance, ejection and
//!   health checks must hide every death;
//! - the agent killed with `kill -9` while clients register services, then restarted on the
//!   same data directory, three times: every registration it acknowledged is still there.
//!
//! Both print their figures (`chaos: …` lines) for docs/RELIABILITY.md.

mod support;

use nix::sys::signal::Signal;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::Agent;
use support::backend::Backend;
use tokio::time::Instant;

/// How long the backends are killed and restarted under load.
const GATEWAY_CHAOS: Duration = Duration::from_secs(60);
/// Backends behind the route; at most [`MAX_DOWN`] of them are down at once.
const BACKENDS: usize = 4;
const MAX_DOWN: usize = 2;
/// Client threads sending GETs through the gateway.
const CLIENTS: usize = 8;

fn client() -> reqwest::blocking::Client {
    let _ = support::http_client(); // installs ring as rustls' provider
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[test]
#[ignore = "runs 60 s of chaos: scripts/test"]
fn the_gateway_fails_no_get_while_backends_die_and_return() {
    let agent = Agent::start(&["--gateway-addr", "127.0.0.1:0"]);
    let mut backends: Vec<Backend> = (0..BACKENDS)
        .map(|i| Backend::start(&format!("chaos-{i}")))
        .collect();
    for backend in &backends {
        agent.register(&json!({
            "Name": "chaos", "ID": backend.id, "Address": "127.0.0.1", "Port": backend.port(),
            "Tags": ["urlprefix-/chaos"],
            "Check": {"HTTP": format!("http://{}/health", backend.addr), "Interval": "200ms",
                      "Timeout": "500ms", "Status": "passing"}
        }));
    }
    let url = format!("http://{}/chaos/item", agent.gateway_addr());
    agent.eventually(Duration::from_secs(10), "the route to answer", || {
        let status = client()
            .get(&url)
            .send()
            .map_err(|e| e.to_string())?
            .status();
        status.is_success().then_some(()).ok_or(status.to_string())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            let (url, first_failures) = (url.clone(), Arc::clone(&first_failures));
            std::thread::spawn(move || {
                let client = client();
                // Bounded by the stop flag and a hard cap on requests.
                for _ in 0..2_000_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let outcome = client.get(&url).send().map_err(|e| format!("{e:?}"));
                    let outcome = outcome.and_then(|r| match r.status().is_success() {
                        true => r.bytes().map(|_| ()).map_err(|e| format!("{e:?}")),
                        false => Err(format!("{}: {}", r.status(), r.text().unwrap_or_default())),
                    });
                    match outcome {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(reason) => {
                            let mut first =
                                first_failures.lock().unwrap_or_else(|p| p.into_inner());
                            if first.len() < 5 {
                                first.push(reason);
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let (mut kills, mut restarts) = (0u32, 0u32);
    let mut down: Vec<usize> = Vec::new();
    let deadline = Instant::now() + GATEWAY_CHAOS;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.u64(300..1500)));
        let restart = down.len() >= MAX_DOWN || (!down.is_empty() && rng.bool());
        if restart {
            let index = down.swap_remove(rng.usize(..down.len()));
            backends[index].restart();
            restarts += 1;
        } else {
            let up: Vec<usize> = (0..BACKENDS).filter(|i| !down.contains(i)).collect();
            let index = up[rng.usize(..up.len())];
            backends[index].kill();
            down.push(index);
            kills += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let metrics = agent.metrics();
    let sum = |prefix: &str| -> f64 {
        metrics
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    println!(
        "chaos: gateway {}s, {BACKENDS} backends, {kills} kills, {restarts} restarts, \
         {ok} GETs ok, {failed} failed, {} retries, {} ejections",
        GATEWAY_CHAOS.as_secs(),
        sum("wayfinder_gateway_retries_total"),
        sum("wayfinder_gateway_ejections_total"),
    );
    assert!(kills >= 10, "too little chaos: {kills} kills");
    assert!(ok > 1_000, "too little load: {ok} requests");
    assert_eq!(
        failed,
        0,
        "failed GETs during chaos; first: {:?}",
        first_failures.lock().unwrap_or_else(|p| p.into_inner())
    );
}

/// How many kill-and-restart rounds the registration test runs.
const KILL_ROUNDS: usize = 3;
/// Client threads registering services during each round.
const WRITERS: usize = 4;

#[test]
#[ignore = "kills the agent with SIGKILL three times: scripts/test"]
fn no_acknowledged_registration_is_lost_to_kill_9() {
    let data = tempfile::tempdir().expect("data dir");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut recoveries = Vec::new();
    for round in 0..KILL_ROUNDS {
        let agent = Agent::start_on(data.path(), &[]);
        let base = agent.base_url();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (base, stop) = (base.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let client = client();
                    let mut acked = Vec::new();
                    for n in 0..100_000u32 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = format!("r{round}-w{writer}-{n}");
                        let body = json!({"Name": format!("svc-{writer}"), "ID": id, "Port": 8000});
                        let answer = client
                            .put(format!("{base}/v1/agent/service/register"))
                            .body(body.to_string())
                            .send();
                        match answer {
                            Ok(response) if response.status().is_success() => acked.push(id),
                            // Refused or cut off: the agent died under it; not acknowledged.
                            _ => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Let the writers get going, then kill the agent in the middle of their writes.
        std::thread::sleep(Duration::from_millis(1500));
        agent.signal(Signal::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            acknowledged.extend(writer.join().expect("a writer panicked"));
        }
        drop(agent);

        let started = Instant::now();
        let restarted = Agent::start_on(data.path(), &[]);
        restarted.eventually(
            Duration::from_secs(20),
            "the restarted agent to be ready",
            || {
                let status = restarted.get("/ready").status;
                (status == 200).then_some(()).ok_or(status.to_string())
            },
        );
        recoveries.push(started.elapsed());
        let present = restarted.services();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !present.contains_key(id.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged registrations lost, e.g. {:?}",
            lost.len(),
            acknowledged.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
    }
    println!(
        "chaos: kill -9 x{KILL_ROUNDS} under {WRITERS} writers, {} registrations acknowledged, \
         0 lost, restart to ready {:?}",
        acknowledged.len(),
        recoveries
    );
    assert!(
        acknowledged.len() > 100,
        "too little load: {}",
        acknowledged.len()
    );
}
