//! `--upstream-consul`: an agent mirroring another agent's catalog through blocking queries,
//! read-only, with the second agent standing in for Consul (issue 3, "In front of an existing
//! Consul"). Every wait is bounded; everything runs on 127.0.0.1.

mod support;

use serde_json::{Value, json};
use std::thread;
use std::time::Duration;
use support::{Agent, EXIT_TIMEOUT, TcpRelay, consistently, http_client, temp_dir};
// tokio's Instant is std's outside a paused runtime; clippy.toml bans std's.
use tokio::time::Instant;

/// How long a change upstream may take to show on the mirror in these tests. The measured
/// propagation is a few milliseconds; this bound only keeps a stuck test from hanging.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the mirror may take to notice a restarted upstream: its loops back off up to 30 s
/// while the upstream is down, plus the slack a loaded machine needs.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(45);
/// The bound on propagation the issue cares about ("well under a second").
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

/// A `web` instance with a passing TTL check `{id}-ttl` long enough not to expire mid-test.
fn web(id: &str, port: u16) -> Value {
    json!({
        "Name": "web", "ID": id, "Address": "127.0.0.1", "Port": port,
        "Tags": ["v1"], "Meta": {"team": "blue"},
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "300s", "Status": "passing"}
    })
}

/// Starts a mirror of `upstream_url` and waits until it is ready (first sync done).
fn mirror_of(upstream_url: &str) -> Agent {
    let mirror = Agent::start(&["--upstream-consul", upstream_url]);
    wait_ready(&mirror, MIRROR_TIMEOUT);
    mirror
}

fn wait_ready(mirror: &Agent, timeout: Duration) {
    mirror.eventually(timeout, "the mirror to be ready", || {
        let response = mirror.get("/ready");
        match response.status {
            200 => Ok(()),
            status => Err(format!("{status} {}", response.text())),
        }
    });
}

/// `GET /v1/endpoints/{service}`: the status and the listed IDs, sorted.
fn endpoint_ids(agent: &Agent, service: &str) -> (u16, Vec<String>) {
    let response = agent.get(&format!("/v1/endpoints/{service}"));
    if response.status != 200 {
        return (response.status, Vec::new());
    }
    let mut ids: Vec<String> = response
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("/v1/endpoints must answer an array"))
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    (200, ids)
}

/// `GET /v1/catalog/services` as a JSON object.
fn catalog_services(agent: &Agent) -> serde_json::Map<String, Value> {
    let response = agent.get("/v1/catalog/services");
    response.expect_status(200);
    response.index();
    match response.json() {
        Value::Object(map) => map,
        other => panic!("/v1/catalog/services must be an object, got {other}"),
    }
}

/// Waits until `probe` holds on the mirror, or fails with what it saw.
#[track_caller]
fn wait_for(mirror: &Agent, what: &str, probe: impl Fn() -> Result<(), String>) {
    mirror.eventually(MIRROR_TIMEOUT, what, probe);
}

fn expect_ids(got: Vec<String>, want: &[&str]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?}"))
    }
}

/// The one check of `entry` whose ID is `id`.
fn check_of<'a>(entry: &'a Value, id: &str) -> &'a Value {
    entry["Checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["CheckID"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {entry}"))
}

#[test]
fn mirrors_the_upstream_catalog_and_follows_its_changes() {
    let upstream = Agent::start(&[]);
    upstream.register(&web("web-1", 8081));
    upstream.register(&web("web-2", 8082));
    upstream.register(&json!({"Name": "db", "ID": "db-1", "Address": "127.0.0.1", "Port": 5432}));
    let mirror = mirror_of(&upstream.base_url());

    // Every interface answers for the upstream's instances.
    let services = catalog_services(&mirror);
    assert_eq!(services.get("web"), Some(&json!(["v1"])), "{services:?}");
    assert_eq!(services.get("db"), Some(&json!([])), "{services:?}");
    assert_eq!(mirror.passing_ids("web"), ["web-1", "web-2"]);
    assert_eq!(
        endpoint_ids(&mirror, "web"),
        (200, vec!["web-1".into(), "web-2".into()])
    );
    assert_eq!(endpoint_ids(&mirror, "db"), (200, vec!["db-1".into()]));
    let response = mirror.get("/v1/health/service/web");
    let entries = response.json();
    let entry = entries
        .as_array()
        .and_then(|e| e.iter().find(|e| e["Service"]["ID"] == "web-1"))
        .unwrap_or_else(|| panic!("web-1 missing: {entries}"))
        .clone();
    assert_eq!(entry["Service"]["Address"], "127.0.0.1");
    assert_eq!(entry["Service"]["Port"], 8081);
    assert_eq!(entry["Service"]["Meta"], json!({"team": "blue"}));
    // The upstream's TTL check, and its node's serfHealth folded into the instance.
    let ttl = check_of(&entry, "web-1-ttl:web-1");
    assert_eq!(
        (&ttl["Status"], &ttl["Type"]),
        (&json!("passing"), &json!("ttl"))
    );
    assert_eq!(check_of(&entry, "serfHealth:web-1")["Status"], "passing");

    // A failing TTL upstream drops the instance from the mirror's healthy answers, promptly.
    let index = mirror.get("/v1/health/service/web?passing").index();
    let blocking = {
        let url = format!(
            "{}/v1/health/service/web?passing&index={index}&wait=10s",
            mirror.base_url()
        );
        let client = http_client();
        thread::spawn(move || {
            let response = client.get(&url).send().expect("blocking query");
            let done = Instant::now();
            let body: Value = response.json().expect("JSON");
            (done, body)
        })
    };
    let started = Instant::now();
    upstream
        .put_empty("/v1/agent/check/fail/web-1-ttl?note=down")
        .expect_write_ok();
    let written = started.elapsed();
    let deadline = started + MIRROR_TIMEOUT;
    let endpoints_gone = loop {
        if endpoint_ids(&mirror, "web").1 == ["web-2"] {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "web-1 never left the mirror's /v1/endpoints"
        );
        thread::sleep(Duration::from_millis(2));
    };
    let (woke, body) = blocking.join().expect("blocking query thread");
    let blocking_returned = woke.duration_since(started);
    let passing: Vec<&str> = body
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["Service"]["ID"].as_str())
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "propagation of a failing TTL upstream → mirror: upstream write acknowledged after \
         {written:?}; /v1/endpoints dropped it after {endpoints_gone:?}; a blocking \
         ?passing query on the mirror returned after {blocking_returned:?}"
    );
    assert_eq!(
        passing,
        ["web-2"],
        "the blocking query must answer with the change"
    );
    assert!(
        endpoints_gone < PROPAGATION_BOUND && blocking_returned < PROPAGATION_BOUND,
        "propagation took {endpoints_gone:?} / {blocking_returned:?}"
    );
    assert_eq!(mirror.passing_ids("web"), ["web-2"]);
    assert_eq!(mirror.health_service_ids("web", ""), ["web-1", "web-2"]);
    let entries = mirror.get("/v1/health/service/web").json();
    let failed = entries
        .as_array()
        .and_then(|e| e.iter().find(|e| e["Service"]["ID"] == "web-1"))
        .cloned()
        .unwrap_or_default();
    let ttl = check_of(&failed, "web-1-ttl:web-1");
    assert_eq!(
        (&ttl["Status"], &ttl["Output"]),
        (&json!("critical"), &json!("down"))
    );

    // Passing again comes back the same way.
    upstream
        .put_empty("/v1/agent/check/pass/web-1-ttl")
        .expect_write_ok();
    wait_for(&mirror, "web-1 healthy again", || {
        expect_ids(endpoint_ids(&mirror, "web").1, &["web-1", "web-2"])
    });

    // Deregistering upstream removes the instance; the last instance takes the service along.
    upstream.deregister("web-2");
    upstream.deregister("db-1");
    wait_for(&mirror, "web-2 and db gone", || {
        let services = catalog_services(&mirror);
        let ids = mirror.health_service_ids("web", "");
        if ids == ["web-1"] && !services.contains_key("db") {
            Ok(())
        } else {
            Err(format!("web: {ids:?}, services: {services:?}"))
        }
    });
    assert_eq!(endpoint_ids(&mirror, "db").0, 404);

    // A service new upstream gets its own loop.
    upstream.register(&json!({"Name": "api", "ID": "api-1", "Address": "127.0.0.1", "Port": 9000}));
    wait_for(&mirror, "api mirrored", || {
        expect_ids(endpoint_ids(&mirror, "api").1, &["api-1"])
    });

    // The mirror is read-only: every write is refused with the reason.
    let refused = mirror
        .put_json("/v1/agent/service/register", &web("web-9", 8089))
        .expect_error(403);
    let reason = refused["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("mirrors the upstream") && reason.contains(&upstream.base_url()),
        "{reason}"
    );
    mirror
        .put_empty("/v1/agent/service/deregister/web-1")
        .expect_error(403);
    mirror
        .put_empty("/v1/agent/check/fail/web-1-ttl:web-1")
        .expect_error(403);
    assert_eq!(mirror.health_service_ids("web", ""), ["web-1"]);
}

#[test]
fn an_upstream_outage_keeps_the_last_view_and_changes_flow_after_a_restart() {
    let upstream_dir = temp_dir("wayfinder-upstream-");
    let mut upstream = Agent::start_on(upstream_dir.path(), &[]);
    upstream.register(&web("web-1", 8081));
    let relay = TcpRelay::start(Some(upstream.addr));
    let mirror = mirror_of(&relay.url());
    wait_for(&mirror, "web-1 mirrored", || {
        expect_ids(endpoint_ids(&mirror, "web").1, &["web-1"])
    });

    upstream.kill9();
    wait_for(&mirror, "the outage to be logged", || {
        match mirror.stderr().contains("upstream Consul unreachable") {
            true => Ok(()),
            false => Err("no outage log line yet".into()),
        }
    });
    consistently(
        Duration::from_secs(2),
        "the mirror to keep serving its last view",
        || {
            let health = mirror.get("/health").status;
            let endpoints = endpoint_ids(&mirror, "web");
            let passing = mirror.passing_ids("web");
            if health == 200 && endpoints == (200, vec!["web-1".into()]) && passing == ["web-1"] {
                Ok(())
            } else {
                Err(format!(
                    "health {health}, endpoints {endpoints:?}, passing {passing:?}"
                ))
            }
        },
    );
    let outage_lines = mirror
        .stderr()
        .matches("upstream Consul unreachable")
        .count();
    assert_eq!(
        outage_lines,
        1,
        "one log line per outage:\n{}",
        mirror.stderr()
    );

    // The upstream comes back on another port behind the same address; changes flow again.
    let upstream = Agent::start_on(upstream_dir.path(), &[]);
    relay.set_target(Some(upstream.addr));
    upstream.register(&web("web-2", 8082));
    mirror.eventually(RECOVERY_TIMEOUT, "web-2 mirrored after the restart", || {
        expect_ids(endpoint_ids(&mirror, "web").1, &["web-1", "web-2"])
    });
    assert!(
        mirror.stderr().contains("reachable again"),
        "recovery must be logged:\n{}",
        mirror.stderr()
    );
}

#[test]
fn a_mirror_is_not_ready_before_its_first_sync() {
    // Nothing answers behind the relay yet.
    let relay = TcpRelay::start(None);
    let mirror = Agent::start(&["--upstream-consul", &relay.url()]);
    consistently(Duration::from_secs(1), "the mirror to stay unready", || {
        let ready = mirror.get("/ready").status;
        let endpoints = mirror.get("/v1/endpoints/web").status;
        let health = mirror.get("/health").status;
        match (ready, endpoints, health) {
            (503, 503, 200) => Ok(()),
            other => Err(format!("(/ready, /v1/endpoints, /health) = {other:?}")),
        }
    });

    let upstream = Agent::start(&[]);
    upstream.register(&web("web-1", 8081));
    relay.set_target(Some(upstream.addr));
    wait_ready(&mirror, RECOVERY_TIMEOUT);
    assert_eq!(endpoint_ids(&mirror, "web"), (200, vec!["web-1".into()]));
}

#[test]
fn a_restarted_mirror_drops_what_the_upstream_lost_meanwhile() {
    let upstream = Agent::start(&[]);
    upstream.register(&web("web-1", 8081));
    upstream.register(&web("web-2", 8082));
    let mirror_dir = temp_dir("wayfinder-mirror-");
    let upstream_url = upstream.base_url();
    let mirror_args = ["--upstream-consul", upstream_url.as_str()];
    let mut mirror = Agent::start_on(mirror_dir.path(), &mirror_args);
    wait_ready(&mirror, MIRROR_TIMEOUT);
    assert_eq!(mirror.passing_ids("web"), ["web-1", "web-2"]);
    mirror.sigterm();
    assert!(
        mirror.wait_exit(EXIT_TIMEOUT).success(),
        "{}",
        mirror.stderr()
    );

    upstream.deregister("web-2");
    let mirror = Agent::start_on(mirror_dir.path(), &mirror_args);
    assert!(
        mirror.stderr().contains("instances=2"),
        "the mirror should restore its last view:\n{}",
        mirror.stderr()
    );
    wait_ready(&mirror, MIRROR_TIMEOUT);
    assert_eq!(mirror.health_service_ids("web", ""), ["web-1"]);
    assert_eq!(endpoint_ids(&mirror, "web"), (200, vec!["web-1".into()]));
}
