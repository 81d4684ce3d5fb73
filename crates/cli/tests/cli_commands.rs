//! The operator commands (`wayfinder services`, `endpoints`, `register`, `deregister`, `check`,
//! `members`, `routes`) run as the real binary against a real agent on loopback: what an
//! operator reads, what a script parses, and the exit codes and messages when things go wrong.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::Agent;

/// How long a `--watch` line may take to show up after the change that causes it.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `wayfinder args…` against the agent at `addr` and returns what it printed.
fn wayfinder(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wayfinder"))
        .args(args)
        .env("WAYFINDER_HTTP_ADDR", addr)
        .env_remove("WAYFINDER_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running the wayfinder binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed, and returns its stdout.
#[track_caller]
fn ok(addr: &str, args: &[&str]) -> String {
    let output = wayfinder(addr, args);
    assert!(
        output.status.success(),
        "wayfinder {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// The table row whose first column is `key`, split into cells.
#[track_caller]
fn row(table: &str, key: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(key))
        .unwrap_or_else(|| panic!("no row {key:?} in\n{table}"))
}

fn write_definition(dir: &Path, name: &str, body: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body.to_string()).expect("writing the definition file");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

fn web_definition(id: &str) -> Value {
    json!({
        "Name": "web", "ID": id, "Address": "127.0.0.1", "Port": 8080, "Tags": ["v1"],
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "60s"}
    })
}

/// Registers two TTL-checked `web` instances from files and marks both passing.
fn register_two(agent: &Agent, url: &str) -> tempfile::TempDir {
    let dir = support::temp_dir("cli-register");
    let first = write_definition(dir.path(), "web-1.json", &web_definition("web-1"));
    // The config-file form, `{"service": {...}}`, is accepted too.
    let second = write_definition(
        dir.path(),
        "web-2.json",
        &json!({"service": web_definition("web-2")}),
    );
    assert!(ok(url, &["register", &first]).contains("registered web-1"));
    assert!(ok(url, &["register", &second]).contains("registered web-2"));
    for id in ["web-1-ttl", "web-2-ttl"] {
        ok(url, &["check", "pass", id, "--note", "ready & well"]);
        agent.wait_for_status(id, "passing");
    }
    dir
}

#[test]
fn register_check_and_deregister_show_in_services_and_endpoints() {
    let agent = Agent::start(&[]);
    let url = agent.base_url();
    let _files = register_two(&agent, &url);
    assert_eq!(
        agent.check("web-1-ttl").map(|c| c["Output"].clone()),
        Some(json!("ready & well")),
        "the note is sent, escaped, as the check's output"
    );

    let services = ok(&url, &["services"]);
    assert!(services.starts_with("SERVICE"), "{services}");
    assert_eq!(row(&services, "web"), ["web", "2", "2", "0", "0", "v1"]);

    let endpoints = ok(&url, &["endpoints", "web"]);
    assert_eq!(
        row(&endpoints, "web-1"),
        ["web-1", "127.0.0.1:8080", "passing", "1", "v1"]
    );
    row(&endpoints, "web-2");
    let json: Value = serde_json::from_str(&ok(&url, &["endpoints", "web", "--json"]))
        .expect("endpoints --json is JSON");
    let mut ids: Vec<&str> = json
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["web-1", "web-2"]);

    ok(&url, &["check", "fail", "web-2-ttl"]);
    agent.wait_for_status("web-2-ttl", "critical");
    ok(&url, &["check", "warn", "web-1-ttl"]);
    agent.wait_for_status("web-1-ttl", "warning");
    assert_eq!(
        row(&ok(&url, &["services"]), "web"),
        ["web", "2", "0", "1", "1", "v1"]
    );
    let counts: Value =
        serde_json::from_str(&ok(&url, &["services", "--json"])).expect("services --json is JSON");
    assert_eq!(
        counts,
        json!([{"name": "web", "tags": ["v1"], "instances": 2,
                "passing": 0, "warning": 1, "critical": 1}])
    );

    assert!(ok(&url, &["deregister", "web-2"]).contains("deregistered web-2"));
    assert_eq!(
        row(&ok(&url, &["services"]), "web"),
        ["web", "1", "0", "1", "0", "v1"]
    );
    ok(&url, &["deregister", "web-1"]);
    assert_eq!(
        ok(&url, &["services"]).lines().count(),
        1,
        "only the header"
    );
}

#[test]
fn refused_registration_quotes_the_agent() {
    let agent = Agent::start(&[]);
    let dir = support::temp_dir("cli-refused");
    let body = json!({"Port": 8080});
    let file = write_definition(dir.path(), "nameless.json", &body);
    let agent_error = agent
        .put_json("/v1/agent/service/register", &body)
        .expect_error(400);
    let message = agent_error["error"]
        .as_str()
        .expect("the agent's error text");

    let output = wayfinder(&agent.base_url(), &["register", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(message), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nameless.json"),
        "{}",
        stderr(&output)
    );

    let missing = wayfinder(&agent.base_url(), &["check", "pass", "no-such-check"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no-such-check"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn routes_without_a_gateway_say_so() {
    let agent = Agent::start(&[]);
    let output = wayfinder(&agent.base_url(), &["routes"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("gateway is off"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn members_show_the_one_agent() {
    let agent = Agent::start(&["--node", "node-a", "--datacenter", "east"]);
    // host:port works as well as a URL.
    let addr = agent.addr.to_string();
    let table = ok(&addr, &["members"]);
    assert_eq!(row(&table, "node-a")[2..], ["east", "alive"]);
    let json: Value =
        serde_json::from_str(&ok(&addr, &["members", "--json"])).expect("members --json");
    assert_eq!(json[0]["name"], "node-a");
    assert_eq!(json[0]["datacenter"], "east");
    assert_eq!(json.as_array().map(Vec::len), Some(1));
}

#[test]
fn an_unreachable_agent_gets_a_helpful_error() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    for args in [
        &["services"][..],
        &["members"],
        &["endpoints", "web", "--watch"],
    ] {
        let output = wayfinder(&addr, args);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains(&format!("cannot reach the agent at {addr}"))
                && message.contains("connection refused")
                && message.contains("WAYFINDER_HTTP_ADDR"),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn endpoints_watch_prints_a_line_per_change() {
    let agent = Agent::start(&[]);
    let url = agent.base_url();
    agent.register(&web_definition("web-1"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_wayfinder"))
        .args(["endpoints", "web", "--watch"])
        .env("WAYFINDER_HTTP_ADDR", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning wayfinder endpoints --watch");
    let out = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        received
            .recv_timeout(EVENT_TIMEOUT)
            .unwrap_or_else(|_| panic!("no watch line for {what} within {EVENT_TIMEOUT:?}"))
    };

    let resync = next("the resync");
    assert!(
        resync.starts_with("resync") && resync.contains("web-1=critical"),
        "{resync}"
    );
    ok(&url, &["check", "pass", "web-1-ttl"]);
    let health = next("the check passing");
    assert!(
        health.starts_with("health") && health.contains("web-1 critical -> passing"),
        "{health}"
    );
    agent.deregister("web-1");
    let gone = next("the deregistration");
    assert!(
        gone.starts_with("deregistered") && gone.contains("web-1"),
        "{gone}"
    );

    child.kill().expect("stopping the watch");
    child.wait().expect("reaping the watch");
}

#[test]
fn the_token_is_sent_as_x_consul_token() {
    use std::io::{Read, Write};
    // A one-request stand-in for the agent, so the test sees the headers as sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let addr = listener.local_addr().expect("its address");
    let (request_tx, request_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(EVENT_TIMEOUT));
        let mut request = Vec::new();
        let mut buffer = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
              Connection: close\r\n\r\n{}",
        );
        let _ = request_tx.send(String::from_utf8_lossy(&request).to_lowercase());
    });
    let output = Command::new(env!("CARGO_BIN_EXE_wayfinder"))
        .args(["services", "--json"])
        .env("WAYFINDER_HTTP_ADDR", addr.to_string())
        .env("WAYFINDER_TOKEN", "s3cret")
        .stdin(Stdio::null())
        .output()
        .expect("running the wayfinder binary");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "[]");
    let request = request_rx
        .recv_timeout(EVENT_TIMEOUT)
        .expect("the stand-in agent saw a request");
    assert!(
        request.starts_with("get /v1/catalog/services "),
        "{request}"
    );
    assert!(request.contains("x-consul-token: s3cret"), "{request}");
}
