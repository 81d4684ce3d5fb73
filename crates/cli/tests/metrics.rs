//! `GET /metrics` against the real binary (issue 8): the catalog, health-check, HTTP API and DNS
//! groups count what a scenario did, and a real Prometheus (Debian's `prometheus`, installed by
//! `scripts/test`) scrapes the agent and answers a query with its value.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Agent, eventually, http_client};

/// How long Prometheus gets to start, scrape (every 1 s) and answer a query.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The DNS address from the agent's banner (`DNS:           ADDR (UDP and TCP)`).
fn dns_addr(agent: &Agent) -> SocketAddr {
    agent
        .stdout()
        .lines()
        .find_map(|line| line.trim().strip_prefix("DNS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no DNS line in the banner:\n{}", agent.stdout()))
}

/// A query for `name` (type A, class IN) in wire format, with `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        bytes.push(u8::try_from(label.len()).expect("short label"));
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    bytes
}

/// Sends a query for `name` over UDP and returns the answer's response code.
fn rcode(addr: SocketAddr, id: u16, name: &str) -> u8 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket.send_to(&query(id, name), addr).expect("send");
    let mut buffer = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buffer).expect("a DNS answer");
    assert!(n >= 4, "short DNS answer");
    buffer[3] & 0x0f
}

/// Every sample of a scrape, keyed `name{labels}` as exposed.
fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples
        .get(key)
        .copied()
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a port to release")
        .port()
}

fn api_instance(id: &str) -> Value {
    json!({
        "Name": "api", "ID": id, "Address": "127.0.0.21", "Port": 8080,
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "300s", "Status": "passing"}
    })
}

#[test]
fn metrics_count_writes_checks_requests_and_dns_queries() {
    let agent = Agent::start(&["--dns-addr", "127.0.0.1:0"]);
    let dns = dns_addr(&agent);
    agent.register(&api_instance("api-1"));
    agent.register(&api_instance("api-2"));
    // Starts passing; the first TCP run against a closed port reports critical.
    agent.register(&json!({
        "Name": "db", "ID": "db-1", "Address": "127.0.0.1", "Port": 5432,
        "Check": {"CheckID": "db-tcp", "TCP": format!("127.0.0.1:{}", closed_port()),
                  "Interval": "200ms", "Status": "passing"}
    }));
    agent.wait_for_status("db-tcp", "critical");

    agent.get("/v1/endpoints/api").expect_status(200);
    agent.get("/v1/endpoints/api").expect_status(200);
    agent.get("/v1/catalog/services").expect_status(200);
    agent.get("/v1/nothing/here").expect_status(404);
    // A blocking query: counted, not timed.
    agent
        .get("/v1/health/service/api?index=1&wait=10ms")
        .expect_status(200);
    assert_eq!(rcode(dns, 1, "api.service.consul"), 0, "NOERROR");
    assert_eq!(rcode(dns, 2, "nothing.service.consul"), 3, "NXDOMAIN");

    let samples = agent.metrics();
    assert_eq!(sample(&samples, "wayfinder_catalog_instances"), 3.0);
    assert_eq!(sample(&samples, "wayfinder_catalog_services"), 2.0);
    assert_eq!(
        sample(&samples, "wayfinder_catalog_index"),
        agent.catalog_index() as f64
    );
    // Three registrations and the check's status change at least.
    assert!(sample(&samples, "wayfinder_catalog_writes_total{result=\"ok\"}") >= 4.0);
    let published = sample(&samples, "wayfinder_catalog_propagation_seconds_count");
    assert!(
        published >= 4.0,
        "every published write is timed: {published}"
    );
    assert!(sample(&samples, "wayfinder_catalog_propagation_seconds_sum") > 0.0);
    assert_eq!(
        sample(
            &samples,
            "wayfinder_catalog_writes_total{result=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "wayfinder_check_status_changes_total{kind=\"tcp\",result=\"critical\"}"
        ),
        1.0
    );
    // Every probe counts as a run, changed status or not: the check keeps failing.
    let runs = |agent: &Agent| {
        agent
            .metrics()
            .get("wayfinder_check_runs_total{kind=\"tcp\",result=\"critical\"}")
            .copied()
            .unwrap_or(0.0)
    };
    assert!(runs(&agent) >= 1.0);
    let before = runs(&agent);
    agent.eventually(Duration::from_secs(10), "another tcp probe", || {
        let now = runs(&agent);
        if now > before {
            Ok(())
        } else {
            Err(format!("{now} runs"))
        }
    });
    assert_eq!(
        sample(
            &samples,
            "wayfinder_api_requests_total{route=\"/v1/endpoints/{service}\",code=\"200\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "wayfinder_api_request_duration_seconds_count{route=\"/v1/endpoints/{service}\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "wayfinder_api_requests_total{route=\"/v1/catalog/services\",code=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "wayfinder_api_requests_total{route=\"unmatched\",code=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "wayfinder_api_requests_total{route=\"/v1/health/service/{name}\",code=\"200\"}"
        ),
        1.0
    );
    assert!(
        !samples.keys().any(
            |key| key.starts_with("wayfinder_api_request_duration_seconds")
                && key.contains("/v1/health/service/{name}")
        ),
        "a blocking query was timed: {samples:#?}"
    );
    // Raw paths never become labels.
    assert!(
        !samples.keys().any(|key| key.contains("/v1/nothing")),
        "{samples:#?}"
    );
    assert_eq!(
        sample(&samples, "wayfinder_dns_queries_total{rcode=\"NOERROR\"}"),
        1.0
    );
    assert_eq!(
        sample(&samples, "wayfinder_dns_queries_total{rcode=\"NXDOMAIN\"}"),
        1.0
    );
    assert_eq!(
        sample(&samples, "wayfinder_dns_query_duration_seconds_count"),
        2.0
    );
}

/// A Prometheus process, killed when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs prometheus: scripts/test"]
fn a_real_prometheus_scrapes_the_agent() {
    let agent = Agent::start(&[]);
    agent.register(&api_instance("api-1"));
    let target = agent
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: wayfinder\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .expect("writing prometheus.yml");
    // Its own port and storage: a system Prometheus the package may have started is not ours.
    let port = closed_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("starting prometheus (apt-get install prometheus)");
    let _prometheus = Prometheus(child);
    let http = http_client();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query=wayfinder_catalog_instances");
    eventually(
        PROMETHEUS_TIMEOUT,
        "Prometheus to report wayfinder_catalog_instances",
        || {
            let body: Value = http
                .get(&url)
                .send()
                .and_then(|response| response.json())
                .map_err(|error| format!("{error}; log: {}", prometheus_log(&dir)))?;
            let value = body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned);
            match value.as_deref() {
                Some("1") => Ok(()),
                _ => Err(format!("{body}")),
            }
        },
    );
}

fn prometheus_log(dir: &tempfile::TempDir) -> String {
    let text = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    text.get(start..).unwrap_or_default().to_owned()
}
