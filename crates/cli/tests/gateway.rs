//! The gateway against the real binary and real backend processes: routes from `urlprefix-`
//! tags (no other configuration), longest prefix and host routes, rewriting and forwarding
//! headers, per-request balancing on one keep-alive connection, retries that hide a killed
//! backend from GET clients, a restarted backend taking traffic again, the gateway's own errors,
//! ejection, and WebSocket pass-through.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::backend::Backend;
use support::{Agent, eventually, http_client};
use tokio::time::Instant;

fn start_agent(extra: &[&str]) -> (Agent, String) {
    let mut args = vec!["--gateway-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    let gateway = format!("http://{}", agent.gateway_addr());
    (agent, gateway)
}

/// Registers `backend` as an instance of `service` with `tags` and an HTTP check on it.
fn register(agent: &Agent, service: &str, backend: &Backend, tags: &[&str]) {
    agent.register(&json!({
        "Name": service, "ID": backend.id, "Address": "127.0.0.1", "Port": backend.port(),
        "Tags": tags,
        "Check": {"HTTP": format!("http://{}/health", backend.addr), "Interval": "200ms",
                  "Timeout": "1s", "Status": "passing"}
    }));
}

/// The instances `/v1/routes` lists for the route with `prefix`, once it has `count`.
fn wait_for_route(agent: &Agent, prefix: &str, count: usize) -> Value {
    agent.eventually(
        Duration::from_secs(10),
        &format!("route {prefix} with {count} instances"),
        || {
            let routes = agent.get("/v1/routes").json();
            let route = routes["routes"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["prefix"] == prefix))
                .cloned();
            match route {
                Some(route) if route["instances"].as_array().map(Vec::len) == Some(count) => {
                    Ok(route)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
}

/// A GET through the gateway: status, the instance's JSON (or the gateway's), headers.
fn get(client: &reqwest::blocking::Client, url: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().unwrap_or(Value::Null);
    (status, body, headers)
}

#[test]
fn a_urlprefix_tag_is_a_route_with_no_other_configuration() {
    let (agent, gateway) = start_agent(&[]);
    let oops = Backend::start("oops-1");
    let api = Backend::start("api-1");
    let shop = Backend::start("shop-1");
    register(
        &agent,
        "oops",
        &oops,
        &["urlprefix-/oops strip=/oops", "v1"],
    );
    register(&agent, "api", &api, &["urlprefix-/oops/api"]);
    register(&agent, "shop", &shop, &["urlprefix-shop.example/"]);
    let route = wait_for_route(&agent, "/oops", 1);
    assert_eq!(route["service"], "oops");
    assert_eq!(route["strip"], "/oops");
    assert_eq!(route["strategy"], "round_robin");
    wait_for_route(&agent, "/oops/api", 1);
    wait_for_route(&agent, "/", 1);

    let client = http_client();
    let (status, body, _) = get(&client, &format!("{gateway}/oops/hello?x=1"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "oops-1");
    assert_eq!(body["path"], "/hello?x=1", "strip=/oops removed the prefix");
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert!(
        body["headers"]["forwarded"]
            .as_str()
            .is_some_and(|f| f.starts_with("for=127.0.0.1;proto=http")),
        "{body}"
    );

    let (_, body, _) = get(&client, &format!("{gateway}/oops/api/users"));
    assert_eq!(body["id"], "api-1", "the longest prefix wins");
    assert_eq!(body["path"], "/oops/api/users", "no strip on that route");

    let response = client
        .get(format!("{gateway}/oops/api"))
        .header("Host", "shop.example")
        .send()
        .expect("host route");
    let body: Value = response.json().expect("json");
    assert_eq!(
        body["id"], "shop-1",
        "a host route beats a longer path-only one"
    );
    assert_eq!(body["headers"]["host"], "shop.example");

    let (status, body, headers) = get(&client, &format!("{gateway}/nowhere"));
    assert_eq!(status, 404);
    assert_eq!(body["kind"], "no-route");
    assert_eq!(
        headers
            .get("x-wayfinder-gateway")
            .and_then(|v| v.to_str().ok()),
        Some("no-route")
    );
}

#[test]
fn every_request_is_balanced_even_on_one_keep_alive_connection() {
    let (agent, gateway) = start_agent(&[]);
    let backends: Vec<Backend> = (1..=3)
        .map(|i| Backend::start(&format!("web-{i}")))
        .collect();
    for backend in &backends {
        register(&agent, "web", backend, &["urlprefix-/web"]);
    }
    wait_for_route(&agent, "/web", 3);
    // One client connection, reused for every request.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        let (status, body, _) = get(&client, &format!("{gateway}/web/x"));
        assert_eq!(status, 200);
        *counts
            .entry(body["id"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "round robin per request, not per connection: {counts:?}"
    );
}

#[test]
fn a_killed_backend_loses_no_get_and_a_restarted_one_gets_traffic_again() {
    let (agent, gateway) = start_agent(&[]);
    let mut backends: Vec<Backend> = (1..=3)
        .map(|i| Backend::start(&format!("app-{i}")))
        .collect();
    for backend in &backends {
        register(&agent, "app", backend, &["urlprefix-/app"]);
    }
    wait_for_route(&agent, "/app", 3);

    // Four clients, each at most 400 requests or 20 s; app-2 is killed once the load runs.
    let url = format!("{gateway}/app/work");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (failures, served) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let client = http_client();
                    let mut failures = Vec::new();
                    let mut served = 0usize;
                    for _ in 0..400 {
                        if Instant::now() > deadline {
                            break;
                        }
                        match client.get(&url).send() {
                            Ok(r) if r.status().as_u16() == 200 => served += 1,
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    (failures, served)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        backends[1].kill();
        workers.into_iter().map(|w| w.join().expect("worker")).fold(
            (Vec::new(), 0),
            |(mut f, s), (wf, ws)| {
                f.extend(wf);
                (f, s + ws)
            },
        )
    });
    assert!(served > 100, "the load ran: {served} requests served");
    assert!(
        failures.is_empty(),
        "GET requests failed while a backend died: {failures:?}"
    );

    // The check sees it, the gateway drops it; once restarted it passes and gets traffic again.
    wait_for_route(&agent, "/app", 2);
    backends[1].restart();
    wait_for_route(&agent, "/app", 3);
    let client = http_client();
    eventually(
        Duration::from_secs(10),
        "app-2 to answer through the gateway",
        || {
            let (status, body, _) = get(&client, &url);
            match (status, body["id"].as_str()) {
                (200, Some("app-2")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
}

#[test]
fn errors_and_retries_are_the_gateways_own() {
    let (agent, gateway) = start_agent(&[]);
    let good = Backend::start("svc-good");
    let broken = Backend::failing("svc-broken", 503);
    // The broken one's health check answers 503 too; give it a check that passes (a TTL check
    // set to passing) so the gateway keeps sending to it and has to cope.
    agent.register(&json!({
        "Name": "svc", "ID": good.id, "Address": "127.0.0.1", "Port": good.port(),
        "Tags": ["urlprefix-/svc"]
    }));
    agent.register(&json!({
        "Name": "svc", "ID": broken.id, "Address": "127.0.0.1", "Port": broken.port(),
        "Tags": ["urlprefix-/svc"]
    }));
    wait_for_route(&agent, "/svc", 2);
    let client = http_client();
    for _ in 0..20 {
        let (status, body, _) = get(&client, &format!("{gateway}/svc/x"));
        assert_eq!(status, 200, "a GET is retried past the 503: {body}");
        assert_eq!(body["id"], "svc-good");
    }
    // Five consecutive failures eject the broken instance.
    let route = wait_for_route(&agent, "/svc", 2);
    let ejected: Vec<_> = route["instances"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter(|i| i["ejected"] == true)
                .map(|i| i["id"].clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ejected, vec![json!("svc-broken")], "{route}");

    // The metrics say the same: every GET answered by svc-good, svc-broken's 503s retried
    // until it was ejected once.
    let metrics = agent.metrics();
    let value = |key: &str| metrics.get(key).copied().unwrap_or(0.0);
    let attempts = |id: &str, class: &str| {
        value(&format!(
            "wayfinder_gateway_requests_total{{route=\"/svc\",instance=\"{id}\",class=\"{class}\"}}"
        ))
    };
    assert_eq!(attempts("svc-good", "2xx"), 20.0, "{metrics:#?}");
    let failed = attempts("svc-broken", "5xx");
    assert!(failed >= 5.0, "five failures eject: {metrics:#?}");
    assert_eq!(
        value("wayfinder_gateway_retries_total{route=\"/svc\"}"),
        failed,
        "each 503 was retried on svc-good"
    );
    assert_eq!(
        value("wayfinder_gateway_ejections_total{route=\"/svc\",instance=\"svc-broken\"}"),
        1.0
    );
    assert_eq!(
        value(
            "wayfinder_gateway_request_duration_seconds_count{route=\"/svc\",instance=\"svc-good\"}"
        ),
        20.0
    );
    // Every registration above reached the gateway through a timed update.
    assert!(value("wayfinder_gateway_table_update_seconds_count") >= 2.0);
    let json = agent.get("/v1/agent/metrics").json();
    let sample = json["Samples"].as_array().and_then(|samples| {
        samples.iter().find(|s| {
            s["Name"] == "wayfinder_gateway_request_duration_seconds"
                && s["Labels"]["instance"] == "svc-good"
        })
    });
    assert_eq!(
        sample.map(|s| s["Count"].clone()),
        Some(json!(20)),
        "{json}"
    );

    // A POST is not retried: it reaches whichever instance is picked, once. With the broken
    // one ejected, it goes to the good one.
    let response = client
        .post(format!("{gateway}/svc/x"))
        .body("payload")
        .send()
        .expect("post");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().expect("json");
    assert_eq!(body["body"], "payload", "the body is forwarded");

    // No healthy instance: 503 from the gateway, naming the route and service.
    agent.deregister("svc-good");
    agent.deregister("svc-broken");
    agent.register(&json!({
        "Name": "svc", "ID": "svc-down", "Port": 1, "Tags": ["urlprefix-/svc"],
        "Check": {"TTL": "10m"}
    }));
    wait_for_route(&agent, "/svc", 0);
    let (status, body, headers) = get(&client, &format!("{gateway}/svc/x"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "no-healthy-instance");
    assert_eq!(body["route"], "/svc");
    assert_eq!(body["service"], "svc");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        agent
            .metrics()
            .get("wayfinder_gateway_unavailable_total{route=\"/svc\"}"),
        Some(&1.0)
    );
    let json = agent.get("/v1/agent/metrics").json();
    assert!(
        !json["Samples"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["Labels"]["instance"] == "svc-good")),
        "a deregistered instance's series are gone: {json}"
    );

    // Every instance refuses connections: 502 after the retries.
    agent.deregister("svc-down");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    agent.register(&json!({
        "Name": "svc", "ID": "svc-gone", "Address": "127.0.0.1", "Port": port,
        "Tags": ["urlprefix-/svc"]
    }));
    wait_for_route(&agent, "/svc", 1);
    let (status, body, _) = get(&client, &format!("{gateway}/svc/x"));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["kind"], "upstream-failed");

    // proto=https is never downgraded to plain HTTP: an instance that speaks only plain HTTP
    // fails the TLS handshake, and the route answers 502 (tls.rs has the working case).
    let plain = Backend::start("tls-1");
    register(&agent, "tls", &plain, &["urlprefix-/tls proto=https"]);
    wait_for_route(&agent, "/tls", 1);
    let (status, body, _) = get(&client, &format!("{gateway}/tls/x"));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["kind"], "upstream-failed", "{body}");
}

#[test]
fn websocket_passes_through_the_gateway() {
    let (agent, gateway) = start_agent(&[]);
    let backend = Backend::start("ws-1");
    register(&agent, "chat", &backend, &["urlprefix-/chat"]);
    wait_for_route(&agent, "/chat", 1);
    let url = format!("{}/chat/socket", gateway.replace("http://", "ws://"));
    let (mut socket, response) = tungstenite::connect(&url).expect("websocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    for text in ["hello", "again"] {
        socket.send(tungstenite::Message::text(text)).expect("send");
        let reply = socket.read().expect("read");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("ws-1: {text}")
        );
    }
    socket.close(None).expect("close");
}

#[test]
fn routes_are_off_without_a_gateway() {
    let agent = Agent::start(&[]);
    let body = agent.get("/v1/routes").expect_error(404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--gateway-addr"))
    );
}

#[test]
fn a_config_route_splits_one_percent_to_the_canary() {
    let dir = support::temp_dir("gateway-routes");
    std::fs::write(
        dir.path().join("routes.hcl"),
        r#"
route {
  prefix  = "/shop"
  service = "shop"
  strip   = true
  split {
    tag    = "canary"
    weight = 0.01
  }
}
"#,
    )
    .expect("writing routes.hcl");
    let (agent, gateway) = start_agent(&["--config-dir", support::path_str(dir.path())]);
    let stable = support::HttpBackend::start();
    let canary = support::HttpBackend::start();
    for (id, backend, tags) in [
        ("shop-1", &stable, vec!["v1"]),
        ("shop-canary", &canary, vec!["canary"]),
    ] {
        let url = backend.url();
        let port = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .map(|addr| addr.port());
        agent.register(&json!({
            "Name": "shop", "ID": id, "Address": "127.0.0.1", "Port": port, "Tags": tags
        }));
    }
    let route = wait_for_route(&agent, "/shop", 2);
    assert_eq!(route["split"]["tag"], "canary");
    assert!(
        route["source"]
            .as_str()
            .is_some_and(|s| s.contains("routes.hcl")),
        "{route}"
    );

    // 50,000 requests from four clients, each bounded by count and a deadline.
    const TOTAL: usize = 50_000;
    let deadline = Instant::now() + Duration::from_secs(120);
    let url = format!("{gateway}/shop/item");
    let failed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let client = http_client();
                    let mut failed = 0;
                    for _ in 0..TOTAL / 4 {
                        if Instant::now() > deadline {
                            return failed + 1;
                        }
                        match client.get(&url).send() {
                            Ok(r) if r.status().as_u16() == 200 => {}
                            _ => failed += 1,
                        }
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    assert_eq!(failed, 0, "every request answered 200 within the deadline");
    let (to_canary, to_stable) = (canary.hits(), stable.hits());
    assert_eq!(to_canary + to_stable, TOTAL);
    let share = to_canary as f64 / TOTAL as f64 * 100.0;
    assert!(
        (share - 1.0).abs() <= 0.3,
        "canary got {share:.3}% of {TOTAL} requests ({to_canary}); the split says 1% ± 0.3 pp"
    );
}

#[test]
fn http2_clients_are_served_and_balanced_per_request() {
    let (agent, gateway) = start_agent(&[]);
    let backends: Vec<Backend> = (1..=2)
        .map(|i| Backend::start(&format!("h2-{i}")))
        .collect();
    for backend in &backends {
        register(&agent, "h2", backend, &["urlprefix-/h2"]);
    }
    wait_for_route(&agent, "/h2", 2);
    // h2c with prior knowledge: one HTTP/2 connection, many streams.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        let response = client
            .get(format!("{gateway}/h2/x"))
            .send()
            .expect("HTTP/2 request through the gateway");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().expect("json");
        assert_eq!(body["path"], "/h2/x");
        *seen
            .entry(body["id"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        vec![5, 5],
        "streams of one connection are balanced one by one: {seen:?}"
    );
}

#[test]
fn gateway_settings_that_cannot_work_stop_the_agent() {
    let (status, _, stderr) = Agent::start_expecting_failure(&[
        "--gateway-addr",
        "127.0.0.1:0",
        "--gateway-max-ejected-percent",
        "150",
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("--gateway-max-ejected-percent") && stderr.contains("150"),
        "{stderr}"
    );
}
