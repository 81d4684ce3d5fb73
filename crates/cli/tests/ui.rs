//! The web UI at `/ui` (issue 8): served from the binary, and working in a real browser.
//!
//! Plain HTTP first: the page and its two files with their types and caching headers, 304 on
//! revalidation, a 404 for anything else under `/ui/`, nothing loaded from elsewhere, every API
//! path the script reads documented, and the API around it unchanged.
//!
//! Then headless Debian Chromium (`fixtures/ui-chromium/ui.mjs`, driven by the pinned
//! playwright-core): the page shows a registered service, turns it critical without a reload
//! when its TTL check fails, shows check latency and gateway traffic charts, and leaves a
//! screenshot at `target/ui-artifacts/ui.png`.

mod support;

use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;
use support::backend::Backend;
use support::{Agent, http_client, node};

/// How long the browser script may run before it is killed. It bounds every wait itself (20 s
/// per condition, 100 s in all); this is the backstop if node or Chromium hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Debian's Chromium, which the script drives (scripts/test installs it).
const CHROMIUM: &str = "/usr/bin/chromium";
/// At most this many requests go through the gateway while the browser watches the charts.
const MAX_TRAFFIC: usize = 4000;

#[test]
fn the_page_and_its_files_are_served_with_their_types() {
    let agent = Agent::start(&[]);
    for path in ["/ui", "/ui/"] {
        let page = agent.get(path);
        page.expect_status(200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let html = page.text();
        assert!(
            html.contains(r#"<script src="/ui/app.js""#),
            "{path}: {html}"
        );
        assert!(html.contains(r#"href="/ui/style.css""#), "{path}: {html}");
    }
    for (path, content_type, marker) in [
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", ":root"),
    ] {
        let file = agent.get(path);
        file.expect_status(200);
        assert_eq!(file.header("content-type"), Some(content_type), "{path}");
        assert!(file.text().contains(marker), "{path}: {}", file.text());
        assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
    }
}

#[test]
fn the_files_are_revalidated_and_answered_304_when_unchanged() {
    let agent = Agent::start(&[]);
    let first = agent.get("/ui/app.js");
    first.expect_status(200);
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let etag = first.header("etag").expect("an ETag").to_owned();

    let http = http_client();
    let again = http
        .get(format!("{}/ui/app.js", agent.base_url()))
        .header("If-None-Match", &etag)
        .send()
        .expect("GET /ui/app.js");
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(again.bytes().expect("body").len(), 0, "a 304 has no body");

    // Each file has its own version: the page's tag does not validate the script.
    let page = http
        .get(format!("{}/ui", agent.base_url()))
        .header("If-None-Match", &etag)
        .send()
        .expect("GET /ui");
    assert_eq!(page.status().as_u16(), 200);
}

#[test]
fn anything_else_under_ui_is_not_found() {
    let agent = Agent::start(&[]);
    for path in ["/ui/nope.js", "/ui/app.js/x", "/ui/assets/app.js", "/ui//"] {
        let answer = agent.get(path);
        answer.expect_status(404);
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        assert!(answer.text().contains("/ui"), "{path}: {}", answer.text());
    }
}

#[test]
fn the_page_loads_nothing_from_elsewhere_and_the_policy_says_so() {
    let agent = Agent::start(&[]);
    let page = agent.get("/ui");
    let policy = page
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text();
    // Every src= and href= is one of our files or an inline data: URL (the favicon).
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(
                value.starts_with("/ui/") || value.starts_with("data:"),
                "{attribute}{}",
                value.split('"').next().unwrap_or_default()
            );
        }
    }
}

/// Whether `path` is an instance of the OpenAPI path `template` (`{name}` matches a segment).
fn matches_template(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) =
        (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

#[test]
fn every_api_path_the_script_reads_is_a_documented_route() {
    let agent = Agent::start(&[]);
    let script = agent.get("/ui/app.js").text();
    let document = agent.get("/v1/openapi.json").json();
    let paths = document["paths"].as_object().expect("paths");
    let mut read = Vec::new();
    for (at, _) in script.match_indices("'/v1/") {
        let path = script[at + 1..].split('\'').next().unwrap_or_default();
        read.push(path.to_owned());
        assert!(
            paths
                .keys()
                .any(|template| matches_template(template, path)),
            "app.js reads {path}, which /v1/openapi.json does not list"
        );
    }
    for expected in [
        "/v1/watch",
        "/v1/health/state/any",
        "/v1/routes",
        "/v1/agent/metrics",
    ] {
        assert!(read.iter().any(|p| p == expected), "{expected} in {read:?}");
    }
    // The pages are not API operations.
    assert!(
        paths.keys().all(|path| !path.starts_with("/ui")),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_api_around_the_ui_is_unchanged() {
    let agent = Agent::start(&[]);
    let services = agent.get("/v1/catalog/services");
    services.expect_status(200);
    assert!(services.json().is_object());
    // Unknown API paths still get the API's JSON error, not the UI's text one.
    let unknown = agent.get("/v1/ui");
    unknown.expect_error(404);
    let root = agent.get("/uix");
    root.expect_error(404);
    let http = http_client();
    let post = http
        .post(format!("{}/ui", agent.base_url()))
        .send()
        .expect("POST /ui");
    assert_eq!(post.status().as_u16(), 405);
}

/// The gateway address from the agent's banner (`gateway:       http://ADDR`).
fn gateway_addr(agent: &Agent) -> SocketAddr {
    agent
        .stdout()
        .lines()
        .find_map(|line| line.trim().strip_prefix("gateway:"))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no gateway line in the banner:\n{}", agent.stdout()))
}

/// `target/ui-artifacts/`, beside the binary under test (`target/debug/wayfinder`), created.
fn artifacts_dir() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_wayfinder"));
    let target = binary
        .parent()
        .and_then(|profile| profile.parent())
        .expect("the binary lives in target/<profile>/");
    let dir = target.join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Sends GETs through the gateway to `url` until `stop` is set or [`MAX_TRAFFIC`] were sent,
/// so the UI has request rates and latencies to chart.
fn traffic(url: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let http = http_client();
        let mut sent = 0;
        while sent < MAX_TRAFFIC && !stop.load(Ordering::Relaxed) {
            let _ = http.get(&url).send().and_then(|r| r.bytes());
            sent += 1;
            thread::sleep(Duration::from_millis(25));
        }
        sent
    })
}

#[test]
#[ignore = "needs chromium: scripts/test"]
fn chromium_shows_a_service_turn_critical_live_and_keeps_a_screenshot() {
    let dir = node::fixture_dir("ui-chromium");
    node::require_installed(&dir, "playwright-core");
    assert!(
        std::path::Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    );

    let agent = Agent::start(&["--gateway-addr", "127.0.0.1:0"]);
    let gateway = gateway_addr(&agent);
    let web = [Backend::start("web-1"), Backend::start("web-2")];
    for backend in &web {
        agent.register(&json!({
            "Name": "web", "ID": backend.id, "Address": "127.0.0.1", "Port": backend.port(),
            "Tags": ["urlprefix-/web/", "v2"],
            "Check": {"HTTP": format!("http://{}/health", backend.addr), "Interval": "500ms",
                      "Timeout": "1s", "Status": "passing"}
        }));
    }
    agent.register(&json!({
        "Name": "payments", "ID": "payments-1", "Address": "127.0.0.1", "Port": 9100,
        "Tags": ["grpc"],
        "Check": {"CheckID": "payments-ttl", "Name": "payments heartbeat", "TTL": "10m",
                  "Status": "passing"}
    }));
    agent.eventually(
        Duration::from_secs(10),
        "route /web/ with both instances",
        || {
            let routes = agent.get("/v1/routes").json();
            let count = routes["routes"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["prefix"] == "/web/"))
                .and_then(|r| r["instances"].as_array().map(Vec::len));
            match count {
                Some(2) => Ok(()),
                other => Err(format!("{other:?} instances in {routes}")),
            }
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(format!("http://{gateway}/web/ui-test"), Arc::clone(&stop));
    let screenshot = artifacts_dir().join("ui.png");
    let _ = std::fs::remove_file(&screenshot);
    let base = agent.base_url();
    let shot = screenshot.to_string_lossy().into_owned();
    let run = node::run(
        &dir,
        "ui.mjs",
        &[&base, "payments", "payments-ttl", &shot, "web", "/web/"],
        SCRIPT_TIMEOUT,
    );
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("the traffic thread");
    // The step log, for `--nocapture`.
    print!("{}", run.stdout);
    if !run.succeeded() {
        panic!(
            "{}\n--- ui.mjs stdout ---\n{}\n--- ui.mjs stderr ---\n{}\n--- agent stderr ---\n{}",
            run.outcome("ui.mjs", SCRIPT_TIMEOUT),
            run.stdout,
            run.stderr,
            agent.stderr_tail()
        );
    }

    // What the page showed is what the agent holds.
    assert_eq!(
        agent.check_status("payments-ttl").as_deref(),
        Some("critical")
    );
    assert!(sent > 0, "no request went through the gateway");
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("reading the screenshot {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a plausible screenshot ({} bytes)",
        screenshot.display(),
        png.len()
    );
    println!("screenshot: {}", screenshot.display());
}
