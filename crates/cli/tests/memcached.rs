//! Memcached as the shared store of rendered endpoint lists (issue 3), against the real binary
//! and a real memcached: the primary pushes every change (and deletes the key when nothing is
//! healthy), provider-only agents serve it, refuse writes, ride out a memcached outage from
//! their own view with one log line per outage, and return to memcached when it is back.
//!
//! Tests that start memcached are `#[ignore]`d: `scripts/test` installs memcached and runs
//! them. The rest (URL validation, the metrics endpoints) run everywhere.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::memcached::Memcached;
use support::{Agent, Response, consistently, http_client};
use tokio::time::Instant;

const SERVICE: &str = "worker-service";
const KEY: &str = "endpoints:worker-service";
const PATH: &str = "/v1/endpoints/worker-service";
/// The marker the pusher writes after pushing every service to a server.
const SYNCED_KEY: &str = "wayfinder:endpoints-synced";
/// How long a push, a probe-driven recovery or a resync may take: the probe runs every second;
/// the rest is slack for a busy 2-core machine.
const CACHE_TIMEOUT: Duration = Duration::from_secs(15);
/// The provider's outage warning and recovery line (one of each per outage).
const OUTAGE_BEGAN: &str = "memcached outage: the server is unreachable";
const OUTAGE_ENDED: &str = "memcached outage over";

fn register(agent: &Agent, id: &str, address: &str, ttl_status: Option<&str>) {
    let mut body = json!({"Name": SERVICE, "ID": id, "Address": address, "Port": 8080});
    if let Some(status) = ttl_status {
        body["Check"] = json!({"CheckID": format!("{id}-ttl"), "TTL": "60s", "Status": status});
    }
    agent.register(&body);
}

/// Waits until memcached holds exactly the bytes the primary answers for the service, and
/// returns them.
#[track_caller]
fn expect_key_matches_primary(primary: &Agent, memcached: &Memcached, what: &str) -> Vec<u8> {
    primary.eventually(CACHE_TIMEOUT, what, || {
        let answer = primary.get(PATH);
        if answer.status != 200 {
            return Err(format!(
                "primary answers {} {}",
                answer.status,
                answer.text()
            ));
        }
        match memcached.get(KEY) {
            Some(stored) if stored == answer.body => Ok(stored),
            Some(stored) => Err(format!(
                "memcached holds {:?}, the primary answers {:?}",
                String::from_utf8_lossy(&stored),
                answer.text()
            )),
            None => Err(format!("no key; the primary answers {:?}", answer.text())),
        }
    })
}

#[track_caller]
fn expect_key_deleted(primary: &Agent, memcached: &Memcached, what: &str) {
    primary.eventually(CACHE_TIMEOUT, what, || match memcached.get(KEY) {
        None => Ok(()),
        Some(stored) => Err(format!(
            "memcached still holds {:?}",
            String::from_utf8_lossy(&stored)
        )),
    });
}

fn ids(body: &[u8]) -> Vec<String> {
    let list: Value = serde_json::from_slice(body).expect("an endpoint list is JSON");
    let mut ids: Vec<String> = list
        .as_array()
        .expect("an endpoint list is an array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// A sample's value from `GET /metrics` (`name` with labels, if any, exactly as exposed).
fn metric(agent: &Agent, name: &str) -> f64 {
    let answer = agent.get("/metrics");
    answer.expect_status(200);
    let text = answer.text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

fn log_count(agent: &Agent, needle: &str) -> usize {
    agent
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn cache_status(answer: &Response) -> &str {
    answer.header("X-Cache-Status").unwrap_or("(none)")
}

#[test]
#[ignore = "needs memcached: scripts/test"]
fn primary_pushes_every_change_and_deletes_the_key_when_nothing_is_healthy() {
    let memcached = Memcached::start();
    let primary = Agent::start(&["--cache", &memcached.url()]);

    register(&primary, "worker-1", "10.0.1.10", Some("passing"));
    let stored = expect_key_matches_primary(&primary, &memcached, "the key after registering");
    assert_eq!(ids(&stored), ["worker-1"]);

    register(&primary, "worker-2", "10.0.1.11", None);
    let stored = expect_key_matches_primary(&primary, &memcached, "the key with two instances");
    assert_eq!(ids(&stored), ["worker-1", "worker-2"]);

    // A TTL check failing takes its instance out of the stored list.
    primary
        .put_empty("/v1/agent/check/fail/worker-1-ttl?note=down")
        .expect_write_ok();
    let stored = expect_key_matches_primary(&primary, &memcached, "the key without worker-1");
    assert_eq!(ids(&stored), ["worker-2"]);

    // Nothing healthy left: the primary answers 503 and the key is gone.
    primary.deregister("worker-2");
    expect_key_deleted(
        &primary,
        &memcached,
        "the key deleted when nothing is healthy",
    );
    primary.get(PATH).expect_error(503);

    // Healthy again: the key is back.
    primary
        .put_empty("/v1/agent/check/pass/worker-1-ttl")
        .expect_write_ok();
    let stored = expect_key_matches_primary(&primary, &memcached, "the key after recovery");
    assert_eq!(ids(&stored), ["worker-1"]);

    // Gone: unknown service, no key.
    primary.deregister("worker-1");
    expect_key_deleted(&primary, &memcached, "the key deleted with the service");
    primary.get(PATH).expect_error(404);

    assert!(
        memcached.get(SYNCED_KEY).is_some(),
        "the start-up resync marks the server synced"
    );
    assert!(metric(&primary, "wayfinder_cache_writes_total") >= 6.0);
    assert_eq!(metric(&primary, "wayfinder_cache_write_errors_total"), 0.0);
    assert_eq!(metric(&primary, "wayfinder_cache_up"), 1.0);
}

#[test]
#[ignore = "needs memcached: scripts/test"]
fn provider_serves_from_memcached_refuses_writes_and_rides_out_an_outage() {
    let mut memcached = Memcached::start();
    let url = memcached.url();
    let primary = Agent::start(&["--cache", &url]);
    // Start the provider against a synced memcached, so its log holds only this outage.
    primary.eventually(CACHE_TIMEOUT, "the primary's start-up resync", || {
        memcached
            .get(SYNCED_KEY)
            .ok_or_else(|| "no sync marker yet".to_owned())
    });
    let provider = Agent::start(&["--provider-only", "--cache", &url]);

    // --- HIT ---------------------------------------------------------------------------------
    register(&primary, "worker-1", "10.0.1.10", None);
    let first = provider.eventually(CACHE_TIMEOUT, "a HIT on the provider", || {
        let answer = provider.get(PATH);
        match (answer.status, cache_status(&answer)) {
            (200, "HIT") => Ok(answer),
            (status, cache) => Err(format!("{status} {cache} {}", answer.text())),
        }
    });
    assert_eq!(
        first.body,
        primary.get(PATH).body,
        "the primary's exact bytes"
    );
    assert_eq!(first.header("Cache-Control"), Some("no-cache"));
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    let etag = first
        .header("ETag")
        .expect("a provider sends an ETag")
        .to_owned();
    assert!(etag.starts_with("\"h-"), "a body-hash ETag, got {etag}");
    let revalidated = http_client()
        .get(format!("{}{PATH}", provider.base_url()))
        .header("If-None-Match", &etag)
        .send()
        .expect("conditional GET");
    assert_eq!(revalidated.status().as_u16(), 304);

    // Blocking queries are answered at once: the stored bytes carry no index to wait on.
    let asked = Instant::now();
    let blocking = provider.get(&format!("{PATH}?index=999999&wait=60s"));
    blocking.expect_status(200);
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "?index must not block on a provider"
    );

    let unknown = provider.get("/v1/endpoints/no-such-service");
    unknown.expect_error(404);
    assert_eq!(cache_status(&unknown), "MISS");
    provider
        .get(&format!("{PATH}?include=warning"))
        .expect_error(400);

    // --- Writes are refused --------------------------------------------------------------------
    let refused = provider.put_json(
        "/v1/agent/service/register",
        &json!({"Name": SERVICE, "ID": "sneaky", "Port": 1}),
    );
    let error = refused.expect_error(403);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("provider-only")),
        "the 403 says why: {error}"
    );

    // --- Outage: BYPASS from the provider's own view ------------------------------------------
    memcached.kill();
    for _ in 0..20 {
        let answer = provider.get(PATH);
        answer.expect_status(200);
        assert_eq!(cache_status(&answer), "BYPASS", "{}", answer.text());
        assert_eq!(answer.body, first.body, "the last body read");
    }
    let never_read = provider.get("/v1/endpoints/other-service");
    never_read.expect_error(503);
    assert_eq!(cache_status(&never_read), "BYPASS");
    assert!(never_read.header("Retry-After").is_some());

    provider.eventually(
        CACHE_TIMEOUT,
        "the provider's outage warning",
        || match log_count(&provider, OUTAGE_BEGAN) {
            0 => Err("no warning yet".to_owned()),
            n => Ok(n),
        },
    );
    // More requests and probes during the outage add no lines: one per outage.
    consistently(Duration::from_millis(1500), "one outage warning", || {
        provider.get(PATH).expect_status(200);
        match log_count(&provider, OUTAGE_BEGAN) {
            1 => Ok(()),
            n => Err(format!("{n} warnings:\n{}", provider.stderr())),
        }
    });
    assert!(metric(&provider, "wayfinder_cache_bypass_total") >= 21.0);
    assert_eq!(metric(&provider, "wayfinder_cache_up"), 0.0);
    let json = provider.get("/v1/agent/metrics");
    json.expect_status(200);
    let json = json.json();
    let bypass = json["Counters"]
        .as_array()
        .expect("Counters")
        .iter()
        .find(|c| c["Name"] == "wayfinder_cache_bypass_total")
        .unwrap_or_else(|| panic!("no bypass counter in {json}"));
    assert!(bypass["Count"].as_f64().unwrap_or(0.0) >= 21.0, "{bypass}");

    // A change while memcached is down reaches it once it is back.
    register(&primary, "worker-2", "10.0.1.11", None);
    primary.eventually(
        CACHE_TIMEOUT,
        "the primary's outage warning",
        || match log_count(&primary, OUTAGE_BEGAN) {
            0 => Err("no warning yet".to_owned()),
            n => Ok(n),
        },
    );

    // --- Recovery: the primary resyncs, the provider is back to HIT ---------------------------
    memcached.restart();
    let stored = expect_key_matches_primary(&primary, &memcached, "the primary's resync");
    assert_eq!(ids(&stored), ["worker-1", "worker-2"]);
    let back = provider.eventually(CACHE_TIMEOUT, "a HIT after recovery", || {
        let answer = provider.get(PATH);
        match (answer.status, cache_status(&answer)) {
            (200, "HIT") if answer.body == stored => Ok(answer),
            (status, cache) => Err(format!("{status} {cache} {}", answer.text())),
        }
    });
    assert_ne!(
        back.header("ETag"),
        Some(etag.as_str()),
        "a new body, a new ETag"
    );
    provider.eventually(
        CACHE_TIMEOUT,
        "the provider's recovery line",
        || match log_count(&provider, OUTAGE_ENDED) {
            1 => Ok(()),
            n => Err(format!("{n} recovery lines")),
        },
    );
    assert_eq!(log_count(&provider, OUTAGE_BEGAN), 1, "still one outage");
    assert_eq!(
        log_count(&primary, OUTAGE_BEGAN),
        1,
        "one outage on the primary"
    );
    assert_eq!(log_count(&primary, OUTAGE_ENDED), 1);
    provider.eventually(CACHE_TIMEOUT, "cache_up back to 1", || {
        let up = metric(&provider, "wayfinder_cache_up");
        if up == 1.0 {
            Ok(())
        } else {
            Err(format!("{up}"))
        }
    });
}

#[test]
#[ignore = "needs memcached: scripts/test"]
fn several_servers_split_the_keys_and_providers_find_them_whatever_the_list_order() {
    let first = Memcached::start();
    let mut second = Memcached::start();
    let servers = |a: &Memcached, b: &Memcached| {
        format!("{},{}", a.url(), b.url().trim_start_matches("memcached://"))
    };
    let primary = Agent::start(&["--cache", &servers(&first, &second)]);
    let provider = Agent::start(&["--provider-only", "--cache", &servers(&second, &first)]);
    let names: Vec<String> = (0..20).map(|i| format!("svc-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        primary.register(&json!({
            "Name": name, "ID": format!("{name}-1"), "Address": "10.0.2.1", "Port": 9000 + i
        }));
    }

    // Every key lives on exactly one server, and both servers hold some.
    let mut on_second = Vec::new();
    for name in &names {
        let key = format!("endpoints:{name}");
        let expected = primary.get(&format!("/v1/endpoints/{name}"));
        expected.expect_status(200);
        let held_by_second =
            primary.eventually(CACHE_TIMEOUT, &format!("{key} pushed"), || {
                match (first.get(&key), second.get(&key)) {
                    (Some(v), None) if v == expected.body => Ok(false),
                    (None, Some(v)) if v == expected.body => Ok(true),
                    other => Err(format!("{other:?}")),
                }
            });
        if held_by_second {
            on_second.push(name.clone());
        }
    }
    assert!(
        !on_second.is_empty() && on_second.len() < names.len(),
        "20 keys should spread over 2 servers, second holds {on_second:?}"
    );

    // A provider that lists the servers the other way round finds every key.
    for name in &names {
        let path = format!("/v1/endpoints/{name}");
        let answer = provider.eventually(CACHE_TIMEOUT, &format!("a HIT for {name}"), || {
            let answer = provider.get(&path);
            match (answer.status, cache_status(&answer)) {
                (200, "HIT") => Ok(answer),
                (status, cache) => Err(format!("{status} {cache} {}", answer.text())),
            }
        });
        assert_eq!(answer.body, primary.get(&path).body);
    }

    // One server down is an outage of its keys only.
    second.kill();
    for name in &names {
        let answer = provider.get(&format!("/v1/endpoints/{name}"));
        answer.expect_status(200);
        let expected = if on_second.contains(name) {
            "BYPASS"
        } else {
            "HIT"
        };
        assert_eq!(cache_status(&answer), expected, "{name}");
    }
}

#[test]
fn a_bad_cache_url_stops_the_agent_and_names_the_bad_part() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--cache", "memcached://127.0.0.1:notaport"],
            "port \"notaport\"",
        ),
        (
            &["--cache", "redis://127.0.0.1:6379"],
            "must start with memcached://",
        ),
        (&["--cache", "memcached://127.0.0.1:11211/0"], "\"/0\""),
        (
            &[
                "--provider-only",
                "--cache",
                "memcached://127.0.0.1:11211",
                "--config-dir",
                "/nonexistent",
            ],
            "--provider-only cannot load --config-dir",
        ),
    ];
    for (args, expected) in cases {
        let (status, _stdout, stderr) = Agent::start_expecting_failure(args);
        assert!(!status.success(), "{args:?} must fail");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in stderr:\n{stderr}"
        );
    }
}

#[test]
fn metrics_are_served_as_openmetrics_and_as_json() {
    let agent = Agent::start(&[]);
    let text = agent.get("/metrics");
    text.expect_status(200);
    assert_eq!(
        text.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(text.text().ends_with("# EOF\n"), "{}", text.text());

    let prometheus = agent.get("/v1/agent/metrics?format=prometheus");
    prometheus.expect_status(200);
    assert_eq!(
        prometheus.header("Content-Type"),
        text.header("Content-Type")
    );

    let json = agent.get("/v1/agent/metrics");
    json.expect_status(200);
    let json = json.json();
    assert!(
        json["Gauges"].is_array() && json["Counters"].is_array(),
        "{json}"
    );

    agent.get("/v1/agent/metrics?format=xml").expect_error(400);
}
