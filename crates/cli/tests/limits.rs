//! The HTTP API's limits against the real binary: connections per client, the header-read
//! deadline, oversized headers and the per-client write rate — each refused with a clear
//! status, and nothing changed by a refused write.

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::Agent;
use tokio::time::Instant;

fn addr(agent: &Agent) -> SocketAddr {
    agent
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .expect("agent address")
}

fn connect(agent: &Agent) -> TcpStream {
    let stream = TcpStream::connect(addr(agent)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Everything the server sends until it closes the connection (or 10 s pass).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// One `GET /v1/status/leader` on `stream`, answered on the same connection.
fn request_ok(stream: &mut TcpStream) -> bool {
    let sent = stream.write_all(b"GET /v1/status/leader HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut buffer = [0u8; 1024];
    sent.is_ok()
        && matches!(stream.read(&mut buffer), Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 200"))
}

#[test]
fn a_client_over_its_connection_limit_is_told_why_and_others_are_not_affected() {
    let agent = Agent::start(&["--http-max-conns-per-client", "2"]);
    let mut first = connect(&agent);
    let mut second = connect(&agent);
    assert!(request_ok(&mut first) && request_ok(&mut second));

    let mut third = connect(&agent);
    let refused = read_to_close(&mut third);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let error: Value = serde_json::from_str(body).expect("a JSON body");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("--http-max-conns-per-client")),
        "{error}"
    );
    assert!(request_ok(&mut first), "open connections keep working");

    // Closing one gives its place back.
    drop(second);
    agent.eventually(Duration::from_secs(10), "a freed connection slot", || {
        let mut again = connect(&agent);
        if request_ok(&mut again) {
            Ok(())
        } else {
            Err("still refused".to_owned())
        }
    });
}

#[test]
fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    let agent = Agent::start(&["--http-header-timeout", "300ms"]);
    let mut slow = connect(&agent);
    slow.write_all(b"GET /v1/status/leader HTTP/1.1\r\n")
        .expect("partial request");
    let started = Instant::now();
    let answer = read_to_close(&mut slow);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "closed after {waited:?}, answer {answer:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // A prompt client on the same agent is served.
    let mut prompt = connect(&agent);
    assert!(request_ok(&mut prompt));
}

#[test]
fn oversized_headers_are_refused() {
    let agent = Agent::start(&[]);
    let mut stream = connect(&agent);
    let huge = "a".repeat(100 * 1024);
    let request = format!("GET /v1/status/leader HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n");
    // The server may close before reading everything: a failed write is fine.
    let _ = stream.write_all(request.as_bytes());
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
}

#[test]
fn writes_over_the_client_rate_are_refused_and_change_nothing() {
    let agent = Agent::start(&["--http-write-rate", "2"]);
    // A burst of two passes; more at once (one token comes back every 500 ms) are refused.
    let responses: Vec<_> = (0..10)
        .map(|i| {
            agent.put(
                "/v1/agent/service/register",
                json!({"Name": "web", "ID": format!("web-{i}"), "Port": 80}).to_string(),
            )
        })
        .collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let refused = responses
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no write refused: {statuses:?}"));
    assert!(refused.header("retry-after").is_some());
    let body = refused.json();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--http-write-rate")),
        "{body}"
    );
    // Reads are not limited, and exactly the writes answered 200 happened.
    let services = agent.get("/v1/agent/services").json();
    for (i, status) in statuses.iter().enumerate() {
        let present = services.get(format!("web-{i}")).is_some();
        assert_eq!(
            present,
            *status == 200,
            "web-{i} answered {status}: {services}"
        );
    }
}
