//! Each probe against a real peer on 127.0.0.1: HTTP (axum), TCP, exec (real processes) and
//! gRPC (a tonic-health server). Real time, short intervals; every wait is bounded.

mod support;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::time::Instant;
use wayfinder_catalog::{CheckKind, Status};
use wayfinder_health::Report;

async fn status_server() -> std::net::SocketAddr {
    serve(
        Router::new()
            .route("/ok", get(|| async { "all good" }))
            .route(
                "/busy",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
            )
            .route(
                "/fail",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/big", get(|| async { "x".repeat(100_000) }))
            .route(
                "/redirect-loop",
                get(|| async { (StatusCode::FOUND, [("location", "/redirect-loop")]) }),
            )
            .route(
                "/echo",
                any(
                    |method: Method, headers: HeaderMap, body: String| async move {
                        let custom = headers
                            .get_all("x-custom")
                            .iter()
                            .map(|v| v.to_str().unwrap_or("?"))
                            .collect::<Vec<_>>()
                            .join(",");
                        let agent = headers
                            .get("user-agent")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        format!("{method} custom={custom} agent={agent} body={body}")
                    },
                ),
            ),
    )
    .await
}

#[tokio::test]
async fn http_status_codes_map_to_statuses() {
    let addr = status_server().await;
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![
            check("ok", http(&format!("http://{addr}/ok"))),
            check("busy", http(&format!("http://{addr}/busy"))),
            check("fail", http(&format!("http://{addr}/fail"))),
        ],
    );

    let mut seen = HashMap::new();
    while seen.len() < 2 {
        let report = h.next_written(PATIENCE).await;
        let (check, status, output) = status_of(&report);
        seen.insert(check.to_owned(), (status, output.to_owned()));
    }
    assert_eq!(
        seen["ok"],
        (
            Status::Passing,
            format!("HTTP GET http://{addr}/ok: 200 OK Output: all good")
        )
    );
    assert_eq!(
        seen["busy"],
        (
            Status::Warning,
            format!("HTTP GET http://{addr}/busy: 429 Too Many Requests Output: slow down")
        )
    );
    // The failing check starts critical and stays so: nothing to write, but its runs show.
    let observation = h.observe("fail", |_| true).await;
    assert_eq!(observation.status, Status::Critical);
    assert_eq!(
        observation.output,
        format!("HTTP GET http://{addr}/fail: 500 Internal Server Error Output: broken")
    );
    assert_eq!(h.status("fail"), Status::Critical);
    assert_eq!(h.status("ok"), Status::Passing);
    assert_eq!(h.status("busy"), Status::Warning);
}

#[tokio::test]
async fn http_sends_method_headers_body_and_user_agent() {
    let addr = status_server().await;
    let mut h = Harness::new();
    let mut definition = check("echo", http(&format!("http://{addr}/echo")));
    if let CheckKind::Http {
        method,
        headers,
        body,
        ..
    } = &mut definition.kind
    {
        *method = "POST".to_owned();
        *headers = BTreeMap::from([("X-Custom".to_owned(), vec!["a".to_owned(), "b".to_owned()])]);
        *body = "ping".to_owned();
    }
    h.register("web-1", vec![definition]);
    let report = h.next_written(PATIENCE).await;
    let (_, status, output) = status_of(&report);
    assert_eq!(status, Status::Passing);
    assert!(
        output.ends_with("Output: POST custom=a,b agent=Wayfinder Health Check body=ping"),
        "{output}"
    );
}

#[tokio::test]
async fn http_output_is_capped_at_4_kib() {
    let addr = status_server().await;
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![check("big", http(&format!("http://{addr}/big")))],
    );
    let report = h.next_written(PATIENCE).await;
    let (_, status, output) = status_of(&report);
    assert_eq!(status, Status::Passing);
    assert_eq!(output.len(), 4096);
    assert!(output.starts_with(&format!("HTTP GET http://{addr}/big: 200 OK Output: xxx")));
}

#[tokio::test]
async fn http_timeouts_refusals_and_redirect_loops_are_critical() {
    let addr = status_server().await;
    let closed = closed_port().await;
    let mut h = Harness::new();
    let mut slow = check("slow", http(&format!("http://{addr}/slow")));
    slow.policy.timeout = Duration::from_millis(200);
    h.register(
        "web-1",
        vec![
            slow,
            check("refused", http(&format!("http://{closed}/"))),
            check("loop", http(&format!("http://{addr}/redirect-loop"))),
        ],
    );
    let slow = h.observe("slow", |_| true).await;
    assert_eq!(slow.status, Status::Critical);
    assert_eq!(
        slow.output,
        format!("HTTP GET http://{addr}/slow: timed out after 200ms")
    );
    assert!(slow.latency >= Duration::from_millis(200));

    let refused = h.observe("refused", |_| true).await;
    assert_eq!(refused.status, Status::Critical);
    assert!(
        refused
            .output
            .starts_with(&format!("HTTP GET http://{closed}/: ")),
        "{}",
        refused.output
    );
    assert!(
        refused.output.to_lowercase().contains("connection refused"),
        "{}",
        refused.output
    );

    let looped = h.observe("loop", |_| true).await;
    assert_eq!(looped.status, Status::Critical);
    assert!(looped.output.contains("redirect"), "{}", looped.output);
    h.no_report(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn https_with_skip_verify_reaches_a_plain_http_server_as_a_tls_error() {
    // No TLS server here: what matters is that the HTTPS client builds on ring, and that the
    // failure reads as a TLS/connection error rather than a panic or a hang.
    let addr = status_server().await;
    let mut h = Harness::new();
    let mut definition = check("tls", http(&format!("https://{addr}/ok")));
    if let CheckKind::Http {
        tls_skip_verify, ..
    } = &mut definition.kind
    {
        *tls_skip_verify = true;
    }
    h.register("web-1", vec![definition]);
    let observation = h.observe("tls", |_| true).await;
    assert_eq!(observation.status, Status::Critical);
    assert!(
        observation
            .output
            .starts_with(&format!("HTTP GET https://{addr}/ok: ")),
        "{}",
        observation.output
    );
}

#[tokio::test]
async fn thresholds_hold_the_status_until_enough_consecutive_results() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let addr = serve(Router::new().route(
        "/",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                // Healthy for the first 3 requests, then failing.
                if n <= 3 {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    ))
    .await;
    let mut h = Harness::new();
    let mut definition = check("flaky", http(&format!("http://{addr}/")));
    definition.policy.interval = Duration::from_millis(50);
    definition.policy.success_before_passing = 2;
    definition.policy.failures_before_warning = 2;
    definition.policy.failures_before_critical = 4;
    h.register("web-1", vec![definition]);

    let report = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Passing);
    assert!(
        hits.load(Ordering::SeqCst) >= 2,
        "passing needs 2 successes"
    );

    let report = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Warning);
    assert!(status_of(&report).2.contains("503"), "{report:?}");
    assert!(hits.load(Ordering::SeqCst) >= 5, "warning needs 2 failures");

    let report = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Critical);
    assert!(
        hits.load(Ordering::SeqCst) >= 7,
        "critical needs 4 failures"
    );
}

#[tokio::test]
async fn tcp_connects_pass_and_refusals_fail() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let open = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let closed = closed_port().await;
    let mut h = Harness::new();
    let mut refused = check("closed", tcp(closed));
    refused.initial_status = Some(Status::Passing);
    h.register("web-1", vec![check("open", tcp(open)), refused]);

    let mut seen = HashMap::new();
    while seen.len() < 2 {
        let report = h.next_written(PATIENCE).await;
        let (check, status, output) = status_of(&report);
        seen.insert(check.to_owned(), (status, output.to_owned()));
    }
    assert_eq!(
        seen["open"],
        (Status::Passing, format!("TCP connect {open}: Success"))
    );
    let (status, output) = &seen["closed"];
    assert_eq!(*status, Status::Critical);
    assert!(
        output.starts_with(&format!("TCP connect {closed}: ")),
        "{output}"
    );
    assert!(output.to_lowercase().contains("refused"), "{output}");
}

#[tokio::test]
async fn exec_exit_codes_map_to_statuses_with_combined_output() {
    let mut h = Harness::new();
    let mut fails = check("exit2", shell("echo broken; exit 2"));
    fails.initial_status = Some(Status::Passing);
    h.register(
        "web-1",
        vec![
            check("exit0", shell("echo out; echo err >&2; exit 0")),
            check("exit1", shell("echo meh; exit 1")),
            fails,
        ],
    );
    let mut seen = HashMap::new();
    while seen.len() < 3 {
        let report = h.next_written(PATIENCE).await;
        let (check, status, output) = status_of(&report);
        seen.insert(check.to_owned(), (status, output.to_owned()));
    }
    assert_eq!(seen["exit0"], (Status::Passing, "out\nerr\n".to_owned()));
    assert_eq!(seen["exit1"], (Status::Warning, "meh\n".to_owned()));
    assert_eq!(seen["exit2"], (Status::Critical, "broken\n".to_owned()));
}

#[tokio::test]
async fn exec_timeouts_kill_the_process_group() {
    let dir = std::env::temp_dir().join(format!("wayfinder-health-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let marker = dir.join("survived");
    let _ = std::fs::remove_file(&marker);
    let mut h = Harness::new();
    // The grandchild (the subshell) would write the marker after 1 s if it outlived the kill.
    let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
    let mut definition = check("sleepy", shell(&script));
    definition.initial_status = Some(Status::Passing);
    definition.policy.timeout = Duration::from_millis(300);
    definition.policy.interval = Duration::from_secs(60);
    h.register("web-1", vec![definition]);

    let started = Instant::now();
    let report = h.next_written(PATIENCE).await;
    assert_eq!(
        status_of(&report),
        (
            "sleepy",
            Status::Critical,
            "Timed out (300ms) running check"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the check's children were killed with it");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn exec_of_a_missing_program_is_critical_with_the_reason() {
    let mut h = Harness::new();
    let mut definition = check(
        "missing",
        CheckKind::Exec {
            args: vec!["/nonexistent/wayfinder-check".to_owned()],
        },
    );
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition]);
    let report = h.next_written(PATIENCE).await;
    let (_, status, output) = status_of(&report);
    assert_eq!(status, Status::Critical);
    assert!(
        output.starts_with("Failed to start \"/nonexistent/wayfinder-check\""),
        "{output}"
    );
}

#[tokio::test]
async fn exec_concurrency_is_limited() {
    let mut h = Harness::with_config(wayfinder_health::SchedulerConfig {
        max_concurrent_exec: 1,
        ..Default::default()
    });
    // Two checks that each take 300 ms: with one slot, their runs cannot overlap.
    let dir = std::env::temp_dir().join(format!("wayfinder-health-slots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lock = dir.join("running");
    let _ = std::fs::remove_file(&lock);
    let script = format!(
        "if [ -e {l} ]; then echo overlap; exit 2; fi; touch {l}; sleep 0.3; rm {l}; exit 0",
        l = lock.display()
    );
    let mut a = check("a", shell(&script));
    let mut b = check("b", shell(&script));
    a.policy.interval = Duration::from_millis(50);
    b.policy.interval = Duration::from_millis(50);
    h.register("web-1", vec![a, b]);
    let mut passing = 0;
    while passing < 2 {
        let report = h.next_written(PATIENCE).await;
        let (_, status, output) = status_of(&report);
        assert_eq!(status, Status::Passing, "{output}");
        passing += 1;
    }
    // A few more rounds of runs: none overlaps.
    h.no_report(Duration::from_millis(1200)).await;
    for check in ["a", "b"] {
        let observation = h.scheduler.observation(check).expect("ran");
        assert_eq!(
            observation.status,
            Status::Passing,
            "{}",
            observation.output
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn grpc_serving_passes_and_anything_else_fails() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("up", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("down", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("grpc server");
    });

    let mut h = Harness::new();
    let passing = |id: &str, target: String| {
        let mut definition = check(id, grpc(target, false));
        definition.initial_status = Some(Status::Passing);
        definition
    };
    h.register(
        "web-1",
        vec![
            check("whole", grpc(addr.to_string(), false)),
            check("up", grpc(format!("{addr}/up"), false)),
            passing("down", format!("{addr}/down")),
            passing("unknown", format!("{addr}/nope")),
        ],
    );
    // The TLS check talks TLS to a plaintext server.
    let mut tls = check("tls", grpc(format!("{addr}/up"), true));
    tls.initial_status = Some(Status::Passing);
    h.apply(wayfinder_catalog::Command::RegisterCheck(Box::new({
        tls.service_id = Some(instance_id("web-1"));
        tls
    })));

    let mut seen = HashMap::new();
    while seen.len() < 5 {
        let report = h.next_written(PATIENCE).await;
        let (check, status, output) = status_of(&report);
        seen.insert(check.to_owned(), (status, output.to_owned()));
    }
    assert_eq!(
        seen["whole"],
        (Status::Passing, format!("gRPC check {addr}: success"))
    );
    assert_eq!(
        seen["up"],
        (Status::Passing, format!("gRPC check {addr}/up: success"))
    );
    assert_eq!(
        seen["down"],
        (
            Status::Critical,
            format!("gRPC {addr}/down serving status: NOT_SERVING")
        )
    );
    let (status, output) = &seen["unknown"];
    assert_eq!(*status, Status::Critical);
    assert!(
        output.starts_with(&format!("gRPC {addr}/nope: NotFound")),
        "{output}"
    );
    let (status, output) = &seen["tls"];
    assert_eq!(*status, Status::Critical);
    assert!(output.starts_with(&format!("gRPC {addr}/up: ")), "{output}");

    // The server goes away: the passing checks turn critical.
    reporter
        .set_service_status("up", tonic_health::ServingStatus::NotServing)
        .await;
    let report = h.next_written(PATIENCE).await;
    assert_eq!(
        status_of(&report),
        (
            "up",
            Status::Critical,
            format!("gRPC {addr}/up serving status: NOT_SERVING").as_str()
        )
    );
}

#[tokio::test]
async fn a_report_names_the_check_it_is_about() {
    let addr = status_server().await;
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![check("ok", http(&format!("http://{addr}/ok")))],
    );
    let report = h.next_report(PATIENCE).await;
    assert!(matches!(report, Report::Status { ref check, .. } if check.as_str() == "ok"));
}
