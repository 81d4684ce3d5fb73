//! The efficiency target: 10,000 HTTP checks at a 1 s interval against local servers, using at
//! most one core. Ignored by default (it wants a release build and ~20 s):
//!
//! ```sh
//! cargo test --release -p wayfinder-health --test load -- --ignored --nocapture
//! ```
//!
//! `WAYFINDER_LOAD_CHECKS` and `WAYFINDER_LOAD_SECONDS` change the size and the measured window.
//! The servers run on their own runtime thread, and only the CPU time of the scheduler's
//! runtime threads (named `load-health`) is counted, read from `/proc/self/task/*/stat`.

mod support;

use axum::Router;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::{check, http};
use wayfinder_catalog::{Catalog, CheckId, Command, Registration, Status};
use wayfinder_health::{Report, Scheduler, SchedulerConfig};

const HEALTH_THREAD: &str = "load-health";
const SERVER_PORTS: usize = 50;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds used so far by this process's threads named `name` (Linux, 100 ticks a second).
fn thread_cpu_seconds(name: &str) -> f64 {
    let mut ticks = 0u64;
    let tasks = std::fs::read_dir("/proc/self/task").expect("procfs");
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        ticks += utime + stime;
    }
    ticks as f64 / 100.0
}

#[test]
#[ignore = "load test: run with --release -- --ignored --nocapture"]
fn ten_thousand_http_checks_at_one_second_fit_in_one_core() {
    let checks = env_or("WAYFINDER_LOAD_CHECKS", 10_000) as usize;
    let window = Duration::from_secs(env_or("WAYFINDER_LOAD_SECONDS", 10));

    // The servers: SERVER_PORTS listeners on one runtime of their own.
    let served = Arc::new(AtomicU64::new(0));
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let addrs: Vec<SocketAddr> = server_rt.block_on(async {
        let mut addrs = Vec::new();
        for _ in 0..SERVER_PORTS {
            let served = Arc::clone(&served);
            let router = Router::new().route(
                "/health",
                get(move || {
                    served.fetch_add(1, Ordering::Relaxed);
                    async { "ok" }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addrs.push(listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        addrs
    });

    let health_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(HEALTH_THREAD)
        .enable_all()
        .build()
        .expect("health runtime");
    health_rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Report>(4096);
        let scheduler = Scheduler::new(tx, SchedulerConfig::default());
        let mut catalog = Catalog::new(0);
        let mut index = 0;
        let mut ids: Vec<CheckId> = Vec::with_capacity(checks);
        for (n, chunk) in (0..checks).collect::<Vec<_>>().chunks(32).enumerate() {
            let definitions = chunk
                .iter()
                .map(|i| {
                    let mut definition = check(
                        &format!("load-{i}"),
                        http(&format!("http://{}/health", addrs[i % addrs.len()])),
                    );
                    definition.policy.interval = Duration::from_secs(1);
                    definition
                })
                .collect();
            index += 1;
            let outcome = catalog
                .apply(
                    index,
                    &Command::Register(Box::new(Registration {
                        instance: support::instance(&format!("load-{n}")),
                        checks: definitions,
                        replace_existing_checks: false,
                    })),
                )
                .expect("valid registration");
            for touched in outcome.touched {
                if let wayfinder_catalog::Touched::Check(id) = touched {
                    ids.push(id);
                }
            }
        }
        scheduler.update(&catalog, &ids);

        // Warm-up: every check passes once (its first run is within a second).
        let mut passing = 0;
        let warm_up = tokio::time::timeout(Duration::from_secs(30), async {
            while passing < checks {
                match rx.recv().await {
                    Some(Report::Status {
                        status: Status::Passing,
                        ..
                    }) => passing += 1,
                    Some(_) => {}
                    None => break,
                }
            }
        })
        .await;
        assert!(warm_up.is_ok(), "only {passing} of {checks} checks passed");
        // Let the second (phase-spreading) runs happen before measuring the steady state.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let cpu_before = thread_cpu_seconds(HEALTH_THREAD);
        let served_before = served.load(Ordering::Relaxed);
        tokio::time::sleep(window).await;
        let cpu = thread_cpu_seconds(HEALTH_THREAD) - cpu_before;
        let requests = served.load(Ordering::Relaxed) - served_before;

        let seconds = window.as_secs_f64();
        let rate = requests as f64 / seconds;
        let cores = cpu / seconds;
        println!(
            "{checks} HTTP checks at 1 s: {rate:.0} requests/s, scheduler CPU {cores:.2} cores \
             ({:.1} µs per check run)",
            cpu / requests as f64 * 1e6
        );
        scheduler.shutdown().await;
        assert!(
            rate >= checks as f64 * 0.9,
            "{rate:.0} runs/s for {checks} checks at 1 s"
        );
        assert!(cores <= 1.0, "scheduler used {cores:.2} cores");
    });
}
