//! Watch streams against the real binary: Server-Sent Events for every register, deregister and
//! health change, in order, resumable with `Last-Event-ID`, scoped per service, and ended
//! cleanly when the agent shuts down.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, EXIT_TIMEOUT, SseEvent, SseStream};

/// How long an event may take to arrive after the write that caused it was acknowledged (it is
/// sent before the acknowledgement; the slack is for a busy 2-core machine).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn register_with_ttl(agent: &Agent, service: &str, id: &str) {
    agent.register(&json!({
        "Name": service, "ID": id, "Address": "127.0.0.1", "Port": 8080,
        "Tags": ["v1"], "Meta": {"zone": "a"},
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "60s"}
    }));
}

fn register(agent: &Agent, service: &str, id: &str) {
    agent.register(&json!({"Name": service, "ID": id, "Address": "127.0.0.1", "Port": 8080}));
}

/// Reads the stream's first event, which must be a resync, and returns its data.
#[track_caller]
fn expect_resync(stream: &mut SseStream) -> Value {
    let event = stream.expect_event(EVENT_TIMEOUT);
    assert_eq!(event.event, "resync", "{event:?}");
    event.json()
}

/// Reads the next event and asserts its name, service and instance.
#[track_caller]
fn expect(stream: &mut SseStream, name: &str, service: &str, id: &str) -> SseEvent {
    let event = stream.expect_event(EVENT_TIMEOUT);
    let data = event.json();
    assert_eq!(
        (
            event.event.as_str(),
            data["service"].as_str(),
            data["id"].as_str()
        ),
        (name, Some(service), Some(id)),
        "unexpected event {event:?}"
    );
    assert_eq!(data["kind"], name, "{event:?}");
    assert_eq!(
        data["index"].as_u64(),
        Some(event.position().0),
        "the id starts with the data's index: {event:?}"
    );
    event
}

#[test]
fn every_change_arrives_in_order_with_increasing_ids() {
    let agent = Agent::start(&[]);
    let mut stream = agent.watch("/v1/watch/web", None);
    assert_eq!(
        stream.header("content-type"),
        Some("text/event-stream"),
        "{:?}",
        stream.headers
    );
    let baseline = expect_resync(&mut stream);
    assert_eq!(
        baseline["instances"],
        json!([]),
        "a service nobody registered yet can be watched: {baseline}"
    );

    register_with_ttl(&agent, "web", "web-1");
    let registered = expect(&mut stream, "registered", "web", "web-1");
    let instance = &registered.json()["instance"];
    assert_eq!(
        (&instance["host"], &instance["port"], &instance["status"]),
        (&json!("127.0.0.1"), &json!(8080), &json!("critical")),
        "a TTL check starts critical: {instance}"
    );
    assert_eq!(instance["tags"], json!(["v1"]), "{instance}");
    assert_eq!(instance["meta"], json!({"zone": "a"}), "{instance}");

    agent
        .put_empty("/v1/agent/check/pass/web-1-ttl")
        .expect_write_ok();
    let passing = expect(&mut stream, "health", "web", "web-1");
    let data = passing.json();
    assert_eq!(
        (&data["from"], &data["to"]),
        (&json!("critical"), &json!("passing"))
    );
    assert_eq!(data["instance"]["status"], "passing", "{data}");

    agent
        .put_empty("/v1/agent/check/fail/web-1-ttl")
        .expect_write_ok();
    let critical = expect(&mut stream, "health", "web", "web-1");
    let data = critical.json();
    assert_eq!(
        (&data["from"], &data["to"]),
        (&json!("passing"), &json!("critical"))
    );

    agent.deregister("web-1");
    let deregistered = expect(&mut stream, "deregistered", "web", "web-1");
    assert!(
        deregistered.json().get("instance").is_none(),
        "a deregistered instance is gone: {deregistered:?}"
    );

    let positions: Vec<(u64, u32)> = [&registered, &passing, &critical, &deregistered]
        .iter()
        .map(|event| event.position())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "ids must increase: {positions:?}"
    );
    assert!(
        (baseline["index"].as_u64().unwrap_or(u64::MAX), u32::MAX) < positions[0],
        "events follow the baseline: {baseline} then {positions:?}"
    );
}

#[test]
fn a_reconnecting_watcher_receives_what_happened_while_it_was_away() {
    let agent = Agent::start(&[]);
    let mut stream = agent.watch("/v1/watch/web", None);
    expect_resync(&mut stream);
    register(&agent, "web", "web-1");
    let last_seen = expect(&mut stream, "registered", "web", "web-1");
    drop(stream);

    // While nobody watches: changes to web, and to db, which this watcher does not follow.
    register(&agent, "web", "web-2");
    register(&agent, "db", "db-1");
    register_with_ttl(&agent, "web", "web-3");
    agent
        .put_empty("/v1/agent/check/pass/web-3-ttl")
        .expect_write_ok();
    agent.deregister("web-1");

    let mut resumed = agent.watch("/v1/watch/web", Some(&last_seen.id));
    expect(&mut resumed, "registered", "web", "web-2");
    expect(&mut resumed, "registered", "web", "web-3");
    expect(&mut resumed, "health", "web", "web-3");
    expect(&mut resumed, "deregistered", "web", "web-1");
    // And then live, with nothing replayed twice.
    register(&agent, "web", "web-4");
    expect(&mut resumed, "registered", "web", "web-4");

    // Resuming in the middle of the missed events replays only the rest.
    let mut all = agent.watch("/v1/watch", Some(&last_seen.id));
    let web_2 = expect(&mut all, "registered", "web", "web-2");
    expect(&mut all, "registered", "db", "db-1");
    drop(all);
    let mut partway = agent.watch("/v1/watch", Some(&web_2.id));
    expect(&mut partway, "registered", "db", "db-1");
    expect(&mut partway, "registered", "web", "web-3");
}

#[test]
fn a_last_event_id_too_far_behind_or_unreadable_gets_a_resync_then_live_events() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    register(&agent, "web", "web-2");
    register(&agent, "db", "db-1");

    for last_event_id in ["1.0", "not-an-id"] {
        let mut stream = agent.watch("/v1/watch/web", Some(last_event_id));
        let resync = expect_resync(&mut stream);
        let ids: Vec<&str> = resync["instances"]
            .as_array()
            .unwrap_or_else(|| panic!("resync lists instances: {resync}"))
            .iter()
            .filter_map(|instance| instance["id"].as_str())
            .collect();
        assert_eq!(ids, ["web-1", "web-2"], "{last_event_id}: {resync}");
        assert_eq!(resync["instances"][0]["status"], "passing", "{resync}");
        agent.deregister("web-2");
        expect(&mut stream, "deregistered", "web", "web-2");
        register(&agent, "web", "web-2");
        expect(&mut stream, "registered", "web", "web-2");
    }

    let mut all = agent.watch("/v1/watch", Some("1.0"));
    let resync = expect_resync(&mut all);
    let services = resync["services"]
        .as_object()
        .unwrap_or_else(|| panic!("an all-services resync maps services: {resync}"));
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        ["db", "web"],
        "{resync}"
    );
}

#[test]
fn a_watcher_of_one_service_hears_nothing_about_another() {
    let agent = Agent::start(&[]);
    let mut web = agent.watch("/v1/watch/web", None);
    let mut all = agent.watch("/v1/watch", None);
    expect_resync(&mut web);
    expect_resync(&mut all);

    register(&agent, "db", "db-1");
    agent.deregister("db-1");
    register(&agent, "web", "web-1");

    // The first thing the web watcher hears of is web-1: db's events never reached it.
    expect(&mut web, "registered", "web", "web-1");
    expect(&mut all, "registered", "db", "db-1");
    expect(&mut all, "deregistered", "db", "db-1");
    expect(&mut all, "registered", "web", "web-1");
}

#[test]
fn an_invalid_service_name_is_a_400_with_a_json_body() {
    let agent = Agent::start(&[]);
    let body = agent.get("/v1/watch/not_a_dns_label").expect_error(400);
    assert_eq!(body["field"], "service", "{body}");
}

#[test]
fn sigterm_ends_open_streams_and_the_agent_exits_cleanly() {
    let mut agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    let mut web = agent.watch("/v1/watch/web", None);
    let mut all = agent.watch("/v1/watch", None);
    expect_resync(&mut web);
    expect_resync(&mut all);

    agent.sigterm();
    assert_eq!(
        web.next_event(EXIT_TIMEOUT),
        None,
        "the stream ends at shutdown"
    );
    assert_eq!(all.next_event(EXIT_TIMEOUT), None);
    let status = agent.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.success(),
        "SIGTERM with open watch streams must exit 0, got {status}\n{}",
        agent.stderr_tail()
    );
}
